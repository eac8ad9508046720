"""Performance benchmarks of ``ablation``, side by side with the course's recipe.

    python -m benchmarks                       # every benchmark at full size -> benchmarks/RESULTS.md
    python -m benchmarks --size tiny --only pipeline floor --repeats 1

Benchmarks (modules ``bench_*``): ``pipeline`` (input pipeline vs the recipe),
``memory`` (peak memory vs n_concat), ``floor`` (a training step vs its matmul
floor), ``rnn`` (packed length-bucketed batches vs naive padding) and ``study``
(wall time of a real study vs its training time). Each exposes
``run(size, repeats) -> BenchResult``; ``report`` renders the results.

This module holds what the benchmarks share: the experiment configs they
train, and one training step that follows the loop body of
``ablation.train.fit``, so every pipeline is timed feeding the same step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from ablation import paths
from ablation.config import ExperimentConfig, load_experiment
from ablation.errors import DivergedError
from ablation.train import build_model, lr_factor, make_optimizer

SIZES = ("tiny", "full")


def experiment_config(name: str, **overrides) -> ExperimentConfig:
    """``experiments/NAME.toml`` with dotted overrides: ``experiment_config("mlp_strong", **{"features.n_concat": 11})``."""
    return load_experiment(paths.experiments_dir() / f"{name}.toml", dict(overrides))


@dataclass
class Trainee:
    """A model and what trains it, built exactly as ``ablation.train.fit`` builds them."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    grad_clip: float = 0.0


OptimizerFactory = Callable[[ExperimentConfig, torch.nn.Module], torch.optim.Optimizer]


def make_trainee(cfg: ExperimentConfig, n_classes: int, steps_per_epoch: int,
                 optimizer: OptimizerFactory = make_optimizer) -> Trainee:
    """Model (seeded by ``train.seed``), optimizer, lr schedule and loss of ``cfg``.

    The loss has no class weights (none of the benchmarked experiments sets
    ``loss.class_weight_beta``). ``optimizer`` stands in for ``ablation.train.make_optimizer`` (to time other optimizer settings).
    """
    model, _ = build_model(cfg, n_classes)
    model.train()
    opt = optimizer(cfg, model)
    total = steps_per_epoch * cfg.train.epochs
    warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, cfg.optim.schedule))
    eps = cfg.loss.label_smoothing

    def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=eps, ignore_index=-100)

    return Trainee(model, opt, sched, loss_fn, cfg.optim.grad_clip)


@dataclass
class EpochTiming:
    seconds: float
    frames: int
    steps: int
    train_acc: float  # running accuracy over the pass, as fit logs it

    @property
    def frames_per_s(self) -> float:
        return self.frames / max(self.seconds, 1e-12)


def train_step(t: Trainee, x: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor | None = None,
               bookkeeping: bool = True) -> tuple[int, float, int]:
    """One step as ``fit`` takes it (forward, loss, finiteness check, backward,
    gradient clipping, optimizer and schedule, running loss and accuracy).

    A window batch is ``(x [B, n, 39], y [B])``; a sequence batch passes
    ``lengths`` too (``x [B, T, D]``, ``y [B, T]`` with -100 in the padding).
    Returns ``(frames, loss * frames, correct)``. ``bookkeeping=False`` leaves
    out the finiteness check and the running loss/accuracy (returned as 0), to
    measure what they cost.
    """
    if lengths is None and t.model.input_mode == "window":
        logits = t.model(x)
    else:  # a sequence model; lengths=None runs every sequence to the padded end
        logits = t.model(x, lengths)
        logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    loss = t.loss_fn(logits.float(), y)
    if bookkeeping and not torch.isfinite(loss):
        raise DivergedError(0, 0, float(loss.detach()))
    t.opt.zero_grad(set_to_none=True)
    loss.backward()
    if t.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.grad_clip)
    t.opt.step()
    t.sched.step()
    if not bookkeeping:
        return int(y.shape[0]), 0.0, 0
    with torch.no_grad():
        keep = y >= 0
        n = int(keep.sum())
        return n, float(loss) * n, int((logits.argmax(-1)[keep] == y[keep]).sum())


def timed_epoch(t: Trainee, batches: Iterable, max_steps: int | None = None) -> EpochTiming:
    """One pass of ``batches`` (or its first ``max_steps``) through ``train_step``, timed end to end
    (the batches are produced inside the timed span). A batch is ``(x, y)`` or ``(x, y, lengths)``."""
    frames = steps = correct = 0
    start = time.perf_counter()
    for batch in batches:
        n, _, c = train_step(t, *batch)
        frames, correct, steps = frames + n, correct + c, steps + 1
        if max_steps is not None and steps >= max_steps:
            break
    seconds = time.perf_counter() - start
    return EpochTiming(seconds, frames, steps, correct / max(frames, 1))
