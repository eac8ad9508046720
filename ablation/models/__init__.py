"""Models: a registry of builders, the MLP and RNN families, equal-parameter sizing.

Importing the package registers every model, so ``list_models()`` is complete.
"""

from ablation.models import mlp, rnn  # noqa: F401  (registers "mlp" and "rnn")
from ablation.models.budget import count_params, solve_for_budget
from ablation.models.registry import (
    AblationModel,
    create_model,
    list_models,
    model_fields,
    register_model,
    sizing_fields,
)

__all__ = [
    "AblationModel",
    "count_params",
    "create_model",
    "list_models",
    "model_fields",
    "register_model",
    "sizing_fields",
    "solve_for_budget",
]
