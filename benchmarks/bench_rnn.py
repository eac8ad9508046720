"""Benchmark 4: a BiLSTM over whole utterances, length-bucketed packed batches vs naive padding.

Ours: ``SequenceBatches`` sorts the utterances by length and cuts batches
under a frame budget, and the model packs them, so the LSTM runs only over
real frames. Naive: the same number of batches, each a fixed number of
utterances drawn at random (the utterances per batch ours averages), padded
to the longest one, and the LSTM run over every padded cell (no packing),
the loss ignoring the padding. The padding fraction is the share of computed
cells (batch x longest) that are padding, over the whole epoch; frames per
second count real frames only.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ablation.data.sequences import SequenceBatches
from ablation.experiment import prepare
from benchmarks import experiment_config, make_trainee, timed_epoch
from benchmarks.report import BenchResult, Goal

PARAMS = {
    "tiny": {"data": "synthphone:tiny", "max_frames": 1000, "max_steps": None},
    "full": {"data": "synthphone:small", "max_frames": None, "max_steps": 8},
}
TARGET = 0.10  # padding fraction goal for ours


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of ``x [B, T, D]`` reversed over its first ``lengths[b]`` steps; padding stays put."""
    pos = torch.arange(x.shape[1], device=x.device)
    idx = lengths.to(x.device)[:, None] - 1 - pos[None, :]
    idx = torch.where(idx >= 0, idx, pos[None, :])  # (B, T)
    return x.gather(1, idx[..., None].expand(-1, -1, x.shape[2]))


class UnpackedLSTM(torch.nn.Module):
    """The candidate fix: ``model``'s sequence forward without packing, same weights, same outputs.

    PyTorch's CPU LSTM is fast on a padded tensor (oneDNN) and slow on a
    packed one, its backward above all. With the padding at the end of every
    sequence, a forward direction never sees it before a real frame; the
    reverse direction runs on each sequence reversed within its length, so
    its padding comes last too. Layer by layer, each direction a one-layer
    call of ``torch._VF.lstm`` on ``model.rnn``'s own parameters.
    """

    input_mode = "sequence"

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        if not isinstance(model.rnn, torch.nn.LSTM) or model.norm is not None or model.front is not None:
            raise ValueError("UnpackedLSTM covers an LSTM without input norm or front-end")
        self.inner = model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        m, rnn = self.inner, self.inner.rnn
        out = x  # (B, T, D)
        for layer in range(rnn.num_layers):
            outs = []
            for suffix in ("", "_reverse") if rnn.bidirectional else ("",):
                weights = [getattr(rnn, f"{w}_l{layer}{suffix}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                inp = out if not suffix else reverse_within(out, lengths)
                h0 = out.new_zeros(1, out.shape[0], rnn.hidden_size)
                o = torch._VF.lstm(inp, (h0, h0), weights, True, 1, 0.0, self.training, False, True)[0]
                outs.append(o if not suffix else reverse_within(o, lengths))
            out = torch.cat(outs, dim=2)  # (B, T, dirs * H)
            if layer < rnn.num_layers - 1 and rnn.dropout > 0:
                out = torch.nn.functional.dropout(out, rnn.dropout, self.training)
        return m.head(m.drop(out))  # (B, T, C)


class NaiveBatches(SequenceBatches):
    """Random, fixed-size groups of utterances, padded to the longest of each; run without packing."""

    def __init__(self, corpus, per_batch: int, seed: int, n: int):
        super().__init__(corpus, max_frames=int(corpus.lengths.max()), shuffle=True, seed=seed, n=n)
        self.per_batch = int(per_batch)

    def plan(self) -> list[np.ndarray]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=gen).numpy()
        groups = [order[i : i + self.per_batch] for i in range(0, len(order), self.per_batch)]
        # longest first within a batch: the padded length is read off the first sequence
        return [g[np.argsort(-self.lengths[g], kind="stable")] for g in groups]

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.per_batch)

    @property
    def padding_fraction(self) -> float:
        cells = sum(len(g) * int(self.lengths[g[0]]) for g in self.plan())
        return 1.0 - self.n_frames / cells

    def __iter__(self):
        for x, y, _ in super().__iter__():
            yield x, y, None  # every sequence computed to the padded end


def run(size: str = "full", repeats: int = 3) -> BenchResult:
    p = PARAMS[size]
    started = time.perf_counter()
    res = BenchResult("rnn", "4. BiLSTM over whole utterances: packed buckets vs naive padding")
    overrides = {"data.source": p["data"]}
    if p["max_frames"]:
        overrides["optim.max_frames"] = p["max_frames"]
    cfg = experiment_config("bilstm_utt", **overrides)
    _, splits = prepare(cfg)
    train, n = splits.train, cfg.features.n_concat
    samples: dict[str, list[float]] = {}
    for r in range(repeats):
        ours = SequenceBatches(train, cfg.optim.max_frames, shuffle=True, seed=r, n=n)
        per_batch = max(1, round(train.n_utts / len(ours)))
        naive = NaiveBatches(train, per_batch, seed=r, n=n)
        pipelines = {"ours": ours, "naive": naive, "ours, unpacked LSTM": ours}
        order = list(pipelines) if r % 2 == 0 else list(pipelines)[::-1]
        timings = {}
        for name in order:
            trainee = make_trainee(cfg, train.n_classes, len(pipelines[name]))
            if name == "ours, unpacked LSTM":
                trainee.model = UnpackedLSTM(trainee.model)
            timings[name] = timed_epoch(trainee, pipelines[name], max_steps=p["max_steps"])
        for name, t in timings.items():
            samples.setdefault(f"{name} frames/s", []).append(t.frames_per_s)
            samples.setdefault(f"{name} padding", []).append(100 * pipelines[name].padding_fraction)
            samples.setdefault(f"{name} batches", []).append(len(pipelines[name]))
            samples.setdefault(f"{name} timed steps", []).append(t.steps)
        samples.setdefault("naive utterances/batch", []).append(per_batch)
        for name in ("ours", "ours, unpacked LSTM"):
            samples.setdefault(f"{name} speed-up", []).append(timings[name].frames_per_s / timings["naive"].frames_per_s)
    for way in pipelines:
        res.add(way, "frames/s", "real frames/s", samples[f"{way} frames/s"])
        res.add(way, "padding", "% of computed cells", samples[f"{way} padding"])
        res.add(way, "batches per epoch", "", samples[f"{way} batches"])
        res.add(way, "timed steps", "", samples[f"{way} timed steps"])
        if way != "naive":
            res.add(way, "speed-up vs naive", "x", samples[f"{way} speed-up"])
    pad = res.get("ours", "padding").median
    res.goals.append(Goal(f"padding under {100 * TARGET:.0f}% of computed frames", pad < 100 * TARGET,
                          f"ours {pad:.1f}%, naive {res.get('naive', 'padding').median:.1f}%"))
    res.notes += [
        f"data: train split of `{p['data']}` ({train.n_utts} utterances, {train.n_frames:,} frames); "
        f"experiments/bilstm_utt.toml: 2-layer BiLSTM, hidden {cfg.model.hidden}, n = {n}, "
        f"max_frames {cfg.optim.max_frames}; naive batches hold {samples['naive utterances/batch'][0]:.0f} "
        "utterances (ours' mean).",
        ("frames/s over the first " + str(p["max_steps"]) + " batches of each epoch (shuffled batch order); "
         if p["max_steps"] else "frames/s over one whole epoch; ")
        + "padding over the whole epoch.",
        "ours, unpacked LSTM: the same batches through `UnpackedLSTM` (this file), the candidate fix for "
        "`RNN._forward_sequence`: the same weights and outputs as the packed call (checked in the tests), "
        "without PyTorch's slow packed-sequence path on the CPU.",
    ]
    res.seconds = time.perf_counter() - started
    return res
