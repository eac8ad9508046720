"""Adaptive seeds with a cell that failed for good: the seed policy, ``status``
and the report count the same pairs, and the arm still gets its next seed."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from ablation.cli import main

ADAPTIVE = """
question = "Does depth help?"
base = "mlp_strong"
baseline = { "model.depth" = 1 }
seeds = { min = 2, max = 4 }
[factors]
"model.depth" = [1, 2]
[set]
"data.source" = "synthphone:tiny"
"model.width" = 32
"""
VALUES = {("depth=1", 1): 0.50, ("depth=2", 0): 0.52, ("depth=2", 1): 0.53}  # baseline seed 0 fails


def test_paired_skips_a_missing_seed_instead_of_stopping_at_it():
    from ablation.decision import paired

    d = paired(["depth=1", "depth=2"], "depth=1", [0, 1, 2], VALUES)
    assert list(d) == ["depth=2"] and d["depth=2"] == pytest.approx([0.03])


def test_a_failed_baseline_cell_costs_one_pair_and_the_arm_still_grows(home, capsys):
    from optuna.trial import TrialState

    from ablation.report.analysis import paired_diffs
    from ablation.report.load import StudyInfo, _wanted_only
    from ablation.study import engine, load_study, seeds

    (home / "studies" / "ad.toml").write_text(ADAPTIVE)
    study = load_study("ad")
    session = engine.prepare_study(study, engine.open_storage(None), None)
    assert sorted((study.cells[i].arm.label, study.cells[i].seed) for i in seeds.wanted(study, session.opt)) == [
        ("depth=1", 0), ("depth=1", 1), ("depth=2", 0), ("depth=2", 1)]
    while (job := study.kind.next_job(session)) is not None:  # the first look, told by hand
        key = (job.cell.arm.label, job.cell.seed)
        if key in VALUES:
            job.opt.tell(job.trial, VALUES[key])
        else:
            session.storage.set_trial_user_attr(job.trial._trial_id, "error", "boom: the cell's own error")
            job.opt.tell(job.trial, state=TrialState.FAIL)

    # the seed policy: one pair is in, the failed one is settled, so both arms want seed 2
    wanted = {(study.cells[i].arm.label, study.cells[i].seed) for i in seeds.wanted(study, session.opt)}
    assert wanted == {(a, s) for a in ("depth=1", "depth=2") for s in (0, 1, 2)}
    assert study.kind.requeue(session, retry_failed=False) == 2  # seed 2 of each arm; the failed cell stays failed
    # status counts the same pairs
    capsys.readouterr()
    assert main(["status", "ad"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("depth=2 ") and "undecided" in line)
    arm, decision, pairs, diff = re.split(r"\s{2,}", row.strip())[:4]
    assert (arm, decision, pairs) == ("depth=2", "undecided", "1") and float(diff) == pytest.approx(0.03)
    assert "failed: depth=1 seed=0: boom: the cell's own error" in out
    # the report, from the same values and the same failed cell, pairs and plans alike
    cells = pd.DataFrame([(a, s, v) for (a, s), v in VALUES.items()], columns=["arm", "seed", "metrics.val.acc"])
    diffs = paired_diffs(cells, ["depth=1", "depth=2"], "depth=1", "val.acc", study.seeds)
    assert diffs["depth=2"] == pytest.approx([0.03])
    info = StudyInfo(arms=["depth=1", "depth=2"], baseline="depth=1", baseline_arm="depth=1", seeds=study.seeds,
                     metric="val.acc", seed_design={"min": 2, "max": 4}, min_effect=study.min_effect)
    missing = pd.DataFrame([("depth=1", 0, "failed: boom")], columns=["arm", "seed", "reason"])
    still, expected = _wanted_only(info, cells, missing)
    assert expected == len(wanted) == 6 and list(still["reason"]) == ["failed: boom"]


# the study above, one epoch a cell, at most three seeds
GROWS = ADAPTIVE.replace("max = 4", "max = 3") + '"train.epochs" = 1\n'


def test_the_progress_bar_counts_the_cells_a_look_adds(home, capsys):
    """Two seeds leave the arm undecided, so the look wants a third pair: the bar starts at the 4
    cells wanted then and ends at the 6 that ran, not past its total."""
    from ablation.study import engine, load_study

    (home / "studies" / "grows.toml").write_text(GROWS)
    assert main(["run", "grows", "--jobs", "1", "--no-report"]) == 0
    bars = re.findall(r"(\d+)/(\d+) \[", capsys.readouterr().err)
    assert bars[0] == ("0", "4") and bars[-1] == ("6", "6")
    assert all(int(n) <= int(total) for n, total in bars)
    study = load_study("grows")
    states = engine.states(engine.read_session(study))
    assert len(states) == 6 and all(s.state == "done" for s in states)
