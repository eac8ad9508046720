"""The experiment config: every field has a rule, one message shape, dotted
overrides, unknown keys with suggestions, and a lossless TOML round trip."""

from __future__ import annotations

import math
import tomllib
import typing

import pydantic
import pytest

from ablation import config, paths
from ablation.config import (
    ExperimentConfig,
    apply_overrides,
    build,
    field_paths,
    field_rule,
    field_type,
    list_experiments,
    load_experiment,
    parse_override,
)
from ablation.errors import ConfigError
from ablation.models import list_models, model_fields

SAMPLE = paths.PROJECT_DIR / "experiments" / "mlp_sample.toml"


def _bounds(path: str, family: str = "mlp") -> tuple[float | None, float | None]:
    """(low, high) of a numeric field, or None where unbounded; read off the
    rule text so the test checks the rule that users are shown."""
    rule = field_rule(path, family)
    if " in the range " not in rule:
        return None, None
    lo, hi = rule.split(" in the range ")[1][1:-1].split(", ")
    return (None if lo == "-inf" else float(lo)), (None if hi == "inf" else float(hi))


def _wrong_value(path: str, family: str = "mlp"):
    """A value that breaks the field's rule (out of range, wrong type, not a choice)."""
    rule = field_rule(path, family)
    if rule.startswith("one of "):
        return "nonsense"
    kind = field_type(path, family)
    if kind is list:  # a list of ints: one item past its bound
        lo, hi = _bounds(path, family)
        return [int(hi) + 1]
    if kind is bool:
        return "yes"
    if kind is str:
        return "" if "at least" in rule else 5
    lo, hi = _bounds(path, family)
    assert lo is not None, path
    if rule.startswith("an odd int"):
        return int(hi) + 2
    if kind is int:
        return int(hi) + 1 if hi is not None else int(lo) - 1
    return hi * 2 if hi is not None else lo - 1.0


def _with(family: str, path: str, value) -> dict:
    """A config dict of ``family`` with one field set."""
    return apply_overrides({"model": {"name": family}}, {path: value})


# every (family, path): the shared sections once, each family's own model fields
PATHS = [("mlp", p) for p in field_paths("mlp")] + [
    (f, p) for f in list_models() if f != "mlp" for p in field_paths(f) if p not in field_paths("mlp")
]


def test_field_paths_are_the_sections_and_the_familys_own_fields():
    for family in list_models():
        expected = ["name", "description"] + [
            f"{sec}.{k}" for sec, cls in config.SECTIONS.items() for k in cls.model_fields
        ]
        model = [p for p in field_paths(family) if p.startswith("model.")]
        assert model == ["model.name", "model.param_budget"] + [f"model.{k}" for k in model_fields(family)]
        assert [p for p in field_paths(family) if not p.startswith("model.")] == [
            p for p in expected if not p.startswith("model.")]
    assert "model.hidden" not in field_paths("mlp") and "model.width" not in field_paths("rnn")
    assert set(config.all_field_paths()) == set().union(*(field_paths(f) for f in list_models()))
    assert "model.widths" in config.all_field_paths()


@pytest.mark.parametrize("family,path", PATHS)
def test_every_field_has_a_rule(family, path):
    rule = field_rule(path, family)
    known = ("an int", "an odd int", "a float", "a bool (true or false)", "a string", "one of ", "a list of ")
    assert rule.startswith(known), rule
    if rule.startswith(("an int", "a float", "an odd int")):
        lo, hi = _bounds(path, family)
        assert lo is not None  # every number has a lower bound


@pytest.mark.parametrize("family,path", PATHS)
def test_a_wrong_value_is_refused_with_the_one_message_shape(family, path):
    bad = _wrong_value(path, family)
    with pytest.raises(ConfigError) as err:
        build(_with(family, path, bad))
    assert str(err.value) == f"The '{path}' parameter must be {field_rule(path, family)}. Got {bad!r} instead."


NUMERIC = [(f, p) for f, p in PATHS if _bounds(p, f)[0] is not None]


@pytest.mark.parametrize("family,path", NUMERIC)
def test_each_bound_is_exact(family, path):
    """The bound the rule states is the one enforced: the edge value passes
    when the interval is closed and fails when it is open."""
    rule = field_rule(path, family)
    lo, hi = _bounds(path, family)
    kind = field_type(path, family)
    for edge, closed in ((lo, " [" in rule), (hi, rule.endswith("]"))):
        if edge is None:
            continue
        value = [int(edge)] if kind is list else kind(edge)  # a list's bound is its items'
        if rule.startswith("an odd int") and value % 2 == 0:
            value += 1
        if closed:
            assert build(_with(family, path, value)).flat()[path] == value
        else:
            with pytest.raises(ConfigError, match=f"The '{path}' parameter must be"):
                build(_with(family, path, value))


def test_defaults_are_valid_and_follow_the_course_split():
    cfg = build({})
    assert cfg.features.n_concat == 1
    assert cfg.data.val_ratio == 0.2
    assert set(cfg.flat()) == set(field_paths())


@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("model.dept=3", "model.depth"),
        ("optim.lrr=0.1", "optim.lr"),
        ("nme=x", "name"),
        ("trian.epochs=3", "train.epochs"),
    ],
)
def test_unknown_override_key_is_refused_with_the_closest_key(override, suggestion):
    with pytest.raises(ConfigError) as err:
        load_experiment(SAMPLE, [override])
    key = override.split("=")[0]
    assert str(err.value) == f"unknown key '{key}' (--set) (did you mean '{suggestion}'?)"


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[model]\nname = "mlp"\ndept = 3\n')
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(err.value) == f"unknown key 'model.dept' in {path} (did you mean 'model.depth'?)"
    path.write_text("[modle]\ndepth = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'modle' in .*mine\.toml"):
        load_experiment(path)


def test_a_section_that_is_not_a_table_is_refused(tmp_path):
    path = tmp_path / "flat.toml"
    path.write_text("model = 3\n")
    with pytest.raises(ConfigError, match=r"'model' in .*flat\.toml must be a \[model\] table, got 3"):
        load_experiment(path)


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("[model]\ndepth = 0\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(err.value) == f"The 'model.depth' parameter must be an int in the range [1, 64]. Got 0 instead. ({path})"


def test_invalid_toml_is_one_config_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[model\n")
    with pytest.raises(ConfigError, match=r"broken\.toml is not valid TOML"):
        load_experiment(path)


@pytest.mark.parametrize(
    "override, path, shown",
    [
        ("model.depth=deep", "model.depth", "'deep'"),
        ("train.epochs=2.5", "train.epochs", "2.5"),
        ("model.batchnorm=1", "model.batchnorm", "1"),
        ("optim.lr=fast", "optim.lr", "'fast'"),
        ("model.name=3", "model.name", "3"),
    ],
)
def test_a_type_change_is_refused(override, path, shown):
    with pytest.raises(ConfigError) as err:
        load_experiment(SAMPLE, [override])
    assert str(err.value) == f"The '{path}' parameter must be {field_rule(path)}. Got {shown} instead. ({SAMPLE})"


@pytest.mark.parametrize("n", [2, 4, 200])
def test_an_even_window_is_refused(n):
    with pytest.raises(ConfigError) as err:
        load_experiment(SAMPLE, [f"features.n_concat={n}"])
    assert str(err.value) == (
        f"The 'features.n_concat' parameter must be an odd int in the range [1, 201]. Got {n} instead. ({SAMPLE})"
    )


def test_overrides_are_parsed_as_toml():
    assert parse_override("optim.lr=1e-3") == ("optim.lr", 0.001)
    assert type(parse_override("optim.lr=1e-3")[1]) is float
    assert parse_override("model.batchnorm=true") == ("model.batchnorm", True)
    assert parse_override("model.depth = 4") == ("model.depth", 4)
    assert type(parse_override("model.depth=4")[1]) is int
    assert parse_override("data.source=synthphone:tiny") == ("data.source", "synthphone:tiny")
    assert parse_override('data.source="libriphone:/d/x y"') == ("data.source", "libriphone:/d/x y")
    assert parse_override("description=a=b") == ("description", "a=b")  # only the first '=' splits
    cfg = load_experiment(SAMPLE, ["optim.lr=1e-3", "model.batchnorm=true", "data.source=synthphone:tiny"])
    assert (cfg.optim.lr, cfg.model.batchnorm, cfg.data.source) == (0.001, True, "synthphone:tiny")


def test_an_int_is_accepted_for_a_float_field():
    cfg = load_experiment(SAMPLE, ["optim.lr=1", "optim.warmup_epochs=2"])
    assert cfg.optim.lr == 1.0 and type(cfg.optim.lr) is float
    assert cfg.optim.warmup_epochs == 2.0


@pytest.mark.parametrize("text", ["model.depth", "=4", " = 4"])
def test_malformed_overrides_are_refused(text):
    with pytest.raises(ConfigError, match="--set .* (is not of the form key=value|has an empty key)"):
        parse_override(text)


def test_overrides_apply_in_order_and_leave_the_input_alone():
    data = {"model": {"depth": 2}}
    out = apply_overrides(data, ["model.depth=3", "model.depth=5", "name=x"])
    assert out == {"model": {"depth": 5}, "name": "x"}
    assert data == {"model": {"depth": 2}}


def test_load_by_name_sets_the_name_from_the_file():
    cfg = load_experiment("mlp_sample")
    assert cfg.name == "mlp_sample"
    assert (cfg.model.depth, cfg.model.width, cfg.optim.lr, cfg.optim.batch_size) == (2, 256, 1e-4, 512)


def test_unknown_experiment_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        load_experiment("mlp_sampel")
    msg = str(err.value)
    assert msg.startswith("unknown experiment 'mlp_sampel' (did you mean 'mlp_sample'?); known: ")
    assert msg.split("known: ")[1] == ", ".join(list_experiments())


def test_a_missing_experiment_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"experiment file .*nothere\.toml does not exist"):
        load_experiment(tmp_path / "nothere.toml")


def test_the_resolved_config_round_trips_through_toml():
    cfg = load_experiment(SAMPLE, ["optim.lr=3e-4", "model.dropout=0.25", "train.seed=7", "description=x \"q\""])
    text = cfg.to_toml()
    again = build(tomllib.loads(text))
    assert again.to_dict() == cfg.to_dict()
    assert again.flat() == cfg.flat()
    assert isinstance(again, ExperimentConfig)


def test_flat_has_one_dotted_name_per_field():
    flat = build({"model": {"depth": 3}}).flat()
    assert list(flat) == field_paths()
    assert flat["model.depth"] == 3
    assert not any(isinstance(v, dict) for v in flat.values())


def test_validation_happens_on_assignment_too():
    cfg = build({})
    with pytest.raises(pydantic.ValidationError):
        cfg.model.depth = 0
    assert cfg.model.depth == 2


@pytest.mark.parametrize("name", list_experiments())
def test_every_shipped_experiment_loads(name):
    from ablation.train import build_model

    assert len(list_experiments()) >= 4
    cfg = load_experiment(name)
    assert cfg.name == name
    assert cfg.features.n_concat % 2 == 1
    assert build(tomllib.loads(cfg.to_toml())).to_dict() == cfg.to_dict()
    model, _ = build_model(cfg, n_classes=41)  # the model it names can be built
    assert model.param_count() == sum(p.numel() for p in model.parameters()) > 0
    assert math.isfinite(cfg.optim.lr)
