"""``budget_note`` in a study file: in the hash only when set, refused in one
line (exit 2, nothing created) when it is not a non-empty string."""

from __future__ import annotations

import pytest

from ablation.cli import main

STUDY = "question = 'x'\nbase = 'mlp_strong'\nseeds = [0, 1]\n[factors]\n'model.depth' = [1, 2]\n"


def test_the_note_enters_the_hash_only_when_set(home):
    from ablation.study import load_study

    (home / "studies" / "a.toml").write_text(STUDY)
    (home / "studies" / "b.toml").write_text("budget_note = 'a time budget'\n" + STUDY)
    (home / "studies" / "c.toml").write_text("budget_note = 'another reason'\n" + STUDY)
    plain, noted, other = load_study("a"), load_study("b"), load_study("c")
    assert noted.spec.budget_note == "a time budget" and plain.spec.budget_note is None
    assert len({plain.hash, noted.hash, other.hash}) == 3


@pytest.mark.parametrize("value, expected", [
    ("5", "'budget_note'"), ("''", "'budget_note'"), ("'   '", "budget_note is blank"), ("['a']", "'budget_note'"),
])
def test_a_bad_note_gets_one_line_exit_2_and_nothing_is_created(home, capsys, value, expected):
    (home / "studies" / "bad.toml").write_text(f"budget_note = {value}\n" + STUDY)
    assert main(["run", "bad", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "bad.toml" in err, err
    assert not (home / "mlruns").exists() or not any((home / "mlruns").iterdir())
