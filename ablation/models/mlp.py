"""The MLP over a context window: the course's model and its ablations.

``x [B, n, frame_dim]`` -> optional Conv1d front-end over the n frames ->
flatten -> ``depth`` blocks -> Linear to the classes. A block is
``Linear -> [BatchNorm1d] -> activation -> Dropout`` (``dropout_place="after"``)
or ``Linear -> [BatchNorm1d] -> Dropout -> activation`` (``"before"``); the
Dropout is left out when ``dropout == 0``.
"""

from __future__ import annotations

import torch
from torch import nn

from ablation.models.conv import CONV_PARAMS, ConvFrontEnd
from ablation.models.fields import Boolean, Interval, Options, Param
from ablation.models.registry import ACTIVATION, AblationModel, make_activation, register_model

# The family's fields: the config's [model] section, the checks and MLP's
# arguments all come from here. The defaults are the course's sample model,
# Classifier(hidden_layers=1): 39-256-256-41 at n = 1 (two blocks of 256).
PARAMS = (
    Param("depth", 2, Interval(int, 1, 64), "hidden blocks"),
    Param("width", 256, Interval(int, 1, 65536), "units per hidden block (solved under a parameter budget)"),
    Param("activation", "relu", ACTIVATION),
    Param("batchnorm", False, Boolean()),
    Param("dropout", 0.0, Interval(float, 0.0, 1.0, closed="left")),
    Param("dropout_place", "after", Options(("after", "before")), "dropout after or before the activation"),
    *CONV_PARAMS,
)


class MaskDropout(nn.Module):
    """nn.Dropout with its mask drawn as random 16-bit integers: on the CPU,
    Bernoulli sampling costs about as much as the layer's matrix product."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.threshold = round(p * 65536)
        self.scale = 1.0 / (1.0 - self.threshold / 65536)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, True)
        n = x.numel()
        bits = torch.randint(-(2**31), 2**31, ((n + 1) // 2,), dtype=torch.int32)
        keep = bits.view(torch.int16)[:n].view_as(x) >= self.threshold - 32768
        return x * keep.to(x.dtype).mul_(self.scale)


@register_model("mlp", PARAMS, size_field="width", depth_field="depth")
class MLP(AblationModel):
    input_mode = "window"

    def __init__(
        self,
        *,
        n_concat: int,
        frame_dim: int,
        n_classes: int,
        depth: int,
        width: int,
        activation: str,
        batchnorm: bool,
        dropout: float,
        dropout_place: str,
        conv_channels: int,
        conv_kernel: int,
    ):
        super().__init__()
        self.n_concat, self.frame_dim = n_concat, frame_dim
        self.front = (
            ConvFrontEnd(frame_dim, conv_channels, conv_kernel, activation) if conv_channels else None
        )
        in_dim = n_concat * (conv_channels or frame_dim)
        blocks = []
        for i in range(depth):
            layers: list[nn.Module] = [nn.Linear(in_dim if i == 0 else width, width)]
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            act = make_activation(activation)
            drop = [MaskDropout(dropout)] if dropout > 0 else []
            layers += [act, *drop] if dropout_place == "after" else [*drop, act]
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, n, frame_dim); a pre-flattened (B, n * frame_dim) window is accepted too
        if x.dim() == 2:
            x = x.view(x.shape[0], self.n_concat, self.frame_dim)
        if self.front is not None:
            x = self.front(x)  # (B, n, conv_channels)
        return self.head(self.blocks(x.flatten(1)))  # (B, C)

    def macs_per_frame(self) -> int:
        macs = self.n_concat * self.front.macs_per_step() if self.front is not None else 0
        for module in self.modules():
            if isinstance(module, nn.Linear):
                macs += module.in_features * module.out_features
            elif isinstance(module, nn.BatchNorm1d):
                macs += module.num_features
        return macs
