"""The experiment config: one typed, validated object, logged whole with every run.

Files live in ``experiments/*.toml`` with the sections below. Every field has
a rule; a value that breaks it is refused with one message shape:

    The 'model.depth' parameter must be an int in the range [1, 64]. Got 0 instead.

An unknown key is refused with the closest valid one suggested. Overrides use
dotted paths: ``--set model.depth=4`` (values parsed as TOML, bare words as
strings). Types do not change: ``model.depth=deep`` is refused.
"""

from __future__ import annotations

import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types as at
import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ablation import paths
from ablation.errors import ConfigError, closest

Int = int
_STRICT = ConfigDict(extra="forbid", strict=True, validate_assignment=True, frozen=False)


class _Section(BaseModel):
    model_config = _STRICT


class DataConfig(_Section):
    source: str = Field("synthphone:small", min_length=1)
    val_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    split_by: Literal["utterance", "speaker"] = "utterance"


class FeaturesConfig(_Section):
    # odd window of n frames centred on the labelled frame; 1 = the frame alone
    n_concat: Annotated[int, Field(ge=1, le=201)] = 1


class ModelConfig(_Section):
    """All fields of every model, so runs of different models log the same
    param names; fields a model does not use are ignored by it."""

    name: str = "mlp"
    # mlp
    depth: Annotated[int, Field(ge=1, le=64)] = 1
    width: Annotated[int, Field(ge=1, le=65536)] = 256
    param_budget: Annotated[int, Field(ge=0)] = 0  # > 0: solve width (mlp) / hidden (rnn) for it
    activation: Literal["relu", "leaky_relu", "gelu", "sigmoid"] = "relu"
    batchnorm: bool = False
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    dropout_place: Literal["after", "before"] = "after"
    # rnn
    cell: Literal["lstm", "gru"] = "lstm"
    bidirectional: bool = True
    layers: Annotated[int, Field(ge=1, le=16)] = 2
    hidden: Annotated[int, Field(ge=1, le=8192)] = 128
    mode: Literal["window", "sequence"] = "window"
    input_norm: bool = False
    # optional Conv1d front-end (0 = none)
    conv_channels: Annotated[int, Field(ge=0, le=4096)] = 0
    conv_kernel: Annotated[int, Field(ge=1, le=31)] = 3


class OptimConfig(_Section):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9  # sgd only
    schedule: Literal["constant", "cosine"] = "cosine"
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
    model: ModelConfig = ModelConfig()
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
    "model": ModelConfig,
    "optim": OptimConfig,
    "loss": LossConfig,
    "train": TrainConfig,
}


def field_paths() -> list[str]:
    """Every settable dotted path."""
    out = [k for k, f in ExperimentConfig.model_fields.items() if k not in SECTIONS]
    for sec, cls in SECTIONS.items():
        out += [f"{sec}.{k}" for k in cls.model_fields]
    return out


def _field_info(path: str):
    parts = path.split(".")
    if len(parts) == 1:
        return ExperimentConfig.model_fields[parts[0]]
    return SECTIONS[parts[0]].model_fields[parts[1]]


def field_type(path: str) -> type:
    ann = _field_info(path).annotation
    origin = typing.get_origin(ann)
    if origin is Literal:
        return type(typing.get_args(ann)[0])
    return ann


def field_rule(path: str) -> str:
    """Human rule of a field, e.g. 'an int in the range [1, 64]'."""
    info = _field_info(path)
    ann = info.annotation
    if path == "features.n_concat":
        return "an odd int in the range [1, 201]"
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


def _message(path: str, value: Any) -> str:
    return f"The '{path}' parameter must be {field_rule(path)}. Got {value!r} instead."


def _unknown_key(path: str, where: str) -> ConfigError:
    return ConfigError(f"unknown key '{path}'{where}{closest(path, field_paths())}")


def _check_keys(data: dict, where: str) -> None:
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"'{key}'{where} must be a [{key}] table, got {value!r}")
            for sub in value:
                if sub not in SECTIONS[key].model_fields:
                    raise _unknown_key(f"{key}.{sub}", where)
        elif key not in ExperimentConfig.model_fields:
            raise _unknown_key(key, where)


def build(data: dict, where: str = "") -> ExperimentConfig:
    """Validate a plain dict (as read from TOML) into a config."""
    _check_keys(data, where)
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        raise ConfigError(_message(path, err.get("input")) + (f" ({where.strip(' ()')})" if where else "")) from None
    if cfg.features.n_concat % 2 == 0:
        raise ConfigError(_message("features.n_concat", cfg.features.n_concat) + " An even window has no centre frame.")
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
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    known = set(field_paths())
    for key, value in items:
        if key not in known:
            raise _unknown_key(key, where)
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
    return resolve_named_file(name_or_path, paths.experiments_dir(), "experiment")


def list_experiments() -> list[str]:
    return sorted(p.stem for p in paths.experiments_dir().glob("*.toml"))


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


def load_experiment(name_or_path: str | Path, overrides: list[str] | dict[str, Any] = ()) -> ExperimentConfig:
    path = resolve_experiment_path(name_or_path)
    data = read_toml(path)
    data.setdefault("name", path.stem)
    _check_keys(data, f" in {path}")
    data = apply_overrides(data, overrides or [])
    return build(data, f" ({path})")
