"""Equal-parameter sizing: solve a model's size so its parameter count meets a budget.

Counts are exact: the model is built on the ``meta`` device (shapes only, no
memory, no random numbers drawn), so every parameter counts, BatchNorm's and
the front-end's included. The count grows with the size field, so an
exponential search followed by bisection finds the integer size nearest the
budget.
"""

from __future__ import annotations

import math
import numbers

import torch

from ablation.errors import ConfigError
from ablation.models.registry import check_int, create_model, family, model_fields, sizing_fields

MAX_SIZE = 2**24  # far beyond any trainable model; bounds the search


def count_params(
    name: str, *, n_concat: int = 1, frame_dim: int = 39, n_classes: int = 41, **kwargs
) -> int:
    """Exact parameter count of ``create_model(name, ...)`` without allocating it."""
    with torch.device("meta"):
        model = create_model(name, n_concat=n_concat, frame_dim=frame_dim, n_classes=n_classes, **kwargs)
    return model.param_count()


def solve_for_budget(
    name: str,
    budget: int,
    *,
    n_concat: int = 1,
    frame_dim: int = 39,
    n_classes: int = 41,
    tolerance: float = 0.01,
    **kwargs,
) -> tuple[dict, int]:
    """``(kwargs with the size field solved, exact count)``, the count within
    ``tolerance * budget`` of the budget. A size given in ``kwargs`` is replaced."""
    size_field, depth_field = sizing_fields(name)
    fam = family(name)
    mine = f"{fam.origin}: " if fam.user else ""  # a user's family: name the file to change
    if size_field is None:
        raise ConfigError(f"{mine}Model '{name}' declares no size field, so it cannot be sized to a budget.")
    budget = check_int("model.param_budget", budget, low=1)
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not 0 < tolerance < 1:
        raise ConfigError(
            f"The 'tolerance' parameter must be a float in the range (0, 1). Got {tolerance!r} instead."
        )

    cache: dict[int, int] = {}

    def count(size: int) -> int:
        if size not in cache:
            cache[size] = count_params(
                name, n_concat=n_concat, frame_dim=frame_dim, n_classes=n_classes,
                **{**kwargs, size_field: size},
            )
        return cache[size]

    # Smallest size whose count reaches the budget: double to bracket, then bisect.
    lo, hi = 0, 1  # invariant: count(lo) < budget (size 0 stands for "below 1")
    while hi < MAX_SIZE and count(hi) < budget:
        lo, hi = hi, min(2 * hi, MAX_SIZE)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < budget else (lo, mid)
    size = min((s for s in (lo, hi) if s >= 1), key=lambda s: abs(count(s) - budget))
    if abs(count(size) - budget) <= tolerance * budget:
        return {**kwargs, size_field: size}, count(size)

    depth = kwargs.get(depth_field, model_fields(name)[depth_field].default) if depth_field else None
    where = f"model '{name}'" + (f" with {depth_field}={depth}" if depth_field else "")
    pct = f"{tolerance:.0%}" if tolerance >= 0.01 else f"{tolerance:g}"
    if budget < count(1):
        smallest = math.ceil(count(1) / (1 + tolerance))
        raise ConfigError(
            f"{mine}The parameter budget {budget:,} is too small for {where}: its smallest size "
            f"({size_field}=1) has {count(1):,} parameters, so the smallest feasible budget is "
            f"{smallest:,}; raise the budget{f' or lower model.{depth_field}' if depth_field else ''}."
        )
    if count(hi) < budget:
        largest = math.floor(count(MAX_SIZE) / (1 - tolerance))
        raise ConfigError(
            f"{mine}The parameter budget {budget:,} is too large for {where}: the largest feasible "
            f"budget ({size_field}={MAX_SIZE}) is {largest:,}; lower the budget."
        )
    below, above = math.floor(count(lo) / (1 - tolerance)), math.ceil(count(hi) / (1 + tolerance))
    raise ConfigError(
        f"{mine}No {size_field} puts {where} within {pct} of the parameter budget {budget:,}: "
        f"{size_field}={lo} gives {count(lo):,} and {size_field}={hi} gives {count(hi):,}, so the "
        f"nearest feasible budgets are {below:,} and {above:,}; use one of those or widen the tolerance."
    )
