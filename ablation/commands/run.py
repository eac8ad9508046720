"""`ablation run NAME`: run (or resume) a study and write its report.

The command only parses, prints and calls ``ablation.study``: the engine runs
the cells, ``ablation.study.workers`` supervises ``--jobs`` processes, the
study's kind says what there is to do. ``before_workers`` and ``after_study``
are the places for steps around the run (warming a cache, printing links).
A study with an epoch cap gets its budget check (``budget_check``: would a
longer cap change a decision?) before its report is written.
"""

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
                        "1 with a GPU; never more than the cells to run or the cores)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite under mlruns/; "
                   "postgresql://... to share a study across machines)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default: sqlite under mlruns/)")
    p.add_argument("--new", action="store_true", help="archive a changed study's trials and start it fresh")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--no-budget", action="store_true",
                   help="skip the budget check before the report (`ablation budget NAME` runs it later)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ablation.errors import TrackingError

    try:
        return _run(args)
    except OSError as e:  # a full disk under a store or the cache: one line, not a traceback
        if e.errno != 28:
            raise
        raise TrackingError(f"no space left on the device of {e.filename or 'a store'}; free space and run again "
                            "(finished cells are kept)") from None


def _run(args) -> int:
    if args.jobs != 1 and (os.cpu_count() or 1) > 1:
        from ablation.study import workers

        workers.context(start=True)  # warms up beside this process's own imports; unused with a GPU (1 job)
    from ablation import tracking
    from ablation.errors import StudyError
    from ablation.study import engine, load_study

    if args.jobs is not None and args.jobs < 1:
        raise StudyError(f"--jobs must be at least 1, got {args.jobs}")
    study = load_study(args.study, scale=args.scale, seeds=args.seeds, overrides=args.overrides, data=args.data)
    # the stores this user cannot write are refused first: a run refused at once starts nothing
    tracking.check_writable(args.tracking_uri)  # before the Optuna side records anything
    engine.check_writable(args.storage)
    early = _count_hits_early(study, args)
    try:
        return _run_loaded(study, args, early)
    finally:
        if early is not None:
            early.stop()  # a refusal or a stop before the workers: the counting processes end with it


def _count_hits_early(study, args):
    """The ceiling hits the cells will read, counted from now on while the corpus is loaded (on a first run:
    generated) and the cells checked against it (``ablation.data.cache.EarlyHits``)."""
    from ablation.data import cache
    from ablation.study import workers

    return cache.count_study_hits_early(study, workers.default_jobs() if args.jobs is None else args.jobs)


def _run_loaded(study, args, early) -> int:
    from ablation import experiment, interrupt
    from ablation.study import engine

    for cell in study.cells:  # refuse what the data cannot do before anything is enqueued
        experiment.check_compatible(cell.config, experiment.load_dataset_cached(cell.config.data.source))
    interrupt.check()  # a Ctrl-C during start-up stops here even if a library swallowed it
    storage = engine.open_storage(args.storage)
    session = engine.prepare_study(study, storage, args.tracking_uri, new=args.new)
    interrupt.check()
    kind = study.kind
    states = engine.states(session)
    todo = sum(s.state != "done" for s in states) + kind.todo(session)
    print(f"{study.name}: {study.spec.question}")
    for line in kind.plan_lines(session, states):
        print(line)
    if todo:
        before_workers(study, args, early)
        counts = _run_workers(study, args, todo, session)
        engine.reap(session, locked=True)  # a worker that died last leaves its cell to be failed here
        print(f"ran {counts['done']} cells" + (f", {counts['failed']} failed" if counts["failed"] else "")
              + (f", {counts['pruned']} pruned" if counts["pruned"] else ""))
    states = engine.states(session)
    unconfirmable = kind.why_missing(session)
    for s in states:
        label = kind.label(study, s)
        why = unconfirmable.get(study.cells[min(s.cell, len(study.cells) - 1)].arm.label) if s.state == "missing" else None
        if s.state == "running":
            print(f"  still running in another worker: {label}")
        elif s.state != "done":
            print(f"  not done: {label} ({why or s.state}{': ' + s.error if s.error else ''})", file=sys.stderr)
    failed = [s for s in states if s.state not in ("done", "running")]
    built = None
    if not args.no_report:
        from ablation.errors import AblationError
        from ablation.report.build import build

        runs = None if args.no_budget else budget_check(study, args)
        try:
            built = build(study.name, tracking_uri=args.tracking_uri, runs=runs)
            print(f"report: {built.path}")
        except AblationError as e:  # e.g. every cell failed: the failures above say why
            print(f"report not written: {e}", file=sys.stderr)
            finish(study, session, args)
            return 1
    finish(study, session, args, built)
    after_study(study, args, built)
    return 1 if failed else 0


def budget_check(study, args):
    """Would a longer cap change a decision? Trained before the report, for a study with an epoch cap
    (nothing to train when patience ended every run under a cap-free schedule). Returns the study's
    runs as the check left them, which the report then reads (None: no check)."""
    from ablation.errors import AblationError
    from ablation.study import budget, workers

    if study.kind.budget_cap(study) is None:
        return None
    try:
        b, runs = budget.check_study_runs(study, args.tracking_uri, jobs=args.jobs or workers.default_jobs())
    except AblationError as e:  # e.g. no finished cell: the report step says why
        print(f"budget check not run: {e}", file=sys.stderr)
        return None
    command = study.command().replace("ablation run ", "ablation budget ", 1)
    for line in budget.summary_lines(b, study.name, command):
        print(line)
    return runs


def default_jobs() -> int:
    """Worker processes when --jobs is not given (``ablation.study.workers.default_jobs``)."""
    from ablation.study import workers

    return workers.default_jobs()


def finish(study, session, args, built=None) -> None:
    from ablation.study import parent

    parent.finish(study, session, args.tracking_uri, built)


def before_workers(study, args, early=None) -> None:
    """Steps before any worker starts (the study is prepared in both stores). ``early``: the hits counted
    since the study was loaded, waited for here."""
    from ablation.data.cache import prepare_study
    from ablation.study import workers

    if early is not None:
        early.wait()
    jobs = workers.default_jobs() if args.jobs is None else args.jobs
    prepare_study(study, jobs)  # the corpora and their information ceilings, once, before any worker


def after_study(study, args, built) -> None:
    """Steps once the study's report is written and its parent run finished."""
    from ablation import tracking

    print(f"runs: {tracking.study_link(tracking.client(args.tracking_uri), study.name)}")


def _run_workers(study, args, todo: int, session=None) -> dict:
    from tqdm.auto import tqdm

    from ablation.study import engine, workers

    jobs = workers.jobs_for(args.jobs, todo)
    bar = tqdm(total=todo, unit="cell", desc=study.name, dynamic_ncols=True)

    def on_cell(name: str, outcome: str) -> None:
        bar.update(1)
        if session is not None and study.design.adaptive:  # a look that wants another seed adds cells
            left = to_run(session)
            if left is not None and bar.n + left != bar.total:
                bar.total = bar.n + left
        bar.set_postfix_str(f"{name}: {outcome}")

    try:
        if jobs == 1:
            return engine.worker(study, args.storage, args.tracking_uri, progress=sys.stderr.isatty(),
                                 on_cell=lambda cell, outcome: on_cell(cell.run_name, outcome))
        return workers.supervise(study, jobs, args.storage, args.tracking_uri, on_cell,
                                 on_idle=None if args.no_report else import_report)
    finally:
        bar.close()


def to_run(session) -> int | None:
    """The cells (and a tuned study's tuning trials) this run has still to finish: waiting, running, or
    wanted and not yet enqueued; None when the store cannot say now (the progress bar keeps its total)."""
    from ablation.study import engine

    try:
        left = sum(s.state in ("waiting", "running", "missing") for s in engine.states(session))
        return left + session.study.kind.todo(session)
    except Exception:  # what a progress bar shows is no reason to stop a study
        return None


def import_report() -> None:
    """The report's code (matplotlib, its figures and tables: half a second), imported while a worker
    waits for the study's last cells and its core is free, not after the last cell."""
    import ablation.report.build  # noqa: F401
