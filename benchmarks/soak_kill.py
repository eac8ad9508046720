"""Kill soak (not run by default, not part of ``python -m benchmarks``):
SIGKILL ``ablation run`` (main process and its workers) again and again, then
re-run and check that every cell ran exactly once.

    python -m benchmarks.soak_kill --kills 10 --jobs 1
    python -m benchmarks.soak_kill --kills 10 --jobs 2 --seed 1

Most kills wait for a real moment inside a cell: the store shows a trial of
this run RUNNING with its MLflow run, then a random fraction of a cell's
duration (measured from the cells finished so far) passes. The others land at
a random moment of start-up. Each kill is classified by what the stores show
right after it: ``mid-cell`` (a trial of this run RUNNING with its run),
``claim`` (RUNNING, no run yet) or ``outside a cell`` (start-up, or between
two cells). Tiny corpus and tiny models, so its CPU use stays modest. Prints
one line of figures per soak; exits 1 if any cell is missing, duplicated or
left RUNNING.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY = """
question = "Soak: does depth matter on the tiny corpus?"
base = "mlp_strong"
baseline = { "model.depth" = 1 }
seeds = [0, 1, 2]
[factors]
"model.depth" = [1, 2, 3]
[set]
"train.epochs" = 3
"data.source" = "synthphone:tiny"
"optim.batch_size" = 256
"model.width" = 32
"""
CELLS = 9
PHASES = ("mid-cell", "claim", "outside a cell")


def _run(home: Path, jobs: int) -> subprocess.Popen:
    env = dict(os.environ, ABLATION_HOME=str(home), PYTHONPATH=str(REPO), ABLATION_GRACE_S="3")
    return subprocess.Popen([sys.executable, "-m", "ablation", "run", "soak", "--no-report", "--jobs", str(jobs)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


class Stores:
    """Read-only views of the soak's two stores (absent until the first run creates them)."""

    def __init__(self, home: Path):
        self.optuna_url = f"sqlite:///{home / 'mlruns' / 'optuna.db'}"
        self.mlflow_url = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
        self.home = home

    def trials(self) -> list:
        import optuna

        if not (self.home / "mlruns" / "optuna.db").exists():
            return []
        try:
            return optuna.load_study(study_name="soak", storage=self.optuna_url).get_trials()
        except Exception:  # not created yet, or the database is busy: nothing to see this time
            return []

    def cells(self) -> list:
        from mlflow.tracking import MlflowClient

        if not (self.home / "mlruns" / "mlflow.db").exists():
            return []
        c = MlflowClient(tracking_uri=self.mlflow_url)
        exp = c.get_experiment_by_name("soak")
        if exp is None:
            return []
        return [r for r in c.search_runs([exp.experiment_id], max_results=10_000)
                if r.data.tags.get("ablation.kind") == "cell"]

    def in_cell(self, before: set[int]) -> list:
        """This run's RUNNING trials whose MLflow run exists (``before``: RUNNING ones it found)."""
        return [t for t in self.trials() if t.state.name == "RUNNING" and t.number not in before
                and "mlflow_run_id" in t.user_attrs]

    def cell_seconds(self) -> float:
        took = [(r.info.end_time - r.info.start_time) / 1000 for r in self.cells()
                if r.info.status == "FINISHED" and r.info.end_time]
        return sorted(took)[len(took) // 2] if took else 5.0


def _phase(stores: Stores, before: set[int]) -> str:
    """What the kill hit, from the stores as the kill left them (nothing moves after a SIGKILL)."""
    mine = [t for t in stores.trials() if t.state.name == "RUNNING" and t.number not in before]
    if any("mlflow_run_id" in t.user_attrs for t in mine):
        return "mid-cell"
    return "claim" if mine else "outside a cell"


def _kill_one(stores: Stores, jobs: int, rng: random.Random, startup_share: float, max_wait_s: float) -> tuple[str, str, float] | None:
    """One run, killed at a planned moment; returns (planned, hit, seconds after start), or None if it finished first."""
    before = {t.number for t in stores.trials() if t.state.name == "RUNNING"}  # left by the previous kill
    cell_s = stores.cell_seconds()
    proc, started = _run(stores.home, jobs), time.monotonic()
    planned = "start-up" if rng.random() < startup_share else "mid-cell"
    if planned == "start-up":
        deadline = started + rng.uniform(0.2, max_wait_s)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    else:
        deadline = started + 600
        while proc.poll() is None and time.monotonic() < deadline and not stores.in_cell(before):
            time.sleep(0.5)
        time.sleep(rng.uniform(0.0, cell_s))  # a random fraction of a cell
    if proc.poll() is not None:
        return None
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and every worker
    proc.wait()
    return planned, _phase(stores, before), time.monotonic() - started


def soak(kills: int, jobs: int, seed: int, max_wait_s: float, startup_share: float) -> bool:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = random.Random(seed)
    home = Path(tempfile.mkdtemp(prefix="ablation-soak-"))
    shutil.copytree(REPO / "experiments", home / "experiments")
    (home / "studies").mkdir()
    (home / "studies" / "soak.toml").write_text(STUDY)
    stores = Stores(home)
    landed: list[tuple[str, str, float]] = []
    try:
        for _ in range(kills):
            kill = _kill_one(stores, jobs, rng, startup_share, max_wait_s)
            if kill is not None:
                landed.append(kill)
        started = time.monotonic()
        final = _run(home, jobs)
        code = final.wait(timeout=1800)
        final_s = time.monotonic() - started
        trials, runs = stores.trials(), stores.cells()
        finished = [(r.data.tags["ablation.arm"], r.data.tags["ablation.seed"]) for r in runs if r.info.status == "FINISHED"]
        complete = [t.user_attrs.get("cell") for t in trials if t.state.name == "COMPLETE"]
        ok = (code == 0 and len(finished) == len(set(finished)) == CELLS and sorted(complete) == list(range(CELLS))
              and not [r for r in runs if r.info.status == "RUNNING"]
              and not [t for t in trials if t.state.name in ("RUNNING", "WAITING")])
        statuses = {s: sum(r.info.status == s for r in runs) for s in ("FINISHED", "KILLED", "FAILED")}
        hits = collections.Counter((p, h) for p, h, _ in landed)
        hit_text = ", ".join(f"{n} planned {p} hit {h}" for (p, h), n in sorted(hits.items()))
        print(f"jobs={jobs} seed={seed}: {len(landed)}/{kills} kills landed ({hit_text}; at "
              f"{', '.join(f'{s:.1f}' for _, _, s in landed)} s after start); "
              f"final run exit {code} in {final_s:.0f} s; {CELLS} cells: {len(set(finished))} FINISHED once "
              f"({len(finished)} FINISHED runs), {len(complete)} COMPLETE trials of {len(trials)} "
              f"({sum(t.state.name == 'FAIL' for t in trials)} FAIL); runs {statuses}; "
              f"{'every cell exactly once' if ok else 'NOT exactly once'}", flush=True)
        return ok
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-wait", type=float, default=25.0, help="latest start-up kill after a start, in seconds")
    p.add_argument("--startup-share", type=float, default=0.3,
                   help="share of kills aimed at start-up; the others wait for a cell (default 0.3)")
    a = p.parse_args(argv)
    return 0 if soak(a.kills, a.jobs, a.seed, a.max_wait, a.startup_share) else 1


if __name__ == "__main__":
    sys.exit(main())
