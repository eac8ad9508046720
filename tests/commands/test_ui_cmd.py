"""`ablation ui` serves the project's store on 127.0.0.1 and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
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
    # the store's own folder serves its mlflow-artifacts: URIs, wherever the project now lies
    assert argv[argv.index("--artifacts-destination") + 1] == "file:///x/mlruns/artifacts"
    assert "--default-artifact-root" not in argv and "--no-serve-artifacts" not in argv


@pytest.mark.parametrize("port", ["99999", "-1", "0", "65536"])
def test_a_port_outside_1_to_65535_is_one_line_before_any_server_starts(port, monkeypatch, capsys):
    from ablation.cli import main

    monkeypatch.setattr(subprocess, "Popen", _no_server)
    assert main(["ui", "--port", port]) == 2
    err = capsys.readouterr().err
    assert err == f"ablation ui: --port {port} is not a TCP port; use one in 1-65535 (default 5000)\n"


def test_a_taken_port_is_one_line_before_any_server_starts(monkeypatch, capsys):
    from ablation.cli import main

    monkeypatch.setattr(subprocess, "Popen", _no_server)
    with socket.socket() as other:  # another server, listening
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--port {port} on 127.0.0.1 is taken" in err and "pick another --port" in err


def test_a_port_left_by_a_stopped_server_is_free(monkeypatch):
    from ablation.commands.ui import check_port

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server's side closes first: its port stays in TIME_WAIT after the listener closes
    listener.close()
    client.close()
    states = subprocess.run(["ss", "-tanH", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert "TIME-WAIT" in states and "LISTEN" not in states
    check_port("127.0.0.1", port)  # no error: the server can bind it again


def _no_server(*args, **kwargs):
    raise AssertionError(f"a process was started: {args}")


def test_a_non_loopback_host_needs_expose_and_sets_allowed_hosts(capsys):
    from ablation.cli import main

    assert main(["ui", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "add --expose" in err
    argv = command("sqlite:////x/mlruns/mlflow.db", "10.0.0.5", 5000)
    assert "10.0.0.5:5000" in argv[argv.index("--allowed-hosts") + 1].split(",")
    assert "--allowed-hosts" not in command("sqlite:////x/mlruns/mlflow.db", "127.0.0.1", 5000)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ui_serves_the_store_and_stops_on_ctrl_c_or_sigterm(tmp_path, stop):
    port = _free_port()
    env = dict(os.environ, ABLATION_HOME=str(tmp_path), PYTHONPATH=str(REPO))
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "ablation", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    printed = []
    try:
        while not any("open http" in line for line in printed):  # the link: printed once the server answers
            printed.append(lines.get(timeout=120)[1])
        assert _get(f"http://127.0.0.1:{port}/health") == b"OK"
        # bound to loopback only: no listener on the wildcard address
        listeners = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listeners and f"0.0.0.0:{port}" not in listeners
        assert (tmp_path / "mlruns" / "mlflow.db").exists()
    finally:
        proc.send_signal(stop)
        proc.wait(timeout=60)
    reader.join(timeout=10)  # the output's end
    while not lines.empty():
        printed.append(lines.get_nowait()[1])
    out = "".join(printed)
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
    c.create_run(exp, tags={"ablation.kind": "study", "ablation.study.metric": "val.acc",
                            "ablation.study.factors": '["model.depth"]'})
    c.create_experiment("train/mlp_sample")  # not a study: no link
    assert study_links(uri, "127.0.0.1", 5001) == [
        f"  depth: http://127.0.0.1:5001/#/experiments/{exp}/runs?workflowType=machine_learning"
        "&viewStateShareKey=ablation-arms"]
    # the view the link opens: MLflow's UI reads it from this experiment tag
    view = json.loads(c.get_experiment(exp).tags["mlflow.sharedViewState.ablation-arms"])
    assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "ablation.arm"}]
    assert view["selectedColumns"] == ["metrics.`val.acc`", "params.`model.depth`", "tags.`ablation.seed`",
                                       "metrics.`n_params`"]
    assert view["runsHiddenMode"] == "SHOW_ALL"  # every run drawn in the charts, not the first 10
    # its chart view: the factor against the metric and the metric per run, in a section of their own
    charts = {c["type"]: c for c in view["compareRunCharts"]}
    assert charts["SCATTER"]["xaxis"] == {"key": "model.depth", "type": "PARAM"}
    assert charts["SCATTER"]["yaxis"] == {"key": "val.acc", "type": "METRIC"}
    assert charts["BAR"]["metricKey"] == "val.acc"
    assert view["useGroupedValuesInCharts"] is False  # one point per run, not one per arm


def test_a_read_only_store_gets_plain_links(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from ablation.commands.ui import study_links

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    exp = c.create_experiment("depth")
    c.create_run(exp, tags={"ablation.kind": "study"})

    def refuse(*args, **kwargs):
        raise PermissionError("attempt to write a readonly database")

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", refuse)
    assert study_links(uri, "127.0.0.1", 5001) == [
        f"  depth: http://127.0.0.1:5001/#/experiments/{exp}/runs?workflowType=machine_learning"]


def _lines(stream, out: "queue.Queue[tuple[float, str]]") -> None:
    for line in stream:
        out.put((time.monotonic(), line))


def _get(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.read()


@pytest.mark.slow
def test_ui_of_a_moved_project_serves_its_artifacts_after_health_and_dies_with_a_sigkilled_parent(
        tmp_path, monkeypatch, capsys):
    """The links come once the server answers; a project moved after its runs
    were logged still opens every artifact in the UI (MLflow's own endpoints,
    as the browser asks them); runs logged to the server print no MLflow
    lines; and SIGKILL of `ablation ui` frees the port."""
    import shutil

    from ablation import tracking

    project = tmp_path / "project"
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    c = tracking.client(uri)
    with tracking.start_run(c, tracking.get_or_create_experiment(c, "depth"), "depth", {"ablation.kind": "study"}) as run:
        (tmp_path / "report.md").write_text("# depth\nverdict: equivalent\n")
        run.log_artifact(tmp_path / "report.md", "report")
    shutil.move(project, tmp_path / "moved")
    port = _free_port()
    env = dict(os.environ, ABLATION_HOME=str(tmp_path / "moved"), PYTHONPATH=str(REPO))
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "ablation", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        printed = []
        while not any("open http" in line for line in printed):
            printed.append(lines.get(timeout=120)[1])
        assert _get(f"{base}/health") == b"OK"  # answered at the moment the link was printed
        assert printed[0].startswith("starting MLflow's server") and "http" not in printed[0]
        link = lines.get(timeout=10)[1] + lines.get(timeout=10)[1]
        assert f"depth: {base}/#/experiments/" in link
        listed = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/artifacts/list?run_id={run.run_id}&path=report"))
        assert [f["path"] for f in listed["files"]] == ["report/report.md"]
        served = _get(f"{base}/get-artifact?path=report/report.md&run_uuid={run.run_id}")
        assert served == b"# depth\nverdict: equivalent\n"
        # a run logged to the server prints nothing of MLflow's own ("View run ..."), unless asked to
        served_client = tracking.client(base)
        for suppress, expected in (("true", 0), ("false", 1)):
            monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", suppress)
            capsys.readouterr()
            with tracking.start_run(served_client, tracking.get_or_create_experiment(served_client, "http"), "r", {}):
                pass
            assert capsys.readouterr().out.count("View run r at: ") == expected
        proc.kill()  # no handler runs: only the kernel closing its pipe tells the guard
        proc.wait(timeout=10)
        deadline, free = time.time() + 20, False
        while time.time() < deadline and not free:
            with socket.socket() as s:
                free = s.connect_ex(("127.0.0.1", port)) != 0
            time.sleep(0.2)
        assert free, "the server outlived a SIGKILLed `ablation ui`"
    finally:
        if proc.poll() is None:
            proc.kill()
