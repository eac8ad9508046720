"""Performance benchmarks of ``ablation``, side by side with the course's recipe.

    python -m benchmarks                       # every benchmark at full size -> benchmarks/RESULTS.md
    python -m benchmarks --size tiny --only pipeline floor --repeats 1

Benchmarks (modules ``bench_*``): ``pipeline`` (input pipeline vs the recipe),
``memory`` (peak memory vs n_concat), ``floor`` (a training step vs its matmul
floor), ``rnn`` (packed length-bucketed batches vs naive padding), ``study``
(wall time of a real study vs its training time) and ``errors`` (time to a
one-line refusal of bad input). Each exposes
``run(size, repeats) -> BenchResult``; ``report`` renders the results.

This module holds what the benchmarks share: the experiment configs they
train, and ``timed_epoch``, which feeds batches to ``ablation.train.train_step``,
the very step ``fit`` takes, so every pipeline is timed feeding the library's step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from ablation.config import ExperimentConfig, load_experiment
from ablation import paths, train
from ablation.train import Trainee, build_model, make_optimizer, train_step

SIZES = ("tiny", "full")


def experiment_config(name: str, **overrides) -> ExperimentConfig:
    """``experiments/NAME.toml`` with dotted overrides: ``experiment_config("mlp_strong", **{"features.n_concat": 11})``."""
    return load_experiment(paths.experiments_dir() / f"{name}.toml", dict(overrides))


OptimizerFactory = Callable[[ExperimentConfig, torch.nn.Module], torch.optim.Optimizer]


def make_trainee(cfg: ExperimentConfig, n_classes: int, steps_per_epoch: int,
                 optimizer: OptimizerFactory = make_optimizer) -> Trainee:
    """Model (seeded by ``train.seed``), optimizer, lr schedule and loss of ``cfg``,
    built by ``ablation.train`` as ``fit`` builds them, on the CPU.

    The loss has no class weights (none of the benchmarked experiments sets
    ``loss.class_weight_beta``). ``optimizer`` stands in for ``ablation.train.make_optimizer`` (to time other optimizer settings).
    """
    model, _ = build_model(cfg, n_classes)
    model.train()
    eps = cfg.loss.label_smoothing

    def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=eps, ignore_index=-100)

    return train.make_trainee(cfg, model, steps_per_epoch, loss_fn, "cpu", optimizer)


@dataclass
class EpochTiming:
    seconds: float
    frames: int
    steps: int
    train_acc: float  # running accuracy over the pass, as fit logs it

    @property
    def frames_per_s(self) -> float:
        return self.frames / max(self.seconds, 1e-12)


def timed_epoch(t: Trainee, batches: Iterable, max_steps: int | None = None) -> EpochTiming:
    """One pass of ``batches`` (or its first ``max_steps``) through ``train_step``, timed end to end
    (the batches are produced inside the timed span). A batch is ``(x, y)`` or ``(x, y, lengths)``."""
    frames = steps = correct = 0
    start = time.perf_counter()
    for batch in batches:
        n, _, c = train_step(t, batch)
        frames, correct, steps = frames + n, correct + c, steps + 1
        if max_steps is not None and steps >= max_steps:
            break
    seconds = time.perf_counter() - start
    return EpochTiming(seconds, frames, steps, correct / max(frames, 1))
