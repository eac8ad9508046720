"""Study files: one report question each, declared in ``studies/NAME.toml``.

A study names its question, a base experiment, the factor(s) it varies and
their levels, the baseline arm, the seeds, the metric, fairness constraints,
the sampler and scale presets::

    question = "At an equal parameter budget, does a deeper MLP beat a wider, shallower one?"
    base = "mlp_strong"
    baseline = { "model.depth" = 2 }
    seeds = [0, 1, 2]
    metric = { name = "val.acc", direction = "maximize" }
    [factors]
    "model.depth" = [1, 2, 3, 4, 6, 8]
    [constraints]
    param_budget = 400_000

A factor is a dotted config path with a list of values, or a name with a list
of tables (each level sets several fields; ``label`` names it). Several
factors are crossed. ``[set]`` fixes fields for the whole study;
``[scale.quick]`` / ``[scale.full]`` adjust it per scale. ``sampler = "tpe"``
turns the study into a tuning study over ``[search]`` (the only kind that
prunes). Every arm runs every seed: a cell is one (arm, seed) pair.
``budget_note = "..."`` says why the epoch budget is what it is: when an arm
is still improving, the report prints it beside the budget the verdict holds at.
``min_effect`` is the smallest effect of interest of the decisions
(``ablation.decision``); ``seeds = { min = 3, max = 10 }`` asks for adaptive
seeds (``ablation.adaptive``): every arm runs ``min`` seeds, and paired seeds
are added while an arm is undecided, up to ``max``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ablation import config as C
from ablation import paths
from ablation.decision import MAX_SEEDS, SeedDesign, default_min_effect
from ablation import protocol as P
from ablation.errors import ConfigError, StudyError, closest

Scalar = int | float | bool | str


class MetricSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: Literal["val.acc", "val.macro_f1", "val.loss", "test.acc", "test.macro_f1"] = "val.acc"
    direction: Literal["maximize", "minimize"] = "maximize"


class Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    param_budget: int = Field(0, ge=0)  # 0 = none; else every arm's size is solved for it
    tolerance: float = Field(0.01, gt=0.0, lt=0.5)


class SearchDim(BaseModel):
    """One dimension of a tuning search: a float/int range or a list of choices."""

    model_config = ConfigDict(extra="forbid", strict=True)
    low: float | None = None
    high: float | None = None
    log: bool = False
    int: bool = False
    choices: list[Scalar] | None = None


def suggest(trial, space: dict[str, SearchDim]) -> dict[str, Any]:
    """One value per dimension of ``space``, asked of an Optuna trial."""
    values: dict[str, Any] = {}
    for key, dim in space.items():
        if dim.choices is not None:
            values[key] = trial.suggest_categorical(key, dim.choices)
        elif dim.int:
            values[key] = trial.suggest_int(key, int(dim.low), int(dim.high), log=dim.log)
        else:
            values[key] = trial.suggest_float(key, float(dim.low), float(dim.high), log=dim.log)
    return values


class SeedRange(BaseModel):
    """Adaptive seeds: run ``min``, then add paired seeds while a comparison is undecided, up to ``max``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    min: int = Field(ge=2)  # a paired spread needs two seeds
    max: int = Field(le=MAX_SEEDS)

    @model_validator(mode="after")
    def _ordered(self):
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max}); use min <= max")
        return self


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(min_length=1)
    base: str = Field(min_length=1)
    factors: dict[str, list[Any]] = {}
    baseline: dict[str, Any] | str | None = None
    seeds: list[int] | SeedRange = Field(default_factory=lambda: [0, 1, 2])
    metric: MetricSpec = MetricSpec()
    min_effect: float | None = Field(None, gt=0)  # smallest effect of interest, metric units; None: the metric's default
    constraints: Constraints = Constraints()
    sampler: Literal["grid", "tpe"] = "grid"
    n_trials: int = Field(20, ge=1)  # tpe only
    search: dict[str, SearchDim] = {}  # tpe only
    pruner: Literal["median", "none"] = "median"  # tpe only
    set: dict[str, Scalar] = {}
    scale: dict[Literal["quick", "full"], dict[str, Scalar]] = {}
    protocol: P.Protocol = "fixed"  # how every arm is trained before the comparison (ablation.protocol)
    stopping: P.StoppingSpec | None = None  # converged / tuned
    tuning: P.TuningSpec | None = None  # tuned
    # why the epoch budget is what it is, printed where the report says arms were still improving
    budget_note: str | None = Field(None, min_length=1)

    @field_validator("budget_note")
    @classmethod
    def _note_text(cls, v):
        if v is not None and not v.strip():
            raise ValueError("budget_note is blank; write why the epoch budget is what it is, or leave it out")
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_range(cls, v):
        """A table is adaptive seeds: checked here so the message names its own rule, not the list's."""
        if not isinstance(v, dict):
            return v
        try:
            return SeedRange.model_validate(v)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"seeds{'.' + where if where else ''}: {err['msg'].removeprefix('Value error, ')} "
                             f"(adaptive seeds are {{ min = N, max = M }} with 2 <= N <= M <= {MAX_SEEDS})") from None

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v):
        if isinstance(v, SeedRange):
            return v
        if not v or len(set(v)) != len(v) or min(v) < 0:
            raise ValueError("seeds must be a non-empty list of distinct non-negative ints, or { min = N, max = M }")
        return v

    @model_validator(mode="after")
    def _adaptive_grid_only(self):
        if isinstance(self.seeds, SeedRange) and self.sampler == "tpe":
            raise ValueError("adaptive seeds ({ min, max }) need a grid study; a tpe study runs one seed per trial")
        return self


@dataclass(frozen=True)
class Arm:
    label: str
    levels: dict[str, Any]  # dotted path -> value (what this arm sets)
    index: int
    # factor -> this arm's level of it: the value, or the label of a table level.
    # These (and the seed) are the Optuna params of the arm's trials.
    factor_levels: dict[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    index: int
    arm: Arm
    seed: int
    config: C.ExperimentConfig

    @property
    def run_name(self) -> str:
        return f"{self.arm.label} seed={self.seed}"

    @property
    def trial_params(self) -> dict[str, Scalar]:
        """The Optuna params of this cell's trial: each factor's level and the seed."""
        return {**self.arm.factor_levels, SEED_PARAM: self.seed}


SEED_PARAM = "seed"  # the Optuna param holding a cell's seed


@dataclass
class Study:
    """A resolved study: spec + the options it was run with + every cell."""

    name: str
    path: Path
    spec: StudySpec
    scale: str
    base_data: dict
    arms: list[Arm]
    baseline: Arm | None
    seeds: list[int]
    cells: list[Cell]
    options: dict = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """Changes whenever anything that decides what a cell runs, or what the
        report says about the study (question, baseline, metric), changes."""
        payload = {
            "cells": [[c.arm.label, c.seed, c.config.to_dict()] for c in self.cells],
            "metric": self.spec.metric.model_dump(),
            "sampler": self.spec.sampler,
            "search": {k: v.model_dump() for k, v in self.spec.search.items()},
            "n_trials": self.spec.n_trials if self.spec.sampler == "tpe" else None,
            # what the report states about the study, fixed when it began
            "question": self.spec.question,
            "baseline": self.baseline.label if self.baseline else None,
            "tolerance": self.spec.constraints.tolerance,
            **P.hash_payload(self.spec),
        }
        if self.spec.budget_note is not None:  # only when set: a study without one keeps its hash
            payload["budget_note"] = self.spec.budget_note
        if self.design.adaptive:  # what decides which seeds run
            payload["adaptive"] = [self.design.min, self.design.max, self.min_effect]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def min_effect(self) -> float:
        """The smallest effect of interest, in the metric's units."""
        return self.spec.min_effect or default_min_effect(self.spec.metric.name)

    @property
    def design(self) -> SeedDesign:
        """One look at every seed, or adaptive looks from min to max seeds (``--seeds N`` fixes N)."""
        if isinstance(self.spec.seeds, SeedRange) and not self.options.get("seeds"):
            return SeedDesign(self.spec.seeds.min, self.spec.seeds.max, adaptive=True)
        return SeedDesign.fixed(len(self.seeds))

    @property
    def param_budget(self) -> int:
        """The budget every arm is sized for (0 = none), after scale presets."""
        if not self.spec.constraints.param_budget:
            return 0
        return self.cells[0].config.model.param_budget

    def param_choices(self) -> dict[str, list[Scalar]]:
        """Every trial param with its choices in declared order (Optuna's
        categorical distributions: the dashboard's slice and importance views)."""
        out: dict[str, list[Scalar]] = {}
        for arm in self.arms:
            for name, level in arm.factor_levels.items():
                if level not in out.setdefault(name, []):
                    out[name].append(level)
        out[SEED_PARAM] = list(self.seeds)
        return out

    @property
    def n_cells(self) -> int:
        return self.spec.n_trials if self.spec.sampler == "tpe" else len(self.cells)

    def command(self) -> str:
        parts = ["python -m ablation run", self.name]
        o = self.options
        if o.get("data"):
            parts += ["--data", o["data"]]
        if self.scale != "quick":
            parts += ["--scale", self.scale]
        if o.get("seeds"):
            parts += ["--seeds", str(o["seeds"])]
        for s in o.get("overrides") or []:
            parts += ["--set", s]
        return " ".join(parts)


# ---- loading --------------------------------------------------------------


def list_studies() -> list[str]:
    return paths.names("study")


def study_path(name: str) -> Path:
    return paths.find_study(name)


def _spec_error(e: ValidationError, path: Path) -> StudyError:
    errors = e.errors()
    # a misspelt key also shows up as a missing one: name the misspelling
    err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        known = list(StudySpec.model_fields)
        return StudyError(f"unknown key '{loc}' in {path}{closest(loc.split('.')[-1], known)}")
    return StudyError(f"'{loc}' in {path}: {err['msg']}; got {err.get('input')!r}")


def load_study(name: str, scale: str = "quick", seeds: int | None = None, overrides: list[str] = (),
               data: str | None = None) -> Study:
    """Read, validate and expand a study. Every cell's config is built (and
    its parameter budget solved) here, so a bad study fails before anything
    is enqueued or logged."""
    path = study_path(name)
    raw = C.read_toml(path)
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as e:
        raise _spec_error(e, path) from None
    if scale not in ("quick", "full"):
        raise StudyError(f"unknown scale '{scale}': use quick or full")
    base_path = C.resolve_experiment_path(spec.base)
    base = C.read_toml(base_path)
    base.setdefault("name", base_path.stem)
    where = f" in {path}"
    data_ = base
    if spec.constraints.param_budget:  # before [set] and [scale.*], which may resize it
        data_ = C.apply_overrides(data_, {"model.param_budget": spec.constraints.param_budget})
    data_ = C.apply_overrides(data_, spec.set, where=f" in {path} [set]")
    data_ = C.apply_overrides(data_, P.stopping_overrides(spec), where=f" in {path} [stopping]")
    data_ = C.apply_overrides(data_, spec.scale.get(scale, {}), where=f" in {path} [scale.{scale}]")
    factor_paths = _factor_paths(spec, path)
    cli = [C.parse_override(o) for o in overrides]
    for key, _ in cli:
        if key in factor_paths or key == "train.seed":
            raise StudyError(f"--set {key} conflicts with the study {path.stem}: it is what the study varies")
    data_ = C.apply_overrides(data_, dict(cli))
    if data:
        data_ = C.apply_overrides(data_, {"data.source": data})
    seed_list = _seed_list(spec.seeds, seeds)
    P.check(spec, path, factor_paths, seed_list)

    if spec.sampler == "tpe":
        if not spec.search:
            raise StudyError(f"{path}: sampler = 'tpe' needs a [search] table of dotted paths to tune")
        for key in spec.search:
            if key not in C.all_field_paths():
                raise StudyError(f"unknown search path '{key}'{where}{closest(key, C.all_field_paths())}")
        arms = [Arm("tuned", {}, 0)]
        baseline = None
        cfg = C.build(C.apply_overrides(data_, {"train.seed": seed_list[0]}), where)
        _check_model(cfg, where)
        cells = [Cell(0, arms[0], seed_list[0], cfg)]
    else:
        arms = expand_arms(spec, path)
        baseline = _find_baseline(spec, arms, path)
        cells = []
        for arm in arms:
            arm_data = C.apply_overrides(data_, arm.levels, where=f"{where} (arm {arm.label})")
            for seed in seed_list:
                cfg = C.build(C.apply_overrides(arm_data, {"train.seed": seed}), f"{where}, arm {arm.label}")
                cells.append(Cell(len(cells), arm, seed, cfg))
            _check_model(cells[-1].config, f"{where}, arm {arm.label}")
            P.check_cell(spec, cells[-1].config, f"{where}, arm {arm.label}")
    return Study(
        name=path.stem, path=path, spec=spec, scale=scale, base_data=base, arms=arms, baseline=baseline,
        seeds=seed_list, cells=cells,
        options={"data": data, "seeds": seeds, "overrides": list(overrides)},
    )


def _check_model(cfg: C.ExperimentConfig, where: str) -> None:
    from ablation.train import model_kwargs

    try:
        model_kwargs(cfg)
    except ConfigError as e:
        raise StudyError(f"{e}{where}") from None


def _seed_list(declared: list[int] | SeedRange, n: int | None) -> list[int]:
    """The study's seeds: adaptive ones are 0 .. max-1, of which the runner runs what it needs."""
    if isinstance(declared, SeedRange):
        declared = list(range(declared.max))
    if n is None:
        return list(declared)
    if n < 1:
        raise StudyError(f"--seeds must be at least 1, got {n}")
    out = list(declared[:n])
    nxt = max(declared) + 1
    while len(out) < n:
        out.append(nxt)
        nxt += 1
    return out


def _factor_paths(spec: StudySpec, path: Path) -> set[str]:
    out = set()
    known = C.all_field_paths()
    for name, levels in spec.factors.items():
        if not levels:
            raise StudyError(f"factor '{name}' in {path} has no levels")
        if all(isinstance(v, dict) for v in levels):
            for lv in levels:
                for key in lv:
                    if key == "label":
                        continue
                    if key not in known:
                        raise StudyError(f"unknown factor path '{key}' in {path} (factor '{name}'){closest(key, known)}")
                    out.add(key)
        elif any(isinstance(v, dict) for v in levels):
            raise StudyError(f"factor '{name}' in {path} mixes tables and values; use one kind")
        else:
            if name not in known:
                raise StudyError(f"unknown factor path '{name}' in {path}{closest(name, known)}")
            out.add(name)
    return out


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


def _find_baseline(spec: StudySpec, arms: list[Arm], path: Path) -> Arm:
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
