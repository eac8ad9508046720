"""Decisions while a study runs, from the Optuna trials alone (each finished
cell's trial value is the study metric): what ``ablation status`` prints, and,
for adaptive seeds (``seeds = { min, max }``), which cells the study wants.

Which cells are wanted is a pure function of the finished values: every arm
at the first ``min`` seeds; then an arm still undecided once all its paired
seeds so far are in wants the next seed, and the baseline runs every seed any
arm wants. Replaying it after a crash gives the same cells, so a re-run (or a
second worker) enqueues nothing twice, and the report, which decides with the
same ``ablation.decision.compare``, reaches the decision that stopped the study.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ablation.decision import Comparison, compare
from ablation.study import Study


def trial_values(study: Study, trials) -> dict[int, float]:
    """Cell index -> the study metric of its finished trial."""
    from optuna.trial import TrialState

    out = {}
    for t in trials:
        cell = t.user_attrs.get("cell")
        if t.state == TrialState.COMPLETE and cell is not None and t.value is not None and np.isfinite(t.value):
            out[int(cell)] = float(t.value)
    return out


def _grid(study: Study) -> dict[tuple[str, int], int]:
    return {(c.arm.label, c.seed): c.index for c in study.cells}


def paired(study: Study, values: dict[int, float], extent: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Arm -> differences from the baseline on the leading seeds (in order)
    both have finished, up to the arm's ``extent`` (default: every seed)."""
    grid, base = _grid(study), study.baseline.label
    out = {}
    for arm in study.arms:
        if arm == study.baseline:
            continue
        diffs = []
        for seed in study.seeds[: (extent or {}).get(arm.label, len(study.seeds))]:
            a, b = values.get(grid[(arm.label, seed)]), values.get(grid[(base, seed)])
            if a is None or b is None:
                break
            diffs.append(a - b)
        out[arm.label] = np.asarray(diffs, dtype=np.float64)
    return out


def decisions(study: Study, values: dict[int, float], extent: dict[str, int] | None = None) -> dict[str, Comparison]:
    return compare(paired(study, values, extent), study.min_effect, study.spec.metric.direction == "maximize",
                   study.design)


@dataclass(frozen=True)
class Plan:
    extent: dict[str, int]  # arm label -> how many leading seeds it wants (the baseline: the most any arm wants)
    cells: set[int]  # the wanted cell indices
    decided: dict[str, Comparison]


def plan(study: Study, values: dict[int, float]) -> Plan:
    """The cells an adaptive study wants now, given the finished values."""
    d = study.design
    base = study.baseline.label
    extent = {arm.label: d.min for arm in study.arms if arm.label != base}
    while True:
        now = decisions(study, values, extent)
        grown = False
        for arm, c in now.items():
            # a look is complete when every paired seed up to the arm's extent is in
            if c.decision == "undecided" and c.n == extent[arm] and extent[arm] < d.max:
                extent[arm] += 1
                grown = True
        if not grown:
            break
    extent[base] = max(extent.values(), default=d.min)
    grid = _grid(study)
    cells = {grid[(arm, seed)] for arm, n in extent.items() for seed in study.seeds[:n]}
    return Plan(extent, cells, now)
