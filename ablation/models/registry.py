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
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ablation.errors import ConfigError, closest
from ablation.models.fields import RULES, Family, Interval, Options, Param, check

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
INPUTS = ("window", "sequence")


def register_model(name: str, params: Sequence[Param], *, size_field: str | None = None,
                   depth_field: str | None = None, input: str = "window"):
    """Decorator: register ``builder(n_concat=, frame_dim=, n_classes=, **fields) -> AblationModel``
    under ``name`` with its declared ``params``.

    ``size_field`` names the integer field that equal-parameter sizing solves
    (the count must grow with it); ``depth_field`` the one that error messages
    quote next to it. ``input`` is what the model takes: ``"window"``
    (``[B, n, frame_dim] -> [B, C]``) or ``"sequence"`` (``[B, T, D], lengths
    -> [B, T, C]``); a model may still set ``input_mode`` itself (the rnn
    family's depends on a field).
    """
    caller = sys._getframe(1)
    origin = f"{caller.f_code.co_filename}:{caller.f_lineno}"
    module = caller.f_globals.get("__name__", "")

    def decorator(builder: Callable[..., AblationModel]) -> Callable[..., AblationModel]:
        if name in _FAMILIES:
            raise ValueError(f"model '{name}' is registered twice (first at {_FAMILIES[name].origin})")
        if input not in INPUTS:
            raise ValueError(f"model '{name}': input must be one of {', '.join(INPUTS)}, got {input!r}")
        for p in params:
            if not isinstance(p, Param):
                raise ValueError(f"model '{name}': {p!r} is not a Param(name, default, rule)")
            if not isinstance(p.rule, RULES):
                raise ValueError(
                    f"model '{name}': field '{p.name}' has no rule (got {p.rule!r}); give it an "
                    "Interval, Options, Boolean or IntList, so every value is checked before a run starts"
                )
        names = [p.name for p in params]
        for f in (size_field, depth_field):
            if f is not None and f not in names:
                raise ValueError(f"model '{name}': sizing field '{f}' is not one of its fields {names}")
        _FAMILIES[name] = Family(name, tuple(params), builder, size_field, depth_field, input,
                                 origin, user=_loading is not None, module=module)
        if _loading is not None:
            _loading.append(name)
        return builder

    return decorator


# ---- families from the user's code ----------------------------------------------
ENTRY_POINT_GROUP = "ablation.models"
_loaded_project: object = None  # the project whose models/ are registered (None: not yet)
_loading: list[str] | None = None  # names registered by the user module being imported


def load_user_families(project: Path | None = None) -> None:
    """Register the families of ``project``'s ``models/*.py`` (default: the
    current project) and of the installed ``ablation.models`` entry points.
    A family of another project loaded before is dropped first."""
    global _loaded_project
    from ablation import paths

    project = (project or paths.project_dir()).resolve()
    if project == _loaded_project:
        return
    _forget_user_families()
    _loaded_project = project  # before importing: a module that lists the models must not recurse
    try:
        from ablation.models import user

        for origin, load in user.sources(project / "models", ENTRY_POINT_GROUP):
            _import_user(origin, load)
    except BaseException:
        _forget_user_families()
        _loaded_project = None
        raise


def _import_user(origin: str, load: Callable[[], object]) -> None:
    global _loading
    from ablation.models import user

    _loading = []
    try:
        load()
    except Exception as e:
        for name in _loading:
            _FAMILIES.pop(name, None)
        raise ConfigError(user.import_failure(origin, e)) from e
    finally:
        _loading = None


def _forget_user_families() -> None:
    global _loaded_project
    # a project's own families only: an entry point's module stays imported, so it would not
    # register its families again
    from ablation.models.user import MODULE_PREFIX

    for name in [n for n, f in _FAMILIES.items() if f.user and f.module.startswith(MODULE_PREFIX + ".")]:
        del _FAMILIES[name]
    _loaded_project = None
    config = sys.modules.get("ablation.config")
    if config is not None:  # its [model] sections are generated per family name
        config.section_class.cache_clear()


def list_models() -> list[str]:
    load_user_families()
    return sorted(_FAMILIES)


def family(name: str) -> Family:
    if name not in _FAMILIES:  # a worker's cells name the families of the project they were pickled in
        load_user_families()
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
    if not fam.user:
        return fam.builder(n_concat=n_concat, frame_dim=frame_dim, n_classes=n_classes, **fields)
    from ablation.models import user

    return user.build_checked(fam, n_concat=n_concat, frame_dim=frame_dim, n_classes=n_classes, **fields)


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
