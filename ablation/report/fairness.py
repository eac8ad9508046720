"""Fairness checks: is the comparison like-for-like? Each check reads the
study's description (``StudyInfo``) and the runs it compares (``cells``: one
row per used run) and says ok (True), violated (False) or not applicable /
shown only (None). A tuning report passes its done trials as the cells."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablation.report.load import StudyInfo


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None
    detail: str

    @property
    def status(self) -> str:
        return {True: "ok", False: "VIOLATED", None: "shown"}[self.ok]


def _int(x: float) -> str:
    return f"{int(round(x)):,}"


def check_params(info: StudyInfo, cells: pd.DataFrame) -> Check:
    name = "parameter count"
    col = "metrics.n_params"
    counts = cells[col] if col in cells.columns else pd.Series(np.nan, index=cells.index)
    per_arm = {
        arm: sorted({_int(v) for v in counts[cells["arm"] == arm] if np.isfinite(v)}) for arm in info.arms
    }
    shown = "; ".join(f"`{a}`: {', '.join(v) or 'not logged'}" for a, v in per_arm.items())
    if info.param_budget is None:
        return Check(name, None, f"no budget declared; counts: {shown}")
    budget, tol = info.param_budget, info.budget_tolerance
    unlogged = cells[~np.isfinite(counts.astype(float))]
    dev = (counts.astype(float) - budget) / budget
    off = cells[np.abs(dev) > tol + 1e-12]
    problems = [f"`{r.arm}` seed {r.seed}: {_int(counts[i])} ({dev[i]:+.1%})" for i, r in off.iterrows()]
    problems += [f"`{r.arm}` seed {r.seed}: n_params not logged" for _, r in unlogged.iterrows()]
    rule = f"budget {budget:,} ± {tol:.1%}"
    if problems:
        return Check(name, False, f"outside {rule}: " + "; ".join(problems))
    return Check(name, True, f"all {len(cells)} runs within {rule} (max deviation {np.abs(dev).max():.2%}); {shown}")


def check_fingerprint(info: StudyInfo, cells: pd.DataFrame) -> Check:
    name = "same data"
    prints = cells["fingerprint"].replace("", "(none)")
    distinct = sorted(set(prints))
    if distinct == ["(none)"]:
        return Check(name, None, "data fingerprint not logged by the runs")
    declared = info.data_fingerprint
    if len(distinct) == 1 and declared and distinct[0] != declared:
        return Check(name, False, f"every run used data fingerprint `{distinct[0]}` but the study declares `{declared}`")
    if len(distinct) == 1:
        return Check(name, True, f"every run used data fingerprint `{distinct[0]}`")
    groups = "; ".join(
        f"`{fp}`: " + ", ".join(f"`{r.arm}` seed {r.seed}" for r in cells[prints == fp].itertuples())
        for fp in distinct
    )
    return Check(name, False, f"{len(distinct)} different data fingerprints: {groups}")


def check_seeds(info: StudyInfo, cells: pd.DataFrame) -> Check:
    name = "same seeds"
    if info.sampler == "tpe":
        return Check(name, None, "a tuning study: each trial is its own arm")
    have = {arm: set(cells.loc[cells["arm"] == arm, "seed"].astype(int)) for arm in info.arms}
    if info.seed_design:
        return _adaptive_seeds(info, have)
    wanted = set(info.seeds)
    lacking = {arm: sorted(wanted - s) for arm, s in have.items() if s != wanted}
    seeds = ", ".join(str(s) for s in info.seeds)
    if not lacking:
        return Check(name, True, f"every arm has seeds {seeds}")
    text = "; ".join(f"`{a}` lacks {', '.join(map(str, m)) or 'none'}" for a, m in lacking.items())
    return Check(name, False, f"declared seeds {seeds}; {text} (per-arm means cover different seeds)")


def _adaptive_seeds(info: StudyInfo, have: dict[str, set[int]]) -> Check:
    """Adaptive seeds: arms stop at their decisions, so they differ in how many
    seeds they have; fair is every arm on a leading run of the seed order and
    the baseline on every seed an arm has (each difference is paired)."""
    name = "same seeds"
    problems = [f"`{a}` has {sorted(s)}, not the first {len(s)} seeds" for a, s in have.items()
                if s != set(info.seeds[: len(s)])]
    base = have.get(info.baseline, set())
    unpaired = sorted(set().union(*have.values()) - base)
    if unpaired:
        problems.append(f"the baseline lacks seeds {', '.join(map(str, unpaired))}")
    counts = ", ".join(f"`{a}`: {len(s)}" for a, s in have.items())
    if problems:
        return Check(name, False, "adaptive seeds; " + "; ".join(problems))
    return Check(name, True, f"adaptive seeds: each arm runs the leading seeds of 0, 1, 2, ... until its decision "
                             f"({counts}); the baseline pairs every one")


def check_epochs(info: StudyInfo, cells: pd.DataFrame) -> Check:
    name = "same epoch budget"
    col = "params.train.epochs"
    if "train.epochs" in info.factors:
        return Check(name, None, "train.epochs is a factor of this study")
    if col not in cells.columns:
        return Check(name, None, "train.epochs not logged by the runs")
    arms = list(dict.fromkeys(cells["arm"]))  # the order the cells come in: declared arms, or trials
    per_arm = {arm: sorted(set(cells.loc[cells["arm"] == arm, col].astype(str))) for arm in arms}
    values = sorted({v for vs in per_arm.values() for v in vs})
    if len(values) <= 1:
        return Check(name, True, f"train.epochs = {values[0] if values else 'n/a'} in every run")
    return Check(name, False, "train.epochs differs: " + "; ".join(f"`{a}`: {', '.join(v)}" for a, v in per_arm.items()))


def check_pruning(info: StudyInfo, children: pd.DataFrame) -> Check:
    """Over every child run, not only the used ones: a pruned run is never used."""
    name = "no pruning"
    kids = children
    pruned = kids[kids["pruned"]]
    sampler = info.sampler or "unknown"
    where = ", ".join(f"`{r.arm}` seed {int(r.seed)}" for r in pruned.itertuples() if pd.notna(r.seed))
    if sampler != "grid":
        return Check(name, None, f"sampler {sampler} (a tuning study); {len(pruned)} pruned runs" + (f": {where}" if where else ""))
    if len(pruned):
        return Check(name, False, f"{len(pruned)} pruned runs in a grid ablation: {where}")
    return Check(name, True, f"sampler grid, no pruned runs among {len(kids)} cell runs")


def check_fairness(info: StudyInfo, cells: pd.DataFrame, children: pd.DataFrame) -> list[Check]:
    """Every check of an ablation study."""
    per_cell = [check(info, cells) for check in (check_params, check_fingerprint, check_seeds, check_epochs)]
    return per_cell + [check_pruning(info, children)]
