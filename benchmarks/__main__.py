"""``python -m benchmarks [--size tiny|full] [--only NAME ...] [--repeats N]``: run, print, write RESULTS.md.

The figures are kept beside it (``results.json``): ``--only`` re-measures some benchmarks and keeps
the last figures of the others, each section saying when it was measured."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

import torch

from benchmarks import SIZES
from benchmarks.report import (README, RESULTS, BenchResult, Entry, carried_sections, machine, merge, render,
                               store_path, tables, with_headline, write)

BENCHMARKS = {
    "pipeline": "benchmarks.bench_pipeline",
    "memory": "benchmarks.bench_memory",
    "floor": "benchmarks.bench_floor",
    "rnn": "benchmarks.bench_rnn",
    "study": "benchmarks.bench_study",
    "regime": "benchmarks.bench_regime",
    "errors": "benchmarks.bench_errors",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks",
                                 description="Run the benchmarks, print their tables, write RESULTS.md.")
    ap.add_argument("--size", choices=SIZES, default="full",
                    help="full: the sizes RESULTS.md reports (about half an hour); tiny: seconds each, for smoke tests")
    ap.add_argument("--only", nargs="+", choices=tuple(BENCHMARKS), metavar="NAME",
                    help=f"run only these ({', '.join(BENCHMARKS)})")
    ap.add_argument("--repeats", type=int, default=3, help="repeats per figure (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in this process (default 1)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        ap.error("--repeats and --threads must be at least 1")
    return args


def run_one(name: str, size: str, repeats: int) -> BenchResult:
    """One benchmark; a failure becomes a result saying so, and the suite goes on."""
    started = time.perf_counter()
    try:
        return importlib.import_module(BENCHMARKS[name]).run(size, repeats)
    except Exception as e:  # any failure: reported in RESULTS.md, exit status 1
        traceback.print_exc()
        return BenchResult(name, name, seconds=time.perf_counter() - started, error=f"{type(e).__name__}: {e}")


def run(argv: list[str] | None = None) -> tuple[list[BenchResult], Path]:
    """Run the benchmarks ``argv`` asks for, print their tables, write the results file; both returned."""
    args = parse_args(argv)
    info = machine()
    torch.set_num_threads(args.threads)
    info["threads used"] = f"{args.threads} torch thread(s) in the benchmark process; the study child keeps torch's default"
    started = time.perf_counter()
    results = []
    for name in args.only or BENCHMARKS:
        print(f"== {name} ({args.size}) ...", file=sys.stderr, flush=True)
        res = run_one(name, args.size, args.repeats)
        print(f"   done in {res.seconds:.0f} s", file=sys.stderr, flush=True)
        if res.figures:
            print(tables(res), file=sys.stderr, flush=True)
        results.append(res)
    store = store_path(args.out)
    previous = Path(args.out).read_text() if Path(args.out).exists() else ""
    entries = merge(store, [Entry(r, info, args.size, args.repeats) for r in results], list(BENCHMARKS))
    command = f"python -m benchmarks --size {args.size}"
    text = render(entries, command, carried_sections(previous, entries, list(BENCHMARKS)))
    path = write(args.out, text)
    print(text)
    print(f"written: {path} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    # a full-size run into RESULTS.md also refreshes the README's headline: the lines of the benchmarks
    # it measured, the others' lines kept with their own dates
    if args.size == "full" and Path(args.out).resolve() == RESULTS:
        fresh = [e for e in entries if not e.result.error]
        readme = with_headline(README.read_text(), fresh, list(BENCHMARKS)) if README.exists() else None
        if readme is None:
            print(f"{README}: no headline markers; headline left as it was", file=sys.stderr)
        else:
            write(README, readme)
            print(f"written: {README} (headline figures)", file=sys.stderr)
    return results, path


def main(argv: list[str] | None = None) -> int:
    results, _ = run(argv)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
