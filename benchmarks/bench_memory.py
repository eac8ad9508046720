"""Benchmark 2: peak resident memory of training vs the window length n.

Each configuration runs in a fresh child process (``--child``), which loads
the corpus, splits it as ``fit`` does, builds the windows its way and trains
the strong MLP for a capped number of steps; it reports its own
``ru_maxrss`` (the peak over its whole life: loading included, for both ways
alike), the resident size once the data is split, and the peak during
training alone (the kernel's peak counter is reset after loading; see
``window_memory.reset_peak``). The peak is reached in the first steps: later
steps reuse the same buffers.

Ours gathers each batch's windows from the corpus. The recipe writes every
window of the train and the val split into float32 buffers before training,
as the course's ``preprocess_data`` does for both; where that buffer would
not fit a fair share of this machine, its peak is computed instead: the
recipe's measured baseline plus ``frames x 39 x n x 4`` bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from ablation.data.windows import WindowBatches
from ablation.experiment import prepare
from benchmarks import experiment_config, make_trainee, timed_epoch
from benchmarks.recipe import BATCH_SIZE, buffer_bytes, materialise, recipe_loader
from benchmarks.report import BenchResult, Goal
from benchmarks.window_memory import current_rss, peak_rss, reset_peak

PARAMS = {
    "tiny": {"data": "synthphone:tiny", "ours": (1, 61), "recipe": (1,), "computed": (61,), "steps": 5},
    "full": {"data": "synthphone:libri", "ours": (1, 11, 31, 61), "recipe": (1, 11), "computed": (31, 61),
             "steps": 200},
}
GB = 1e9
TARGET = 1.1


def child_main(way: str, data: str, n: int, steps: int) -> dict:
    """Load, split, build the windows ``way`` and train ``steps`` steps; the memory figures in bytes."""
    cfg = experiment_config("mlp_strong", **{"data.source": data, "features.n_concat": n,
                                             "optim.batch_size": BATCH_SIZE})
    _, splits = prepare(cfg)
    train = splits.train
    after_load = current_rss()
    reset_ok = reset_peak()
    held = 0  # window rows held in memory before training
    if way == "ours":
        batches = WindowBatches(train, n, BATCH_SIZE, shuffle=True, seed=0)
    else:
        X, y = materialise(train, n)
        val_X, _ = materialise(splits.val, n)  # the course holds both splits' windows while it trains
        batches = recipe_loader(X, y, BATCH_SIZE, seed=0)
        held = X.shape[0] + val_X.shape[0]
    trainee = make_trainee(cfg, train.n_classes, -(-train.n_frames // BATCH_SIZE))
    timing = timed_epoch(trainee, batches, max_steps=steps)
    return {
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "after_load": after_load,
        "train_peak": peak_rss() if reset_ok else None,
        "steps": timing.steps,
        "held_windows": held,
        "pool_frames": splits.train.n_frames + splits.val.n_frames,
        "train_frames": train.n_frames,
    }


def run_child(way: str, data: str, n: int, steps: int) -> dict:
    """``child_main`` in a fresh process (one torch thread); its figures."""
    cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--child", way, "--data", data, "--n", str(n),
           "--steps", str(steps)]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_memory child {way} n={n} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(size: str = "full", repeats: int = 3) -> BenchResult:
    p = PARAMS[size]
    started = time.perf_counter()
    res = BenchResult("memory", "2. Peak memory of training vs n_concat")
    run_child("warm", p["data"], 1, 1)  # generates and caches the corpus, so no measured child does
    samples: dict[tuple[str, int], list[dict]] = {}
    for _ in range(repeats):
        for way in ("ours", "recipe"):
            for n in p[way]:
                samples.setdefault((way, n), []).append(run_child(way, p["data"], n, p["steps"]))
    gb = lambda rows, key: [r[key] / GB for r in rows]  # noqa: E731
    for (way, n), rows in samples.items():
        g = f"{way} n={n}"
        res.add(g, "peak (ru_maxrss)", "GB", gb(rows, "ru_maxrss"))
        res.add(g, "resident after loading", "GB", gb(rows, "after_load"))
        if all(r["train_peak"] is not None for r in rows):
            res.add(g, "peak while training", "GB", gb(rows, "train_peak"))
        if way == "recipe":
            res.add(g, "window buffers", "GB", [buffer_bytes(r["pool_frames"], n) / GB for r in rows])
    # the recipe's peak beyond its window buffers, from its smallest measured n
    n0 = min(p["recipe"])
    rows = samples[("recipe", n0)]
    base = [(r["ru_maxrss"] - buffer_bytes(r["pool_frames"], n0)) for r in rows]
    frames = rows[0]["pool_frames"]
    for n in (*p["recipe"][1:], *p["computed"]):
        g = f"recipe n={n} (computed)"
        res.add(g, "peak (ru_maxrss)", "GB", [(b + buffer_bytes(frames, n)) / GB for b in base])
        res.add(g, "window buffers", "GB", [buffer_bytes(frames, n) / GB])
    lo, hi = min(p["ours"]), max(p["ours"])
    pairs = list(zip(samples[("ours", hi)], samples[("ours", lo)]))
    ratio_g = f"ours n={hi} / ours n={lo}"
    g = res.add(ratio_g, "peak ratio", "x", [a["ru_maxrss"] / b["ru_maxrss"] for a, b in pairs]).median
    measured = f"{g:.3f}x"
    if all(a["train_peak"] and b["train_peak"] for a, b in pairs):
        t = res.add(ratio_g, "training peak ratio", "x", [a["train_peak"] / b["train_peak"] for a, b in pairs]).median
        measured += f" (peak while training alone: {t:.3f}x)"
    res.goals.append(Goal(f"ours at n={hi} within {TARGET}x of ours at n={lo}", g <= TARGET, measured))
    top = res.get(f"recipe n={hi} (computed)", "peak (ru_maxrss)").median
    res.headline = (f"Memory: a training epoch's peak at n_concat = {hi} is {g:.2f}x its peak at n = {lo} on the "
                    f"`{p['data'].split(':')[-1]}`-size corpus ({res.get(f'ours n={hi}', 'peak (ru_maxrss)').median:.1f} GB); "
                    f"the recipe's would be {top:.1f} GB.")
    res.notes += [
        f"data: `{p['data']}` ({frames:,} frames in train + val), strong MLP, batch {BATCH_SIZE}, "
        f"{p['steps']} training steps per child (peak memory is reached in the first steps), one child process "
        "per configuration and repeat.",
        "resident after loading: the corpus loaded and split (train and val are copies of the pool, as fit gets them); "
        "where ru_maxrss is above the peak while training, the process peaked while loading, the same at every n.",
        f"recipe, computed: measured recipe peak at n={n0} minus its buffers, plus frames x 39 x n x 4 bytes "
        "(train + val windows); rows where the buffers would not fit a fair share of this machine are only computed. "
        "Rows measured at some n also have a computed twin, to check the formula.",
    ]
    res.seconds = time.perf_counter() - started
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="child of benchmark 2: prints its memory figures as JSON")
    ap.add_argument("--child", choices=("ours", "recipe", "warm"), required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.child == "warm":
        from ablation.data.sources import load_dataset

        load_dataset(args.data)
        print(json.dumps({"pid": os.getpid()}))
        return
    print(json.dumps(child_main(args.child, args.data, args.n, args.steps)))


if __name__ == "__main__":
    main()
