"""The budget check's pure parts on hand-made runs: which runs a longer cap
needs trained again (reached the cap, ended by patience, a schedule that spans
the cap), and the decisions recomputed with their values at the longer cap."""

from __future__ import annotations

import pandas as pd
import pytest

from ablation.report.budget import NOT_RUN, check, needs_retraining, result_line
from ablation.report.load import StudyInfo


@pytest.mark.parametrize("schedule, epochs_run, best_epoch, retrain, words", [
    ("constant", 8, 8, True, "the cap ended it at epoch 8 of 8"),  # best at the cap: cut mid-climb
    ("constant", 8, 7, True, "the cap ended it"),  # one epoch without a gain of patience 2: the cap ended it
    ("constant", 5, 3, False, "patience ended it at epoch 5"),  # stopped before the cap
    ("constant", 8, 6, False, "patience ended it at epoch 8"),  # patience and the cap met: the same at any cap
    ("plateau", 6, 4, False, "under a plateau schedule"),
    ("cosine", 5, 3, True, "cosine schedule spans the cap"),  # its lr at every step depended on the cap
    ("cosine", 8, 8, True, "cosine schedule spans the cap"),
])
def test_which_runs_a_longer_cap_needs_trained_again(schedule, epochs_run, best_epoch, retrain, words):
    got, why = needs_retraining(cap=8, patience=2, schedule=schedule, epochs_run=epochs_run, best_epoch=best_epoch)
    assert got is retrain and words in why


def _info() -> StudyInfo:
    return StudyInfo(arms=["a", "b", "c"], baseline="a", baseline_arm="a", seeds=[0, 1, 2, 3], metric="val.acc",
                     min_effect=0.005, name="s", budget_cap=8).normalised()


VAL = {"a": [0.700, 0.702, 0.701, 0.699], "b": [0.710, 0.712, 0.709, 0.711], "c": [0.703, 0.701, 0.702, 0.704]}


def _cells(capped: set[tuple[str, int]]) -> pd.DataFrame:
    """Every arm at every seed: the runs in ``capped`` reached the cap of 8, the rest stopped at 5 (best 3)."""
    rows = []
    for arm, values in VAL.items():
        for seed, v in enumerate(values):
            hit = (arm, seed) in capped
            rows.append({"arm": arm, "seed": seed, "run_id": f"{arm}{seed}", "metrics.val.acc": v,
                         "metrics.epochs_run": 8.0 if hit else 5.0, "metrics.best_epoch": 8.0 if hit else 3.0,
                         "params.train.epochs": "8", "params.train.patience": "2", "params.optim.schedule": "constant"})
    return pd.DataFrame(rows)


def _budget(values: dict[str, float], factor: float = 2.0) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": f"x{rid}", "of_run": rid, "factor": factor, "status": "FINISHED",
                          "metrics.val.acc": v} for rid, v in values.items()])


def test_the_baseline_climbing_past_the_best_arm_changes_the_decisions():
    """The baseline's runs reached the cap; at twice it they gain 0.015, past `b`: every decision
    is recomputed with the baseline's new values, by the report's decision code."""
    from ablation.report.analysis import decide

    capped = {("a", s) for s in range(4)}
    cells = _cells(capped)
    longer = {f"a{s}": v + 0.015 for s, v in enumerate(VAL["a"])}
    b = check(_info(), cells, _budget(longer), best="b")
    assert b.arms == ["a", "b"] and [n.retrain for n in b.needs] == [True] * 4 + [False] * 4
    after = cells.copy()
    after.loc[after["arm"] == "a", "metrics.val.acc"] += 0.015
    now, _ = decide(_info(), after)
    before, _ = decide(_info(), cells)
    assert before["b"].decision == "better" and now["b"].decision != "better"  # the premise of this case
    assert b.status == "changed"
    assert b.changes == [(arm, before[arm].decision, now[arm].decision) for arm in ("b", "c")
                         if before[arm].decision != now[arm].decision]
    assert b.at_cap["a"] == pytest.approx(0.7005) and b.longer["a"] == pytest.approx(0.7155)
    assert b.longer["b"] == b.at_cap["b"] == pytest.approx(0.7105)
    assert result_line(b, "s").startswith("Decisions change at twice the cap: `b` better -> ")


def test_a_check_missing_a_run_is_not_run_and_names_the_command():
    cells = _cells({("a", 0), ("b", 1)})
    b = check(_info(), cells, _budget({"a0": 0.71}), best="b")  # b1 has no budget run yet
    assert b.status == NOT_RUN and b.missing == 1 and b.factor == 2.0
    assert result_line(b, "s", "python -m ablation budget s --scale full") == (
        "Not run yet: 1 of 8 runs of `a`, `b` reached the cap (or train under a schedule that spans it) and need "
        "training at twice the cap; run `python -m ablation budget s --scale full`.")


def test_the_largest_fully_run_factor_is_the_one_reported():
    cells = _cells({("a", 0)})
    runs = pd.concat([_budget({"a0": 0.71}, 2.0), _budget({"a0": 0.72}, 3.0)])
    b = check(_info(), cells, runs, best="b")
    assert b.factor == 3.0 and b.values == {"a0": 0.72}
    assert check(_info(), cells, runs, best="b", factor=2.0).values == {"a0": 0.71}


def test_when_patience_ended_every_run_nothing_is_trained_and_the_decisions_stand():
    b = check(_info(), _cells(set()), pd.DataFrame(), best="b")
    assert b.status == "unchanged" and not b.retrain and b.longer == b.at_cap
    assert result_line(b, "s").startswith("Decisions unchanged at any longer cap")
