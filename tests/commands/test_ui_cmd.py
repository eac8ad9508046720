"""`ablation ui` serves the project's store on 127.0.0.1 and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ablation.commands.ui import command

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_command_is_lean_and_local():
    argv = command("sqlite:////x/mlruns/mlflow.db", "127.0.0.1", 5000)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--default-artifact-root") + 1] == "file:///x/mlruns/artifacts"


def test_a_non_loopback_host_needs_expose_and_sets_allowed_hosts(capsys):
    from ablation.cli import main

    assert main(["ui", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "add --expose" in err
    argv = command("sqlite:////x/mlruns/mlflow.db", "10.0.0.5", 5000)
    assert "10.0.0.5:5000" in argv[argv.index("--allowed-hosts") + 1].split(",")
    assert "--allowed-hosts" not in command("sqlite:////x/mlruns/mlflow.db", "127.0.0.1", 5000)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ui_serves_the_store_and_stops_on_ctrl_c_or_sigterm(tmp_path, stop):
    port = _free_port()
    env = dict(os.environ, ABLATION_HOME=str(tmp_path), PYTHONPATH=str(REPO))
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "ablation", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.time() + 90, None
        while time.time() < deadline and status != 200:
            time.sleep(0.5)
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status
            except OSError:
                pass
        assert status == 200, "the UI did not come up within 90 s"
        # bound to loopback only: no listener on the wildcard address
        listeners = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listeners and f"0.0.0.0:{port}" not in listeners
        assert (tmp_path / "mlruns" / "mlflow.db").exists()
    finally:
        proc.send_signal(stop)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert f"open http://127.0.0.1:{port}" in out and out.rstrip().endswith("stopped")
    with socket.socket() as s:  # the server is gone: the port is free again
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_study_links_open_the_runs_table_in_the_machine_learning_view(tmp_path):
    """MLflow 3 opens an experiment in its GenAI view unless the URL names the
    workflow; the link must land on the runs (checked in a real browser by
    benchmarks/ui_screenshot.py)."""
    from mlflow.tracking import MlflowClient

    from ablation.commands.ui import study_links

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    exp = c.create_experiment("depth")
    c.create_run(exp, tags={"ablation.kind": "study"})
    c.create_experiment("train/mlp_sample")  # not a study: no link
    assert study_links(uri, "127.0.0.1", 5001) == [
        f"  depth: http://127.0.0.1:5001/#/experiments/{exp}/runs?workflowType=machine_learning"]
