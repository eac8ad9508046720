"""Kinds of study: each registered kind is selected by its key, owns its
section, and checks its settings against the model family its cells use."""

from __future__ import annotations

import pytest

from ablation.cli import main

RNN_TUNED = """
question = "Is a bidirectional LSTM better than a one-way one, each at its own best width?"
base = "lstm_window"
seeds = [0, 1]
protocol = "tuned"
[tuning]
trials = 2
seeds = [7]
[tuning.space]
"model.hidden" = { low = 16, high = 64, int = true }
[factors]
"model.bidirectional" = [true, false]
[set]
"data.source" = "synthphone:tiny"
"""


def test_every_kind_is_registered_and_selected_by_its_own_key():
    from ablation.study.kinds import get_kind, list_kinds

    assert list_kinds() == ["grid", "search", "tuned"]
    assert get_kind("tuned").selector == ("protocol", "tuned") and get_kind("search").selector == ("sampler", "tpe")
    with pytest.raises(Exception, match="unknown kind of study 'tunde'.*did you mean 'tuned'"):
        get_kind("tunde")


def test_the_shipped_studies_load_as_their_kinds():
    from ablation.study import load_study

    assert load_study("deep_vs_shallow").kind.name == "tuned"
    assert load_study("tune").kind.name == "search"
    assert load_study("dropout").kind.name == "grid"


def test_an_rnn_tuned_study_can_tune_the_rnn_s_hidden_width(home):
    """[tuning.space] is checked against the family the cells use (the RNN's ``model.hidden``), not the MLP's."""
    from ablation.study import load_study

    (home / "studies" / "rnn.toml").write_text(RNN_TUNED)
    study = load_study("rnn")
    assert study.kind.name == "tuned" and {c.config.model.name for c in study.cells} == {"rnn"}
    assert list(study.spec.tuning.space) == ["model.hidden"] and len(study.cells) == 4


def test_a_tuned_mlp_study_cannot_tune_an_rnn_field(home, capsys):
    text = RNN_TUNED.replace('base = "lstm_window"', 'base = "mlp_strong"').replace(
        '"model.bidirectional" = [true, false]', '"model.depth" = [1, 2]')
    (home / "studies" / "mlp.toml").write_text(text)
    assert main(["run", "mlp", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown tuning path 'model.hidden'" in err and "[tuning.space]" in err


SEARCH = ("question = 'x'\nbase = 'mlp_strong'\nsampler = 'tpe'\nn_trials = 2\n[search]\n'optim.lr' = {dim}\n"
          "[set]\n'data.source' = 'synthphone:tiny'\n")


@pytest.mark.parametrize("dim, expected", [
    ("{ low = 0.01, high = 0.001 }", "needs low < high, got low = 0.01, high = 0.001"),
    ("{ low = 0.01, high = 0.01 }", "needs low < high"),
    ("{ low = 0.0, high = 0.1, log = true }", "is log-scaled, so low must be > 0, got 0"),
    ("{ low = 0.001 }", "needs low and high (a range) or choices (a list)"),
    ("{ choices = [] }", "choices is empty"),
])
def test_a_bad_search_dimension_is_one_line_and_nothing_is_enqueued(home, capsys, dim, expected):
    (home / "studies" / "s.toml").write_text(SEARCH.format(dim=dim))
    assert main(["run", "s", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'search.optim.lr'" in err and expected in err, err
    assert not (home / "mlruns" / "optuna.db").exists()


def test_a_tuning_space_dimension_has_the_same_rules(home, capsys):
    text = RNN_TUNED.replace('{ low = 16, high = 64, int = true }', '{ low = 64, high = 16, int = true }')
    (home / "studies" / "rnn.toml").write_text(text)
    assert main(["run", "rnn", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'tuning.space.model.hidden'" in err and "needs low < high, got low = 64, high = 16" in err


def test_a_section_of_another_kind_is_refused_with_the_key_that_selects_it(home, capsys):
    text = ("question = 'x'\nbase = 'mlp_strong'\n[factors]\n'model.depth' = [1, 2]\n"
            "[search]\n'optim.lr' = { low = 0.001, high = 0.01 }\n")
    (home / "studies" / "g.toml").write_text(text)
    assert main(["run", "g", "--no-report"]) == 2
    assert 'g.toml: [search] needs sampler = "tpe" (this study is a grid study)' in capsys.readouterr().err


def test_stopping_on_a_search_is_refused_in_one_line(home, capsys):
    (home / "studies" / "s.toml").write_text(SEARCH.format(dim="{ low = 0.001, high = 0.01 }")
                                             + "[stopping]\npatience = 2\n")
    assert main(["run", "s", "--no-report"]) == 2
    assert 's.toml: [stopping] needs protocol = "converged" or "tuned"' in capsys.readouterr().err


def _kinds() -> list[str]:
    from ablation.study.kinds import list_kinds

    return list_kinds()


@pytest.mark.parametrize("name", _kinds())
def test_every_kind_has_a_report_kind_and_owns_no_other_kind_s_section(name):
    """Registering a kind gets it checked: the report can be written for it, and the study-file keys it owns
    are its own and real keys of the study file."""
    from ablation.report.kinds import list_report_kinds
    from ablation.study.kinds import get_kind, list_kinds
    from ablation.study.spec import StudySpec

    kind = get_kind(name)
    assert name in list_report_kinds()
    assert set(kind.section) <= set(StudySpec.model_fields)
    others = {k for n in list_kinds() if n != name for k in get_kind(n).section}
    assert not (set(kind.section) & others)
