"""A study's arms: its factors' levels crossed, in declared order, and the
cells (arm x seed) of the kinds that compare declared arms."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from ablation import config as C
from ablation.errors import StudyError, closest
from ablation.study.spec import Arm, Cell, Scalar, StudySpec


def cells(spec: StudySpec, path: Path, data_: dict, seeds: list[int]) -> tuple[list[Arm], Arm, list[Cell]]:
    """Every declared arm at every seed (the kinds that compare declared arms)."""
    where = f" in {path}"
    arms = expand_arms(spec, path)
    baseline = find_baseline(spec, arms, path)
    cells = []
    for arm in arms:
        arm_data = C.apply_overrides(data_, arm.levels, where=f"{where} (arm {arm.label})")
        for seed in seeds:
            cfg = C.build(C.apply_overrides(arm_data, {"train.seed": seed}), f"{where}, arm {arm.label}")
            cells.append(Cell(len(cells), arm, seed, cfg))
    return arms, baseline, cells


def _level_label(name: str, level: Any, i: int) -> tuple[str, dict, Scalar]:
    """(arm label part, the fields it sets, the factor's Optuna param value)."""
    if isinstance(level, dict):
        level = dict(level)
        label = str(level.pop("label", f"{name}={i}"))
        return label, level, label
    short = name.split(".")[-1]
    text = str(level).lower() if isinstance(level, bool) else str(level)
    return f"{short}={text}", {name: level}, level


def expand_arms(spec: StudySpec, path: Path) -> list[Arm]:
    """The crossed levels of every factor, in declared order."""
    if not spec.factors:
        raise StudyError(f"{path} declares no [factors]; a grid study needs at least one")
    per_factor = [
        [_level_label(name, lv, i) for i, lv in enumerate(levels)] for name, levels in spec.factors.items()
    ]
    arms, seen = [], set()
    for combo in itertools.product(*per_factor):
        label = " ".join(lbl for lbl, _, _ in combo)
        levels: dict[str, Any] = {}
        for _, lv, _ in combo:
            levels.update(lv)
        if label in seen:
            raise StudyError(f"two arms of {path} are both labelled '{label}'; give each level a distinct label")
        seen.add(label)
        factor_levels = {name: value for name, (_, _, value) in zip(spec.factors, combo)}
        arms.append(Arm(label, levels, len(arms), factor_levels))
    return arms


def find_baseline(spec: StudySpec, arms: list[Arm], path: Path) -> Arm:
    labels = [a.label for a in arms]
    if spec.baseline is None:
        return arms[0]
    if isinstance(spec.baseline, str):
        for a in arms:
            if a.label == spec.baseline:
                return a
        raise StudyError(f"baseline '{spec.baseline}' in {path} is not one of the arms{closest(spec.baseline, labels)}; arms: {', '.join(labels)}")
    matches = [a for a in arms if all(a.levels.get(k) == v and k in a.levels for k, v in spec.baseline.items())]
    if len(matches) != 1:
        raise StudyError(
            f"baseline {spec.baseline} in {path} matches {len(matches)} arms, not exactly one; arms: {', '.join(labels)}"
        )
    return matches[0]
