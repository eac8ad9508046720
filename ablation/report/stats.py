"""Summaries over seeds, paired comparisons with the baseline arm, Holm's
correction and the verdict. Pure functions on the ``cells`` DataFrame
(one row per used cell, ``arm``/``seed`` plus ``metrics.*`` columns)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ablation.decision import holm, hypotheses  # one Holm correction for the decisions and the other metrics' tables

CONFIDENCE = 0.95
ALPHA = 0.05
QUALITY_METRICS = ("val.acc", "test.acc", "val.macro_f1", "test.macro_f1")
COST_METRICS = ("n_params", "macs_per_frame", "epochs_run", "train_time_s", "frames_per_s")
CEILINGS = {"val.acc": "ceiling.val_acc", "test.acc": "ceiling.test_acc"}
# the information ceiling of each arm's own input (see ablation.data.ceiling)
ARM_CEILINGS = {"val.acc": "ceiling.arm.val_acc", "test.acc": "ceiling.arm.test_acc"}
LABELS = {
    "val.acc": "val accuracy",
    "test.acc": "test accuracy",
    "val.macro_f1": "val macro-F1",
    "test.macro_f1": "test macro-F1",
    "val.loss": "val loss",
}


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided t-interval; ``lo``/``hi`` are NaN below 2 values."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def has_ci(self) -> bool:
        return self.n >= 2 and np.isfinite(self.lo)

    def excludes(self, value: float = 0.0) -> bool:
        return self.has_ci and not (self.lo <= value <= self.hi)


def mean_ci(values, confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval of the finite ``values``."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, np.nan, np.nan, 1)
    sem = float(stats.sem(x))
    if sem == 0.0:  # identical values: the interval collapses onto the mean
        return Interval(mean, mean, mean, n)
    lo, hi = stats.t.interval(confidence, df=n - 1, loc=mean, scale=sem)
    return Interval(mean, float(lo), float(hi), n)


def metric_table(cells: pd.DataFrame, arms: list[str], metric: str) -> pd.DataFrame:
    """Seeds x arms matrix of one metric (NaN where a run lacks it)."""
    col = "metrics." + metric
    if cells.empty or col not in cells.columns:
        return pd.DataFrame(index=pd.Index([], name="seed"), columns=arms, dtype=float)
    wide = cells.pivot_table(index="seed", columns="arm", values=col, aggfunc="first", dropna=False)
    return wide.reindex(columns=arms).astype(float)


def metric_tables(cells: pd.DataFrame, arms: list[str], metrics: list[str]) -> dict[str, pd.DataFrame]:
    """``metric_table`` of each of ``metrics``, from one pivot of them all (a report pivots one per
    class and arm: 95 pivots took half a second of every report)."""
    present = [m for m in metrics if not cells.empty and "metrics." + m in cells.columns]
    out = {m: metric_table(cells, arms, m) for m in metrics if m not in present}
    if present:
        wide = cells.pivot_table(index="seed", columns="arm", values=["metrics." + m for m in present],
                                 aggfunc="first", dropna=False)
        for m in present:
            out[m] = wide["metrics." + m].reindex(columns=arms).astype(float)
    return out


def summarise(cells: pd.DataFrame, arms: list[str], metrics=QUALITY_METRICS + COST_METRICS) -> pd.DataFrame:
    """One row per (arm, metric): ``n``, ``mean``, ``lo``, ``hi``, ``min``, ``max``."""
    rows = []
    tables = metric_tables(cells, arms, list(metrics))
    for metric in metrics:
        table = tables[metric]
        for arm in arms:
            values = table[arm].to_numpy() if arm in table.columns else np.array([])
            iv = mean_ci(values)
            finite = values[np.isfinite(values)]
            rows.append(
                {
                    "arm": arm, "metric": metric, "n": iv.n, "mean": iv.mean, "lo": iv.lo, "hi": iv.hi,
                    "min": float(finite.min()) if len(finite) else np.nan,
                    "max": float(finite.max()) if len(finite) else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=["arm", "metric", "n", "mean", "lo", "hi", "min", "max"])


def ceiling(cells: pd.DataFrame, metric: str) -> float | None:
    """The Bayes ceiling matching ``metric`` (mean over runs), when logged."""
    col = "metrics." + CEILINGS.get(metric, "")
    if metric not in CEILINGS or col not in cells.columns:
        return None
    values = cells[col].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def per_arm_mean(cells: pd.DataFrame, arms, column: str) -> dict[str, float]:
    """Mean of a metric column per arm over its finite values; arms without one are left out."""
    col = "metrics." + column
    if col not in cells.columns:
        return {}
    out = {}
    for arm in arms:
        values = cells.loc[cells["arm"] == arm, col].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values):
            out[arm] = float(values.mean())
    return out


def _paired_test(arm_values: np.ndarray, base_values: np.ndarray) -> tuple[Interval, float]:
    diffs = arm_values - base_values
    iv = mean_ci(diffs)
    if iv.n < 2:
        return iv, np.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # zero-variance differences: scipy warns, gives p = 0 or NaN
        p = float(stats.ttest_rel(arm_values, base_values).pvalue)
    return iv, p


def paired_vs_baseline(cells: pd.DataFrame, arms: list[str], baseline: str, metric: str,
                       groups: list[list[str]] | None = None) -> pd.DataFrame:
    """Each non-baseline arm minus the baseline on the seeds both have:
    ``n``, ``mean_diff``, ``lo``, ``hi``, ``p`` (paired t), ``p_holm``,
    ``distinguishable`` (Holm p < 0.05 and the CI excludes 0). Arms of one
    of ``groups`` (identical on ``metric`` at every seed) are one hypothesis of
    the correction and share its ``p_holm``."""
    table = metric_table(cells, arms, metric)
    rows = []
    for arm in arms:
        if arm == baseline:
            continue
        both = table[[arm, baseline]].dropna() if baseline in table.columns else table.iloc[:0]
        iv, p = _paired_test(both[arm].to_numpy(), both[baseline].to_numpy())
        rows.append({"arm": arm, "n": iv.n, "mean_diff": iv.mean, "lo": iv.lo, "hi": iv.hi, "p": p})
    out = pd.DataFrame(rows, columns=["arm", "n", "mean_diff", "lo", "hi", "p"])
    out["p_holm"] = holm(out["p"].to_numpy(), hypotheses(out["arm"].tolist(), groups))
    excl = [Interval(r.mean_diff, r.lo, r.hi, int(r.n)).excludes(0.0) for r in out.itertuples()]
    out["distinguishable"] = (out["p_holm"] < ALPHA) & np.array(excl, dtype=bool)
    return out


def phones(cells: pd.DataFrame, prefix: str = "recall.") -> list[str]:
    """Class names with a logged per-class metric, in natural order (``2`` < ``10``)."""
    names = [c[len("metrics." + prefix):] for c in cells.columns if c.startswith("metrics." + prefix)]
    return sorted(names, key=lambda s: (0, int(s), "") if s.isdigit() else (1, 0, s))


def recall_matrix(cells: pd.DataFrame, arms: list[str], prefix: str = "recall.") -> pd.DataFrame:
    """Arms x classes: mean over seeds of the per-class recall."""
    names = phones(cells, prefix)
    tables = metric_tables(cells, arms, [prefix + p for p in names])
    grid = {p: tables[prefix + p].mean().reindex(arms).tolist() for p in names}
    return pd.DataFrame(grid, index=pd.Index(arms, name="arm"), columns=names, dtype=float)


def class_changes(cells: pd.DataFrame, arms: list[str], baseline: str, prefix: str = "recall.") -> pd.DataFrame:
    """Paired change of each class's recall vs the baseline, per non-baseline arm,
    sorted by ``|mean_diff|`` (largest first) within each arm."""
    rows = []
    names = phones(cells, prefix)
    tables = metric_tables(cells, arms, [prefix + p for p in names])
    for name in names:
        table = tables[prefix + name]
        for arm in arms:
            if arm == baseline:
                continue
            both = table[[arm, baseline]].dropna()
            iv = mean_ci(both[arm].to_numpy() - both[baseline].to_numpy())
            rows.append({"arm": arm, "phone": name, "n": iv.n, "mean_diff": iv.mean, "lo": iv.lo, "hi": iv.hi})
    out = pd.DataFrame(rows, columns=["arm", "phone", "n", "mean_diff", "lo", "hi"])
    out = out.dropna(subset=["mean_diff"])
    out["order"] = out["arm"].map({a: i for i, a in enumerate(arms)})
    out["abs"] = out["mean_diff"].abs()
    out = out.sort_values(["order", "abs", "phone"], ascending=[True, False, True], kind="stable")
    return out.drop(columns=["order", "abs"]).reset_index(drop=True)
