"""Walks the registry: every family's declaration is the one source of its
config section, its validation messages and its builder's arguments."""

from __future__ import annotations

import inspect

import pytest

from ablation import config
from ablation.errors import ConfigError
from ablation.models import create_model, family, list_models
from ablation.models.fields import Boolean, Interval, Options
from ablation.models.registry import DATA_ARGS

FAMILY_PARAMS = [(name, p) for name in list_models() for p in family(name).params]


@pytest.mark.parametrize("name", list_models())
def test_builder_takes_exactly_the_data_args_and_the_declared_fields(name):
    fam = family(name)
    sig = inspect.signature(fam.builder)
    args = [k for k in sig.parameters if k != "self"]
    assert sorted(args) == sorted([*DATA_ARGS, *fam.fields])
    # the builder repeats no defaults: the declaration holds them
    assert all(sig.parameters[k].default is inspect.Parameter.empty for k in args)


@pytest.mark.parametrize("name", list_models())
def test_config_section_is_generated_from_the_declaration(name):
    fam = family(name)
    section = config.section_class(name)
    assert list(section.model_fields) == ["name", "param_budget", *fam.fields]
    cfg = config.build({"model": {"name": name}})
    assert {k: getattr(cfg.model, k) for k in fam.fields} == fam.defaults()
    assert {k: v for k, v in cfg.flat().items() if k.startswith("model.")} == {
        "model.name": name, "model.param_budget": 0, **{f"model.{k}": v for k, v in fam.defaults().items()}}


@pytest.mark.parametrize("name", list_models())
def test_defaults_follow_their_rules_and_build(name):
    fam = family(name)
    for p in fam.params:
        assert p.rule.contains(p.default), (name, p.name)
    model = create_model(name, n_concat=3)
    assert model.param_count() > 0
    if fam.size_field is not None:
        assert isinstance(fam.fields[fam.size_field].rule, Interval) and fam.fields[fam.size_field].rule.type is int


@pytest.mark.parametrize("name,param", FAMILY_PARAMS, ids=lambda x: getattr(x, "name", x))
def test_a_value_the_rule_refuses_is_refused_alike_by_config_and_builder(name, param):
    """The invalid value is derived from the rule; config and builder give the same line."""
    bad = param.rule.invalid()
    assert not param.rule.contains(bad)
    expected = f"The 'model.{param.name}' parameter must be {param.rule.describe()}. Got {bad!r} instead."
    with pytest.raises(ConfigError) as from_config:
        config.build({"model": {"name": name, param.name: bad}})
    with pytest.raises(ConfigError) as from_builder:
        create_model(name, **{param.name: bad})
    assert str(from_config.value) == expected
    assert str(from_builder.value).startswith(expected[:-1])  # the builder may add a did-you-mean


def test_rules_render_their_messages():
    assert Interval(int, 1, 64).describe() == "an int in the range [1, 64]"
    assert Interval(float, 0.0, 1.0, closed="left").describe() == "a float in the range [0, 1)"
    assert Interval(int, 1, 31, odd=True).describe() == "an odd int in the range [1, 31]"
    assert Interval(int, 0).describe() == "an int in the range [0, inf)"
    assert Options(("a", "b")).describe() == "one of 'a', 'b'"
    assert Boolean().describe() == "a bool (true or false)"
    odd = Interval(int, 1, 31, odd=True)
    assert [v for v in range(0, 34) if odd.contains(v)] == list(range(1, 32, 2))
    assert not Interval(int, 1, 64).contains(True) and not Interval(int, 1, 64).contains(2.0)


def test_a_field_of_another_family_is_refused_with_a_suggestion_from_its_own():
    with pytest.raises(ConfigError) as err:
        config.build(config.apply_overrides({"model": {"name": "mlp"}}, ["model.hidden=64"]))
    msg = str(err.value)
    assert msg.startswith("unknown key 'model.hidden' for model 'mlp' (--set)")
    assert "model 'mlp' has: name, param_budget, depth, width, activation" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"\(did you mean 'model.layers'\?\)"):
        config.apply_overrides({"model": {"name": "rnn"}}, ["model.layer=3"])


def test_switching_family_starts_from_the_new_familys_defaults():
    base = {"model": {"name": "mlp", "depth": 3, "batchnorm": True, "param_budget": 1000}}
    cfg = config.build(config.apply_overrides(base, {"model.name": "rnn", "model.mode": "window"}))
    assert cfg.model.name == "rnn" and cfg.model.mode == "window" and cfg.model.param_budget == 1000
    assert cfg.model.hidden == family("rnn").defaults()["hidden"]
    assert not any(k in cfg.flat() for k in ("model.depth", "model.batchnorm", "model.width"))
