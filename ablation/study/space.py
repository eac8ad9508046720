"""A search space: dotted config paths, each a float/int range (optionally
log-scaled) or a list of choices. One dimension type with one set of checks,
for every kind of study that searches (``[search]``, ``[tuning.space]``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

Choice = int | float | bool | str  # module level: the field ``int`` shadows the builtin in the class


class Dimension(BaseModel):
    """One searched setting: ``{ low, high, log?, int? }`` or ``{ choices = [...] }``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    low: float | None = None
    high: float | None = None
    log: bool = False
    int: bool = False
    choices: list[Choice] | None = None

    @model_validator(mode="after")
    def _range(self):
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices is empty; list at least one value")
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low and high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("needs low and high (a range) or choices (a list)")
        if not self.low < self.high:
            raise ValueError(f"needs low < high, got low = {self.low:g}, high = {self.high:g}; swap or widen them")
        if self.log and self.low <= 0:
            raise ValueError(f"is log-scaled, so low must be > 0, got {self.low:g}")
        return self


def suggest(trial, space: dict[str, Dimension]) -> dict[str, Any]:
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


def check_paths(space: dict[str, Dimension], known: list[str], where: str, what: str) -> None:
    """Every key of ``space`` is a field of the model family the study runs."""
    from ablation.errors import StudyError, closest

    for key in space:
        if key not in known:
            raise StudyError(f"unknown {what} path '{key}'{where}{closest(key, known)}")
