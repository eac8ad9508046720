"""A Conv1d front-end over time, shared by the MLP and the RNN.

It convolves along the step axis of ``[B, T, C_in]`` (the frames of a window,
or the frames of an utterance) with same padding, so the output keeps T steps:
``[B, T, channels]``. Beyond either end the input counts as zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from ablation.models.fields import Interval, Param
from ablation.models.registry import make_activation

# The front-end's fields, shared by every family that offers it; 0 channels = none.
CONV_PARAMS = (
    Param("conv_channels", 0, Interval(int, 0, 4096), "Conv1d front-end channels; 0 = no front-end"),
    # odd: same padding keeps each step centred
    Param("conv_kernel", 3, Interval(int, 1, 31, odd=True), "Conv1d kernel size over the steps"),
)


class ConvFrontEnd(nn.Module):
    """``[B, T, in_channels] -> [B, T, channels]``: Conv1d (same padding) + activation."""

    def __init__(self, in_channels: int, channels: int, kernel: int, activation: str = "relu"):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, channels, kernel, padding=kernel // 2)
        self.act = make_activation(activation)

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Conv1d wants channels first: (B, T, C) -> (B, C, T) and back.
        return self.act(self.conv(x.transpose(1, 2))).transpose(1, 2)

    def macs_per_step(self) -> int:
        c = self.conv
        return c.out_channels * c.in_channels * c.kernel_size[0]
