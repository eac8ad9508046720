"""The experiment config: one typed, validated object, logged whole with every run.

Files live in ``experiments/*.toml`` with the sections below. Every field has
a rule; a value that breaks it is refused with one message shape:

    The 'model.depth' parameter must be an int in the range [1, 64]. Got 0 instead.

An unknown key is refused with the closest valid one suggested. Overrides use
dotted paths: ``--set model.depth=4`` (values parsed as TOML, bare words as
strings). Types do not change: ``model.depth=deep`` is refused.

The ``[model]`` section belongs to the model family named by ``model.name``:
its fields, defaults and rules are the family's own declaration
(``ablation/models/<family>.py``), so an MLP config has no RNN fields and a
field of another family is an unknown key. Switching the family in an
override (``--set model.name=rnn``, a study arm) starts the section afresh
from the new family's defaults, keeping only the fields every family shares.
"""

from __future__ import annotations

import functools
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types as at
import tomli_w
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, create_model

from ablation import paths
from ablation.errors import ConfigError, closest

Int = int
_STRICT = ConfigDict(extra="forbid", strict=True, validate_assignment=True, frozen=False)


class _Section(BaseModel):
    model_config = _STRICT


class DataConfig(_Section):
    source: str = Field("synthphone:small-v2", min_length=1)
    val_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    split_by: Literal["utterance", "speaker"] = "utterance"
    # "seed": shuffled with train.seed (a study's seeds then vary the split too, so the
    # seed spread holds split variance); "course": the notebook's fixed split
    # (random.seed(1337), random.shuffle of train_split.txt, first int(0.8 * N))
    split: Literal["seed", "course"] = "seed"


def _odd_window(n: int) -> int:
    from ablation.models.registry import N_CONCAT

    if not N_CONCAT.contains(n):
        raise ValueError(N_CONCAT.describe())
    return n


class FeaturesConfig(_Section):
    # odd window of n frames centred on the labelled frame; 1 = the frame alone.
    # The rule is the model registry's (models.registry.N_CONCAT), declared once.
    n_concat: Annotated[int, AfterValidator(_odd_window)] = 1


DEFAULT_FAMILY = "mlp"


class ModelSection(_Section):
    """The fields every model family shares; ``section_class(family)`` adds the family's own."""

    name: str = DEFAULT_FAMILY
    param_budget: Annotated[int, Field(ge=0)] = 0  # > 0: solve the family's size field for it

    def __reduce__(self):
        # pickled by family and project: a --jobs worker unpickles its cells before it takes
        # this process's environment, and a user's family is registered only once its
        # project's models/ are imported
        return _rebuild_section, (self.name, str(paths.project_dir()), self.model_dump())


def _rebuild_section(family: str, project: str, fields: dict) -> ModelSection:
    from ablation.models import load_user_families

    load_user_families(Path(project))
    return section_class(family).model_validate(fields)


@functools.cache
def section_class(family: str) -> type[ModelSection]:
    """The ``[model]`` section of one family, generated from its declared fields."""
    from ablation.models import family as get_family
    from ablation.models.fields import pydantic_type

    fam = get_family(family)
    fields: dict[str, Any] = {p.name: (pydantic_type(p.rule), p.default) for p in fam.params}
    return create_model(_section_name(family), __base__=ModelSection, __module__=__name__,
                        name=(Literal[family], family), **fields)  # type: ignore[valid-type]


def _section_name(family: str) -> str:
    return f"{family.title().replace('_', '')}ModelConfig"


def __getattr__(name: str):
    """Generated section classes resolve as module attributes, so configs
    pickle (workers receive their study's cells by pickle)."""
    if name.endswith("ModelConfig"):
        from ablation.models import list_models

        for family in list_models():
            if _section_name(family) == name:
                return section_class(family)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _default_model() -> ModelSection:
    return section_class(DEFAULT_FAMILY)()


class OptimConfig(_Section):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9  # sgd only
    # plateau: constant, cut by half after each epoch without a new best, down to 1/8 (ablation.train.Plateau)
    schedule: Literal["constant", "cosine", "plateau"] = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 512
    # sequence models: frames per batch (padding included) instead of batch_size
    max_frames: Annotated[int, Field(ge=1, le=10_000_000)] = 16384
    grad_clip: Annotated[float, Field(ge=0.0)] = 0.0  # 0 = off


class LossConfig(_Section):
    # class weights proportional to frequency^-beta: 0 = none, 1 = fully balanced
    class_weight_beta: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class TrainConfig(_Section):
    epochs: Annotated[int, Field(ge=1, le=1000)] = 5
    patience: Annotated[int, Field(ge=0, le=1000)] = 0  # 0 = no early stopping
    early_stop_metric: Literal["val.acc", "val.loss", "val.macro_f1"] = "val.acc"
    # fraction of the val utterances (the same first ones for every arm at a seed) that picks the
    # best epoch and early-stops; the restored best epoch is then evaluated on the whole val split
    select_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Field(ge=0, le=1024)] = 0  # 0 = torch's default
    # sequence models: 0 = whole utterances, else fixed-length chunks
    chunk_len: Annotated[int, Field(ge=0, le=100_000)] = 0
    eval_batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 4096


class ExperimentConfig(BaseModel):
    model_config = _STRICT

    name: str = Field("experiment", min_length=1)
    description: str = ""
    data: DataConfig = DataConfig()
    features: FeaturesConfig = FeaturesConfig()
    # the family's own section class; SerializeAsAny dumps its fields, not just the shared ones
    model: SerializeAsAny[ModelSection] = Field(default_factory=_default_model)
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python")

    def flat(self) -> dict[str, Any]:
        """Dotted names -> values: what gets logged as MLflow params."""
        from ablation.tracking import flatten

        return flatten(self.to_dict())

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


# ---- field rules and messages -------------------------------------------

SECTIONS: dict[str, type[BaseModel]] = {
    "data": DataConfig,
    "features": FeaturesConfig,
    "model": ModelSection,  # stands for section_class(family)
    "optim": OptimConfig,
    "loss": LossConfig,
    "train": TrainConfig,
}


def family_of(data: dict) -> str:
    """The model family a plain config dict names (the default when it names none)."""
    from ablation.models import family

    model = data.get("model", {})
    name = model.get("name", DEFAULT_FAMILY) if isinstance(model, dict) else DEFAULT_FAMILY
    return family(name).name  # an unknown name: one line listing the known ones


def _section(sec: str, family: str) -> type[BaseModel]:
    return section_class(family) if sec == "model" else SECTIONS[sec]


def field_paths(family: str = DEFAULT_FAMILY) -> list[str]:
    """Every settable dotted path of a config whose model is ``family``."""
    out = [k for k, f in ExperimentConfig.model_fields.items() if k not in SECTIONS]
    for sec in SECTIONS:
        out += [f"{sec}.{k}" for k in _section(sec, family).model_fields]
    return out


def all_field_paths() -> list[str]:
    """The paths of every family together: what a study may vary or tune."""
    from ablation.models import list_models

    out = field_paths(DEFAULT_FAMILY)
    for name in list_models():
        out += [p for p in field_paths(name) if p not in out]
    return out


def _field_info(path: str, family: str = DEFAULT_FAMILY):
    parts = path.split(".")
    if len(parts) == 1:
        return ExperimentConfig.model_fields[parts[0]]
    return _section(parts[0], family).model_fields[parts[1]]


def field_type(path: str, family: str = DEFAULT_FAMILY) -> type:
    from ablation.models.fields import IntList, Interval, Options

    param = _family_param(path, family)
    if param is not None:
        rule = param.rule
        if isinstance(rule, IntList):
            return list
        if isinstance(rule, Interval):
            return rule.type
        return type(rule.values[0]) if isinstance(rule, Options) else bool
    ann = _field_info(path, family).annotation
    origin = typing.get_origin(ann)
    if origin is Literal:
        return type(typing.get_args(ann)[0])
    return ann


def _family_param(path: str, family: str):
    if not path.startswith("model."):
        return None
    from ablation.models import model_fields

    return model_fields(family).get(path.split(".", 1)[1])


def field_rule(path: str, family: str = DEFAULT_FAMILY) -> str:
    """Human rule of a field, e.g. 'an int in the range [1, 64]'."""
    param = _family_param(path, family)
    if param is not None:  # the family's declaration renders its own rule
        return param.rule.describe()
    if path == "features.n_concat":
        from ablation.models.registry import N_CONCAT

        return N_CONCAT.describe()
    if path == "model.name":
        from ablation.models import list_models
        from ablation.models.fields import Options

        return Options(tuple(list_models())).describe()
    info = _field_info(path, family)
    ann = info.annotation
    if typing.get_origin(ann) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    kind = {int: "an int", float: "a float", bool: "a bool (true or false)", str: "a string"}.get(ann, str(ann))
    lo = hi = None
    lo_closed = hi_closed = True
    for m in info.metadata:
        if isinstance(m, at.Ge):
            lo = m.ge
        elif isinstance(m, at.Gt):
            lo, lo_closed = m.gt, False
        elif isinstance(m, at.Le):
            hi = m.le
        elif isinstance(m, at.Lt):
            hi, hi_closed = m.lt, False
        elif isinstance(m, at.MinLen):
            return f"{kind} of at least {m.min_length} character(s)"
    if lo is None and hi is None:
        return kind
    left = ("[" if lo_closed else "(") + (str(lo) if lo is not None else "-inf")
    right = (str(hi) if hi is not None else "inf") + ("]" if hi_closed and hi is not None else ")")
    return f"{kind} in the range {left}, {right}"


def _message(path: str, value: Any, family: str = DEFAULT_FAMILY) -> str:
    return f"The '{path}' parameter must be {field_rule(path, family)}. Got {value!r} instead."


def _unknown_key(path: str, where: str, family: str) -> ConfigError:
    if path.startswith("model.") and path in all_field_paths():
        # another family's field: say whose, and suggest from this family's own
        own = [p.split(".", 1)[1] for p in field_paths(family) if p.startswith("model.")]
        return ConfigError(
            f"unknown key '{path}' for model '{family}'{where}{closest(path, field_paths(family))}; "
            f"model '{family}' has: {', '.join(own)}"
        )
    return ConfigError(f"unknown key '{path}'{where}{closest(path, field_paths(family))}")


def _check_keys(data: dict, where: str) -> None:
    family = family_of(data)
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"'{key}'{where} must be a [{key}] table, got {value!r}")
            for sub in value:
                if sub not in _section(key, family).model_fields:
                    raise _unknown_key(f"{key}.{sub}", where, family)
        elif key not in ExperimentConfig.model_fields:
            raise _unknown_key(key, where, family)


def build(data: dict, where: str = "") -> ExperimentConfig:
    """Validate a plain dict (as read from TOML) into a config."""
    suffix = f" ({where.strip(' ()')})" if where else ""
    try:
        family = family_of(data)
    except ConfigError as e:
        raise ConfigError(f"{e}{suffix}") from None
    _check_keys(data, where)
    try:
        model = section_class(family).model_validate(data.get("model", {}))
        cfg = ExperimentConfig.model_validate({**data, "model": model})
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"]]
        if e.title != ExperimentConfig.__name__:
            loc = ["model", *loc]
        raise ConfigError(_message(".".join(loc), err.get("input"), family) + suffix) from None
    return cfg


# ---- files and overrides -------------------------------------------------


def parse_override(text: str) -> tuple[str, Any]:
    """``'model.depth=4'`` -> ``('model.depth', 4)``. The value is read as TOML
    (``true``, ``1e-3``, ``"x"``); anything that is not TOML is a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} is not of the form key=value (e.g. --set model.depth=4)")
    key, raw = (s.strip() for s in text.split("=", 1))
    if not key:
        raise ConfigError(f"--set {text!r} has an empty key (e.g. --set model.depth=4)")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(data: dict, overrides: list[str] | dict[str, Any], where: str = " (--set)") -> dict:
    """A copy of ``data`` with dotted ``key=value`` overrides applied."""
    import copy

    out = copy.deepcopy(data)
    items = list(overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides))
    from ablation.models import list_models

    new_family = dict(items).get("model.name")
    if new_family is not None and new_family != out.get("model", {}).get("name", DEFAULT_FAMILY):
        # a new family starts from its own defaults: the old one's fields mean nothing to it
        shared = {k: v for k, v in out.get("model", {}).items() if k in ModelSection.model_fields}
        out["model"] = {**shared, "name": new_family}
    family = out.get("model", {}).get("name", DEFAULT_FAMILY)
    # an unknown family is left for build() to refuse, with the file it came from
    known = set(field_paths(family) if family in list_models() else all_field_paths())
    for key, value in items:
        if key not in known:
            raise _unknown_key(key, where, family)
        parts = key.split(".")
        if len(parts) == 1:
            out[key] = value
        else:
            out.setdefault(parts[0], {})[parts[1]] = value
    return out


def resolve_named_file(name_or_path: str | Path, folder: Path, kind: str, error=ConfigError) -> Path:
    """``NAME`` (``folder/NAME.toml``) or a path to a ``.toml`` file -> an
    existing path; otherwise one line listing the known names."""
    p = Path(name_or_path).expanduser()
    known = sorted(f.stem for f in folder.glob("*.toml"))
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise error(f"{kind} file {p} does not exist; known: {', '.join(known) or 'none'}")
        return p
    candidate = folder / f"{p.name}.toml"
    if candidate.is_file():
        return candidate
    raise error(
        f"unknown {kind} '{name_or_path}'{closest(str(name_or_path), known)}; known: {', '.join(known) or 'none'}"
    )


def resolve_experiment_path(name_or_path: str | Path) -> Path:
    """``mlp_strong`` or ``experiments/mlp_strong.toml`` -> an existing path."""
    return paths.find_experiment(name_or_path)


def list_experiments() -> list[str]:
    """The project's experiments and the built-in ones, by name."""
    return paths.names("experiment")


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


def load_experiment(name_or_path: str | Path, overrides: list[str] | dict[str, Any] = ()) -> ExperimentConfig:
    path = resolve_experiment_path(name_or_path)
    data = read_toml(path)
    data.setdefault("name", path.stem)
    _check_keys(data, f" in {path}")
    data = apply_overrides(data, overrides or [])
    return build(data, f" ({path})")
