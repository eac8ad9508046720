"""Benchmark 5: where the wall time of a real study goes.

Runs ``python -m ablation run STUDY`` as a user would from a fresh clone
(default worker count: one single-threaded worker per core) in a child
process with a temporary ``ABLATION_HOME`` (a copy of ``experiments/`` and
``studies/``) and an empty corpus cache of its own, so the wall time counts
preparing the corpus (generating it and counting its information ceilings,
done once before the workers start) as the README's main command does on a
new machine; the preparation is timed apart, in other empty caches
(generation alone, the ceilings alone, then both side by side as `run` does
them: the hits counted from the start while the corpus is generated). Then the same study runs again in a new
project with the cache now warm, as any later study on the corpus does.
Then the cell runs are read back from MLflow. Each cell logs ``train_time_s``, its pure
training-step time, and ``ablation.worker``, the worker that ran it.

With ``jobs`` workers the machine offers ``jobs x wall`` worker-seconds;
whatever of it is not a training step is overhead, laid out per worker along
the timeline and summed:

- before the first cell: interpreter start-up, imports, study expansion,
  generating the corpus (the cache is empty) and loading it, Optuna and MLflow set-up, starting the worker processes;
- evaluation: validation after every epoch and the final test pass (each
  cell logs it as ``eval_time_s``);
- inside the cells, the rest: split, model build, MLflow logging and
  artifacts;
- between cells: Optuna claim / tell, run creation;
- waiting for the last cell: a worker done while another still runs;
- the report, written once every cell is done.

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
from ablation.commands.run import default_jobs
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
    "full": {"study": "deep_vs_shallow", "data": "synthphone:small-v2", "time_limit_s": 1200},
}
TRAINING_TARGET = 0.90
WALL_TARGET_S = 300.0


def make_home(root: Path) -> Path:
    """A project folder for the child: the checkout's experiments and studies, plus the tiny study."""
    src = paths.project_dir()
    for sub in ("experiments", "studies"):
        shutil.copytree(src / sub, root / sub)
    (root / "studies" / "bench_tiny.toml").write_text(TINY_STUDY)
    return root


# what `run` imports before its first cell (torch, MLflow, Optuna, scikit-learn come with them)
RUN_IMPORTS = "import mlflow, optuna; import ablation.experiment, ablation.study.engine, ablation.report"
# what a project's first command does once: create the MLflow and Optuna SQLite stores
CREATE_STORES = "from ablation import tracking; from ablation.study import engine; tracking.client(None); engine.open_storage(None)"
# what a fresh clone's first study does before anything else: generate the embedded corpus, then count
# the information ceilings of the study's views (``prepare_study``, once per corpus, before any worker)
GENERATE = "from ablation.data.sources import load_dataset; load_dataset({source!r})"
PREPARE = ("from ablation.study import load_study; from ablation.data.cache import prepare_study; "
           "prepare_study(load_study({study!r}), {jobs})")
# both as `run` does them: the hits counted in processes from the start while the corpus is generated
BESIDE = ("from ablation.study import load_study; from ablation.data import cache; "
          "from ablation.data.sources import load_dataset; s = load_study({study!r}); "
          "early = cache.count_study_hits_early(s, {jobs}); load_dataset({source!r}); early.wait(); "
          "cache.prepare_study(s, {jobs})")


def _python(args: list[str], home: Path, timeout: float | None = None,
            cache: Path | None = None) -> tuple[float, float, bool]:
    """Run ``python ARGS`` with ``ABLATION_HOME=home`` (and ``ABLATION_CACHE=cache`` when given): wall
    clock start, seconds, and whether it finished within ``timeout`` (past it, the child is killed)."""
    env = {**os.environ, "ABLATION_HOME": str(home)}
    if cache is not None:
        env["ABLATION_CACHE"] = str(cache)
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
    """Start, end (epoch seconds), ``train_time_s`` and worker of every finished cell run, in start order."""
    from ablation import tracking

    c = tracking.client(f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    runs = tracking.search_runs(c, study, f"tags.`{tracking.TAG}kind` = 'cell' and attributes.status = 'FINISHED'")
    if runs is None or runs.empty:
        raise RuntimeError(f"study {study} left no finished cell run in {home}")
    rows = [
        {"start": r["start_time"].timestamp(), "end": r["end_time"].timestamp(),
         "train": float(r["metrics.train_time_s"]), "eval": float(r["metrics.eval_time_s"]), "worker": r[f"tags.{tracking.TAG}worker"],
         "name": r.get("tags.mlflow.runName", "")}
        for _, r in runs.iterrows()
    ]
    return sorted(rows, key=lambda r: r["start"])


def by_worker(cells: list[dict]) -> dict[str, list[dict]]:
    """Each worker's cells, in start order."""
    workers: dict[str, list[dict]] = {}
    for r in sorted(cells, key=lambda r: r["start"]):
        workers.setdefault(r["worker"], []).append(r)
    return workers


def timeline(cells: list[dict], t0: float, t1: float, jobs: int) -> dict[str, float]:
    """The ``jobs x (t1 - t0)`` worker-seconds split into training and each kind of overhead.

    Each worker's time runs from ``t0`` (the command starts) to ``t1`` (it
    ends); a worker that ran no cell waited the whole time up to the report.
    """
    workers = by_worker(cells)
    if len(workers) > jobs:
        raise ValueError(f"{len(workers)} workers ran cells, more than the {jobs} started")
    last = max(r["end"] for r in cells)
    parts = {"training steps": 0.0, "before the first cell": 0.0, "evaluation": 0.0, "in cells, the rest": 0.0,
             "between cells": 0.0, "waiting for the last cell": (jobs - len(workers)) * (last - t0),
             "report": jobs * (t1 - last)}
    for rows in workers.values():
        train, evaluation = sum(r["train"] for r in rows), sum(r["eval"] for r in rows)
        parts["training steps"] += train
        parts["before the first cell"] += rows[0]["start"] - t0
        parts["evaluation"] += evaluation
        parts["in cells, the rest"] += sum(r["end"] - r["start"] for r in rows) - train - evaluation
        parts["between cells"] += sum(max(0.0, b["start"] - a["end"]) for a, b in zip(rows, rows[1:]))
        parts["waiting for the last cell"] += last - rows[-1]["end"]
    return {"wall": t1 - t0, "worker-seconds": jobs * (t1 - t0), **parts}


def idle_spans(cells: list[dict]) -> str:
    """Where the workers waited, in words: the longest gap between a worker's cells (and the cell it
    waited for), and the cells that ran alone at the end while the other workers had nothing left."""
    workers = by_worker(cells)
    gaps = [(b["start"] - a["end"], b["name"]) for rows in workers.values() for a, b in zip(rows, rows[1:])]
    gap, before = max(gaps, default=(0.0, ""))
    ends = sorted(rows[-1]["end"] for rows in workers.values())
    alone = [r["name"] for r in cells if len(ends) > 1 and r["end"] > ends[-2]]
    tail = ends[-1] - ends[-2] if len(ends) > 1 else 0.0
    gap_words = f"longest gap between a worker's cells {gap:.1f} s (before `{before}`)" if gaps else "no worker ran two cells"
    return f"{gap_words}; the last {tail:.1f} s ran {', '.join(f'`{n}`' for n in alone) or 'nothing'} alone"


def _study_run(home: Path, study: str, cache: Path, time_limit_s: float, jobs: int) -> tuple[dict, list[dict], bool]:
    """The study run from the stores on (created first, outside the clock): its timeline, cells, whether it ended."""
    _python(["-c", CREATE_STORES], home)
    t0, seconds, finished = _python(["-m", "ablation", "run", study], home, time_limit_s, cache=cache)
    cells = cell_runs(home, study)
    # a study stopped at the time limit is read up to the end of its last finished cell
    end = t0 + seconds if finished else max(r["end"] for r in cells)
    return timeline(cells, t0, end, jobs), cells, finished


def run(size: str = "full", repeats: int = 3) -> BenchResult:
    """Start-up is timed ``repeats`` times; the study runs twice, cold and warm (it takes minutes at full size)."""
    p = PARAMS[size]
    started = time.perf_counter()
    jobs = default_jobs()
    res = BenchResult("study", f"5. Study overhead (`python -m ablation run {p['study']}`)")
    with tempfile.TemporaryDirectory(prefix="ablation-bench-") as tmp:
        home = make_home(Path(tmp) / "home")
        n_cells = load_study(str(home / "studies" / f"{p['study']}.toml")).n_cells
        startup = [_python(["-m", "ablation", "--help"], home)[1] for _ in range(repeats)]
        imports = [_python(["-c", RUN_IMPORTS], home)[1] for _ in range(repeats)]
        stores = _python(["-c", CREATE_STORES], home)[1]
        # the preparation alone, into an empty cache of its own: the part of the wall a second study skips
        prep_cache = Path(tmp) / "cache-prep"
        generation = _python(["-c", GENERATE.format(source=p["data"])], home, cache=prep_cache)[1]
        ceilings = _python(["-c", PREPARE.format(study=p["study"], jobs=jobs)], home, cache=prep_cache)[1]
        preparation = _python(["-c", BESIDE.format(study=p["study"], jobs=jobs, source=p["data"])], home,
                              cache=Path(tmp) / "cache-beside")[1]
        parts, cells, finished = _study_run(home, p["study"], Path(tmp) / "cache", p["time_limit_s"], jobs)
        warm, warm_cells, warm_finished = _study_run(make_home(Path(tmp) / "home-warm"), p["study"],
                                                     Path(tmp) / "cache", p["time_limit_s"], jobs)
    wall, capacity = parts["wall"], parts["worker-seconds"]
    res.add("python -m ablation --help", "seconds", "s", startup)
    res.add("python -c 'import what run imports'", "seconds", "s", imports)
    res.add("store creation (once per project, not in the wall)", "seconds", "s", [stores])
    res.add("corpus generation, empty cache (alone)", "seconds", "s", [generation])
    res.add("information ceilings of the corpus, once (alone)", "seconds", "s", [ceilings])
    res.add("both, side by side as `run` does them (inside the cold wall)", "seconds", "s", [preparation])
    for name, seconds in parts.items():  # the worker-seconds: shares of the rows below add up to 100%
        res.add(name, "seconds", "s", [seconds])
        res.add(name, "seconds, warm cache", "s", [warm[name]])
        if name not in ("wall", "worker-seconds"):
            res.add(name, "share of worker-seconds", "%", [100 * seconds / capacity])
            res.add(name, "share, warm cache", "%", [100 * warm[name] / warm["worker-seconds"]])
    # What the protocol itself trains and measures: the training steps, the validation after every epoch
    # on the whole val split (each run's val peak and its early stop are read from it) and the test pass
    # of the restored best epoch. A validation is a forward pass over a quarter as many frames as an epoch
    # trains (a forward pass is about a third of a step): about a tenth of the training steps' time. With
    # it counted as overhead no study could reach 90%, so the goals count it with the training.
    protocol, protocol_warm = (p_["training steps"] + p_["evaluation"] for p_ in (parts, warm))
    # the preparation is a one-off per corpus (a later study finds it cached): the per-study share
    # leaves out the worker-seconds that every worker spent waiting for it
    steady = capacity - jobs * min(preparation, wall)
    share_steady, share_warm = protocol / steady, protocol_warm / warm["worker-seconds"]
    train_steady, train_warm = parts["training steps"] / steady, warm["training steps"] / warm["worker-seconds"]
    res.notes.append(f"where the workers waited: cold, {idle_spans(cells)}; warm, {idle_spans(warm_cells)}.")
    res.notes.append(
        f"the protocol's evaluation (the evaluation row: val after every epoch, test once per run) took "
        f"{100 * parts['evaluation'] / parts['training steps']:.1f}% ({100 * warm['evaluation'] / warm['training steps']:.1f}% "
        "warm) of the training steps' seconds: the goals count it with the training, as the protocol's own work.")
    res.goals += [
        Goal(f"training steps and the protocol's evaluation >= {100 * TRAINING_TARGET:.0f}% of worker-seconds "
             f"({jobs} worker(s) x wall; corpus generation and its ceilings, a one-off per corpus, counted "
             "separately)", share_steady >= TRAINING_TARGET,
             f"{100 * share_steady:.1f}% of {jobs} x ({wall:.0f} - {preparation:.0f}) s (training steps alone "
             f"{100 * train_steady:.1f}%); {100 * protocol / capacity:.1f}% with the preparation"),
        Goal(f"warm cache (a later study on the corpus): training steps and the protocol's evaluation >= "
             f"{100 * TRAINING_TARGET:.0f}% of worker-seconds", share_warm >= TRAINING_TARGET,
             f"{100 * share_warm:.1f}% of {jobs} x {warm['wall']:.0f} s (training steps alone "
             f"{100 * train_warm:.1f}%)"),
        Goal(f"the README's main command, from a fresh clone (empty corpus cache), within about "
             f"{WALL_TARGET_S / 60:.0f} minutes on this machine",
             wall <= WALL_TARGET_S, f"{wall:.0f} s for {len(cells)} cells, {preparation:.0f} s of it preparing the corpus"),
    ]
    for ended, done in ((finished, cells), (warm_finished, warm_cells)):
        if not ended:
            res.goals.append(Goal(f"the study finished within the benchmark's limit of {p['time_limit_s'] / 60:.0f} min",
                                  False, f"{len(done)} of {n_cells} cells done; figures cover those cells"))
    res.headline = (f"`python -m ablation run {p['study']}` from a fresh clone (empty corpus cache): {wall:.0f} s wall "
                    f"for {len(cells)} cells on {jobs} worker(s), {preparation:.0f} s of it preparing the corpus once; "
                    f"training steps and the protocol's evaluation {100 * share_steady:.1f}% of the worker-seconds "
                    f"without the preparation (training steps alone {100 * train_steady:.1f}%), "
                    f"{100 * share_warm:.1f}% ({warm['wall']:.0f} s wall) with the corpus cached.")
    res.notes += [
        f"one run of the study as the README runs it from a fresh clone ({len(cells)} cells, quick scale, "
        f"`{p['data']}`, an empty corpus cache: generation and the information ceilings count), then one in a new "
        f"project with the cache warm: {jobs} worker(s), this machine's default (each single-threaded when there are "
        "several); the rows from training steps down split the "
        f"{jobs} x wall worker-seconds of each run, their shares add up to 100%.",
        "'in cells, the rest' is each cell run's MLflow duration minus its train_time_s and eval_time_s; 'waiting for "
        "the last cell' is a worker done while another still runs; 'report' counts every worker's slot.",
        "on a machine shared with other work the seconds are noisy; the shares, measured within one run, are what "
        "the goals read.",
    ]
    res.seconds = time.perf_counter() - started
    return res
