"""A model family's fields, declared once as data (scikit-learn's parameter constraints).

A family lists its fields as ``Param(name, default, rule)``; the rule is an
``Interval``, ``Options`` or ``Boolean`` and renders its own text, so the
config section (``section_class``), the validation message
(``message``) and the builder's keyword arguments (``Family.kwargs``) all come
from the one declaration:

    The 'model.depth' parameter must be an int in the range [1, 64]. Got 0 instead.

No torch in here: the config layer reads these without building anything.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Literal

from ablation.errors import ConfigError, closest


@dataclass(frozen=True)
class Interval:
    """A number in ``[low, high]`` (``closed`` says which ends belong); ``odd`` for windows and kernels."""

    type: type  # int or float
    low: float
    high: float = math.inf
    closed: Literal["both", "left", "right", "neither"] = "both"
    odd: bool = False

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.type is int and not isinstance(value, numbers.Integral):
            return False
        lo_ok = value >= self.low if self.closed in ("both", "left") else value > self.low
        hi_ok = value <= self.high if self.closed in ("both", "right") else value < self.high
        return lo_ok and hi_ok and (not self.odd or value % 2 == 1)

    def describe(self) -> str:
        kind = {int: "an odd int" if self.odd else "an int", float: "a float"}[self.type]
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") and not math.isinf(self.high) else ")"
        hi = "inf" if math.isinf(self.high) else _num(self.high)
        return f"{kind} in the range {left}{_num(self.low)}, {hi}{right}"

    def invalid(self) -> Any:
        """A value this rule refuses (tests derive their bad inputs from it)."""
        if not math.isinf(self.high):
            return self.type(self.high) + (2 if self.odd else 1)
        return self.type(self.low) - 1


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    values: tuple

    def contains(self, value: Any) -> bool:
        return isinstance(value, type(self.values[0])) and value in self.values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def invalid(self) -> Any:
        return "nonsense"


@dataclass(frozen=True)
class Boolean:
    def contains(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "a bool (true or false)"

    def invalid(self) -> Any:
        return "yes"


@dataclass(frozen=True)
class IntList:
    """A list of ``min_len`` to ``max_len`` ints, each within ``item`` (per-layer widths)."""

    item: Interval
    min_len: int = 1
    max_len: int = 64

    def contains(self, value: Any) -> bool:
        return (isinstance(value, list) and self.min_len <= len(value) <= self.max_len
                and all(self.item.contains(v) for v in value))

    def describe(self) -> str:
        each = self.item.describe().replace("an int ", "", 1).replace("an odd int ", "odd and ", 1)
        return f"a list of {self.min_len} to {self.max_len} ints, each {each}"

    def invalid(self) -> Any:
        return [self.item.invalid()]


Rule = Interval | Options | Boolean | IntList
RULES = (Interval, Options, Boolean, IntList)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def message(path: str, rule: Rule, value: Any) -> str:
    return f"The '{path}' parameter must be {rule.describe()}. Got {value!r} instead{_suggest(rule, value)}."


def _suggest(rule: Rule, value: Any) -> str:
    return closest(value, rule.values) if isinstance(rule, Options) and isinstance(value, str) else ""


def check(path: str, rule: Rule, value: Any) -> Any:
    if not rule.contains(value):
        raise ConfigError(message(path, rule, value))
    return value


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    rule: Rule
    doc: str = ""


@dataclass(frozen=True)
class Family:
    """A registered model family: its fields and the builder they are passed to."""

    name: str
    params: tuple[Param, ...]
    builder: Callable[..., Any]
    size_field: str | None = None  # what equal-parameter sizing solves (the count grows with it)
    depth_field: str | None = None  # quoted next to it in sizing errors
    input: str = "window"  # "window" or "sequence": what the model's forward takes
    origin: str = ""  # file:line of its registration, quoted in errors about a user's family
    user: bool = False  # from a project's models/ or an installed entry point, not the package
    module: str = ""  # the module that registered it

    @property
    def fields(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def kwargs(self, given: dict[str, Any]) -> dict[str, Any]:
        """The builder's arguments: the defaults updated with ``given``, every
        name known and every value checked against its rule."""
        fields = self.fields
        for key in given:
            if key not in fields:
                raise ConfigError(
                    f"The 'model.{key}' parameter is not a field of model '{self.name}'"
                    f"{closest(key, fields)}; its fields: {', '.join(fields)}."
                )
        out = {**self.defaults(), **given}
        for p in self.params:
            check(f"model.{p.name}", p.rule, out[p.name])
        return out


def pydantic_type(rule: Rule) -> Any:
    """The field type of a config section (pydantic's strict mode does the type checks)."""
    from typing import Annotated

    from pydantic import AfterValidator

    if isinstance(rule, Boolean):
        return bool
    if isinstance(rule, Options):
        return Literal[rule.values]  # type: ignore[valid-type]
    # a list is checked whole by its rule, so a bad item is reported as the list it is in
    base = list if isinstance(rule, IntList) else rule.type

    def within(v):
        if not rule.contains(v):
            raise ValueError(rule.describe())
        return v

    return Annotated[base, AfterValidator(within)]
