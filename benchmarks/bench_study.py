"""Benchmark 5: where the wall time of a real study goes.

Runs ``python -m ablation run STUDY`` in a child process with a temporary
``ABLATION_HOME`` (a copy of ``experiments/`` and ``studies/``; the corpus
cache stays the user's, warmed first so generation is not timed), then reads
the cell runs back from MLflow. Each cell logs ``train_time_s``: its pure
training-step time. Everything else is overhead, laid out along the timeline:

- before the first cell: interpreter start-up, imports, study expansion,
  data loading, Optuna and MLflow set-up;
- inside the cells, outside training: split, model build, per-epoch and
  final evaluation, MLflow logging and artifacts;
- between cells: Optuna claim / tell, run creation;
- after the last cell: the report.

Start-up alone is timed with ``python -m ablation --help``, and with the
imports ``run`` needs before its first cell; the MLflow and
Optuna stores are created before the clock starts (a project does it once; it
takes seconds of schema migrations) and timed apart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ablation import paths
from ablation.study import load_study
from benchmarks.report import BenchResult, Goal

TINY_STUDY = """\
question = "Benchmark smoke study: does a second hidden layer help at one epoch?"
base = "mlp_strong"
baseline = { "model.depth" = 1 }
seeds = [0]
metric = { name = "val.acc", direction = "maximize" }

[factors]
"model.depth" = [1, 2]

[set]
"train.epochs" = 1
"data.source" = "synthphone:tiny"
"""
PARAMS = {
    "tiny": {"study": "bench_tiny", "data": "synthphone:tiny", "time_limit_s": 600},
    "full": {"study": "deep_vs_shallow", "data": "synthphone:small", "time_limit_s": 1200},
}
OVERHEAD_TARGET = 0.10
WALL_TARGET_S = 300.0


def make_home(root: Path) -> Path:
    """A project folder for the child: the checkout's experiments and studies, plus the tiny study."""
    src = paths.project_dir()
    for sub in ("experiments", "studies"):
        shutil.copytree(src / sub, root / sub)
    (root / "studies" / "bench_tiny.toml").write_text(TINY_STUDY)
    return root


# what `run` imports before its first cell (torch, MLflow, Optuna, scikit-learn come with them)
RUN_IMPORTS = "import mlflow, optuna; import ablation.experiment, ablation.runner, ablation.study, ablation.report"
# what a project's first command does once: create the MLflow and Optuna SQLite stores
CREATE_STORES = "from ablation import runner, tracking; tracking.client(None); runner.open_storage(None)"


def _python(args: list[str], home: Path, timeout: float | None = None) -> tuple[float, float, bool]:
    """Run ``python ARGS`` with ``ABLATION_HOME=home``: wall clock start, seconds, and whether it
    finished within ``timeout`` (past it, the child is killed)."""
    env = {**os.environ, "ABLATION_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("ABLATION_STORAGE", None)
    t0, p0 = time.time(), time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, *args], cwd=home, env=env, capture_output=True, text=True,
                              check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return t0, time.perf_counter() - p0, False
    if proc.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return t0, time.perf_counter() - p0, True


def cell_runs(home: Path, study: str) -> list[dict]:
    """Start, end (epoch seconds) and ``train_time_s`` of every finished cell run, in start order."""
    from ablation import tracking

    c = tracking.client(f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    runs = tracking.search_runs(c, study, f"tags.`{tracking.TAG}kind` = 'cell' and attributes.status = 'FINISHED'")
    if runs is None or runs.empty:
        raise RuntimeError(f"study {study} left no finished cell run in {home}")
    rows = [
        {"start": r["start_time"].timestamp(), "end": r["end_time"].timestamp(),
         "train": float(r["metrics.train_time_s"])}
        for _, r in runs.iterrows()
    ]
    return sorted(rows, key=lambda r: r["start"])


def timeline(cells: list[dict], t0: float, t1: float) -> dict[str, float]:
    """Seconds of the wall time spent training and in each kind of overhead."""
    inside = sum(r["end"] - r["start"] for r in cells)
    gaps = sum(max(0.0, b["start"] - a["end"]) for a, b in zip(cells, cells[1:]))
    train = sum(r["train"] for r in cells)
    return {
        "wall": t1 - t0,
        "training steps": train,
        "before the first cell": cells[0]["start"] - t0,
        "in cells, outside training": inside - train,
        "between cells": gaps,
        "after the last cell (report)": t1 - cells[-1]["end"],
    }


def run(size: str = "full", repeats: int = 3) -> BenchResult:
    """Start-up is timed ``repeats`` times; the study runs once (it takes minutes at full size)."""
    p = PARAMS[size]
    started = time.perf_counter()
    res = BenchResult("study", f"5. Study overhead (`python -m ablation run {p['study']}`)")
    from ablation.data.sources import load_dataset

    load_dataset(p["data"])  # cached before timing: generation is a one-off, not a per-study cost
    with tempfile.TemporaryDirectory(prefix="ablation-bench-") as tmp:
        home = make_home(Path(tmp))
        n_cells = load_study(str(home / "studies" / f"{p['study']}.toml")).n_cells
        startup = [_python(["-m", "ablation", "--help"], home)[1] for _ in range(repeats)]
        imports = [_python(["-c", RUN_IMPORTS], home)[1] for _ in range(repeats)]
        stores = _python(["-c", CREATE_STORES], home)[1]
        t0, seconds, finished = _python(["-m", "ablation", "run", p["study"], "--jobs", "1"], home, p["time_limit_s"])
        cells = cell_runs(home, p["study"])
    # a study stopped at the time limit is read up to the end of its last finished cell
    parts = timeline(cells, t0, t0 + seconds if finished else cells[-1]["end"])
    wall = parts["wall"]
    res.add("python -m ablation --help", "seconds", "s", startup)
    res.add("python -c 'import what run imports'", "seconds", "s", imports)
    res.add("store creation (once per project, not in the wall)", "seconds", "s", [stores])
    for name, seconds in parts.items():  # the timeline: shares add up to the wall
        res.add(name, "seconds", "s", [seconds])
        res.add(name, "share of wall", "%", [100 * seconds / wall])
    overhead = 1.0 - parts["training steps"] / wall
    res.goals += [
        Goal(f"overhead under {100 * OVERHEAD_TARGET:.0f}% of the wall time", overhead < OVERHEAD_TARGET,
             f"{100 * overhead:.1f}% of {wall:.0f} s"),
        Goal(f"the whole study within about {WALL_TARGET_S / 60:.0f} minutes on this machine",
             wall <= WALL_TARGET_S, f"{wall:.0f} s for {len(cells)} cells"),
    ]
    if not finished:
        res.goals.append(Goal(f"the study finished within the benchmark's limit of {p['time_limit_s'] / 60:.0f} min",
                              False, f"{len(cells)} of {n_cells} cells done; figures cover those cells"))
    res.notes += [
        f"one run of the study with --jobs 1, so the timeline is one worker's ({len(cells)} cells, quick scale, `{p['data']}`), torch's default thread count; "
        "the shares of the timeline rows add up to 100% of the wall time.",
        "'in cells, outside training' is each cell run's MLflow duration minus its train_time_s.",
    ]
    res.seconds = time.perf_counter() - started
    return res
