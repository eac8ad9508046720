"""A project whose tracking folder (mlruns/, its mlflow.db and optuna.db)
this user cannot write: ``run`` says so in one line, exits 2, and writes
nothing to either store. Root ignores file modes, so as root the command runs
as the unprivileged user ``nobody``; otherwise the folder is made read-only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534
STUDY = """
question = "Does depth matter?"
base = "mlp_strong"
baseline = { "model.depth" = 1 }
seeds = [0]
[factors]
"model.depth" = [1, 2]
[set]
"train.epochs" = 1
"data.source" = "synthphone:tiny"
"""


def _as_user():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _nobody() -> tuple[list[str], object]:
    """How to run a command as nobody: util-linux's setpriv where there is one
    (some sandboxes refuse a Python child's exec after its own setuid), else a preexec_fn."""
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"], None
    return [], _as_user


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def readonly_project(_empty_store):
    from ablation.study import engine

    root = Path(tempfile.mkdtemp(prefix="ablation-ro-"))
    try:
        home, scratch = root / "proj", root / "scratch"
        shutil.copytree(REPO / "experiments", home / "experiments")
        (home / "studies").mkdir()
        (home / "studies" / "small.toml").write_text(STUDY)
        (home / "mlruns").mkdir()
        shutil.copyfile(_empty_store, home / "mlruns" / "mlflow.db")  # an existing store of each kind
        engine.open_storage(f"sqlite:///{home / 'mlruns' / 'optuna.db'}").engine.dispose()
        scratch.mkdir()
        env = dict(os.environ, ABLATION_HOME=str(home), PYTHONPATH=str(REPO), ABLATION_CACHE=str(scratch / "cache"),
                   HOME=str(scratch), MPLCONFIGDIR=str(scratch / "mpl"))
        for k in ("MLFLOW_TRACKING_URI", "ABLATION_STORAGE", "ABLATION_TEST_FAULT"):
            env.pop(k, None)
        if os.geteuid() == 0:
            os.chmod(root, 0o755)
            for p in [root, *root.rglob("*")]:  # readable to nobody, writable only by root, but scratch
                p.chmod(0o755 if p.is_dir() else 0o644)
            scratch.chmod(0o777)
            prefix, preexec = _nobody()
            try:
                probe = subprocess.run([*prefix, sys.executable, "-c", "import ablation.cli"], env=env,
                                       preexec_fn=preexec, capture_output=True, text=True)
                reason = probe.stderr.strip()[-200:] if probe.returncode else ""
            except OSError as e:
                reason = str(e)
            if reason:
                pytest.skip(f"user nobody cannot run this checkout's Python: {reason}")
        else:
            for p in (home / "mlruns").iterdir():
                p.chmod(0o444)
            (home / "mlruns").chmod(0o555)
            if os.access(home / "mlruns", os.W_OK):
                pytest.skip("cannot make mlruns/ unwritable here")
            prefix, preexec = [], None
        yield home, scratch, env, (prefix, preexec)
    finally:
        for p in [root, *root.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def _run(env, as_user, *args, command=("run", "small", "--jobs", "1")):
    prefix, preexec = as_user
    return subprocess.run([*prefix, sys.executable, "-m", "ablation", *command, *args], env=env,
                          preexec_fn=preexec, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_read_only_tracking_folder_is_one_line_and_nothing_is_written(readonly_project):
    home, scratch, env, as_user = readonly_project
    before = _snapshot(home)
    r = _run(env, as_user)
    err = r.stderr.strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1, err
    assert err == (f"ablation run: the tracking store {home / 'mlruns' / 'mlflow.db'} is not writable by this user; "
                   "run as its owner, or choose another --tracking-uri"), err
    assert _snapshot(home) == before

    # the Optuna storage elsewhere and writable, the MLflow store read-only: refused before either is touched
    # (it used to create the study there, then fail on MLflow with a traceback)
    elsewhere = scratch / "optuna"
    elsewhere.mkdir()
    elsewhere.chmod(0o777)
    r = _run(env, as_user, "--storage", f"sqlite:///{elsewhere / 'optuna.db'}")
    err = r.stderr.strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1, err
    assert "tracking store" in err and "mlflow.db is not writable by this user" in err and "--tracking-uri" in err, err

    # the MLflow store writable elsewhere, the Optuna storage read-only: one line too
    tracking = scratch / "mlflow"
    tracking.mkdir()
    tracking.chmod(0o777)
    r = _run(env, as_user, "--tracking-uri", f"sqlite:///{tracking / 'mlflow.db'}")
    err = r.stderr.strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1 and "optuna.db" in err, err
    assert _snapshot(home) == before
    assert list(elsewhere.iterdir()) == [] and _snapshot(home) == before


@pytest.mark.slow
def test_list_and_status_read_a_study_on_a_read_only_store(readonly_project):
    """Looking does not write: no lock file, no schema check that writes, nothing created."""
    home, scratch, env, as_user = readonly_project
    before = _snapshot(home)
    r = _run(env, as_user, command=("list",))
    assert r.returncode == 0, r.stderr
    assert re.search(r"^small\s+0/2\s+Does depth matter", r.stdout, re.M), r.stdout
    r = _run(env, as_user, command=("status", "small"))
    assert r.returncode == 0 and "small: not started (2 cells)" in r.stdout, r.stderr
    assert _snapshot(home) == before
