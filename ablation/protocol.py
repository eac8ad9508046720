"""How a study's arms are trained before they are compared: its protocol.

- ``fixed``: every arm at the same epochs and settings (the base experiment's).
- ``converged``: every cell trains until its early-stopping metric stops
  improving (``[stopping]``: ``patience`` epochs without a gain, at most
  ``max_epochs``); the best epoch's weights are restored and evaluated, so
  each arm is compared at its own best epoch.
- ``tuned``: each arm gets the same tuning budget (``[tuning]``: ``trials``
  Optuna trials per arm, TPE seeded alike for every arm, the same pruner) over
  a declared nuisance space on tuning seeds disjoint from the study's seeds;
  then every arm runs its best nuisance values on the study's seeds, and only
  those confirmation runs make the verdict (``ablation.tuned`` runs both).

::

    protocol = "tuned"
    [stopping]
    patience = 2
    max_epochs = 12
    [tuning]
    trials = 6
    seeds = [100, 101]
    pruner = "halving"
    [tuning.space]
    "optim.lr" = { low = 3e-4, high = 1e-2, log = true }
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ablation import config as C
from ablation.errors import StudyError, closest

Protocol = Literal["fixed", "converged", "tuned"]
PHASE_TUNING, PHASE_CONFIRM = "tuning", "confirm"
Choice = int | float | bool | str  # module level: NuisanceDim's field ``int`` shadows the builtin there


class StoppingSpec(BaseModel):
    """Early stopping of every cell (``converged``; optional for ``tuned``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    patience: int = Field(3, ge=1, le=1000)  # epochs without a gain before a cell stops
    max_epochs: int = Field(20, ge=1, le=1000)  # the cap (also the span of the lr schedule)


class NuisanceDim(BaseModel):
    """One tuned setting: a float/int range (optionally log-scaled) or choices."""

    model_config = ConfigDict(extra="forbid", strict=True)
    low: float | None = None
    high: float | None = None
    log: bool = False
    int: bool = False
    choices: list[Choice] | None = None


class TuningSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    trials: int = Field(8, ge=1, le=10_000)  # per arm, the same for every arm
    seeds: list[int] = Field(default_factory=lambda: [1000], min_length=1)  # disjoint from the study's
    pruner: Literal["none", "halving", "hyperband"] = "none"
    space: dict[str, NuisanceDim] = {}

    @field_validator("seeds")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v) or min(v) < 0:
            raise ValueError("tuning seeds must be distinct non-negative ints")
        return v


def check(spec, path: Path, factor_paths: set[str], seeds: list[int]) -> None:
    """Refuse what the protocol cannot run, in one line, before anything is enqueued."""
    name = spec.protocol
    if name != "tuned" and "tuning" in spec.model_fields_set:
        raise StudyError(f"{path}: [tuning] needs protocol = \"tuned\" (the study's protocol is \"{name}\")")
    if name == "fixed" and "stopping" in spec.model_fields_set:
        raise StudyError(f"{path}: [stopping] needs protocol = \"converged\" or \"tuned\"; a fixed study "
                         "trains every arm for train.epochs")
    if name != "fixed" and spec.sampler != "grid":
        raise StudyError(f"{path}: protocol = \"{name}\" compares declared arms; it cannot be combined "
                         "with sampler = \"tpe\" (drop one)")
    if name != "tuned":
        return
    t = spec.tuning
    if t is None or not t.space:
        raise StudyError(f"{path}: protocol = \"tuned\" needs a [tuning.space] table of settings to tune "
                         "(e.g. \"optim.lr\" = {{ low = 3e-4, high = 1e-2, log = true }})")
    known = C.field_paths()
    for key, dim in t.space.items():
        if key not in known:
            raise StudyError(f"unknown tuning path '{key}' in {path} [tuning.space]{closest(key, known)}")
        if key in factor_paths:
            raise StudyError(f"'{key}' in {path} is both a factor and in [tuning.space]; a setting the study "
                             "compares cannot also be tuned away: drop it from one")
        if key == "train.seed":
            raise StudyError(f"{path}: train.seed cannot be tuned; list tuning seeds in [tuning] seeds")
        if dim.choices is None and (dim.low is None or dim.high is None or not dim.low < dim.high):
            raise StudyError(f"'{key}' in {path} [tuning.space] needs low < high or a list of choices")
        if dim.log and dim.choices is None and dim.low <= 0:
            raise StudyError(f"'{key}' in {path} [tuning.space] is log-scaled, so low must be > 0")
    overlap = sorted(set(t.seeds) & set(seeds))
    if overlap:
        raise StudyError(f"{path}: tuning seeds {overlap} are also study seeds; tuning must not see the seeds "
                         "that confirm it: pick [tuning] seeds outside " + str(sorted(seeds)))


def stopping_overrides(spec) -> dict:
    """What the protocol sets in every cell before ``[scale.*]`` (which may still raise the cap)."""
    if spec.protocol == "fixed":
        return {}
    if spec.protocol == "tuned" and spec.stopping is None:
        return {}
    s = spec.stopping or StoppingSpec()
    return {"train.patience": s.patience, "train.epochs": s.max_epochs}


def check_cell(spec, cfg: C.ExperimentConfig, where: str) -> None:
    """A converged cell must stop by patience: a scale preset or --set cannot switch it off."""
    if spec.protocol == "converged" and cfg.train.patience < 1:
        raise StudyError(f"protocol = \"converged\"{where} needs train.patience to be a positive int, got "
                         f"{cfg.train.patience}; set [stopping] patience")


def hash_payload(spec) -> dict:
    return {
        "protocol": spec.protocol,
        "stopping": spec.stopping.model_dump() if spec.stopping else None,
        "tuning": spec.tuning.model_dump() if spec.tuning else None,
    }
