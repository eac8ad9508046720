"""Benchmark 1: our input pipeline vs the course's recipe, one training epoch each.

Both pipelines feed the same step (``ablation.train.train_step``, the step of
``ablation.train.fit``) with a fresh copy of the same model and optimizer
(built from the experiment file, batch 512 for both), over the same train
split. Ours: ``WindowBatches`` gathers each batch's windows from the corpus.
The recipe: every window materialised up front (timed apart), then a per-item
``Dataset`` behind a shuffling ``DataLoader``. Which pipeline runs first
alternates between repeats.
"""

from __future__ import annotations

import time

import torch

from ablation.data.windows import WindowBatches
from ablation.experiment import prepare
from benchmarks import EpochTiming, experiment_config, make_trainee, timed_epoch
from benchmarks.recipe import BATCH_SIZE, materialise, recipe_loader
from benchmarks.report import BenchResult, Goal

PARAMS = {
    "tiny": {"data": "synthphone:tiny", "ns": (1, 11, 21)},
    "full": {"data": "synthphone:small", "ns": (1, 11, 21)},
}
MODELS = (("sample", "mlp_sample"), ("strong", "mlp_strong"))
TARGET = 5.0  # speed-up goal for the sample model
WARMUP_STEPS = 3


def case_config(experiment: str, data: str, n: int):
    return experiment_config(
        experiment, **{"data.source": data, "features.n_concat": n, "optim.batch_size": BATCH_SIZE}
    )


def batches_only(batches) -> float:
    """Seconds to produce every batch of one epoch, with nothing done with them."""
    start = time.perf_counter()
    for _ in batches:
        pass
    return time.perf_counter() - start


def measure_case(experiment: str, data: str, n: int, repeats: int) -> dict[str, list[float]]:
    """Per repeat: up-front seconds of both pipelines; epoch seconds, frames/s and frames of ours,
    the recipe's and the steps alone; the speed-up and its bound."""
    cfg = case_config(experiment, data, n)
    _, splits = prepare(cfg)
    corpus = splits.train
    steps = -(-corpus.n_frames // BATCH_SIZE)
    out: dict[str, list[float]] = {}

    def record(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    warm = recipe_loader(*materialise(corpus.subset(range(min(8, corpus.n_utts))), n), BATCH_SIZE)
    for batches in (warm, WindowBatches(corpus, n, BATCH_SIZE, shuffle=True)):  # first-call costs go here
        timed_epoch(make_trainee(cfg, corpus.n_classes, steps), batches, max_steps=WARMUP_STEPS)
    for r in range(repeats):
        start = time.perf_counter()
        X, y = materialise(corpus, n)
        record("recipe up-front", time.perf_counter() - start)
        start = time.perf_counter()
        ours = WindowBatches(corpus, n, BATCH_SIZE, shuffle=True, seed=r)
        record("ours up-front", time.perf_counter() - start)
        # the same step over batches gathered beforehand: what an epoch costs with a free pipeline
        gen = torch.Generator().manual_seed(r)
        ready = [(X[i], y[i]) for i in torch.randperm(len(X), generator=gen).split(BATCH_SIZE)]
        pipelines = {"ours": ours, "recipe": recipe_loader(X, y, BATCH_SIZE, seed=r), "steps only": ready}
        order = list(pipelines) if r % 2 == 0 else list(pipelines)[::-1]
        timings: dict[str, EpochTiming] = {}
        for name in order:
            trainee = make_trainee(cfg, corpus.n_classes, steps)
            timings[name] = timed_epoch(trainee, pipelines[name])
        # the pipelines alone, every batch produced and dropped: what is left of an epoch when the step
        # costs next to nothing (a GPU's case), measured on this machine's CPU
        for name in ("ours", "recipe") if r % 2 == 0 else ("recipe", "ours"):
            record(f"{name} batches only", batches_only(pipelines[name]))
        for name, t in timings.items():
            record(f"{name} epoch", t.seconds)
            record(f"{name} frames/s", t.frames_per_s)
            record(f"{name} frames/epoch", t.frames)
        record("speed-up", timings["recipe"].seconds / timings["ours"].seconds)
        record("speed-up bound", timings["recipe"].seconds / timings["steps only"].seconds)
        record("batches-only speed-up", out["recipe batches only"][-1] / out["ours batches only"][-1])
        del X, y, pipelines, ready
    return out


def run(size: str = "full", repeats: int = 3) -> BenchResult:
    p = PARAMS[size]
    res = BenchResult("pipeline", "1. Input pipeline vs the course's recipe")
    started = time.perf_counter()
    columns = {"ours epoch": "s", "recipe epoch": "s", "steps only epoch": "s", "speed-up": "x",
               "speed-up bound": "x", "ours batches only": "s", "recipe batches only": "s",
               "batches-only speed-up": "x", "ours frames/s": "frames/s",
               "recipe frames/s": "frames/s", "ours frames/epoch": "", "recipe frames/epoch": "",
               "ours up-front": "s", "recipe up-front": "s"}
    for model, experiment in MODELS:
        for n in p["ns"]:
            samples = measure_case(experiment, p["data"], n, repeats)
            for col, unit in columns.items():
                res.add(f"{model} n={n}", col, unit, samples[col])
    sample_worst = min(res.get(f"sample n={n}", "speed-up").median for n in p["ns"])
    sample_bound = min(res.get(f"sample n={n}", "speed-up bound").median for n in p["ns"])
    all_worst = min(f.median for f in res.figures if f.name == "speed-up")
    alone = min(res.get(f"{m} n={n}", "batches-only speed-up").median for m, _ in MODELS for n in p["ns"])
    res.goals += [
        Goal(f"sample model >= {TARGET:g}x faster per epoch at every n", sample_worst >= TARGET,
             f"slowest speed-up {sample_worst:.2f}x; with a free pipeline at most {sample_bound:.2f}x; "
             f"the pipelines alone (no step): ours at least {alone:.1f}x faster"),
        Goal("faster than the recipe in every case", all_worst > 1.0, f"slowest speed-up {all_worst:.2f}x"),
    ]
    sp = {n: res.get(f"sample n={n}", "speed-up").median for n in p["ns"]}
    strong = [res.get(f"strong n={n}", "speed-up").median for n in p["ns"]]
    res.headline = (
        f"Input pipeline: an epoch of the course's sample model is {sp[p['ns'][0]]:.1f}x faster than the recipe's "
        f"per-item `DataLoader` at n = {p['ns'][0]} ("
        + ", ".join(f"{sp[n]:.1f}x at n = {n}" for n in p["ns"][1:])
        + f"; the strong MLP {min(strong):.2f}-{max(strong):.2f}x, where the step dominates); producing the batches "
        f"alone, with no training step, is at least {alone:.0f}x faster."
    )
    res.notes += [
        f"data: train split of `{p['data']}`; batch {BATCH_SIZE} for both pipelines; models from "
        "experiments/mlp_sample.toml (1 x 256) and experiments/mlp_strong.toml (3 x 384, batchnorm, dropout 0.25).",
        "epoch: batches produced and trained on, end to end; speed-up = recipe epoch / ours epoch, per repeat.",
        "steps only: the same step over batches gathered before the clock starts; speed-up bound = recipe epoch / "
        "steps-only epoch, the most any pipeline could gain on the recipe with this step.",
        "batches only: one epoch of batches produced and dropped, no step (on a GPU the step is short, "
        "and an epoch tends to this); batches-only speed-up = recipe / ours, per repeat.",
        "up-front: the recipe writes every window into one float32 buffer (frames x 39n) before training; "
        "ours builds the per-frame utterance bounds (two int64 per frame).",
    ]
    res.seconds = time.perf_counter() - started
    return res
