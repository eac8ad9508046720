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

import numpy as np

from ablation.decision import Comparison, compare, extents, paired
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


def cell_values(study: Study, values: dict[int, float]) -> dict[tuple[str, int], float]:
    by_index = {c.index: c for c in study.cells}
    return {(by_index[i].arm.label, by_index[i].seed): v for i, v in values.items() if i in by_index}


def decisions(study: Study, values: dict[int, float]) -> dict[str, Comparison]:
    """Every arm's decision from the finished trials, as the report reaches it."""
    arms = [a.label for a in study.arms]
    return compare(paired(arms, study.baseline.label, study.seeds, cell_values(study, values)), study.min_effect,
                   study.spec.metric.direction == "maximize", study.design)


def wanted(study: Study, trials) -> set[int] | None:
    """The cell indices an adaptive study wants now; None for a fixed design (all of them)."""
    if not study.design.adaptive:
        return None
    arms = [a.label for a in study.arms]
    ext = extents(arms, study.baseline.label, study.seeds, cell_values(study, trial_values(study, trials)),
                  study.design, study.min_effect, study.spec.metric.direction == "maximize")
    grid = _grid(study)
    return {grid[(arm, seed)] for arm, n in ext.items() for seed in study.seeds[:n]}
