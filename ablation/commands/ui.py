"""`ablation ui`: the MLflow UI over the project's store, lean and local.

The server runs under a small guard process, leader of a process group of its
own that holds the MLflow server and its uvicorn worker. `ablation ui` keeps
the write end of a pipe whose read end only the guard holds; the kernel closes
it however `ablation ui` ends (Ctrl-C, SIGTERM, SIGKILL), and the guard then
ends the whole group, so no server is left listening on the port.
"""

from __future__ import annotations

import os
import sys

from ablation import tracking


def register(sub) -> None:
    p = sub.add_parser("ui", help="open the MLflow UI on the project's runs (127.0.0.1)")
    p.add_argument("--host", default=tracking.UI_HOST, help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--expose", action="store_true",
                   help="allow a --host other than loopback (the UI has no login: anyone who reaches it can read "
                        "and delete runs); MLflow's --allowed-hosts is then set to that host")
    p.add_argument("--port", type=int, default=tracking.UI_PORT, help="TCP port, 1-65535 (default 5000)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default: sqlite under mlruns/)")
    p.set_defaults(func=run)


LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::")
GRACE_S = 15.0  # how long the server may take to stop on SIGTERM before it is killed


def command(uri: str, host: str, port: int) -> list[str]:
    """One worker, no job runner: about 0.5 GB instead of 2.5 GB. Artifacts
    are served from the store's own folder (``tracking.artifact_root``), where
    a local store's ``mlflow-artifacts:`` URIs point, wherever the project now is."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--artifacts-destination", tracking.artifact_root(uri).as_uri(),
           "--host", host, "--port", str(port), "--workers", "1"]
    if host not in LOOPBACK:  # MLflow's host-header check must admit the address users type
        cmd += ["--allowed-hosts", f"{host},{host}:{port},localhost,localhost:{port},127.0.0.1,127.0.0.1:{port}"]
    return cmd


def check_port(host: str, port: int) -> None:
    """Refuse, before any server starts, a port outside 1-65535 or one that
    something already listens on (the server would fail after its start-up, or
    the links would open the other server)."""
    import errno
    import socket

    from ablation.errors import ConfigError

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port; use one in 1-65535 (default {tracking.UI_PORT})")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ConfigError(f"--host {host} cannot be resolved ({e.strerror}); use an address such as 127.0.0.1") from None
    with socket.socket(family, kind, proto) as s:
        # as the server binds: a port left in TIME_WAIT by a stopped server is free, a listener is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(f"--port {port} on {host} is taken: another server listens there; "
                                  "stop it, or pick another --port") from None
            raise ConfigError(f"cannot serve on {host}:{port} ({e.strerror}); pick another --port or --host") from None


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def study_links(uri: str, host: str, port: int) -> list[str]:
    """One line per study: the link to its runs table in the machine-learning
    view, opened grouped by arm with the study's columns (``tracking.arm_view``)."""
    c = tracking.client(uri)
    out = []
    for name in tracking.study_names(c):
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            url = tracking.runs_url(base_url(host, port), exp.experiment_id, tracking.share_arm_view(c, exp.experiment_id))
            out.append(f"  {name}: {url}")
    return out


def wait_until_up(proc, url: str, poll_s: float = 0.5) -> bool:
    """True once ``url``/health answers 200; False if ``proc`` exits first."""
    import time
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    while proc.poll() is None:
        try:
            with opener.open(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:  # not listening yet, or not answering yet
            pass
        time.sleep(poll_s)
    return False


def guard_command(fd: int, server: list[str]) -> list[str]:
    return [sys.executable, "-m", "ablation.commands.ui", "--guard", str(fd), *server]


def guard(fd: int, server: list[str]) -> int:
    """Run ``server`` in this process group until it exits or the pipe ``fd``
    reaches its end (`ablation ui` is gone); then end the group."""
    import select
    import signal
    import subprocess

    stop: list[int] = []
    # a handler, not SIG_IGN: an ignored signal would stay ignored in the server after exec
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    proc = subprocess.Popen(server)
    while proc.poll() is None and not stop:
        try:
            ready, _, _ = select.select([fd], [], [], 0.5)
        except InterruptedError:
            continue
        if ready and not os.read(fd, 1):
            break
    end_group(os.getpgrp(), proc)
    return max(proc.returncode, 0)  # a server ended by the signal above stopped as asked


def end_group(pgid: int, proc) -> None:
    """SIGTERM the process group, SIGKILL it if ``proc`` outlives the grace period."""
    import signal
    import subprocess

    try:
        os.killpg(pgid, signal.SIGTERM)
        proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:  # the group is already gone
        pass
    proc.wait()


def run(args) -> int:
    import signal
    import subprocess

    from ablation.errors import ConfigError

    if args.host not in LOOPBACK and not args.expose:
        raise ConfigError(f"--host {args.host} would serve the UI beyond this machine, and it has no login; "
                          "add --expose to mean it, or leave --host at 127.0.0.1")
    check_port(args.host, args.port)
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    tracking.client(uri)  # creates the local store, or says why it cannot be reached
    links = study_links(uri, args.host, args.port)
    url = base_url(args.host, args.port)
    health = base_url("127.0.0.1" if args.host in WILDCARD else args.host, args.port)

    def stop(signum, frame):  # SIGTERM and SIGHUP stop the server as Ctrl-C does
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(guard_command(read_end, command(uri, args.host, args.port)), env=env,
                                pass_fds=(read_end,), start_new_session=True)
    finally:
        os.close(read_end)  # the guard's alone: its end of file is this process's end
    try:
        print(f"starting MLflow's server for {uri} ...", flush=True)
        if not wait_until_up(proc, health):
            print(f"ablation ui: MLflow's server stopped (exit {proc.wait()}) before it answered {health}/health; "
                  "its messages above say why", file=sys.stderr)
            return 1
        print(f"MLflow UI for {uri}\n  open {url}  (Ctrl-C to stop)", flush=True)
        if links:
            print("studies (runs tables):\n" + "\n".join(links), flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        end_group(proc.pid, proc)
        print("stopped")
        return 0
    finally:
        os.close(write_end)


if __name__ == "__main__" and sys.argv[1:2] == ["--guard"]:
    sys.exit(guard(int(sys.argv[2]), sys.argv[3:]))
