"""An MLP with one width per hidden layer: the 2021 course's TIMIT sample model.

``x [B, n, frame_dim]`` -> flatten -> ``Linear -> activation`` per entry of
``widths`` -> Linear to the classes. The defaults are that sample,
429-1024-512-128-39 with sigmoid at n = 11 on 39-dim MFCC. Its widths are
given, not solved: the family declares no size field, so a parameter budget
is refused (use ``mlp`` for equal-parameter comparisons).
"""

from __future__ import annotations

import torch
from torch import nn

from ablation.models.fields import IntList, Interval, Param
from ablation.models.registry import ACTIVATION, AblationModel, make_activation, register_model

PARAMS = (
    Param("widths", [1024, 512, 128], IntList(Interval(int, 1, 65536), 1, 64), "units of each hidden layer, in order"),
    Param("activation", "sigmoid", ACTIVATION),
)


@register_model("mlp_layers", PARAMS)
class MLPLayers(AblationModel):
    input_mode = "window"

    def __init__(self, *, n_concat: int, frame_dim: int, n_classes: int, widths: list[int], activation: str):
        super().__init__()
        self.n_concat, self.frame_dim = n_concat, frame_dim
        sizes = [n_concat * frame_dim, *widths]
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), make_activation(activation)]
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, n, frame_dim) or pre-flattened (B, n * frame_dim)
        return self.head(self.blocks(x.flatten(1)))  # (B, C)

    def macs_per_frame(self) -> int:
        return sum(m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))
