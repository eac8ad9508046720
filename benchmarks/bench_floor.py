"""Benchmark 3: how far one training step of the strong MLP is from its matmul floor.

A step is what ``fit`` does per batch: gather the windows (``WindowBatches``),
forward and loss, backward, AdamW and the lr schedule, then the finiteness
check and the running loss/accuracy ("bookkeeping"). The floor is the time of
the step's matrix products alone, timed on tensors of the same shapes in the
same process with the same thread count: per Linear the forward ``X @ W^T``,
``dW = dY^T @ X`` and, except for the first layer (autograd computes no
gradient for the input windows), ``dX = dY @ W``. "elementwise" is what the
forward and backward take beyond their products: batchnorm, ReLU, dropout,
bias, loss, autograd.

Other settings are timed as variants of the same step, side by side with the
library's: each of the library's fixes taken back (torch's default AdamW,
``nn.Dropout``), the bookkeeping left out, another thread count. Environment settings (the allocator's thresholds, OpenMP's
wait policy) only act at process start, so they are measured in child
processes (``--child``) against a plain child process of the same repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ablation.data.windows import WindowBatches
from ablation.experiment import prepare
from ablation.train import make_optimizer, train_step
from ablation.models.mlp import MaskDropout
from benchmarks import OptimizerFactory, Trainee, experiment_config, make_trainee
from benchmarks.report import BenchResult, Goal

PARAMS = {
    "tiny": {"data": "synthphone:tiny", "batch_sizes": (256,), "steps": 2, "warmup": 1},
    "full": {"data": "synthphone:small", "batch_sizes": (512, 1024, 2048, 4096), "steps": 10, "warmup": 3},
}
N_CONCAT = 11
TARGET = 1.3
# glibc: keep freed blocks up to 32 MB on the heap instead of returning them to the
# kernel, so a step's activations reuse mapped pages instead of faulting in fresh ones
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**31)}

PHASES = ("gather", "forward", "backward", "optimizer", "bookkeeping")


def with_torch_dropout(model: nn.Module) -> nn.Module:
    """``model`` with every ``MaskDropout`` replaced by ``nn.Dropout`` of the same rate (the
    library's dropout before this benchmark measured ``nn.Dropout``'s CPU sampling as slow)."""
    for name, child in model.named_children():
        if isinstance(child, MaskDropout):
            setattr(model, name, nn.Dropout(child.p))
        else:
            with_torch_dropout(child)
    return model


def _adamw(**flags) -> OptimizerFactory:
    """``make_optimizer``'s AdamW with implementation ``flags`` (``foreach`` / ``fused``)."""

    def make(cfg, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, **flags)

    return make


# name -> (optimizer factory, model rewrite or None, bookkeeping on). "as is" is the library's step
# (fused AdamW, MaskDropout); the others take back one of its fixes, or drop the bookkeeping.
VARIANTS: dict[str, tuple] = {
    "as is": (make_optimizer, None, True),
    "AdamW foreach (torch's default)": (_adamw(foreach=True), None, True),
    "nn.Dropout": (make_optimizer, with_torch_dropout, True),
    "before the fixes (AdamW foreach + nn.Dropout)": (_adamw(foreach=True), with_torch_dropout, True),
    "no bookkeeping": (make_optimizer, None, False),
}


def setup(data: str, batch_size: int):
    """The strong MLP's config at ``batch_size`` and its train split."""
    cfg = experiment_config(
        "mlp_strong", **{"data.source": data, "features.n_concat": N_CONCAT, "optim.batch_size": batch_size}
    )
    _, splits = prepare(cfg)
    return cfg, splits.train


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


class Stepper:
    """One variant of the training step over its own shuffled window batches (seed 0 for all)."""

    def __init__(self, cfg, corpus, variant: str):
        optimizer, rewrite, self.bookkeeping = VARIANTS[variant]
        self.batches = WindowBatches(corpus, N_CONCAT, cfg.optim.batch_size, shuffle=True, seed=0)
        self.t: Trainee = make_trainee(cfg, corpus.n_classes, len(self.batches), optimizer)
        if rewrite is not None:
            self.t.model = rewrite(self.t.model)
        self.it = iter(self.batches)

    def _next(self):
        try:
            return next(self.it)
        except StopIteration:
            self.batches.set_epoch(self.batches.epoch + 1)
            self.it = iter(self.batches)
            return next(self.it)

    def step(self) -> dict[str, float]:
        """Seconds of each phase of one step (``ablation.train.train_step``, the step
        ``fit`` takes, with its own lap times), and of the whole step."""
        t0 = time.perf_counter()
        batch = self._next()
        laps = [time.perf_counter()]
        train_step(self.t, batch, bookkeeping=self.bookkeeping, laps=laps)
        t1, t2, t3, t4, t5 = laps
        return dict(zip((*PHASES, "step"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)))


class Floor:
    """The matrix products of one step of ``model`` at ``batch_size``, on random tensors of their shapes."""

    def __init__(self, model: nn.Module, batch_size: int):
        gen = torch.Generator().manual_seed(0)
        self.products: list[tuple[str, Callable[[], torch.Tensor]]] = []
        for i, lin in enumerate(m for m in model.modules() if isinstance(m, nn.Linear)):
            x = torch.randn(batch_size, lin.in_features, generator=gen)
            w = torch.randn(lin.out_features, lin.in_features, generator=gen)
            dy = torch.randn(batch_size, lin.out_features, generator=gen)
            self.products.append(("forward", lambda x=x, w=w: x @ w.t()))
            self.products.append(("backward", lambda x=x, dy=dy: dy.t() @ x))
            if i > 0:
                self.products.append(("backward", lambda w=w, dy=dy: dy @ w))
        self.once()  # first calls: allocation and dispatch warm-up

    def once(self) -> dict[str, float]:
        """Seconds of one pass over every product, per phase."""
        total = {"forward": 0.0, "backward": 0.0}
        for phase, fn in self.products:
            start = time.perf_counter()
            fn()
            total[phase] += time.perf_counter() - start
        return total


def measure(data: str, batch_sizes, variants, steps: int, warmup: int) -> dict:
    """``{batch: {variant: {phase: s}, "floor": {phase: s}}}``, medians over ``steps`` rounds.

    A round takes one step of every variant, then one pass of the floor's
    products, so all of them meet the same load on a shared machine.
    """
    out = {}
    for b in batch_sizes:
        cfg, corpus = setup(data, b)
        steppers = {v: Stepper(cfg, corpus, v) for v in variants}
        floor = Floor(steppers[variants[0]].t.model, b)
        laps: dict[str, list[dict[str, float]]] = {v: [] for v in (*variants, "floor")}
        for i in range(warmup + steps):
            for v, stepper in steppers.items():
                lap = stepper.step()
                if i >= warmup:
                    laps[v].append(lap)
            lap = floor.once()
            if i >= warmup:
                laps["floor"].append(lap)
        out[b] = {v: {k: _median([lap[k] for lap in rows]) for k in rows[0]} for v, rows in laps.items()}
    return out


# child processes: name -> (environment added, torch threads (None: the parent's), variants timed).
# Environment settings only act at process start; "reference" is the plain twin the others are compared with.
CHILDREN: dict[str, tuple[dict[str, str], int | None, tuple[str, ...]]] = {
    "reference": ({}, None, ("as is",)),
    "malloc setting": (MALLOC_ENV, None, ("as is",)),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2, ("as is",)),
}


def child(size: str, name: str) -> dict:
    """``measure`` of one ``CHILDREN`` entry in a fresh process."""
    env, threads, variants = CHILDREN[name]
    threads = threads or torch.get_num_threads()
    cmd = [sys.executable, "-m", "benchmarks.bench_floor", "--child", size, "--threads", str(threads),
           "--variants", *variants]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(cmd, cwd=root, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_floor child '{name}' failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return {int(b): row for b, row in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def _per_repeat(runs: list[dict], b: int, variant: str, key: str = "step") -> list[float]:
    return [r[b][variant][key] for r in runs]


def _floor(runs: list[dict], b: int) -> list[float]:
    return [r[b]["floor"]["forward"] + r[b]["floor"]["backward"] for r in runs]


def _ms(xs: list[float]) -> list[float]:
    return [1e3 * x for x in xs]


def _add_variant(res: BenchResult, group: str, runs: list[dict], b: int, variant: str, base: list[float]) -> None:
    step = _per_repeat(runs, b, variant)
    sec = "other settings (vs as is = step / step as is, per repeat: above 1, slower than the library)"
    res.add(group, "step", "ms", _ms(step), sec)
    res.add(group, "step / floor", "x", [s / f for s, f in zip(step, _floor(runs, b))], sec)
    res.add(group, "vs as is", "x", [s / a for a, s in zip(base, step)], sec)


def _add_breakdown(res: BenchResult, runs: list[dict], b: int, threads: int) -> None:
    sec, g = f"breakdown per step, library as is, {threads} thread(s)", f"batch {b}"
    step, floor = _per_repeat(runs, b, "as is"), _floor(runs, b)
    res.add(g, "step", "ms", _ms(step), sec)
    res.add(g, "matmul floor", "ms", _ms(floor), sec)
    res.add(g, "step / floor", "x", [s / f for s, f in zip(step, floor)], sec)
    for phase in PHASES:
        res.add(g, phase, "ms", _ms(_per_repeat(runs, b, "as is", phase)), sec)
    fwd_bwd = [f + w for f, w in zip(_per_repeat(runs, b, "as is", "forward"), _per_repeat(runs, b, "as is", "backward"))]
    extra = [fb - fl for fb, fl in zip(fwd_bwd, floor)]
    res.add(g, "elementwise", "ms", _ms(extra), sec)
    res.add(g, "elementwise share", "%", [100 * e / s for e, s in zip(extra, step)], sec)


def run(size: str = "full", repeats: int = 3) -> BenchResult:
    p = PARAMS[size]
    started = time.perf_counter()
    res = BenchResult("floor", "3. A training step vs its matmul floor (strong MLP, n = 11)")
    threads = torch.get_num_threads()
    alt = 2 if threads == 1 else 1
    main_runs, alt_runs, kids = [], [], {name: [] for name in CHILDREN}
    for _ in range(repeats):
        main_runs.append(measure(p["data"], p["batch_sizes"], tuple(VARIANTS), p["steps"], p["warmup"]))
        torch.set_num_threads(alt)
        try:
            alt_runs.append(measure(p["data"], p["batch_sizes"], ("as is",), p["steps"], p["warmup"]))
        finally:
            torch.set_num_threads(threads)
        for name in CHILDREN:
            kids[name].append(child(size, name))

    for b in p["batch_sizes"]:
        _add_breakdown(res, main_runs, b, threads)
    for b in p["batch_sizes"]:
        base = _per_repeat(main_runs, b, "as is")
        for v in VARIANTS:
            if v != "as is":
                _add_variant(res, f"batch {b}: {v}", main_runs, b, v, base)
        _add_variant(res, f"batch {b}: {alt} thread(s), OMP default", alt_runs, b, "as is", base)
        reference = _per_repeat(kids["reference"], b, "as is")
        for name, (_, _, variants) in CHILDREN.items():
            for v in variants if name != "reference" else ():
                group = f"batch {b}: {name}" + ("" if v == "as is" else f" + {v}")
                _add_variant(res, group, kids[name], b, v, reference)

    ref = 1024 if 1024 in p["batch_sizes"] else p["batch_sizes"][-1]
    as_is = res.get(f"batch {ref}", "step / floor").median
    before = res.get(f"batch {ref}: before the fixes (AdamW foreach + nn.Dropout)", "step / floor").median
    best_b = min(p["batch_sizes"], key=lambda b: res.get(f"batch {b}", "step / floor").median)
    best = res.get(f"batch {best_b}", "step / floor").median
    res.goals += [
        Goal(f"step within {TARGET}x of the matmul floor at the strong MLP's batch ({ref}), library as is",
             as_is <= TARGET, f"{as_is:.2f}x (before the fixes: {before:.2f}x); best batch {best_b}: {best:.2f}x"),
    ]
    res.headline = (f"Training step of the strong MLP (batch {ref}, {threads} thread(s)): {as_is:.2f}x its matmul floor "
                    f"(before the library's fused AdamW and mask dropout: {before:.2f}x).")
    res.notes += [
        f"data: train split of `{p['data']}`, experiments/mlp_strong.toml (3 x 384, batchnorm, dropout 0.25) at "
        f"n = {N_CONCAT}; a figure is the median over {p['steps']} steps (after {p['warmup']} warm-up steps), "
        "the variants' steps interleaved, then the median over repeats.",
        "elementwise = forward + backward - matmul floor (batchnorm, ReLU, dropout, bias, loss, autograd overhead).",
        "as is: the library's step, fused AdamW (`torch.optim.AdamW(..., fused=True)`) and `MaskDropout` "
        "(ablation.models.mlp: the mask from 16-bit random integers against a threshold); nn.Dropout: torch's "
        "dropout, whose CPU Bernoulli sampling is slow; AdamW foreach: torch's default implementation; "
        "no bookkeeping: fit's per-step finiteness check and running loss/accuracy left out.",
        "rows named after a setting of the environment (malloc setting: " + " ".join(f"{k}={v}" for k, v in
        MALLOC_ENV.items()) + "; OMP_WAIT_POLICY) ran in child processes, compared with a plain "
        "child process (reference) of the same repeat.",
    ]
    res.seconds = time.perf_counter() - started
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="child of benchmark 3: prints its measurements as JSON")
    ap.add_argument("--child", choices=tuple(PARAMS), required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=["as is"])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    p = PARAMS[args.child]
    print(json.dumps(measure(p["data"], p["batch_sizes"], tuple(args.variants), p["steps"], p["warmup"])))


if __name__ == "__main__":
    main()
