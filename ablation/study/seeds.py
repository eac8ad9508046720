"""The seed policy and the decisions so far, from the Optuna trials alone
(each finished cell's trial value is the study metric): what ``ablation
status`` prints, and, for adaptive seeds (``seeds = { min, max }``), which
cells the study wants.

Which cells are wanted is a pure function of the finished values and the
cells that failed for good: every arm at the first ``min`` seeds; then an arm
still undecided once all its paired seeds so far are settled wants the next
seed, and the baseline runs every seed any arm wants. A failed cell costs its
arm that one pair (``ablation.decision.paired`` skips it, as the report does),
not the seeds after it. Replaying it after a crash gives the same cells, so a
re-run (or a second worker) enqueues nothing twice, and the report, which
decides with the same ``ablation.decision`` functions, reaches the decision
that stopped the study.
"""

from __future__ import annotations

import numpy as np

from ablation.decision import Comparison, compare, extents, paired
from ablation.study import _optuna as O
from ablation.study.cells import CELL, failed_for_good, live_trials
from ablation.study.spec import Study


def trial_values(study: Study, trials) -> dict[int, float]:
    """Cell index -> the study metric of its finished trial."""
    out = {}
    for t in trials:
        cell = t.user_attrs.get(CELL)
        if t.state == O.TrialState.COMPLETE and cell is not None and t.value is not None and np.isfinite(t.value):
            out[int(cell)] = float(t.value)
    return out


def cell_values(study: Study, values: dict[int, float]) -> dict[tuple[str, int], float]:
    by_index = {c.index: c for c in study.cells}
    return {(by_index[i].arm.label, by_index[i].seed): v for i, v in values.items() if i in by_index}


def _keys(study: Study, cells: set[int]) -> set[tuple[str, int]]:
    return {(study.cells[i].arm.label, study.cells[i].seed) for i in cells if i < len(study.cells)}


def decisions(study: Study, values: dict[int, float]) -> dict[str, Comparison]:
    """Every arm's decision from the finished trials, as the report reaches it."""
    arms = [a.label for a in study.arms]
    return compare(paired(arms, study.baseline.label, study.seeds, cell_values(study, values)), study.min_effect,
                   study.spec.metric.direction == "maximize", study.design)


def wanted(study: Study, opt) -> set[int] | None:
    """The cell indices an adaptive study wants now; None for a fixed design (all of them)."""
    if not study.design.adaptive:
        return None
    arms = [a.label for a in study.arms]
    values = cell_values(study, trial_values(study, live_trials(opt)))
    failed = _keys(study, failed_for_good(opt, len(study.cells)))
    ext = extents(arms, study.baseline.label, study.seeds, values, study.design, study.min_effect,
                  study.spec.metric.direction == "maximize", failed)
    grid = {(c.arm.label, c.seed): c.index for c in study.cells}
    return {grid[(arm, seed)] for arm, n in ext.items() for seed in study.seeds[:n]}
