"""Models: a registry of families (each declares its own fields), the MLP and RNN, equal-parameter sizing.

Importing the package registers every model, so ``list_models()`` is complete.
A new family is one module (its ``PARAMS`` and a ``register_model`` builder)
plus its import below; ``tests/models/test_families.py`` walks the registry.
A user's family is the same module in their project's ``models/`` folder (or
behind an ``ablation.models`` entry point), found on the first lookup
(``models/user.py``); the names it needs are all importable from here.
"""

from ablation.models import mlp, mlp_layers, rnn  # noqa: F401  (registers "mlp", "mlp_layers", "rnn")
from ablation.models.budget import count_params, solve_for_budget
from ablation.models.fields import Boolean, Interval, IntList, Options, Param
from ablation.models.registry import (
    AblationModel,
    create_model,
    family,
    list_models,
    load_user_families,
    model_fields,
    register_model,
    sizing_fields,
)

__all__ = [
    "AblationModel",
    "Boolean",
    "IntList",
    "Interval",
    "Options",
    "Param",
    "load_user_families",
    "count_params",
    "create_model",
    "family",
    "list_models",
    "model_fields",
    "register_model",
    "sizing_fields",
    "solve_for_budget",
]
