"""Classification metrics from predictions (scikit-learn underneath)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


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


def evaluate_predictions(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, loss: float = float("nan")) -> EvalResult:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    labels = np.arange(n_classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = support > 0
    recall = np.where(present, recall, np.nan)
    return EvalResult(
        acc=float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        macro_f1=float(np.mean(f1[present])) if present.any() else float("nan"),
        loss=float(loss),
        recall=recall,
        precision=precision.astype(np.float64),
        support=support.astype(np.int64),
        confusion=confusion_matrix(y_true, y_pred, labels=labels),
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
