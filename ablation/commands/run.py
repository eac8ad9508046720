"""`ablation run NAME`: run (or resume) a study and write its report."""

from __future__ import annotations

import os
import sys


def register(sub) -> None:
    p = sub.add_parser("run", help="run or resume a study (studies/NAME.toml)",
                       description="Run every missing cell (arm x seed) of a study, then write its report.")
    p.add_argument("study", help="study name (studies/NAME.toml) or path")
    p.add_argument("--data", metavar="SPEC", help="data source, e.g. libriphone:~/data/libriphone")
    p.add_argument("--scale", choices=("quick", "full"), default="quick", help="scale preset (default: quick)")
    p.add_argument("--seeds", type=int, metavar="N", help="number of seeds (default: the study's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field for every cell (repeatable)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes on this machine (default: one per CPU core, up to 4, without a GPU; "
                        "1 with a GPU)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite under mlruns/; "
                   "postgresql://... to share a study across machines)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default: sqlite under mlruns/)")
    p.add_argument("--new", action="store_true", help="archive a changed study's trials and start it fresh")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.set_defaults(func=run)


# What a worker imports before and during its first cell. On Linux the workers
# are forked from a server that imports these once, started before this
# process does its own imports, so the two overlap instead of every worker
# importing them again after the study is prepared.
WORKER_PRELOAD = ["ablation.runner", "ablation.experiment", "ablation.metrics", "optuna", "mlflow",
                  "torch._dynamo", "matplotlib", "sklearn.metrics"]


def _worker_context(start: bool = False):
    """The multiprocessing context of --jobs workers: a preloading fork server on Linux, spawn
    elsewhere (forking without exec is unsafe with macOS system libraries)."""
    import multiprocessing as mp

    if not sys.platform.startswith("linux"):
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(WORKER_PRELOAD)
    if start:
        from multiprocessing import forkserver

        forkserver.ensure_running()
    return ctx


def run(args) -> int:
    if args.jobs != 1 and (os.cpu_count() or 1) > 1:
        _worker_context(start=True)  # warms up beside this process's own imports; unused with a GPU (1 job)
    from ablation import experiment, runner, stopping
    from ablation.errors import StudyError
    from ablation.study import load_study

    if args.jobs is None:
        args.jobs = default_jobs()
    if args.jobs < 1:
        raise StudyError(f"--jobs must be at least 1, got {args.jobs}")
    study = load_study(args.study, scale=args.scale, seeds=args.seeds, overrides=args.overrides, data=args.data)
    for cell in study.cells:  # refuse what the data cannot do before anything is enqueued
        experiment.check_compatible(cell.config, experiment.load_dataset_cached(cell.config.data.source))
    from ablation.data.cache import prepare_study

    prepare_study(study, args.jobs)  # the corpora and their information ceilings, once, before any worker
    stopping.check()  # a Ctrl-C during start-up stops here even if a library swallowed it
    from ablation import tracking

    tracking.check_writable(args.tracking_uri)  # before the Optuna side records anything
    storage = runner.open_storage(args.storage)
    opt = runner.prepare_study(study, storage, args.tracking_uri, new=args.new)
    stopping.check()
    states = runner.study_states(study, opt)
    todo = sum(s.state != "done" for s in states)
    print(f"{study.name}: {study.spec.question}")
    if study.design.adaptive:
        print(f"adaptive seeds {study.design.min} to {study.design.max}: {len(states)} of up to {study.n_cells} "
              f"cells wanted so far ({len(study.arms)} arms), {len(states) - todo} done, {todo} to run")
    else:
        print(f"{study.n_cells} cells ({len(study.arms)} arms x {len(study.seeds)} seeds), "
              f"{study.n_cells - todo} done, {todo} to run" if study.spec.sampler == "grid"
              else f"{study.n_cells} tuning trials, {study.n_cells - todo} done, {todo} to run")
    if study.spec.protocol == "tuned":
        from ablation import tuned

        left = tuned.tuning_todo(study, storage, opt)
        k = study.spec.tuning.trials
        print(f"tuning first: {len(study.arms)} arms x {k} trials = {len(study.arms) * k}, {left} to run; "
              "the cells above then confirm each arm's best values")
        todo += left
    if todo:
        counts = _run_workers(study, args, todo)
        from ablation.storage import study_lock

        with study_lock(storage, study.name):  # a worker that died last leaves its cell to be failed here
            runner.reap(storage, opt, tracking.client(args.tracking_uri))
        print(f"ran {counts['done']} cells" + (f", {counts['failed']} failed" if counts["failed"] else "")
              + (f", {counts['pruned']} pruned" if counts["pruned"] else ""))
    states = runner.study_states(study, opt)
    unconfirmable = {}  # tuned: arms whose every tuning trial was pruned, so nothing is confirmed
    if study.spec.protocol == "tuned":
        from ablation import tuned

        unconfirmable = {p["arm"]: f"its {p['trials']} tuning trials were all pruned ({p['diverged']} diverged), "
                                   "so it has no values to confirm"
                         for p in tuned.progress(study, storage, opt) if p["done"] == p["trials"] and p["best"] is None}
    for s in states:
        label = study.cells[s.cell].run_name if study.spec.sampler == "grid" else f"trial {s.cell}"
        why = unconfirmable.get(study.cells[s.cell].arm.label) if s.state == "missing" else None
        if s.state == "running":
            print(f"  still running in another worker: {label}")
        elif s.state != "done":
            print(f"  not done: {label} ({why or s.state}{': ' + s.error if s.error else ''})", file=sys.stderr)
    failed = [s for s in states if s.state not in ("done", "running")]
    report = None
    if not args.no_report:
        from ablation.errors import AblationError
        from ablation.report import build_report

        try:
            report = build_report(study.name, tracking_uri=args.tracking_uri)
            print(f"report: {report}")
        except AblationError as e:  # e.g. every cell failed: the failures above say why
            print(f"report not written: {e}", file=sys.stderr)
            runner.finish_parent(study, opt, args.tracking_uri)
            return 1
    runner.finish_parent(study, opt, args.tracking_uri, report)
    return 1 if failed else 0


def default_jobs() -> int:
    """On a CPU, single-threaded workers on every core beat one process with
    as many threads (1.35x measured on 2 cores); a GPU wants one process."""
    import torch

    if torch.cuda.is_available():
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def _run_workers(study, args, todo: int) -> dict:
    from tqdm.auto import tqdm

    from ablation import runner

    bar = tqdm(total=todo, unit="cell", desc=study.name, dynamic_ncols=True)
    if args.jobs == 1 or todo == 1:
        def on_cell(cell, outcome):
            bar.update(1)
            bar.set_postfix_str(f"{cell.run_name}: {outcome}")

        try:
            return runner.worker(study, args.storage, args.tracking_uri, progress=sys.stderr.isatty(),
                                 on_cell=on_cell)
        finally:
            bar.close()
    try:
        return _supervise(study, args, bar)
    finally:
        bar.close()


def _supervise(study, args, bar) -> dict:
    """Run ``args.jobs`` worker processes and watch them: a worker that dies
    (killed, out of memory) is replaced, and its cell is reaped and run again
    by the workers; on Ctrl-C / SIGTERM every worker is stopped. Every wait
    has a timeout."""
    import queue as queue_mod

    from ablation import runner, stopping
    from ablation.errors import StudyError

    ctx = _worker_context()
    queue = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // args.jobs)

    # the fork server keeps the environment it started with; each worker takes this process's own
    env = {k: v for k, v in os.environ.items() if k.startswith(runner.WORKER_ENV_PREFIXES)}

    def start():
        p = ctx.Process(target=runner._worker_main,
                        args=(study, args.storage, args.tracking_uri, threads, queue, env))
        p.start()
        return p

    procs = [start() for _ in range(args.jobs)]
    respawns = max(args.jobs, study.n_cells)  # bounded: a cell that kills every worker cannot loop forever
    counts = {"done": 0, "failed": 0, "pruned": 0}
    errors, stopped, watched = [], False, set()
    try:
        while True:
            try:
                name, value = queue.get(timeout=1.0)
            except queue_mod.Empty:
                name = None
            if name == "__error__":
                errors.append(value)
            elif name == "__stopped__":
                stopped = True
            elif name is not None and name != "__done__":
                counts[value] += 1
                bar.update(1)
                bar.set_postfix_str(f"{name}: {value}")
            stopping.check()
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
        _stop_workers(procs)
        _reap_stopped(study, args, frozenset(p.pid for p in procs))
        raise
    _drain(queue, counts)
    _stop_workers(procs)
    if errors:
        raise StudyError(errors[0])
    if stopped:
        raise KeyboardInterrupt("a worker was stopped")
    return counts


def _reap_stopped(study, args, pids: frozenset[int]) -> None:
    """After a Ctrl-C: a worker stopped between claiming a cell and recording
    it as interrupted leaves it RUNNING; fail it now rather than at the next run."""
    import optuna

    from ablation import runner, tracking
    from ablation import storage as storage_mod

    storage = runner.open_storage(args.storage)
    try:
        opt = optuna.load_study(study_name=study.name, storage=storage)
    except KeyError:
        return
    with storage_mod.study_lock(storage, study.name):
        storage_mod.reap_dead(storage, opt, pids)
        runner.reap(storage, opt, tracking.client(args.tracking_uri))


def _drain(queue, counts: dict) -> None:
    import queue as queue_mod

    while True:
        try:
            name, value = queue.get(timeout=0.1)
        except queue_mod.Empty:
            return
        if value in counts and not name.startswith("__"):
            counts[value] += 1


def _stop_workers(procs, timeout_s: float = 30.0) -> None:
    """SIGTERM each live worker (it records its cell as interrupted), then
    SIGKILL what is still alive after ``timeout_s``."""
    import time

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
