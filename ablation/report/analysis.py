"""Every number the report prints, computed once from the loaded runs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ablation import tags
from ablation.decision import Comparison, compare, paired
from ablation.report import stats
from ablation.report.diagnostics import diagnostics, identical_arms
from ablation.report.fairness import Check, check_fairness
from ablation.report.load import StudyRuns
from ablation.report.verdict import Verdict, compute_verdict


@dataclass(frozen=True)
class Analysis:
    metric: str
    summary: pd.DataFrame  # stats.summarise
    paired: dict[str, pd.DataFrame]  # metric -> stats.paired_vs_baseline; the study metric first
    recall: pd.DataFrame  # arms x phones, mean val recall
    changes: pd.DataFrame  # stats.class_changes of val recall
    ceilings: dict[str, float]  # metric -> Bayes ceiling, when logged
    arm_ceilings: dict[str, dict[str, float]]  # metric -> arm -> information ceiling of its input, when logged
    train_acc: dict[str, float]  # arm -> mean last-epoch train accuracy, when logged
    views: dict[str, str]  # arm -> what its model sees (the ceiling's view), when logged
    fairness: list[Check]
    verdict: Verdict
    gaps: dict[str, list[str]]  # metric -> "`arm` seed s" of used runs that lack a finite value
    decisions: dict[str, Comparison]  # non-baseline arm -> its decision on the study metric
    groups: list[list[str]] = field(default_factory=list)  # compared arms identical on the study metric: one hypothesis
    budget: object = None  # report.budget.BudgetCheck of a study with an epoch cap (added by its report kind)

    @property
    def n_hypotheses(self) -> int:
        """The hypotheses of the study metric's correction: each identical group counts once."""
        return len(self.decisions) - sum(len(g) - 1 for g in self.groups)

    @property
    def violations(self) -> list[Check]:
        return [c for c in self.fairness if c.ok is False]


def logged(cells: pd.DataFrame, metric: str) -> bool:
    col = "metrics." + metric
    return col in cells.columns and cells[col].notna().any()


def gaps(cells: pd.DataFrame, metrics) -> dict[str, list[str]]:
    """Used runs that lack a metric other runs have: left out of that metric's
    numbers, and said so."""
    out = {}
    for m in metrics:
        col = "metrics." + m
        if not logged(cells, m):
            continue
        bad = cells[~np.isfinite(cells[col].astype(float))]
        if len(bad):
            out[m] = [f"`{r.arm}` seed {r.seed}" for r in bad.itertuples()]
    return out


def _views(cells: pd.DataFrame, arms) -> dict[str, str]:
    col = tags.column(tags.CEILING_VIEW)
    if col not in cells.columns:
        return {}
    out = {}
    for arm in arms:
        values = cells.loc[cells["arm"] == arm, col].dropna()
        if len(values):
            out[arm] = str(values.iloc[0])
    return out


def paired_diffs(cells: pd.DataFrame, arms: list[str], baseline: str, metric: str, seeds: list[int]) -> dict:
    """Arm -> its differences from the baseline (arm minus baseline) on the seeds
    both have, in the study's seed order (``decision.paired``: the one definition
    ``status`` and the adaptive seed policy use too)."""
    col = "metrics." + metric
    values = {}
    if not cells.empty and col in cells.columns:
        for arm, seed, v in zip(cells["arm"], cells["seed"], cells[col].astype(float)):
            if np.isfinite(v):
                values[(arm, int(seed))] = float(v)
    return paired(arms, baseline, seeds, values)


def _compared(groups: list[list[str]], baseline: str) -> list[list[str]]:
    """The identical groups among the arms set against the baseline (the baseline is no hypothesis)."""
    out = [[a for a in g if a != baseline] for g in groups]
    return [g for g in out if len(g) > 1]


def decide(info, cells: pd.DataFrame) -> tuple[dict[str, Comparison], list[list[str]]]:
    """Each arm's decision against the baseline on the study metric, and the compared arms identical at
    every seed (one hypothesis each): the report's decisions, and the budget check's at a longer cap."""
    same = _compared(identical_arms(info.arms, cells, info.metric)[1], info.baseline)
    decisions = compare(paired_diffs(cells, info.arms, info.baseline, info.metric, info.seeds), info.smallest_effect,
                        info.maximize, info.design, groups=same)
    return decisions, same


def analyse(runs: StudyRuns) -> Analysis:
    """The study's analysis; computed once per loaded ``runs`` (they are not changed once loaded)."""
    if "analysis" not in runs.memo:
        runs.memo["analysis"] = _analyse(runs)
    return runs.memo["analysis"]


def _analyse(runs: StudyRuns) -> Analysis:
    info, cells = runs.info, runs.cells
    metric = info.metric
    quality = [metric] + [m for m in stats.QUALITY_METRICS if m != metric and logged(cells, m)]
    summary = stats.summarise(cells, info.arms, tuple(quality) + stats.COST_METRICS)
    # arms identical at every seed are one computation: one hypothesis of each metric's correction
    same = {m: _compared(identical_arms(info.arms, cells, m)[1], info.baseline) for m in quality}
    paired = {m: stats.paired_vs_baseline(cells, info.arms, info.baseline, m, same[m]) for m in quality}
    ceilings = {m: c for m in quality if (c := stats.ceiling(cells, m)) is not None}
    decisions, _ = decide(info, cells)
    diag, budget = diagnostics(info, cells, runs.history, runs.tuning)
    return Analysis(
        metric=metric,
        summary=summary,
        paired=paired,
        recall=stats.recall_matrix(cells, info.arms),
        changes=stats.class_changes(cells, info.arms, info.baseline),
        ceilings=ceilings,
        arm_ceilings={m: v for m, c in stats.ARM_CEILINGS.items() if m in quality
                      and (v := stats.per_arm_mean(cells, info.arms, c))},
        train_acc=stats.per_arm_mean(cells, info.arms, "epoch.train_acc"),
        views=_views(cells, info.arms),
        fairness=check_fairness(info, cells, runs.children) + diag,
        verdict=replace(compute_verdict(
            summary, decisions, info.arms, info.baseline, metric, info.maximize, info.smallest_effect,
            word="baseline" if info.baseline_declared else "reference",
        ), budget=budget, budget_note=info.budget_note if budget is not None else "",
            cells=(len(cells), runs.n_expected)),
        gaps=gaps(cells, tuple(quality) + stats.COST_METRICS),
        decisions=decisions,
        groups=same[metric],
    )
