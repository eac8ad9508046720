"""`ablation ui`: the MLflow UI over the project's store, lean and local."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("ui", help="open the MLflow UI on the project's runs (127.0.0.1)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--expose", action="store_true",
                   help="allow a --host other than loopback (the UI has no login: anyone who reaches it can read "
                        "and delete runs); MLflow's --allowed-hosts is then set to that host")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default: sqlite under mlruns/)")
    p.set_defaults(func=run)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def command(uri: str, host: str, port: int) -> list[str]:
    """One worker, no job runner: about 0.5 GB instead of 2.5 GB."""
    import sys

    from ablation import tracking

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--default-artifact-root", tracking.artifact_root(uri).as_uri(),
           "--host", host, "--port", str(port), "--workers", "1"]
    if host not in LOOPBACK:  # MLflow's host-header check must admit the address users type
        cmd += ["--allowed-hosts", f"{host},{host}:{port},localhost,localhost:{port},127.0.0.1,127.0.0.1:{port}"]
    return cmd


def study_links(uri: str, host: str, port: int) -> list[str]:
    """One line per study: the link to its runs table in the machine-learning
    view (``workflowType``: without it MLflow 3 opens its GenAI view, whose
    sidebar leads to traces, not runs)."""
    from ablation import tracking

    c = tracking.client(uri)
    out = []
    for name in tracking.study_names(c):
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            url = f"http://{host}:{port}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
            out.append(f"  {name}: {url}")
    return out


def run(args) -> int:
    import os
    import signal
    import subprocess

    from ablation import tracking

    from ablation.errors import ConfigError

    if args.host not in LOOPBACK and not args.expose:
        raise ConfigError(f"--host {args.host} would serve the UI beyond this machine, and it has no login; "
                          "add --expose to mean it, or leave --host at 127.0.0.1")
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    tracking.client(uri)  # creates the local store, or says why it cannot be reached
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    links = study_links(uri, args.host, args.port)
    print(f"MLflow UI for {uri}\n  open http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    if links:
        print("studies (runs tables):\n" + "\n".join(links), flush=True)

    def stop(signum, frame):  # SIGTERM and SIGHUP stop the server as Ctrl-C does
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    proc = subprocess.Popen(command(uri, args.host, args.port), env=env, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        print("stopped")
        return 0
