"""A study's ``budget_note`` in its report: printed in the still-improving row
and after the verdict's budget sentence when an arm is still improving, and
nowhere when none is."""

from __future__ import annotations

import pytest

from ablation.report import analyse, build_report, load_study
from ablation.report.verdict import _a

from .conftest import Store

NOTE = "the quick scale caps each run at 3 epochs to keep the main command short."
SEEDS = [0, 1, 2]
ARMS = ["w=a", "w=b"]
VAL = {"w=a": [0.60, 0.61, 0.62], "w=b": [0.64, 0.66, 0.65]}


def _study(s: Store, name: str, history) -> None:
    exp = s.experiment(name)
    parent = s.parent(exp, name, ARMS, SEEDS, {a: {"model.width": a[2:]} for a in ARMS}, ["model.width"],
                      budget_note=NOTE)
    for arm in ARMS:
        for i, seed in enumerate(SEEDS):
            v = VAL[arm][i]
            s.cell(exp, parent, name, arm, seed, metrics={"val.acc": v, "n_params": 5000, "epochs_run": 3},
                   params={"train.epochs": 3}, history=history(v))


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    root = tmp_path_factory.mktemp("notes")
    s = Store(root)
    # rising by 0.02 an epoch at a constant lr: still improving at the cap
    _study(s, "capped", lambda v: [{"epoch.val_acc": v - 0.02 * (3 - e), "epoch.lr": 1e-3} for e in (1, 2, 3)])
    # flat at the end, the lr annealed to 0: not still improving
    _study(s, "settled", lambda v: [{"epoch.val_acc": x, "epoch.lr": lr}
                                    for x, lr in ((v - 0.003, 1e-3), (v - 0.0005, 5e-5), (v, 0.0))])
    return s, root


def test_a_flagged_budget_prints_the_studys_note(notes):
    s, root = notes
    runs = load_study("capped", s.uri)
    assert runs.info.budget_note == NOTE
    a = analyse(runs)
    row = next(c for c in a.fairness if c.name == "still improving")
    assert row.flagged and row.detail.endswith(f". Why this budget: {NOTE}")
    assert a.verdict.sentence.endswith(f"This holds at a 3-epoch budget: some arms were still improving "
                                       f"(see Fairness). Why: {NOTE}")
    md = build_report("capped", s.uri, root / "reports").read_text()
    assert f"(see Fairness). Why: {NOTE}**" in md and f"Why this budget: {NOTE} |" in md


def test_an_unflagged_budget_leaves_the_note_out(notes):
    s, root = notes
    a = analyse(load_study("settled", s.uri))
    row = next(c for c in a.fairness if c.name == "still improving")
    assert not row.flagged and NOTE not in row.detail
    assert "budget" not in a.verdict.sentence and NOTE not in a.verdict.sentence
    md = build_report("settled", s.uri, root / "reports").read_text()
    assert NOTE not in md


@pytest.mark.parametrize("epochs, article", [(1, "a"), (4, "a"), (8, "an"), (11, "an"), (18, "an"), (20, "a"),
                                             (80, "an"), (110, "a"), (800, "an")])
def test_the_budget_sentence_reads_aloud_with_the_right_article(epochs, article):
    assert _a(epochs) == article
