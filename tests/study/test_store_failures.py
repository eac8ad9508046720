"""A store that fails while a study runs: one line naming it and what to do
(exit 2, no traceback), the cell recorded as failed where it can be, a
database that comes back within the grace period retried, and the re-run
completes; a tracking store that lost its runs has its cells run again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ablation.cli import main

REPO = Path(__file__).resolve().parents[2]

MINI = """
question = "Is a 2-layer MLP better than a 1-layer one on the tiny corpus?"
base = "mlp_strong"
baseline = { "model.depth" = 1 }
seeds = [0]
[factors]
"model.depth" = [1, 2]
[set]
"train.epochs" = 1
"data.source" = "synthphone:tiny"
"model.width" = 32
"""


@pytest.fixture
def project(home, monkeypatch):
    (home / "studies" / "mini.toml").write_text(MINI)
    monkeypatch.setenv("ABLATION_GRACE_S", "2")
    return home


def _trials(home: Path):
    import optuna

    return optuna.load_study(study_name="mini", storage=f"sqlite:///{home / 'mlruns' / 'optuna.db'}").get_trials()


def _finished_cells(home: Path) -> list:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("mini")
    return [r for r in c.search_runs([exp.experiment_id], max_results=100)
            if r.data.tags.get("ablation.kind") == "cell" and r.info.status == "FINISHED"]


def test_a_full_disk_mid_study_is_one_line_the_cell_failed_and_the_rerun_completes(project, monkeypatch, capsys):
    from ablation import experiment

    real = experiment.execute

    def full(*a, **kw):
        raise OSError(28, "No space left on device", str(project / "mlruns" / "mlflow.db"))

    monkeypatch.setattr(experiment, "execute", full)
    assert main(["run", "mini", "--jobs", "1", "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ablation run: a store ran out of disk space (OSError: [Errno 28] No space left on device")
    assert "free space and run again" in err[-1] and not any("Traceback" in line for line in err)
    failed = [t for t in _trials(project) if t.state.name == "FAIL"]
    assert len(failed) == 1 and "ran out of disk space" in failed[0].user_attrs["error"]  # the worker stopped there
    monkeypatch.setattr(experiment, "execute", real)
    assert main(["run", "mini", "--jobs", "1", "--no-report"]) == 0
    assert sorted(r.data.tags["ablation.arm"] for r in _finished_cells(project)) == ["depth=1", "depth=2"]


def test_a_storage_that_comes_back_within_the_grace_period_is_retried(project, monkeypatch):
    from ablation.study import _optuna as O
    from ablation.study.kinds.grid import Grid

    real, calls = Grid.next_job, []

    def flaky(self, session):
        calls.append(1)
        if len(calls) == 1:
            raise O.StorageInternalError("could not connect to server: Connection refused")
        return real(self, session)

    monkeypatch.setattr(Grid, "next_job", flaky)
    assert main(["run", "mini", "--jobs", "1", "--no-report"]) == 0
    assert len(_finished_cells(project)) == 2 and len(calls) > 2


def test_a_storage_that_stays_away_is_one_line_naming_it(project, monkeypatch, capsys):
    from ablation.study import _optuna as O
    from ablation.study.kinds.grid import Grid

    def down(self, session):
        raise O.StorageInternalError("could not connect to server: Connection refused\nIs the server running?")

    monkeypatch.setattr(Grid, "next_job", down)
    assert main(["run", "mini", "--jobs", "1", "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err)
    assert err[-1:] == ["ablation run: the Optuna storage failed (StorageInternalError: could not connect to server: "
                   "Connection refused); check that its database is up and its disk has space, then run again"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_tracking_store_that_lost_its_runs_has_its_cells_run_again(project, capsys, how):
    assert main(["run", "mini", "--jobs", "1", "--no-report"]) == 0
    db = project / "mlruns" / "mlflow.db"
    if how == "deleted":
        db.unlink()
    else:
        db.write_bytes(b"")
    # a fresh process, as a user's next command is (MLflow keeps a store per URI for the life of a process)
    env = dict(os.environ, ABLATION_HOME=str(project), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "ablation", "run", "mini", "--jobs", "1"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 cells (2 arms x 1 seeds), 0 done, 2 to run" in proc.stdout and "report:" in proc.stdout
    assert sorted(r.data.tags["ablation.arm"] for r in _finished_cells(project)) == ["depth=1", "depth=2"]
    proc = subprocess.run([sys.executable, "-m", "ablation", "run", "mini", "--jobs", "1", "--no-report"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "2 done, 0 to run" in proc.stdout  # and the study is whole again


def test_new_started_twice_together_joins_one_fresh_study(project):
    """Workers started together with --new: the second does not archive the study the first just created
    (whose cells the first is about to run), so there is one study and one parent run."""
    from ablation.study import engine, load_study

    assert main(["run", "mini", "--jobs", "1", "--no-report"]) == 0
    study = load_study("mini")
    first = engine.prepare_study(study, engine.open_storage(None), None, new=True)  # archives the finished one
    second = engine.prepare_study(study, engine.open_storage(None), None, new=True)
    assert second.parent == first.parent and second.opt._study_id == first.opt._study_id
    assert len([t for t in _trials(project) if t.state.name == "WAITING"]) == 2
    assert main(["run", "mini", "--jobs", "1", "--no-report"]) == 0  # the first worker's study, whole
    assert len([t for t in _trials(project) if t.state.name == "COMPLETE"]) == 2


def test_jobs_are_capped_at_the_work_and_the_cores(monkeypatch):
    import os

    from ablation.errors import StudyError
    from ablation.study.workers import jobs_for

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert jobs_for(1000, 4) == 4  # a 4-cell study never starts more than 4 workers
    assert jobs_for(1000, 400) == 16 and jobs_for(3, 400) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert jobs_for(1000, 400) == 2
    with pytest.raises(StudyError, match="--jobs must be at least 1, got 0"):
        jobs_for(0, 4)
