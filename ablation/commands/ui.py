"""`ablation ui`: the MLflow UI over the project's store, lean and local."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("ui", help="open the MLflow UI on the project's runs (127.0.0.1)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default: sqlite under mlruns/)")
    p.set_defaults(func=run)


def command(uri: str, host: str, port: int) -> list[str]:
    """One worker, no job runner: about 0.5 GB instead of 2.5 GB."""
    import sys

    from ablation import tracking

    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
            "--default-artifact-root", tracking.artifact_root(uri).as_uri(),
            "--host", host, "--port", str(port), "--workers", "1"]


def run(args) -> int:
    import os
    import signal
    import subprocess

    from ablation import tracking

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    tracking.client(uri)  # creates the local store, or says why it cannot be reached
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    print(f"MLflow UI for {uri}\n  open http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
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
