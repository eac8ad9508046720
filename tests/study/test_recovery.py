"""The study protocol under faults: a kill at each step (through the test-only
hook ``ablation.faults``), signals, dead --jobs workers, bounded tuning; each
followed by a re-run that must end with every cell exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablation.cli import main

REPO = Path(__file__).resolve().parents[2]

SMALL = """
question = "Does depth matter on the tiny corpus?"
base = "mlp_strong"
baseline = {{ "model.depth" = {baseline} }}
seeds = [0]
[factors]
"model.depth" = [1, 2]
[set]
"train.epochs" = {epochs}
"data.source" = "synthphone:tiny"
"optim.batch_size" = 256
"model.width" = 32
"""

TUNE = """
question = "Which learning rate?"
base = "mlp_strong"
sampler = "tpe"
n_trials = {n}
seeds = [0]
[search]
"optim.lr" = {{ low = 0.0001, high = 0.01, log = true }}
[set]
"train.epochs" = 1
"data.source" = "synthphone:tiny"
"optim.batch_size" = 256
"model.width" = 32
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    shutil.copytree(REPO / "experiments", tmp_path / "experiments")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "small.toml").write_text(SMALL.format(epochs=1, baseline=1))
    monkeypatch.setenv("ABLATION_HOME", str(tmp_path))
    monkeypatch.setenv("ABLATION_GRACE_S", "3")  # a claim stranded by a kill is reaped after 3 s
    for name in ("MLFLOW_TRACKING_URI", "ABLATION_STORAGE", "ABLATION_TEST_FAULT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _cli(*args) -> int:
    jobs = [] if "--jobs" in args else ["--jobs", "1"]
    return main(["run", *args, "--no-report", *jobs])


def _popen(home: Path, *args, fault: str | None = None, study: str = "small") -> subprocess.Popen:
    env = dict(os.environ, ABLATION_HOME=str(home), PYTHONPATH=str(REPO), ABLATION_GRACE_S="3")
    env.pop("ABLATION_TEST_FAULT", None)
    if fault:
        env["ABLATION_TEST_FAULT"] = fault
    jobs = [] if "--jobs" in args else ["--jobs", "1"]
    return subprocess.Popen([sys.executable, "-m", "ablation", "run", study, "--no-report", *jobs, *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _trials(home: Path, name: str = "small"):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{home / 'mlruns' / 'optuna.db'}").get_trials()


def _cells(home: Path, name: str = "small"):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    exp = c.get_experiment_by_name(name)
    runs = [] if exp is None else c.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("ablation.kind") == "cell"]


def assert_each_cell_once(home: Path, n_cells: int = 2, name: str = "small") -> None:
    """Every cell exactly once FINISHED in MLflow and COMPLETE in Optuna; nothing RUNNING."""
    cells = _cells(home, name)
    finished = sorted((r.data.tags["ablation.arm"], r.data.tags["ablation.seed"]) for r in cells
                      if r.info.status == "FINISHED")
    assert len(finished) == n_cells and len(set(finished)) == n_cells, finished
    assert not [r for r in cells if r.info.status == "RUNNING"]
    trials = _trials(home, name)
    complete = [t.user_attrs["cell"] for t in trials if t.state.name == "COMPLETE"]
    assert sorted(complete) == list(range(n_cells))
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


@pytest.mark.slow
@pytest.mark.parametrize("step", ["claim.running", "claim.pid", "run.created", "store.mlflow", "store.optuna"])
def test_a_kill_at_each_protocol_step_is_repaired_by_a_rerun(home, step):
    proc = _popen(home, fault=step)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    if step.startswith("store."):  # killed while the store was migrated aside: nothing half-made in place
        name = "mlflow.db" if step == "store.mlflow" else "optuna.db"
        assert not (home / "mlruns" / name).exists()
        assert list((home / "mlruns").glob(f".{name}.creating-*"))
    started = time.monotonic()
    assert _cli("small") == 0
    assert_each_cell_once(home)
    assert not list((home / "mlruns").glob(".*.creating-*"))
    if step.startswith("claim."):
        # the stranded claim was failed (once) and its cell run again; the wait is the grace period, not forever
        failed = [t for t in _trials(home) if t.state.name == "FAIL"]
        assert len(failed) == 1 and failed[0].user_attrs["error"] in (
            "worker died while claiming the cell", f"worker {socket.gethostname()}:{failed[0].user_attrs.get('pid')} died")
        assert time.monotonic() - started < 120


@pytest.mark.slow
def test_a_run_killed_mid_cell_leaves_a_killed_run_and_the_rerun_completes(home):
    proc = _popen(home, fault="cell.epoch")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert _cli("small") == 0
    assert_each_cell_once(home)
    assert [r.info.status for r in _cells(home)].count("KILLED") == 1


def _wait_for_running(home: Path, timeout: float = 180.0, pid_not: int | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            running = [t for t in _trials(home) if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
                       and t.user_attrs.get("pid") != pid_not]
        except Exception:  # the study is not created yet
            running = []
        if running:
            return running[0]
        time.sleep(0.2)
    raise AssertionError("no cell started in time")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_like_ctrl_c(home, sig):
    (home / "studies" / "small.toml").write_text(SMALL.format(epochs=300, baseline=1))
    proc = _popen(home)
    trial = _wait_for_running(home)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err
    t = next(t for t in _trials(home) if t.number == trial.number)
    assert t.state.name == "FAIL" and t.user_attrs["error"] == "interrupted by the user"
    statuses = [r.info.status for r in _cells(home)]
    assert statuses == ["KILLED"]  # the cell that ran; no other started


@pytest.mark.slow
def test_ctrl_c_to_the_main_process_stops_every_jobs_worker(home):
    (home / "studies" / "small.toml").write_text(SMALL.format(epochs=300, baseline=1))
    proc = _popen(home, "--jobs", "2")
    _wait_for_running(home)
    proc.send_signal(signal.SIGINT)  # to the main process only, not its process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    trials = _trials(home)
    assert not [t for t in trials if t.state.name == "RUNNING"] and not [t for t in trials if t.state.name == "COMPLETE"]
    assert not [r for r in _cells(home) if r.info.status in ("RUNNING", "FINISHED")]


@pytest.mark.slow
def test_a_dead_jobs_worker_is_replaced_and_the_study_finishes_with_its_report(home):
    (home / "studies" / "small.toml").write_text(SMALL.format(epochs=6, baseline=1))
    env = dict(os.environ, ABLATION_HOME=str(home), PYTHONPATH=str(REPO), ABLATION_GRACE_S="3")
    proc = subprocess.Popen([sys.executable, "-m", "ablation", "run", "small", "--jobs", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trial = _wait_for_running(home, pid_not=proc.pid)
    os.kill(int(trial.user_attrs["pid"]), signal.SIGKILL)  # one worker, as the OOM killer would
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (out, err)
    assert f"worker {trial.user_attrs['pid']} died" in err
    assert_each_cell_once(home)
    report = (home / "reports" / "small.md").read_text()
    assert "depth=1" in report and "depth=2" in report
    assert "not run" not in report and "killed" not in report.lower()  # the report has both cells, not the dead run


def test_changing_the_baseline_or_question_is_noticed_and_new_always_starts_fresh(home, capsys):
    assert _cli("small") == 0
    (home / "studies" / "small.toml").write_text(SMALL.format(epochs=1, baseline=2))
    capsys.readouterr()
    assert _cli("small") == 2
    assert "changed since it began" in capsys.readouterr().err
    (home / "studies" / "small.toml").write_text(SMALL.format(epochs=1, baseline=1).replace("Does depth", "Is depth"))
    assert _cli("small") == 2
    (home / "studies" / "small.toml").write_text(SMALL.format(epochs=1, baseline=1))
    assert _cli("small") == 0 and "0 to run" in capsys.readouterr().out
    assert _cli("small", "--new") == 0  # unchanged, yet fresh: every cell runs again
    assert "0 done, 2 to run" in capsys.readouterr().out
    assert len(_cells(home)) == 4 and sum(t.state.name == "COMPLETE" for t in _trials(home)) == 2


def test_a_tuning_study_whose_every_trial_fails_stops_with_the_error(home, capsys):
    (home / "studies" / "tune.toml").write_text(TUNE.format(n=20))
    code = _cli("tune", "--set", "train.device=cuda")
    err = capsys.readouterr().err
    trials = _trials(home, "tune")
    assert code == 2 and "stopped: its last 3 trials failed with the same error" in err, err
    assert len(trials) == 3 and {t.state.name for t in trials} == {"FAIL"}


@pytest.mark.slow
def test_parallel_tuning_workers_never_exceed_n_trials(home):
    (home / "studies" / "tune.toml").write_text(TUNE.format(n=3))
    procs = [_popen(home, study="tune") for _ in range(2)]  # two hosts' worth of workers, started together
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    states = [t.state.name for t in _trials(home, "tune")]
    assert len(states) == 3 and set(states) <= {"COMPLETE", "PRUNED"}


def test_bad_files_and_folders_are_one_line(home, capsys):
    (home / "studies" / "latin.toml").write_bytes('question = "d\xe9j\xe0 vu"\n'.encode("latin-1"))
    assert main(["run", "latin", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not UTF-8 text" in err, err
    started = time.monotonic()
    assert _cli("small", "--storage", "sqlite:////proc/nowhere/optuna.db") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot create /proc/nowhere" in err, err
    assert _cli("small", "--storage", "sqlite:////proc/optuna.db") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write /proc/optuna.db.lock" in err, err
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_a_stranded_claim_is_repaired_by_new_too(home):
    proc = _popen(home, fault="claim.running")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert _cli("small", "--new") == 0  # the old trials are archived, the fresh study runs every cell
    assert_each_cell_once(home)


@pytest.mark.slow
def test_a_process_that_finishes_its_cell_first_waits_for_the_others_and_reports_every_cell(home):
    """Two processes share one study: the one whose cell ends first does not
    write a report from half the cells; it waits, and both reports are whole."""
    go = home / "go"
    env = dict(os.environ, ABLATION_HOME=str(home), PYTHONPATH=str(REPO), ABLATION_GRACE_S="3")
    cmd = [sys.executable, "-m", "ablation", "run", "small", "--jobs", "1"]
    slow = subprocess.Popen(cmd, env=dict(env, ABLATION_TEST_FAULT=f"cell.epoch@{go}"),  # held in its cell until `go`
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    held = _wait_for_running(home)
    fast = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # a loaded machine starts a process slowly
    while not [t for t in _trials(home) if t.state.name == "COMPLETE"] and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(8)  # time enough to write a report and exit, had it not waited
    still_waiting = fast.poll() is None
    go.touch()
    outs = {"fast": fast.communicate(timeout=300), "slow": slow.communicate(timeout=300)}
    assert still_waiting, outs["fast"]
    assert (fast.returncode, slow.returncode) == (0, 0), outs
    assert "still running in another worker" not in outs["fast"][0] + outs["slow"][0]
    assert_each_cell_once(home)
    assert next(t for t in _trials(home) if t.number == held.number).state.name == "COMPLETE"
    assert "2 / 2 cells done" in (home / "reports" / "small.md").read_text()


@pytest.mark.slow
def test_two_machines_starting_together_create_and_enqueue_the_study_once(tmp_path):
    """Two projects (two machines: nothing local is shared) on one storage, both
    held where they have looked the study up: only the storage's own lock can
    keep the second from creating it again (DuplicatedStudyError) or enqueueing
    every cell twice."""
    shared = tmp_path / "shared"
    shared.mkdir()
    procs = []
    for host in ("a", "b"):
        shutil.copytree(REPO / "experiments", tmp_path / host / "experiments")
        (tmp_path / host / "studies").mkdir()
        (tmp_path / host / "studies" / "small.toml").write_text(SMALL.format(epochs=1, baseline=1))
        env = dict(os.environ, ABLATION_HOME=str(tmp_path / host), PYTHONPATH=str(REPO), ABLATION_GRACE_S="3",
                   ABLATION_TEST_FAULT="prepare.loaded@5")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "ablation", "run", "small", "--jobs", "1", "--no-report",
             "--storage", f"sqlite:///{shared / 'optuna.db'}", "--tracking-uri", f"sqlite:///{shared / 'mlflow.db'}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert not [err for _, err in outs if "Traceback" in err]
    import optuna
    from mlflow.tracking import MlflowClient

    trials = optuna.load_study(study_name="small", storage=f"sqlite:///{shared / 'optuna.db'}").get_trials()
    assert sorted(t.user_attrs["cell"] for t in trials) == [0, 1]  # each cell enqueued once
    assert {t.state.name for t in trials} == {"COMPLETE"}
    c = MlflowClient(tracking_uri=f"sqlite:///{shared / 'mlflow.db'}")
    runs = c.search_runs([c.get_experiment_by_name("small").experiment_id], max_results=100)
    kinds = sorted(r.data.tags.get("ablation.kind") for r in runs)
    assert kinds == ["cell", "cell", "study"] and {r.info.status for r in runs} == {"FINISHED"}


def test_a_ctrl_c_swallowed_during_start_up_still_stops_the_run(home, monkeypatch, capsys):
    from ablation import experiment

    real = experiment.check_compatible

    def swallowing(*a, **kw):  # a library that catches KeyboardInterrupt and carries on
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        return real(*a, **kw)

    monkeypatch.setattr(experiment, "check_compatible", swallowing)
    assert _cli("small") == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (home / "mlruns" / "optuna.db").exists()  # stopped before any store was touched: no cell ran


def test_the_report_reads_the_baseline_the_runner_wrote_and_new_takes_a_changed_one(home):
    """The declared baseline (here not the first arm) travels through the
    study's tags from the runner to the report; after a change, --new's
    report has the new one, not the old."""
    from ablation.report import load_study

    uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    (home / "studies" / "small.toml").write_text(SMALL.format(epochs=1, baseline=2))
    assert _cli("small") == 0
    info = load_study("small", uri).info
    assert (info.baseline, info.baseline_declared) == ("depth=2", True)
    assert sorted(r.data.tags["ablation.arm"] for r in _cells(home) if r.data.tags["ablation.baseline"] == "true") == [
        "depth=2"]
    (home / "studies" / "small.toml").write_text(SMALL.format(epochs=1, baseline=1))
    assert _cli("small", "--new") == 0
    assert load_study("small", uri).info.baseline == "depth=1"
