"""LSTM / GRU classifiers, over a frame's window or over whole utterances.

- ``mode="window"`` (input_mode "window"): ``x [B, n, frame_dim]``; the RNN
  runs over the n frames of each window and the frame is classified from the
  centre step's output.
- ``mode="sequence"`` (input_mode "sequence"): ``x [B, T, D]`` with
  ``D = frame_dim * n_concat`` (each step carries its frame's flattened
  window) and ``lengths [B]``; the RNN runs over the real frames of each
  utterance only and every frame is classified: ``[B, T, C]``.

Over whole utterances the RNN takes one of two equivalent paths (same
weights, same outputs): PyTorch's packed sequences, or, on the CPU, where the
packed path is several times slower, an unpacked one that runs each direction
layer by layer over the padded batch, the reverse direction on every sequence
reversed within its own length so that its padding comes last and is never
read before a real frame. ``sequence_path`` picks one ("auto": unpacked on the
CPU, packed elsewhere); ``benchmarks/bench_rnn.py`` measures both.

Per step: ``[LayerNorm] -> [Conv1d front-end] -> RNN``, then Dropout -> Linear.
``dropout`` acts between RNN layers and before the classifier.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ablation.models.conv import CONV_PARAMS, ConvFrontEnd
from ablation.models.fields import Boolean, Interval, Options, Param
from ablation.models.registry import AblationModel, register_model

SEQUENCE_PATHS = ("auto", "packed", "unpacked")


def _reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    pos = torch.arange(x.shape[1], device=x.device)
    idx = lengths.to(x.device)[:, None] - 1 - pos[None, :]
    idx = torch.where(idx >= 0, idx, pos[None, :])
    return x.gather(1, idx[..., None].expand(-1, -1, x.shape[2]))


CELLS: dict[str, tuple[type[nn.RNNBase], int]] = {"lstm": (nn.LSTM, 4), "gru": (nn.GRU, 3)}

# The family's fields (config section, checks and RNN's arguments). Defaults: a
# 2-layer BiLSTM over whole utterances, the "boss" hint's recipe.
PARAMS = (
    Param("cell", "lstm", Options(tuple(CELLS))),
    Param("bidirectional", True, Boolean()),
    Param("layers", 2, Interval(int, 1, 16)),
    Param("hidden", 256, Interval(int, 1, 8192), "units per direction (solved under a parameter budget)"),
    Param("dropout", 0.0, Interval(float, 0.0, 1.0, closed="left"), "between RNN layers and before the head"),
    Param("mode", "sequence", Options(("sequence", "window")), "whole utterances, or each frame's window"),
    Param("input_norm", False, Boolean(), "LayerNorm on each step's input"),
    *CONV_PARAMS,
)


@register_model("rnn", PARAMS, size_field="hidden", depth_field="layers")
class RNN(AblationModel):
    sequence_path = "auto"  # see the module docstring; set on an instance to force a path

    def __init__(
        self,
        *,
        n_concat: int,
        frame_dim: int,
        n_classes: int,
        cell: str,
        bidirectional: bool,
        layers: int,
        hidden: int,
        dropout: float,
        mode: str,
        conv_channels: int,
        conv_kernel: int,
        input_norm: bool,
    ):
        super().__init__()
        self.input_mode = mode
        self.n_concat, self.frame_dim = n_concat, frame_dim
        self.step_dim = frame_dim if mode == "window" else frame_dim * n_concat
        self.norm = nn.LayerNorm(self.step_dim) if input_norm else None
        self.front = ConvFrontEnd(self.step_dim, conv_channels, conv_kernel) if conv_channels else None
        rnn_cls, self.gates = CELLS[cell]
        self.rnn = rnn_cls(
            conv_channels or self.step_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            # PyTorch only applies it between layers and warns when there is one.
            dropout=dropout if layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), n_classes)

    # ---- forward ------------------------------------------------------------
    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.input_mode == "window":
            return self._forward_window(x)
        return self._forward_sequence(x, lengths)

    def _forward_window(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, n, frame_dim); a pre-flattened (B, n * frame_dim) window is accepted too
        if x.dim() == 2:
            x = x.view(x.shape[0], self.n_concat, self.frame_dim)
        if self.norm is not None:
            x = self.norm(x)
        if self.front is not None:
            x = self.front(x)  # (B, n, conv_channels)
        out, _ = self.rnn(x)  # (B, n, dirs * hidden)
        return self.head(self.drop(out[:, x.shape[1] // 2]))  # (B, C)

    def _forward_sequence(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        # x: (B, T, D), lengths: (B,)
        batch, steps = x.shape[:2]
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long)
        lengths = lengths.to("cpu", torch.long)
        if self.norm is not None:
            x = self.norm(x)
        if self.front is not None:
            # The convolution reaches across the end of a short utterance into its
            # padding: zero it, so a padded utterance sees what it sees alone.
            real = torch.arange(steps)[None, :] < lengths[:, None]  # (B, T)
            x = x.masked_fill(~real.to(x.device)[..., None], 0.0)
            x = self.front(x)  # (B, T, conv_channels)
        path = self.sequence_path
        if path not in SEQUENCE_PATHS:
            raise ValueError(f"sequence_path must be one of {SEQUENCE_PATHS}, got {path!r}")
        if path == "unpacked" or (path == "auto" and x.device.type == "cpu"):
            return self.head(self.drop(self._run_unpacked(x, lengths)))
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)  # (B, T, dirs * H)
        return self.head(self.drop(out))  # (B, T, C)

    def _run_unpacked(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The packed call's outputs without packing (PyTorch's packed path is slow on the CPU):
        layer by layer, the reverse direction on each sequence reversed within its length."""
        rnn, lstm = self.rnn, isinstance(self.rnn, nn.LSTM)
        call = torch._VF.lstm if lstm else torch._VF.gru
        out = x
        for layer in range(rnn.num_layers):
            outs = []
            for suffix in ("", "_reverse") if rnn.bidirectional else ("",):
                w = [getattr(rnn, f"{k}_l{layer}{suffix}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                inp = _reverse_within(out, lengths) if suffix else out
                h0 = out.new_zeros(1, out.shape[0], rnn.hidden_size)
                o = call(inp, (h0, h0) if lstm else h0, w, True, 1, 0.0, self.training, False, True)[0]
                outs.append(_reverse_within(o, lengths) if suffix else o)
            out = torch.cat(outs, dim=2)
            if layer < rnn.num_layers - 1 and rnn.dropout > 0:
                out = nn.functional.dropout(out, rnn.dropout, self.training)
        return out

    # ---- cost -----------------------------------------------------------------
    def macs_per_step(self) -> int:
        """Multiply-adds of one step through the input layers and the RNN, both directions."""
        macs = self.step_dim if self.norm is not None else 0
        if self.front is not None:
            macs += self.front.macs_per_step()
        rnn, dirs = self.rnn, 2 if self.rnn.bidirectional else 1
        for layer in range(rnn.num_layers):
            in_dim = rnn.input_size if layer == 0 else rnn.hidden_size * dirs
            macs += dirs * self.gates * (in_dim * rnn.hidden_size + rnn.hidden_size**2)
        return macs

    def macs_per_frame(self) -> int:
        # A window model runs every step of the window for each frame it classifies.
        steps = self.n_concat if self.input_mode == "window" else 1
        return steps * self.macs_per_step() + self.head.in_features * self.head.out_features
