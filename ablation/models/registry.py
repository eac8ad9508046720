"""The model registry, the model base class and the checks every builder shares.

A builder is a function with keyword-only arguments: ``n_concat``,
``frame_dim`` and ``n_classes`` (set by the data), then the model's own fields
with their defaults. ``model_fields`` reads those fields off the signature, so
the config layer and ``create_model`` agree on what a model accepts.
"""

from __future__ import annotations

import abc

import inspect
import math
import numbers
from typing import Callable

from torch import nn

from ablation.errors import ConfigError, closest

DATA_ARGS = ("n_concat", "frame_dim", "n_classes")

_BUILDERS: dict[str, Callable[..., "AblationModel"]] = {}
# name -> (size field, depth field): what budget.solve_for_budget solves and names.
_SIZING: dict[str, tuple[str | None, str | None]] = {}


class AblationModel(nn.Module, metaclass=abc.ABCMeta):
    """Base of every model.

    ``input_mode`` is ``"window"`` (``forward(x [B, n, frame_dim]) -> [B, C]``)
    or ``"sequence"`` (``forward(x [B, T, D], lengths [B]) -> [B, T, C]``).
    """

    input_mode: str = "window"

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @abc.abstractmethod
    def macs_per_frame(self) -> int:
        """Multiply-adds to classify one frame at inference.

        Counted per layer: a Linear is in * out, a Conv1d out * in * kernel per
        output position, a normalisation layer one per feature (its affine;
        BatchNorm's statistics fold into it at inference), an RNN cell
        gates * (in * hidden + hidden * hidden) per step and direction.
        Biases, activations, gate products and dropout count zero.
        """


# ---- registry ---------------------------------------------------------------
def register_model(name: str, *, size_field: str | None = None, depth_field: str | None = None):
    """Decorator: register ``builder(**kwargs) -> AblationModel`` under ``name``.

    ``size_field`` names the integer argument that equal-parameter sizing
    solves (count must grow with it); ``depth_field`` the one that error
    messages quote next to it.
    """

    def decorator(builder: Callable[..., AblationModel]) -> Callable[..., AblationModel]:
        if name in _BUILDERS:
            raise ValueError(f"model '{name}' is registered twice")
        _BUILDERS[name] = builder
        _SIZING[name] = (size_field, depth_field)
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(_BUILDERS)


def _builder(name: str) -> Callable[..., AblationModel]:
    if name not in _BUILDERS:
        raise ConfigError(
            f"The 'model.name' parameter must be one of {list_models()}. "
            f"Got {name!r} instead{closest(name, _BUILDERS)}."
        )
    return _BUILDERS[name]


def model_fields(name: str) -> dict[str, inspect.Parameter]:
    """The model's own keyword arguments (not the data's), with defaults and annotations."""
    params = inspect.signature(_builder(name)).parameters
    return {k: p for k, p in params.items() if k not in DATA_ARGS}


def sizing_fields(name: str) -> tuple[str | None, str | None]:
    """(size field, depth field) of a registered model."""
    _builder(name)
    return _SIZING[name]


def create_model(
    name: str, *, n_concat: int = 1, frame_dim: int = 39, n_classes: int = 41, **kwargs
) -> AblationModel:
    """Build a registered model. The caller seeds torch first; nothing here reseeds."""
    builder = _builder(name)
    fields = model_fields(name)
    for key in kwargs:
        if key not in fields:
            raise ConfigError(
                f"The 'model.{key}' parameter is not accepted by model '{name}'"
                f"{closest(key, fields)}; it accepts {sorted(fields)}."
            )
    check_int("features.n_concat", n_concat, low=1)
    if n_concat % 2 == 0:
        raise ConfigError(
            f"The 'features.n_concat' parameter must be an odd int (the window is centred "
            f"on its frame). Got {n_concat} instead."
        )
    check_int("frame_dim", frame_dim, low=1)
    check_int("n_classes", n_classes, low=2)
    return builder(n_concat=n_concat, frame_dim=frame_dim, n_classes=n_classes, **kwargs)


# ---- shared checks (one message shape, as in the config layer) --------------
def _bound(x: float) -> str:
    return "inf" if math.isinf(x) else str(x)


def check_int(field: str, value, *, low: int = 1, high: float = math.inf) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or not low <= value <= high:
        right = ")" if math.isinf(high) else "]"
        raise ConfigError(
            f"The '{field}' parameter must be an int in the range [{low}, {_bound(high)}{right}. "
            f"Got {value!r} instead."
        )
    return int(value)


def check_prob(field: str, value) -> float:
    """A probability in [0, 1): a dropout of 1 would zero every activation."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not 0.0 <= float(value) < 1.0:
        raise ConfigError(
            f"The '{field}' parameter must be a float in the range [0, 1). Got {value!r} instead."
        )
    return float(value)


def check_bool(field: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"The '{field}' parameter must be a bool. Got {value!r} instead.")
    return value


def check_choice(field: str, value, choices) -> str:
    if value not in choices:
        raise ConfigError(
            f"The '{field}' parameter must be one of {sorted(choices)}. "
            f"Got {value!r} instead{closest(value, choices)}."
        )
    return value


# ---- activations ------------------------------------------------------------
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}


def make_activation(name: str, field: str = "model.activation") -> nn.Module:
    return ACTIVATIONS[check_choice(field, name, ACTIVATIONS)]()
