"""Benchmark 6: how long a user waits for a one-line refusal of bad input.

Each command runs in a fresh interpreter (``python -m ablation ...``), as a
user types it, in a temporary project whose MLflow and Optuna stores exist
(created before the clock starts), so ``report`` and ``predict`` look a name
up in a real store. A refusal is checked to be what the CLI promises: exit
status 2 and one line on stderr. The time is the whole process, start-up
included: what the user waits. ``data ceiling --n 100001`` is no error: a
window longer than every utterance is answered as the utterance ceiling, timed
with its corpus already cached.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_study import CREATE_STORES, make_home
from benchmarks.report import BenchResult, Goal

TARGET_S = 1.0
# what was asked, the command line, and whether it is refused (exit 2) or answered (exit 0)
CASES = [
    ("train: an experiment file that does not exist", ["train", "no/such/experiment.toml"], 2),
    ("train: a data folder that does not exist", ["train", "mlp_strong", "--data", "libriphone:/no/such/folder"], 2),
    ("report: a study the store does not hold", ["report", "no_such_study"], 2),
    ("predict: a run the store does not hold", ["predict", "0" * 32, "--data", "synthphone:tiny"], 2),
    ("data info: a data folder that does not exist", ["data", "info", "--data", "libriphone:/no/such/folder"], 2),
    ("data ceiling: an even window length", ["data", "ceiling", "--n", "4"], 2),
]
WIDE = ("data ceiling --n 100001 (answered: the utterance ceiling; corpus cached)",
        ["data", "ceiling", "--n", "100001", "--data", "synthphone:tiny"], 0)


def _timed(args: list[str], home: Path, cache: Path) -> tuple[float, int, str]:
    """Seconds, exit status and stderr of ``python -m ablation ARGS`` in a fresh interpreter."""
    env = {**os.environ, "ABLATION_HOME": str(home), "ABLATION_CACHE": str(cache)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("ABLATION_STORAGE", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ablation", *args], cwd=home, env=env, capture_output=True,
                          text=True, check=False, timeout=600)
    return time.perf_counter() - start, proc.returncode, proc.stderr


def run(size: str = "full", repeats: int = 3) -> BenchResult:
    """Every case ``repeats`` times; the sizes are alike (nothing here depends on a corpus's size)."""
    started = time.perf_counter()
    res = BenchResult("errors", "6. Time to a one-line refusal of bad input")
    with tempfile.TemporaryDirectory(prefix="ablation-bench-") as tmp:
        home, cache = make_home(Path(tmp) / "home"), Path(tmp) / "cache"
        subprocess.run([sys.executable, "-c", CREATE_STORES], cwd=home, check=True, capture_output=True,
                       env={**os.environ, "ABLATION_HOME": str(home), "ABLATION_CACHE": str(cache)})
        _timed(WIDE[1], home, cache)  # generates the corpus: the timed runs find it cached
        slow = []
        for label, args, status in [*CASES, WIDE]:
            seconds = []
            for _ in range(repeats):
                s, code, err = _timed(args, home, cache)
                lines = err.strip().splitlines()
                if code != status or (status == 2 and len(lines) != 1):
                    raise RuntimeError(f"python -m ablation {' '.join(args)}: exit {code}, stderr {err.strip()[-500:]!r}; "
                                       f"expected exit {status}" + (" and one line" if status == 2 else ""))
                seconds.append(s)
            res.add(label, "seconds", "s", seconds)
            if status == 2 and statistics.median(seconds) > TARGET_S:
                slow.append(f"{label.split(':')[0]} {statistics.median(seconds):.2f} s")
    refusals = [f for f in res.figures if f.group != WIDE[0]]
    worst = max(refusals, key=lambda f: f.median)
    res.goals.append(Goal(f"every refusal of bad input within {TARGET_S:.0f} s, start-up included",
                          not slow, "; ".join(slow) or f"slowest: {worst.group} {worst.median:.2f} s"))
    res.headline = (f"a one-line refusal of bad input takes {min(f.median for f in refusals):.2f}-{worst.median:.2f} s "
                    f"in a fresh process ({len(refusals)} cases; slowest: {worst.group.split(':')[0]}).")
    res.notes.append("each case in a fresh `python -m ablation` process, start-up included; a refusal is checked to "
                     "exit 2 with one line on stderr. On a machine shared with other work the seconds are noisy.")
    res.seconds = time.perf_counter() - started
    return res
