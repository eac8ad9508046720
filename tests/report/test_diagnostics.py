"""The still-improving diagnostic on fixture histories: a best-last epoch
counts only while the lr there is above 10% of the run's peak; a rise over the
last epochs counts under any schedule."""

from __future__ import annotations

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


def test_cosine_annealed_best_last_with_a_tiny_gain_is_not_flagged():
    lrs = _lrs("cosine", 8)
    assert lrs[-2] < 0.1 * max(lrs)  # the fixture is what the rule is about: the last epoch began below 10%
    d, flags = still_improving(["a"], _history("a", RISING_THEN_FLAT, lrs))
    assert flags == {"a": False} and not d.flagged
    assert ("`a`: best epoch is the last at 3/3 seeds, with lr annealed to <10% of its peak there (not counted), "
            "rose > 0.005 over the last 2 epochs at 0/3 (epochs run 8)") == d.detail


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
