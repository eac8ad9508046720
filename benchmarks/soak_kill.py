"""Kill soak (not run by default, not part of ``python -m benchmarks``):
SIGKILL ``ablation run`` (main process and its workers) at random moments,
again and again, then re-run and check that every cell ran exactly once.

    python -m benchmarks.soak_kill --kills 10 --jobs 1
    python -m benchmarks.soak_kill --kills 10 --jobs 2 --seed 1

Tiny corpus and tiny models, so its CPU use stays modest. Prints one line of
figures per soak; exits 1 if any cell is missing, duplicated or left RUNNING.
"""

from __future__ import annotations

import argparse
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


def _run(home: Path, jobs: int) -> subprocess.Popen:
    env = dict(os.environ, ABLATION_HOME=str(home), PYTHONPATH=str(REPO), ABLATION_GRACE_S="3")
    return subprocess.Popen([sys.executable, "-m", "ablation", "run", "soak", "--no-report", "--jobs", str(jobs)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def soak(kills: int, jobs: int, seed: int, max_wait_s: float) -> bool:
    import optuna
    from mlflow.tracking import MlflowClient

    rng = random.Random(seed)
    home = Path(tempfile.mkdtemp(prefix="ablation-soak-"))
    shutil.copytree(REPO / "experiments", home / "experiments")
    (home / "studies").mkdir()
    (home / "studies" / "soak.toml").write_text(STUDY)
    moments, landed = [], 0
    try:
        for _ in range(kills):
            proc = _run(home, jobs)
            moment = rng.uniform(0.2, max_wait_s)
            try:
                proc.wait(timeout=moment)  # finished before the kill: nothing to kill
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the main process and every worker
                proc.wait()
                landed += 1
                moments.append(moment)
        started = time.monotonic()
        final = _run(home, jobs)
        code = final.wait(timeout=1800)
        final_s = time.monotonic() - started
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        trials = optuna.load_study(study_name="soak", storage=f"sqlite:///{home / 'mlruns' / 'optuna.db'}").get_trials()
        c = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
        exp = c.get_experiment_by_name("soak")
        runs = [r for r in c.search_runs([exp.experiment_id], max_results=10_000) if r.data.tags.get("ablation.kind") == "cell"]
        finished = [(r.data.tags["ablation.arm"], r.data.tags["ablation.seed"]) for r in runs if r.info.status == "FINISHED"]
        complete = [t.user_attrs.get("cell") for t in trials if t.state.name == "COMPLETE"]
        ok = (code == 0 and len(finished) == len(set(finished)) == 9 and sorted(complete) == list(range(9))
              and not [r for r in runs if r.info.status == "RUNNING"]
              and not [t for t in trials if t.state.name in ("RUNNING", "WAITING")])
        statuses = {s: sum(r.info.status == s for r in runs) for s in ("FINISHED", "KILLED", "FAILED")}
        print(f"jobs={jobs} seed={seed}: {landed}/{kills} kills landed (at {', '.join(f'{m:.1f}' for m in moments)} s); "
              f"final run exit {code} in {final_s:.0f} s; 9 cells: {len(set(finished))} FINISHED once "
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
    p.add_argument("--max-wait", type=float, default=25.0, help="latest kill moment after a start, in seconds")
    a = p.parse_args(argv)
    return 0 if soak(a.kills, a.jobs, a.seed, a.max_wait) else 1


if __name__ == "__main__":
    sys.exit(main())
