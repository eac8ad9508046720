"""The model registry, the model base class and the checks every builder shares.

A family registers its builder with its fields declared as data
(``fields.Param``): names, defaults and rules. ``create_model`` fills the
defaults, checks every value against its rule and passes the data's
``n_concat``, ``frame_dim`` and ``n_classes`` plus the fields to the builder;
the config section of the family is generated from the same declaration.
Adding a family is one module with its ``register_model`` call, imported in
``models/__init__.py``.
"""

from __future__ import annotations

import abc
import math
import numbers
from typing import Callable, Sequence

from torch import nn

from ablation.errors import ConfigError, closest
from ablation.models.fields import Family, Interval, Options, Param, check

DATA_ARGS = ("n_concat", "frame_dim", "n_classes")
# odd: the window is centred on its frame
N_CONCAT = Interval(int, 1, 201, odd=True)

_FAMILIES: dict[str, Family] = {}


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
def register_model(name: str, params: Sequence[Param], *, size_field: str | None = None,
                   depth_field: str | None = None):
    """Decorator: register ``builder(n_concat=, frame_dim=, n_classes=, **fields) -> AblationModel``
    under ``name`` with its declared ``params``.

    ``size_field`` names the integer field that equal-parameter sizing solves
    (the count must grow with it); ``depth_field`` the one that error messages
    quote next to it.
    """

    def decorator(builder: Callable[..., AblationModel]) -> Callable[..., AblationModel]:
        if name in _FAMILIES:
            raise ValueError(f"model '{name}' is registered twice")
        names = [p.name for p in params]
        for f in (size_field, depth_field):
            if f is not None and f not in names:
                raise ValueError(f"model '{name}': sizing field '{f}' is not one of its fields {names}")
        _FAMILIES[name] = Family(name, tuple(params), builder, size_field, depth_field)
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(_FAMILIES)


def family(name: str) -> Family:
    if name not in _FAMILIES:
        raise ConfigError(
            f"The 'model.name' parameter must be {Options(tuple(list_models())).describe()}. "
            f"Got {name!r} instead{closest(name, _FAMILIES)}."
        )
    return _FAMILIES[name]


def model_fields(name: str) -> dict[str, Param]:
    """The family's own fields (not the data's), with their defaults and rules."""
    return family(name).fields


def sizing_fields(name: str) -> tuple[str | None, str | None]:
    """(size field, depth field) of a registered model."""
    f = family(name)
    return f.size_field, f.depth_field


def create_model(
    name: str, *, n_concat: int = 1, frame_dim: int = 39, n_classes: int = 41, **kwargs
) -> AblationModel:
    """Build a registered model. The caller seeds torch first; nothing here reseeds."""
    fam = family(name)
    fields = fam.kwargs(kwargs)
    check("features.n_concat", N_CONCAT, n_concat)
    check_int("frame_dim", frame_dim, low=1)
    check_int("n_classes", n_classes, low=2)
    return fam.builder(n_concat=n_concat, frame_dim=frame_dim, n_classes=n_classes, **fields)


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


# ---- activations ------------------------------------------------------------
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}


ACTIVATION = Options(tuple(ACTIVATIONS))


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[check("model.activation", ACTIVATION, name)]()
