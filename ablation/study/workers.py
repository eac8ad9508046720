"""Worker processes on this machine (``run --jobs N``): started, watched,
replaced when one dies, stopped on Ctrl-C / SIGTERM. Every wait has a timeout.

On Linux the workers are forked from a server that imports what a worker
needs once, started before the command does its own imports, so the two
overlap instead of every worker importing them again after the study is
prepared (spawn elsewhere: forking without exec is unsafe with macOS system
libraries).
"""

from __future__ import annotations

import os
import queue as queue_mod
import sys
import time

from ablation import interrupt
from ablation.errors import AblationError, StudyError
from ablation.study import engine
from ablation.study.spec import Study

# What a worker imports before and during its first cell: the stores' database layers, the corpus
# readers and the figures' canvas included (a worker then reaches its first training step in 0.4 s
# instead of 1.4 s, and the fork server is ready 1 s later: a gain wherever the command's own start
# is the longer, as while a first run generates its corpus).
WORKER_PRELOAD = ["ablation.study.engine", "ablation.experiment", "ablation.metrics", "optuna", "mlflow",
                  "torch._dynamo", "matplotlib", "optuna.storages._rdb.storage",
                  "mlflow.store.tracking.sqlalchemy_store", "ablation.data.sources", "ablation.data.synthphone",
                  "ablation.train", "matplotlib.backends.backend_agg", "matplotlib.figure"]
# what a worker takes from its parent's environment (a fork server keeps its own)
WORKER_ENV_PREFIXES = ("ABLATION_", "MLFLOW_")
# how often the supervisor looks at its workers: a study's end waits for its last look
POLL_S = 0.25
MAX_JOBS = 4  # the default's cap: more processes than this on one machine cost more than they give


def default_jobs() -> int:
    """On a CPU, single-threaded workers on every core beat one process with
    as many threads (1.35x measured on 2 cores); a GPU wants one process."""
    import torch

    if torch.cuda.is_available():
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_JOBS))


def jobs_for(asked: int | None, todo: int) -> int:
    """How many workers to start: as asked (default ``default_jobs``), but never
    more than the work to do, nor than this machine's cores."""
    jobs = default_jobs() if asked is None else asked
    if jobs < 1:
        raise StudyError(f"--jobs must be at least 1, got {jobs}")
    return max(1, min(jobs, todo, os.cpu_count() or 1))


def context(start: bool = False):
    """The multiprocessing context of the workers; ``start`` warms the fork server up now."""
    import multiprocessing as mp

    if not sys.platform.startswith("linux"):
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(WORKER_PRELOAD)
    if start:
        from multiprocessing import forkserver

        forkserver.ensure_running()
    return ctx


def worker_main(study: Study, storage_url, tracking_uri, threads, queue, env: dict | None = None) -> None:
    """Entry of a worker process: SIGTERM / SIGHUP stop it like Ctrl-C."""
    if env is not None:
        for k in [k for k in os.environ if k.startswith(WORKER_ENV_PREFIXES)]:
            del os.environ[k]
        os.environ.update(env)
    interrupt.install()
    try:
        counts = engine.worker(study, storage_url, tracking_uri, threads,
                               on_cell=lambda cell, outcome: queue.put((cell.run_name, outcome)),
                               on_idle=lambda: queue.put(("__idle__", None)))
        queue.put(("__done__", counts))
    except KeyboardInterrupt:
        queue.put(("__stopped__", None))
    except AblationError as e:
        queue.put(("__error__", str(e)))


def supervise(study: Study, jobs: int, storage_url, tracking_uri, on_cell, on_idle=None) -> dict:
    """Run ``jobs`` worker processes and watch them: a worker that dies
    (killed, out of memory) is replaced, and its cell is reaped and run again
    by the workers; on Ctrl-C / SIGTERM every worker is stopped. ``on_idle()``
    runs here once, when a worker first has nothing to claim while others
    still run cells: a core is free then (the wait for a study's last cell)."""
    ctx = context()
    queue = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    # the fork server keeps the environment it started with; each worker takes this process's own
    env = {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)}

    def start():
        p = ctx.Process(target=worker_main, args=(study, storage_url, tracking_uri, threads, queue, env))
        p.start()
        return p

    procs = [start() for _ in range(jobs)]
    respawns = max(jobs, study.n_cells)  # bounded: a cell that kills every worker cannot loop forever
    counts = {"done": 0, "failed": 0, "pruned": 0}
    errors, stopped, watched = [], False, set()
    try:
        while True:
            try:
                name, value = queue.get(timeout=POLL_S)
            except queue_mod.Empty:
                name = None
            if name == "__error__":
                errors.append(value)
            elif name == "__stopped__":
                stopped = True
            elif name == "__idle__":
                if on_idle is not None:
                    once, on_idle = on_idle, None  # the first worker's wait only
                    try:
                        once()
                    except Exception:  # a head start only: what it does is done again, and fails there, later
                        pass
            elif name is not None and name != "__done__":
                counts[value] += 1
                on_cell(name, value)
            interrupt.check()
            for p in procs:
                if p.exitcode not in (None, 0) and p.pid not in watched:
                    watched.add(p.pid)
                    if respawns > 0 and not errors and not stopped:
                        respawns -= 1
                        print(f"worker {p.pid} died (exit {p.exitcode}); its cell runs again", file=sys.stderr)
                        procs.append(start())
            if all(p.exitcode is not None for p in procs):
                break
    except KeyboardInterrupt:
        stop(procs)
        engine.reap_stopped(study, storage_url, tracking_uri, frozenset(p.pid for p in procs))
        raise
    _drain(queue, counts)
    stop(procs)
    if errors:
        raise StudyError(errors[0])
    if stopped:
        raise KeyboardInterrupt("a worker was stopped")
    return counts


def _drain(queue, counts: dict) -> None:
    while True:
        try:
            name, value = queue.get(timeout=0.1)
        except queue_mod.Empty:
            return
        if not name.startswith("__") and value in counts:  # a worker's "__done__" carries a dict
            counts[value] += 1


def stop(procs, timeout_s: float = 30.0) -> None:
    """SIGTERM each live worker (it records its cell as interrupted), then
    SIGKILL what is still alive after ``timeout_s``."""
    for p in procs:
        if p.exitcode is None:
            p.terminate()
    deadline = time.monotonic() + timeout_s
    for p in procs:
        p.join(timeout=max(0.1, deadline - time.monotonic()))
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join(timeout=5)
