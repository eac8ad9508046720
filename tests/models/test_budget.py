"""Equal-parameter sizing, checked against closed-form counts and a brute-force scan."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablation.errors import ConfigError
from ablation.models import count_params, create_model, solve_for_budget

torch.set_num_threads(1)
BUDGETS = (50_000, 200_000, 1_000_000, 4_000_000)


def mlp_count(w, depth: int, n_concat: int = 1, batchnorm: bool = False, classes: int = 41):
    """Linear 39n -> w, (depth - 1) x Linear w -> w, Linear w -> classes, BN's gamma and beta."""
    w = np.asarray(w, dtype=np.int64)
    return (
        (39 * n_concat + 1) * w + (depth - 1) * (w * w + w) + (2 * w * depth if batchnorm else 0)
        + w * classes + classes
    )


def rnn_count(h, layers: int, cell: str, bi: bool, in_dim: int = 39, classes: int = 41):
    h = np.asarray(h, dtype=np.int64)
    gates, dirs = {"lstm": 4, "gru": 3}[cell], 2 if bi else 1
    total = 0
    for layer in range(layers):
        d = in_dim if layer == 0 else h * dirs
        total = total + dirs * gates * (d * h + h * h + 2 * h)
    return total + dirs * h * classes + classes


def brute_force(counts: np.ndarray, budget: int) -> tuple[int, bool]:
    """(best size, whether it lands within 1%), sizes starting at 1."""
    err = np.abs(counts - budget)
    best = int(np.argmin(err))
    return best + 1, bool(err[best] <= 0.01 * budget)


def test_course_example_deep_narrow_vs_wide_shallow():
    six = create_model("mlp", depth=6, width=1024)
    assert six.param_count() == int(mlp_count(1024, 6)) == 5_330_985
    kwargs, count = solve_for_budget("mlp", six.param_count(), depth=2)
    assert kwargs == {"depth": 2, "width": 2268}
    assert count == int(mlp_count(2268, 2)) == 5_329_841
    # Three hidden layers is where the course's "about 1700" sits.
    kwargs, count = solve_for_budget("mlp", six.param_count(), depth=3)
    assert (kwargs["width"], count) == (1612, 5_330_925)
    # With 11-frame windows (429 inputs) the first layer grows and the wide width shrinks.
    budget = count_params("mlp", n_concat=11, depth=6, width=1024)
    assert budget == 5_730_345
    assert solve_for_budget("mlp", budget, n_concat=11, depth=2) == ({"depth": 2, "width": 2169}, 5_728_370)


def check_solver(name: str, counts: np.ndarray, budget: int, size_field: str, **kwargs) -> bool:
    """The solver returns the brute-force best size when it lands, and refuses
    exactly when no size does. Returns whether it landed."""
    best, lands = brute_force(counts, budget)
    if not lands:
        with pytest.raises(ConfigError, match=f"^No {size_field} puts"):
            solve_for_budget(name, budget, **kwargs)
        return False
    solved, count = solve_for_budget(name, budget, **kwargs)
    assert solved == {**kwargs, size_field: best}
    assert count == counts[best - 1] and abs(count - budget) <= 0.01 * budget
    return True


@pytest.mark.parametrize("batchnorm", [False, True])
def test_mlp_solver_is_the_best_width_for_depths_1_to_12(batchnorm):
    widths = np.arange(1, 60_000)
    missed = [
        (depth, budget)
        for depth in range(1, 13)
        for budget in BUDGETS
        if not check_solver(
            "mlp", mlp_count(widths, depth, batchnorm=batchnorm), budget, "width",
            depth=depth, batchnorm=batchnorm,
        )
    ]
    # At 50k, consecutive widths of a deep, narrow net (width about 63-78) differ
    # by more than 2% of the budget: no uniform width lands within 1% there.
    assert missed == ([] if batchnorm else [(8, 50_000), (12, 50_000)])


def test_rnn_solver_is_the_best_hidden_size():
    sizes = np.arange(1, 5_000)
    missed = []
    for cell in ("lstm", "gru"):
        for bi in (False, True):
            for layers in (1, 2, 4, 7):
                for budget in BUDGETS:
                    counts = rnn_count(sizes, layers, cell, bi)
                    kwargs = {"cell": cell, "bidirectional": bi, "layers": layers, "mode": "sequence"}
                    if not check_solver("rnn", counts, budget, "hidden", **kwargs):
                        missed.append((cell, bi, layers, budget))
    # A hidden unit adds about 2 * gates * layers * dirs * hidden parameters, so
    # deep or bidirectional nets need large budgets before 1% is reachable.
    assert len(missed) == 14
    assert [m for m in missed if m[3] > 200_000] == [("lstm", True, 7, 1_000_000)]


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("mlp", {"depth": 3, "width": 37, "batchnorm": True, "conv_channels": 5, "conv_kernel": 3}),
        ("rnn", {"layers": 2, "hidden": 11, "conv_channels": 3, "input_norm": True, "mode": "window"}),
    ],
)
def test_meta_count_equals_the_allocated_model(name, kwargs):
    assert count_params(name, n_concat=5, **kwargs) == create_model(name, n_concat=5, **kwargs).param_count()


def test_solving_draws_no_random_numbers():
    torch.manual_seed(3)
    expected = create_model("mlp", depth=2, width=64).blocks[0][0].weight.clone()
    torch.manual_seed(3)
    kwargs, _ = solve_for_budget("mlp", 200_000, depth=2)
    kwargs["width"] = 64
    torch.testing.assert_close(create_model("mlp", **kwargs).blocks[0][0].weight, expected)


def test_given_size_is_replaced_and_other_kwargs_kept():
    kwargs, count = solve_for_budget("mlp", 200_000, depth=3, width=5, dropout=0.5, n_concat=3)
    assert kwargs == {"depth": 3, "width": kwargs["width"], "dropout": 0.5} and kwargs["width"] != 5
    assert count == int(mlp_count(kwargs["width"], 3, n_concat=3))


def test_budget_below_the_smallest_model():
    smallest = int(mlp_count(1, 12))  # width 1: 39 + 1 + 11 * 2 + 41 + 41 = 144
    assert smallest == 144
    with pytest.raises(ConfigError) as err:
        solve_for_budget("mlp", 100, depth=12)
    assert str(err.value) == (
        "The parameter budget 100 is too small for model 'mlp' with depth=12: its smallest size "
        "(width=1) has 144 parameters, so the smallest feasible budget is 143; "
        "raise the budget or lower model.depth."
    )


def test_gap_error_names_the_nearest_feasible_budgets():
    with pytest.raises(ConfigError) as err:
        solve_for_budget("mlp", 50_000, depth=12)
    assert str(err.value) == (
        "No width puts model 'mlp' with depth=12 within 1% of the parameter budget 50,000: "
        "width=63 gives 49,496 and width=64 gives 50,985, so the nearest feasible budgets are "
        "49,995 and 50,481; use one of those or widen the tolerance."
    )
    # Both named budgets are indeed feasible.
    assert solve_for_budget("mlp", 49_995, depth=12)[0]["width"] == 63
    assert solve_for_budget("mlp", 50_481, depth=12)[0]["width"] == 64
    # A wider tolerance lands.
    assert solve_for_budget("mlp", 50_000, depth=12, tolerance=0.02)[0]["width"] == 63


@pytest.mark.parametrize(
    "budget,tolerance,message",
    [
        (0, 0.01, "The 'model.param_budget' parameter must be an int in the range [1, inf). Got 0 instead."),
        (1.5e6, 0.01, "The 'model.param_budget' parameter must be an int in the range [1, inf). Got 1500000.0 instead."),
        (10_000, 0.0, "The 'tolerance' parameter must be a float in the range (0, 1). Got 0.0 instead."),
    ],
)
def test_bad_budget_arguments(budget, tolerance, message):
    with pytest.raises(ConfigError) as err:
        solve_for_budget("mlp", budget, tolerance=tolerance)
    assert str(err.value) == message


def test_bad_model_kwargs_surface_while_solving():
    with pytest.raises(ConfigError, match=r"^The 'model.depth' parameter must be an int in the range \[1, 64\]\. Got 0"):
        solve_for_budget("mlp", 100_000, depth=0)
    with pytest.raises(ConfigError, match="did you mean 'rnn'"):
        solve_for_budget("rnm", 100_000)
