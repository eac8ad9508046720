"""The still-improving diagnostic on fixture histories: a best-last epoch
counts only while the lr there is above 10% of the run's peak; a rise over the
last epochs counts under any schedule; and a best epoch found while the lr
cooled, after a climb at full lr, counts too (annealing cannot hide a climb)."""

from __future__ import annotations

import math

import pandas as pd

from ablation.report.diagnostics import still_improving
from ablation.train import lr_factor

STEPS = 10  # optimizer steps per epoch of the fixture runs
PEAK = 2e-3


def _lrs(schedule: str, epochs: int) -> list[float]:
    """``epoch.lr`` as ``fit`` logs it: the lr after each epoch's last step."""
    return [PEAK * lr_factor(e * STEPS, epochs * STEPS, 0, schedule) for e in range(1, epochs + 1)]


def _history(arm: str, val: list[float], lrs: list[float] | None, seeds=(0, 1, 2)) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for step, v in enumerate(val, start=1):
            rows.append((arm, seed, f"r{arm}{seed}", "epoch.val_acc", step, v))
            if lrs is not None:
                rows.append((arm, seed, f"r{arm}{seed}", "epoch.lr", step, lrs[step - 1]))
    return pd.DataFrame(rows, columns=["arm", "seed", "run_id", "key", "step", "value"])


RISING_THEN_FLAT = [0.50, 0.60, 0.65, 0.68, 0.690, 0.699, 0.6995, 0.700]  # best last, +0.001 over the last 2


def test_constant_lr_best_last_is_flagged():
    d, flags = still_improving(["a"], _history("a", RISING_THEN_FLAT, _lrs("constant", 8)))
    assert flags == {"a": True} and d.flagged
    assert "best epoch is the last at 3/3 seeds, rose" in d.detail and "annealed" not in d.detail


PLATEAU_THEN_COOLED = [0.50, 0.60, 0.65, 0.68, 0.690, 0.691, 0.692, 0.6925, 0.693, 0.6932,
                      0.6934, 0.6936, 0.6938, 0.6940, 0.6941, 0.6942]  # flat at full lr, then a few 0.001


def test_cosine_annealed_best_last_after_a_plateau_at_full_lr_is_not_flagged():
    lrs = _lrs("cosine", 16)
    assert lrs[-2] < 0.1 * max(lrs)  # the fixture is what the rule is about: the last epoch began below 10%
    d, flags = still_improving(["a"], _history("a", PLATEAU_THEN_COOLED, lrs))
    assert flags == {"a": False} and not d.flagged
    assert ("`a`: best epoch is the last at 3/3 seeds, with lr annealed to <10% of its peak there (not counted), "
            "rose > 0.005 over the last 2 epochs at 0/3, best epoch found while the lr cooled after a rise > 0.005 "
            "over the last 2 epochs at full lr at 0/3 (epochs run 16)") == d.detail


def _learning(lrs: list[float], rate: float = 1.0) -> list[float]:
    """A deterministic learner: val = 0.80 - 0.30 exp(-rate x the lr spent so far, in units of the peak lr).
    The same net under a constant lr keeps rising by the same law."""
    spent, out = 0.0, []
    for lr in lrs:
        spent += lr / PEAK
        out.append(0.80 - 0.30 * math.exp(-rate * spent / 4))
    return out


def test_an_annealed_run_that_a_constant_lr_would_have_kept_improving_is_flagged():
    cosine = _lrs("cosine", 8)
    val = _learning(cosine)
    constant = _learning(_lrs("constant", 10))
    # the premise: at a constant lr this net is still rising by more than 0.005 over its epochs 8 to 10,
    # and the cosine run shows none of the rules the annealing relaxed (best-last is annealed, tiny rise)
    assert constant[9] - constant[7] > 0.005
    assert cosine[-2] < 0.1 * max(cosine) and val[-1] - val[-3] < 0.005 and max(val) == val[-1]
    d, flags = still_improving(["a"], _history("a", val, cosine))
    assert flags == {"a": True} and d.flagged
    assert ("rose > 0.005 over the last 2 epochs at 0/3, best epoch found while the lr cooled after a rise > 0.005 "
            "over the last 2 epochs at full lr at 3/3") in d.detail


def test_the_rising_curve_of_an_8_epoch_cosine_cap_is_flagged():
    # the curve the relaxed rule let pass: +0.001 over the last 2 epochs, but +0.04 over epochs 3-5 at full lr
    d, flags = still_improving(["a"], _history("a", RISING_THEN_FLAT, _lrs("cosine", 8)))
    assert flags == {"a": True}
    assert "at full lr at 3/3" in d.detail


def test_a_best_epoch_found_at_full_lr_is_not_the_schedules():
    # early-stopped at full lr (best epoch 4, the lr still above half its peak there): converged
    lrs = _lrs("cosine", 8)[:6]
    val = [0.50, 0.60, 0.65, 0.70, 0.699, 0.698]
    d, flags = still_improving(["a"], _history("a", val, lrs))
    assert flags == {"a": False}


def test_annealed_but_rising_over_the_last_epochs_is_flagged():
    val = [0.50, 0.60, 0.65, 0.68, 0.690, 0.692, 0.696, 0.700]  # +0.008 over the last 2
    d, flags = still_improving(["a"], _history("a", val, _lrs("cosine", 8)))
    assert flags == {"a": True} and d.flagged
    assert "rose > 0.005 over the last 2 epochs at 3/3" in d.detail


def test_a_short_cosine_cap_is_not_annealed_at_its_last_epoch():
    # 4 epochs: the last one began at 15% of the peak (cos^2(3 pi / 8)), above 10%
    val = [0.60, 0.65, 0.668, 0.669]
    d, flags = still_improving(["a"], _history("a", val, _lrs("cosine", 4)))
    assert flags == {"a": True} and "annealed" not in d.detail


def test_runs_without_a_logged_lr_keep_the_best_last_rule():
    d, flags = still_improving(["a"], _history("a", RISING_THEN_FLAT, None))
    assert flags == {"a": True}


def test_a_1_epoch_run_is_still_improving():
    d, flags = still_improving(["a"], _history("a", [0.5], _lrs("cosine", 1)))
    assert flags == {"a": True}


def test_annealed_at_some_seeds_only_counts_the_others():
    lrs = _lrs("cosine", 8)
    h = pd.concat([_history("a", RISING_THEN_FLAT, lrs, seeds=(0, 1)),
                   _history("a", RISING_THEN_FLAT, _lrs("constant", 8), seeds=(2,))])
    d, flags = still_improving(["a", "b"], h)
    assert flags == {"a": True}  # arm b has no history: left out
    assert "best epoch is the last at 3/3 seeds, with lr annealed to <10% of its peak there at 2 of them" in d.detail


PLATEAU_LRS = [0.004] * 5 + [0.002] * 3 + [0.001] * 4  # halved after epochs 6 and 9, each without a new best
CLIMB_STALL_CLIMB = [0.60, 0.65, 0.68, 0.70, 0.72, 0.719, 0.73, 0.74, 0.739, 0.745, 0.744, 0.743]


def test_a_plateau_runs_cut_follows_its_own_stall_and_does_not_flag_it():
    from ablation.report.diagnostics import _climbing_when_cooled

    # the premise: climbing by +0.009 over the last full-lr epochs, then a best found after the lr was cut
    assert _climbing_when_cooled(CLIMB_STALL_CLIMB, PLATEAU_LRS, 0.005, 2)
    hist = _history("a", CLIMB_STALL_CLIMB, PLATEAU_LRS)
    d, flags = still_improving(["a"], hist)  # the same lrs from a clock (not known to be plateau): flagged
    assert flags == {"a": True} and "at full lr at 3/3" in d.detail
    d, flags = still_improving(["a"], hist, stall_cut=frozenset({("a", 0), ("a", 1), ("a", 2)}))
    assert flags == {"a": False} and not d.flagged
    assert "at full lr at 0/3 (not counted for the 3 runs whose lr only their own stalls cut)" in d.detail
    # one run that is not a plateau run still counts
    d, flags = still_improving(["a"], hist, stall_cut=frozenset({("a", 0), ("a", 1)}))
    assert flags == {"a": True} and "at full lr at 1/3" in d.detail


def test_a_plateau_run_that_the_cap_cut_while_rising_is_still_flagged():
    val = CLIMB_STALL_CLIMB[:8]  # best last: the cap ended it, at an lr of half its peak
    d, flags = still_improving(["a"], _history("a", val, PLATEAU_LRS[:8]),
                               stall_cut=frozenset({("a", 0), ("a", 1), ("a", 2)}))
    assert flags == {"a": True} and "best epoch is the last at 3/3 seeds" in d.detail


def test_the_plateau_cells_are_read_from_the_runs_params():
    import pandas as pd

    from ablation.report.diagnostics import stall_cut_runs

    cells = pd.DataFrame({"arm": ["a", "a", "b"], "seed": [0, 1, 0],
                          "params.optim.schedule": ["plateau", "plateau", "cosine"]})
    assert stall_cut_runs(cells) == frozenset({("a", 0), ("a", 1)})
    assert stall_cut_runs(cells.drop(columns=["params.optim.schedule"])) == frozenset()
