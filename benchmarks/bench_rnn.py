"""Benchmark 4: a BiLSTM over whole utterances, length-bucketed packed batches vs naive padding.

Ours: ``SequenceBatches`` sorts the utterances by length and cuts batches
under a frame budget, and the model packs them, so the LSTM runs only over
real frames. Naive: the same number of batches, each a fixed number of
utterances drawn at random (the utterances per batch ours averages), padded
to the longest one, and the LSTM run over every padded cell (no packing),
the loss ignoring the padding. The padding fraction is the share of computed
cells (batch x longest) that are padding, over the whole epoch; frames per
second count real frames only.

Ours is timed twice over the same batches: as the library runs it on the CPU
(the unpacked path of ``ablation.models.rnn``, each direction over the padded
batch, the reverse one on sequences reversed within their lengths) and
through PyTorch's packed-sequence call (``sequence_path = "packed"``, the
path the library takes on a GPU). Both compute the same outputs
(``tests/models/test_rnn.py``).
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
    "full": {"data": "synthphone:small", "max_frames": 12000, "max_steps": 8},  # batches of ~20 utterances
}
TARGET = 0.10  # padding fraction goal for ours


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
        pipelines = {"ours": ours, "naive": naive, "ours, packed call": ours}
        order = list(pipelines) if r % 2 == 0 else list(pipelines)[::-1]
        timings = {}
        for name in order:
            trainee = make_trainee(cfg, train.n_classes, len(pipelines[name]))
            if name == "ours, packed call":
                trainee.model.sequence_path = "packed"
            timings[name] = timed_epoch(trainee, pipelines[name], max_steps=p["max_steps"])
        for name, t in timings.items():
            samples.setdefault(f"{name} frames/s", []).append(t.frames_per_s)
            samples.setdefault(f"{name} padding", []).append(100 * pipelines[name].padding_fraction)
            samples.setdefault(f"{name} batches", []).append(len(pipelines[name]))
            samples.setdefault(f"{name} timed steps", []).append(t.steps)
        samples.setdefault("naive utterances/batch", []).append(per_batch)
        for name in ("ours", "ours, packed call"):
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
    packed_ratio = [a / b for a, b in zip(res.get("ours", "frames/s").samples,
                                          res.get("ours, packed call", "frames/s").samples)]
    res.add("ours / ours, packed call", "frames/s ratio", "x", packed_ratio)
    res.headline = (f"BiLSTM over whole utterances: {pad:.1f}% padding (naive batches: "
                    f"{res.get('naive', 'padding').median:.1f}%); the library's unpacked CPU path trains "
                    f"{res.get('ours / ours, packed call', 'frames/s ratio').median:.1f}x the frames/s of PyTorch's "
                    "packed call.")
    res.notes += [
        f"data: train split of `{p['data']}` ({train.n_utts} utterances, {train.n_frames:,} frames); "
        f"experiments/bilstm_utt.toml: 2-layer BiLSTM, hidden {cfg.model.hidden}, n = {n}, "
        f"max_frames {cfg.optim.max_frames}; naive batches hold {samples['naive utterances/batch'][0]:.0f} "
        "utterances (ours' mean).",
        ("frames/s over the first " + str(p["max_steps"]) + " batches of each epoch (shuffled batch order); "
         if p["max_steps"] else "frames/s over one whole epoch; ")
        + "padding over the whole epoch.",
        "ours: the library's CPU path (unpacked, see ablation/models/rnn.py); ours, packed call: the same "
        "batches and weights through PyTorch's packed sequences (the library's GPU path), same outputs.",
    ]
    res.seconds = time.perf_counter() - started
    return res
