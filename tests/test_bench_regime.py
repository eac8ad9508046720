"""The regime benchmark: a curve's facts and a study's proposed budget against hand computations, and
one tiny sweep (a 2-arm study on the tiny corpus, 3 epochs) that really trains."""

from __future__ import annotations

import json

import pytest

from ablation.study import load_study
from benchmarks.bench_regime import (arm_facts, cells_per_arm, early_stop, gap_after, load_record, patience_needed,
                                     patience_within, peak, proposal, result_from, sweep)


def _stops_at(values: list[float], patience: int) -> int:
    """The epoch a run stops at under fit's rule (a strict new best resets the count)."""
    best, bad = float("-inf"), 0
    for epoch, v in enumerate(values, start=1):
        if v > best:
            best, bad = v, 0
        else:
            bad += 1
            if bad >= patience:
                return epoch
    return len(values)


def test_peak_is_the_first_of_equal_bests():
    assert peak([0.1, 0.3, 0.3, 0.2]) == 2
    assert peak([0.5]) == 1


def test_patience_needed_is_the_longest_wait_between_new_bests():
    curve = [0.50, 0.60, 0.55, 0.58, 0.62, 0.61, 0.60]  # new bests at epochs 1, 2, 5: waits 1 and 3
    assert patience_needed(curve) == 3
    assert _stops_at(curve, 2) == 4 < peak(curve)  # one epoch less of patience stops before the peak
    assert _stops_at(curve, 3) >= peak(curve) == 5
    assert patience_needed([0.1, 0.2, 0.3, 0.25]) == 1  # every epoch up to the peak a new best
    # a wait after the peak does not count
    assert patience_needed([0.1, 0.2, 0.1, 0.1, 0.1, 0.1]) == 1


def test_gap_after_the_peak():
    train, val = [0.5, 0.6, 0.7, 0.8, 0.9], [0.5, 0.55, 0.56, 0.55, 0.54]
    assert gap_after(train, val, 2, after=3) == pytest.approx(0.9 - 0.54)
    assert gap_after(train, val, 3, after=3) is None  # the run ended sooner


def test_early_stop_replays_fits_rule():
    curve = [0.50, 0.60, 0.55, 0.58, 0.62, 0.61, 0.60]
    assert early_stop(curve, 2) == (4, 2)
    assert early_stop(curve, 3) is None  # the curve ends 2 epochs after its last new best
    assert early_stop(curve + [0.59], 3) == (8, 5)


def test_patience_within_a_tolerance_of_the_peak():
    curve = [0.50, 0.60, 0.598, 0.597, 0.603, 0.60, 0.59, 0.58]  # peak 0.603 at 5, 0.60 at 2
    assert patience_within(curve, 0.005, limit=5) == 1  # stops at 3 with 0.60: within 0.005 of 0.603
    assert patience_within(curve, 0.001, limit=5) == 3  # needs the wait from 2 to 5
    assert patience_within([0.1, 0.2, 0.3], 0.001, limit=5) is None  # still climbing: nothing stops it


def test_arm_facts_of_a_stored_run():
    rec = {"metric": [0.5, 0.6, 0.58, 0.57], "val_acc": [0.5, 0.6, 0.58, 0.57], "train_acc": [0.4, 0.6, 0.7, 0.75],
           "cpu_s": [2.0, 4.0, 6.0, 8.0], "wall_s": [3.0, 6.0, 9.0, 12.0], "cap": 4, "stop_patience": 2}
    f = arm_facts(rec, tol=0.005)
    assert (f["peak_epoch"], f["peak"], f["patience_needed"], f["epochs_run"]) == (2, 0.6, 1, 4)
    assert (f["first_within"], f["patience_within"]) == (2, 1)
    assert f["gap_after"] is None and f["cpu_s_per_epoch"] == 2.0 and f["wall_s_per_epoch"] == 3.0
    assert arm_facts(dict(rec, cpu_s=[5.0, 6.0, 8.0, 9.0]), 0.005)["cpu_s_per_epoch"] == 1.0  # median; set-up out
    assert not f["capped"]  # 2 epochs without a new best after the peak: the stop ended it, at the cap
    climbing = dict(rec, metric=[0.5, 0.6, 0.61, 0.62])
    assert arm_facts(climbing, 0.005)["capped"] and arm_facts(climbing, 0.005)["first_within"] == 4


def _facts(arm: str, curve: list[float], cpu: float, within: int | None) -> dict:
    return {"arm": arm, "curve": curve, "cpu_s_per_epoch": cpu, "patience_within": within, "capped": False}


def test_proposal_patience_cap_and_minutes():
    a0 = [0.5, 0.6, 0.7, 0.69, 0.695, 0.69, 0.68, 0.67]  # within 0.005 at patience 1: stops at 4
    a1 = [0.5, 0.6, 0.65, 0.64, 0.66, 0.70, 0.69, 0.68, 0.67, 0.66]  # best 0.70 at 6 after a wait of 3
    b0 = [0.5, 0.6, 0.59, 0.58, 0.57]
    facts = [_facts("a", a0, 2.0, 1), _facts("a", a1, 4.0, 3), _facts("b", b0, 1.0, 1)]
    p = proposal(facts, cells_per_arm=3, min_patience=2, workers=2)
    # patience 3: a0 stops at 6 (best 3), a1 at 9 (best 6), b0 at 5 (best 2); cap = the latest stop
    assert (p["patience"], p["cap"], p["capped"]) == (3, 9, False)
    # arm a: 3 runs x 9 epochs x 3.0 s (mean of its seeds); arm b: 3 runs x 5 epochs x 1.0 s; over 2 workers
    assert p["minutes"] == pytest.approx((3 * 9 * 3.0 + 3 * 5 * 1.0) / 2 / 60)
    assert proposal(facts[2:], cells_per_arm=1, min_patience=2)["patience"] == 2  # never below the floor
    climbing = proposal([_facts("c", [0.1, 0.2, 0.3], 1.0, None)], cells_per_arm=1)
    assert climbing["capped"] and climbing["cap"] == 3  # a lower bound: the whole curve


def test_cells_per_arm_counts_tuning_trials_and_searches():
    assert cells_per_arm(load_study("dropout")) == 3
    assert cells_per_arm(load_study("deep_vs_shallow")) == 3 + 2  # 3 confirmation seeds (adaptive: the minimum) + 2 tuning trials
    assert cells_per_arm(load_study("tune")) == 20


def test_a_tiny_sweep_trains_at_a_constant_lr_and_resumes(tmp_path):
    left = sweep(["batchnorm"], [0], cap=3, stop=1, minutes=10, data="synthphone:tiny-v2", folder=tmp_path,
                 log=lambda _: None)
    assert left == []
    rec = load_record("batchnorm", tmp_path)
    assert sorted(rec["arms"]) == ["batchnorm=false", "batchnorm=true"]
    assert (rec["cells_per_arm"], rec["quick_cap"], rec["schedule"]) == (3, 60, "plateau")  # the study's own
    for runs in rec["arms"].values():
        run = runs["0"]
        n = len(run["val_acc"])
        assert 2 <= n <= 3 and len(run["train_acc"]) == len(run["cpu_s"]) == n
        assert run["lr"] == [run["lr0"]] * n  # constant: never annealed
        assert run["metric"] == run["val_acc"] and run["source"] == "synthphone:tiny-v2"
        assert all(b > a for a, b in zip(run["wall_s"], run["wall_s"][1:]))
    stamp = (tmp_path / "batchnorm.json").read_text()
    sweep(["batchnorm"], [0], cap=3, stop=1, minutes=10, data="synthphone:tiny-v2", folder=tmp_path,
          log=lambda _: None)
    assert json.loads((tmp_path / "batchnorm.json").read_text()) == json.loads(stamp)  # nothing re-measured
    res = result_from([rec])
    assert res.goals and res.goals[0].text.startswith("`batchnorm`: every measured arm peaks")
    assert res.get("batchnorm=true (seed 0)", "epochs run").median == len(rec["arms"]["batchnorm=true"]["0"]["val_acc"])
    assert any("proposed quick budget of `batchnorm`: patience 2" in n for n in res.notes)


def test_saving_keeps_the_runs_another_sweep_wrote(tmp_path):
    from benchmarks.bench_regime import save_record

    save_record({"study": "s", "arms": {"a": {"0": {"x": 1}}}}, tmp_path)
    save_record({"study": "s", "arms": {"b": {"0": {"x": 2}}, "a": {"1": {"x": 3}}}}, tmp_path)
    assert load_record("s", tmp_path)["arms"] == {"a": {"0": {"x": 1}, "1": {"x": 3}}, "b": {"0": {"x": 2}}}


def test_measuring_config_and_record_names():
    from benchmarks.bench_regime import arm_configs, config_key, measuring_config, record_name

    _, arms = arm_configs("batchnorm", "synthphone:tiny-v2")
    cfg = dict(arms)["batchnorm=true"]
    m = measuring_config(cfg, 1, 30, 4, "val.macro_f1", "plateau", ["model.dropout=0.5"])
    assert (m.optim.schedule, m.train.epochs, m.train.patience, m.train.seed) == ("plateau", 30, 4, 1)
    assert (m.train.early_stop_metric, m.model.dropout, m.model.batchnorm, m.train.threads) == ("val.macro_f1", 0.5,
                                                                                                 True, 1)
    plain = measuring_config(cfg, 1, 30, 4, "val.macro_f1", "plateau")
    assert plain.model.dropout == cfg.model.dropout and config_key(plain) != config_key(m)
    assert [record_name("s"), record_name("s", "plateau"), record_name("s", "constant", "v")] == ["s", "s.plateau",
                                                                                                 "s.v"]
