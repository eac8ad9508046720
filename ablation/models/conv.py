"""A Conv1d front-end over time, shared by the MLP and the RNN.

It convolves along the step axis of ``[B, T, C_in]`` (the frames of a window,
or the frames of an utterance) with same padding, so the output keeps T steps:
``[B, T, channels]``. Beyond either end the input counts as zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from ablation.errors import ConfigError
from ablation.models.registry import check_int, make_activation


def check_conv(channels: int, kernel: int) -> tuple[int, int]:
    """Validate the front-end fields; channels 0 means no front-end."""
    check_int("model.conv_channels", channels, low=0)
    check_int("model.conv_kernel", kernel, low=1)
    if kernel % 2 == 0:
        raise ConfigError(
            "The 'model.conv_kernel' parameter must be an odd int (same padding keeps "
            f"each step centred). Got {kernel} instead."
        )
    return channels, kernel


class ConvFrontEnd(nn.Module):
    """``[B, T, in_channels] -> [B, T, channels]``: Conv1d (same padding) + activation."""

    def __init__(self, in_channels: int, channels: int, kernel: int, activation: str = "relu"):
        super().__init__()
        check_conv(channels, kernel)
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
