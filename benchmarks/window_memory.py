"""Peak memory and speed of on-the-fly context windows, next to the course recipe.

The course recipe materialises every window before training: a float32 buffer
of ``frames x 39n``. This script gathers the same windows batch by batch over a
whole corpus (one shuffled pass, as an epoch does) and reports the process's
peak resident memory during that pass, then the gather throughput at a few n.

    python benchmarks/window_memory.py                       # synthphone:libri, n = 61
    python benchmarks/window_memory.py --preset tiny --n 11 --throughput
    python benchmarks/window_memory.py --random 4286         # random corpus of libriphone's shape
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

from ablation.data.corpus import Corpus
from ablation.data.sources import LIBRIPHONE_CLASSES, from_utterances, load_dataset
from ablation.data.windows import WindowBatches

GB = 1e9


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss() -> int:
    return _status_bytes("VmRSS") or 0


def peak_rss() -> int:
    """Peak resident memory (since start, or since the last ``reset_peak``)."""
    return _status_bytes("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> bool:
    """Restart the peak-RSS counter (Linux ``clear_refs``), so loading does not count."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def random_corpus(n_utts: int = 4286, seed: int = 0) -> Corpus:
    """Random frames with libriphone's shape: lengths 236..998 (mean 617, 2.64M frames at 4286)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(236, 999, n_utts)
    feats = [rng.standard_normal((t, 39), dtype=np.float32) for t in lengths]
    labels = [rng.integers(0, 41, t) for t in lengths]
    return from_utterances("random", feats, labels, [f"{u}-0-{u}" for u in range(n_utts)], LIBRIPHONE_CLASSES)


def one_pass(corpus: Corpus, n: int, batch_size: int, max_batches: int | None = None) -> tuple[int, float]:
    """Frames gathered and seconds taken by one shuffled pass (or its first ``max_batches``)."""
    batches = WindowBatches(corpus, n, batch_size, shuffle=True, seed=0)
    frames, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        frames += x.shape[0]
    return frames, time.perf_counter() - start


def measure(corpus: Corpus, n: int = 61, batch_size: int = 4096) -> dict:
    """Peak memory of one full pass of n-frame windows, and the recipe's buffer size."""
    rss_loaded = current_rss()
    reset_ok = reset_peak()
    frames, seconds = one_pass(corpus, n, batch_size)
    return {
        "frames": corpus.n_frames,
        "n": n,
        "batch_size": batch_size,
        "batches": -(-corpus.n_frames // batch_size),
        "corpus_bytes": corpus.features.nbytes,
        "rss_after_load_bytes": rss_loaded,
        "peak_rss_bytes": peak_rss(),
        "peak_counts_loading": not reset_ok,
        "batch_bytes": batch_size * n * 39 * 4,
        "recipe_bytes": corpus.n_frames * 39 * n * 4,
        "pass_seconds": seconds,
        "frames_per_s": frames / seconds,
    }


def throughput(corpus: Corpus, ns=(1, 11, 61), batch_size: int = 4096, max_batches: int = 100) -> dict[int, float]:
    """Frames per second of the shuffled gather at each n (first ``max_batches`` batches)."""
    out = {}
    for n in ns:
        frames, seconds = one_pass(corpus, n, batch_size, max_batches)
        out[n] = frames / seconds
    return out


def report(result: dict) -> str:
    r = result
    since = "since start (loading included)" if r["peak_counts_loading"] else "during the pass"
    return "\n".join([
        f"corpus: {r['frames']:,} frames ({r['corpus_bytes'] / GB:.2f} GB of features); n = {r['n']}, "
        f"batch {r['batch_size']} ({r['batches']} batches of {r['batch_bytes'] / 1e6:.0f} MB)",
        f"resident after loading: {r['rss_after_load_bytes'] / GB:.2f} GB",
        f"peak resident {since}: {r['peak_rss_bytes'] / GB:.2f} GB",
        f"course recipe (frames x 39 x n x 4 bytes, windows only): {r['recipe_bytes'] / GB:.1f} GB",
        f"one pass: {r['pass_seconds']:.1f} s, {r['frames_per_s']:,.0f} frames/s",
    ])


def load(preset: str = "libri", random_utts: int = 0) -> Corpus:
    return random_corpus(random_utts) if random_utts else load_dataset(f"synthphone:{preset}").pool


def main(preset: str = "libri", n: int = 61, batch_size: int = 4096, random_utts: int = 0, ns=()) -> dict:
    """Measure and print; ``ns`` adds the throughput at those window lengths."""
    corpus = load(preset, random_utts)
    result = measure(corpus, n, batch_size)
    print(report(result))
    result["throughput"] = throughput(corpus, ns, batch_size) if ns else {}
    for k, fps in result["throughput"].items():
        print(f"gather throughput n = {k:>2}: {fps / 1e6:.2f} M frames/s")
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="libri", help="synthphone preset (default libri)")
    p.add_argument("--n", type=int, default=61)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--random", type=int, default=0, metavar="UTTS", help="use a random corpus of UTTS utterances")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--throughput", action="store_true", help="also time the gather at n = 1, 11, 61")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    main(args.preset, args.n, args.batch_size, args.random, (1, 11, 61) if args.throughput else ())
