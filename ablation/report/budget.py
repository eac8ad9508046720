"""The budget check: would a longer epoch cap change any decision?

For a study whose cells stop by patience under a cap, the baseline and the
best arm (as the report's analysis names them) are looked at on every seed the
verdict uses. A run that patience ended under a schedule whose lr does not
depend on the cap (``train.CAP_FREE_SCHEDULES``) is the same run at any longer
cap: training is deterministic for a seed, and nothing it computed depended on
the cap. Every other run (one cut by the cap, or any under a schedule that
spans the cap) is trained again at ``factor`` times its cap by
``ablation.study.budget``; here the decisions are recomputed, by the report's
own decision code (``analysis.decide``), with those runs' values replaced.

Pure: DataFrames of the loaded runs in, a ``BudgetCheck`` and markdown out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ablation.report.analysis import decide
from ablation.report.common import table
from ablation.train import CAP_FREE_SCHEDULES

DEFAULT_FACTOR = 2.0
UNCHANGED, CHANGED, NOT_RUN = "unchanged", "changed", "not run"


@dataclass(frozen=True)
class Need:
    """One run of the baseline or the best arm, and whether a longer cap needs it trained again."""

    arm: str
    seed: int
    run_id: str
    cap: int
    epochs_run: int
    best_epoch: int
    retrain: bool
    why: str


@dataclass(frozen=True)
class BudgetCheck:
    status: str  # UNCHANGED, CHANGED or NOT_RUN
    factor: float
    arms: list[str]  # the baseline, then the best arm when it is another
    needs: list[Need]
    at_cap: dict[str, float] = field(default_factory=dict)  # arm -> mean metric at the cap (the arms above)
    longer: dict[str, float] = field(default_factory=dict)  # arm -> mean metric at factor x the cap
    values: dict[str, float] = field(default_factory=dict)  # run id -> its value at factor x the cap
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (arm, decision at the cap, at factor x)
    missing: int = 0  # runs to retrain that have no finished budget run at ``factor``

    @property
    def retrain(self) -> list[Need]:
        return [n for n in self.needs if n.retrain]


def needs_retraining(cap: int, patience: int, schedule: str, epochs_run: int, best_epoch: int) -> tuple[bool, str]:
    """(retrain?, why) for one run. Patience ended it when its last ``patience`` epochs brought no gain
    (then the loop stops whatever the cap); only under a cap-free schedule is that the same run at a
    longer cap."""
    if schedule not in CAP_FREE_SCHEDULES:
        return True, f"its {schedule} schedule spans the cap, so a longer cap trains another run"
    if patience > 0 and epochs_run - best_epoch >= patience:
        return False, (f"patience ended it at epoch {epochs_run} (best epoch {best_epoch}) under a {schedule} "
                       "schedule: the same run at any longer cap")
    return True, f"the cap ended it at epoch {epochs_run} of {cap} (best epoch {best_epoch})"


def _int(row: pd.Series, col: str, default: int = 0) -> int:
    v = row.get(col)
    try:
        return default if v is None or (isinstance(v, float) and math.isnan(v)) else int(float(v))
    except ValueError:
        return default


def select(cells: pd.DataFrame, arms: list[str]) -> list[Need]:
    """Every used run of ``arms`` with whether a longer cap needs it trained again, from its logged
    cap (``params.train.epochs``), patience, schedule, epochs run and best epoch."""
    out = []
    for arm in arms:
        for _, r in cells[cells["arm"] == arm].sort_values("seed").iterrows():
            cap, epochs, best = _int(r, "params.train.epochs"), _int(r, "metrics.epochs_run"), _int(r, "metrics.best_epoch")
            retrain, why = needs_retraining(cap, _int(r, "params.train.patience"), str(r.get("params.optim.schedule")),
                                            epochs, best)
            out.append(Need(arm, int(r["seed"]), str(r["run_id"]), cap, epochs, best, retrain, why))
    return out


def checked_arms(baseline: str, best: str | None) -> list[str]:
    return [baseline] + ([best] if best and best != baseline else [])


def longer_values(needs: list[Need], budget: pd.DataFrame, metric: str, factor: float) -> dict[str, float]:
    """Run id -> the study metric of its finished budget run at ``factor`` (the newest), for the runs to retrain."""
    col = "metrics." + metric
    out = {}
    if budget is None or budget.empty or col not in budget.columns:
        return out
    done = budget[(budget["status"] == "FINISHED") & np.isclose(budget["factor"].astype(float), factor)]
    for n in (n for n in needs if n.retrain):
        mine = done[done["of_run"] == n.run_id]
        if not mine.empty and np.isfinite(float(mine.iloc[-1][col])):
            out[n.run_id] = float(mine.iloc[-1][col])
    return out


def pick_factor(needs: list[Need], budget: pd.DataFrame, metric: str) -> float:
    """The largest factor at which every run to retrain has a finished budget run; else the default."""
    factors = sorted({float(f) for f in budget["factor"].dropna()}, reverse=True) if budget is not None and not budget.empty else []
    todo = {n.run_id for n in needs if n.retrain}
    for f in factors:
        if set(longer_values(needs, budget, metric, f)) >= todo:
            return f
    return DEFAULT_FACTOR


def check(info, cells: pd.DataFrame, budget: pd.DataFrame, best: str | None, factor: float | None = None) -> BudgetCheck:
    """The budget check of a study's used cells (``info``: the report's ``StudyInfo``), its budget runs
    and its best arm; ``factor`` None: the largest one fully run (else the default)."""
    arms = checked_arms(info.baseline, best)
    needs = select(cells, arms)
    if factor is None:
        factor = pick_factor(needs, budget, info.metric)
    values = longer_values(needs, budget, info.metric, factor)
    missing = sum(n.retrain and n.run_id not in values for n in needs)
    col = "metrics." + info.metric
    at_cap = {a: float(cells.loc[cells["arm"] == a, col].astype(float).mean()) for a in arms}
    if missing:
        return BudgetCheck(NOT_RUN, factor, arms, needs, at_cap=at_cap, missing=missing)
    after = cells.copy()
    for i, run_id in zip(after.index, after["run_id"]):
        if run_id in values:
            after.at[i, col] = values[run_id]
    before, _ = decide(info, cells)
    now, _ = decide(info, after)
    changes = [(arm, before[arm].decision, now[arm].decision) for arm in before if before[arm].decision != now[arm].decision]
    longer = {a: float(after.loc[after["arm"] == a, col].astype(float).mean()) for a in arms}
    return BudgetCheck(CHANGED if changes else UNCHANGED, factor, arms, needs, at_cap, longer, values, changes)


# ---- what the report and the budget command say -------------------------------------------


def times(factor: float) -> str:
    return {2.0: "twice", 3.0: "three times"}.get(float(factor), f"{factor:g}x")


def result_line(b: BudgetCheck, study: str, command: str = "") -> str:
    """One sentence: the check's result (the report's and the ``budget`` command's)."""
    if b.status == NOT_RUN:
        run = command or f"python -m ablation budget {study}"
        return (f"Not run yet: {b.missing} of {len(b.needs)} runs of {', '.join(f'`{a}`' for a in b.arms)} reached the "
                f"cap (or train under a schedule that spans it) and need training at {times(b.factor)} the cap; "
                f"run `{run}`.")
    if not b.retrain:
        return ("Decisions unchanged at any longer cap: every run of the baseline and the best arm was ended by "
                "patience under a schedule that does not depend on the cap, so none needed training again.")
    if b.status == UNCHANGED:
        return f"Decisions unchanged at {times(b.factor)} the cap."
    return (f"Decisions change at {times(b.factor)} the cap: "
            + "; ".join(f"`{arm}` {was} -> {now}" for arm, was, now in b.changes) + ".")


def section(b: BudgetCheck, study: str, metric: str, command: str = "") -> list[str]:
    """The report's "Budget check" section."""
    caps = sorted({n.cap for n in b.needs})
    cap = ", ".join(map(str, caps)) or "?"
    longer = ", ".join(str(int(round(c * b.factor))) for c in caps) or "?"
    out = ["## Budget check", "",
           f"Would a longer cap change any decision? The baseline and the best arm ({', '.join(f'`{a}`' for a in b.arms)}) "
           f"at every seed the verdict uses, at {times(b.factor)} the cap ({cap} -> {longer} epochs): a run that "
           "patience ended under a schedule that does not depend on the cap (constant, plateau) is the same run at "
           "any longer cap; every other run is trained again at the longer cap, its config otherwise the same, and "
           "the decisions are recomputed from those values.", "",
           f"**{result_line(b, study, command)}**", ""]
    rows = []
    for n in b.needs:
        v = b.values.get(n.run_id)
        there = f"{v:.4f}" if v is not None else ("not run yet" if n.retrain else "the same run")
        rows.append({"arm": f"`{n.arm}`", "seed": n.seed, "epochs run": n.epochs_run, "best epoch": n.best_epoch,
                     "at the longer cap": "trained again" if n.retrain else "kept", f"{metric} there": there,
                     "why": n.why})
    out += [table(rows), ""]
    if b.status != NOT_RUN:
        out += [f"Mean {metric}: " + "; ".join(f"`{a}` {b.at_cap[a]:.4f} at the cap, {b.longer[a]:.4f} at "
                                                  f"{times(b.factor)} the cap" for a in b.arms) + ".", ""]
    return out
