"""A study's declaration and the resolved study: one report question each,
declared in ``studies/NAME.toml``.

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
makes it a ``search`` over ``[search]`` (the only kind that prunes) and
``protocol = "tuned"`` a ``tuned`` study (``ablation.study.kinds``). Every arm runs every seed: a cell is one (arm, seed) pair.
``budget_note = "..."`` says why the epoch budget is what it is: when an arm
is still improving, the report prints it beside the budget the verdict holds at.
``min_effect`` is the smallest effect of interest of the decisions
(``ablation.decision``); ``seeds = { min = 3, max = 10 }`` asks for adaptive
seeds (``ablation.study.seeds``): every arm runs ``min`` seeds, and paired seeds
are added while an arm is undecided, up to ``max``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ablation import config as C
from ablation.decision import MAX_SEEDS, SeedDesign, default_min_effect
from ablation.study.space import Dimension

Scalar = int | float | bool | str


class MetricSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: Literal["val.acc", "val.macro_f1", "val.loss", "test.acc", "test.macro_f1"] = "val.acc"
    direction: Literal["maximize", "minimize"] = "maximize"


class Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    param_budget: int = Field(0, ge=0)  # 0 = none; else every arm's size is solved for it
    tolerance: float = Field(0.01, gt=0.0, lt=0.5)


class StoppingSpec(BaseModel):
    """``[stopping]``: early stopping of every cell (``protocol = "converged"``; optional for ``tuned``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    patience: int = Field(3, ge=1, le=1000)  # epochs without a gain before a cell stops
    max_epochs: int = Field(20, ge=1, le=1000)  # the cap (also the span of the lr schedule)

    @model_validator(mode="after")
    def _cap_above_patience(self):
        if self.max_epochs < self.patience:  # patience could never end a cell: every one would run to the cap
            raise ValueError(f"max_epochs ({self.max_epochs}) is below patience ({self.patience}), so no cell could "
                             "stop by patience before the cap; raise max_epochs or lower patience")
        return self


class TuningSpec(BaseModel):
    """``[tuning]``: the equal tuning budget of a ``protocol = "tuned"`` study (``ablation.study.kinds.tuned``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    trials: int = Field(8, ge=1, le=10_000)  # per arm, the same for every arm
    seeds: list[int] = Field(default_factory=lambda: [1000], min_length=1)  # disjoint from the study's
    pruner: Literal["none", "halving", "hyperband"] = "none"
    space: dict[str, Dimension] = {}

    @field_validator("seeds")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v) or min(v) < 0:
            raise ValueError("tuning seeds must be distinct non-negative ints")
        return v


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
    search: dict[str, Dimension] = {}  # tpe only
    pruner: Literal["median", "none"] = "median"  # tpe only
    set: dict[str, Scalar] = {}
    scale: dict[Literal["quick", "full"], dict[str, Scalar]] = {}
    protocol: Literal["fixed", "converged", "tuned"] = "fixed"  # how every arm is trained before the comparison
    stopping: StoppingSpec | None = None  # converged / tuned
    tuning: TuningSpec | None = None  # tuned
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
    kind: Any = None  # its kind (``ablation.study.kinds``): how it is prepared, run and reported

    @property
    def hash(self) -> str:
        """Changes whenever anything that decides what a cell runs, or what the
        report says about the study (question, baseline, metric), changes."""
        payload = {
            "cells": [[c.arm.label, c.seed, c.config.to_dict()] for c in self.cells],
            "metric": self.spec.metric.model_dump(),
            "sampler": self.spec.sampler,
            "search": {k: v.model_dump() for k, v in self.spec.search.items()},
            # what the report states about the study, fixed when it began
            "question": self.spec.question,
            "baseline": self.baseline.label if self.baseline else None,
            "tolerance": self.spec.constraints.tolerance,
            "protocol": self.spec.protocol,
            "stopping": self.spec.stopping.model_dump() if self.spec.stopping else None,
            "tuning": self.spec.tuning.model_dump() if self.spec.tuning else None,
            **self.kind.hash_payload(self),
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
        return self.kind.n_cells(self)

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


