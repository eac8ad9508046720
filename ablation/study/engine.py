"""The engine: prepare a study in both stores, then one loop, the same for
every kind of study, that asks the study's kind for its next job and runs it.

- All cells a kind knows up front are enqueued as WAITING trials; a worker
  claims the next one with an atomic WAITING -> RUNNING update (Optuna's own
  queue), so many processes or machines sharing one storage never run a cell
  twice.
- Re-running resumes: finished cells are skipped; failed cells, and cells
  whose worker died (same host: its pid is gone; another host: its heartbeat
  went stale), are failed in both stores and enqueued again; a cell whose run
  the tracking store no longer has is run again.
- A changed study (any cell's config, the metric, the kind) is refused;
  ``--new`` archives the old Optuna study and starts fresh.
- A worker exits only when the study is over: nothing to claim, nothing
  waiting and nothing running in any of its Optuna studies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ablation import faults, interrupt, tracking
from ablation import tags as T
from ablation.errors import StudyError, TrackingError
from ablation.study import _optuna as O
from ablation.study import parent as parent_run
from ablation.study.cells import CellState, run_cell
from ablation.study.spec import Study


@dataclass
class Session:
    """A study opened in both stores: what a kind's steps and a cell's run need."""

    study: Study
    storage: object
    opt: object  # the study's own Optuna study (its cells)
    client: object
    exp_id: str = ""
    parent: str = ""
    state: dict = field(default_factory=dict)  # the kind's own (e.g. a tuned study's tuning studies)


def open_storage(url: str | None = None, read_only: bool = False):
    """The Optuna storage (``ablation.study._optuna``); with ``read_only``, None if it does not exist."""
    return O.open_storage(url, read_only=read_only)


def check_writable(url: str | None = None) -> None:
    """A SQLite Optuna storage this user cannot write: one line, before anything is created."""
    O.check_writable(url)


def default_storage() -> str:
    return O.default_storage()


def load(storage, name: str):
    """The study's Optuna study, or None when it was never prepared."""
    return None if storage is None else O.load(storage, name)


def states(session: Session) -> list[CellState]:
    """The cells the study runs (with adaptive seeds, those wanted so far) and their states."""
    return session.study.kind.states(session)


def read_session(study: Study, storage_url: str | None = None, storage=None) -> Session | None:
    """The study as it stands, for commands that only read (``status``,
    ``list``: a read-only store is fine); None when it was never prepared."""
    if storage is None:
        storage = open_storage(storage_url, read_only=True)
    opt = load(storage, study.name)
    if opt is None:
        return None
    session = Session(study, storage, opt, client=None, parent=opt.user_attrs.get(parent_run.ATTR, ""))
    study.kind.open(session)
    return session


# ---- preparing a study ------------------------------------------------------


def prepare_study(study: Study, storage, tracking_uri: str | None, new: bool = False) -> Session:
    """Create or resume the Optuna study and the MLflow parent run; enqueue
    every missing or failed cell. The study lock makes hosts that start at
    the same instant create and enqueue it once."""
    return _store_call(_prepare, study, storage, tracking_uri, new)


def _prepare(study: Study, storage, tracking_uri: str | None, new: bool) -> Session:
    c = tracking.client(tracking_uri)
    with O.study_lock(storage, study.name):
        existing = O.load(storage, study.name)
        faults.point("prepare.loaded")
        if existing is not None and existing.user_attrs.get("hash") != study.hash and not new:
            raise StudyError(
                f"study '{study.name}' changed since it began (its cells, question, baseline, metric, base "
                f"experiment or options differ: {existing.user_attrs.get('hash')} -> {study.hash}); run again with "
                f"--new to archive the old trials and start fresh, or restore {study.path.name} and its options to "
                "continue the old one"
            )
        if existing is not None and new and not _fresh(existing, study):  # --new starts afresh, changed or not
            reap(Session(study, storage, existing, c))
            O.archive(storage, existing)
            existing = None
        if existing is None:
            opt = O.create(storage, study.name, study.spec.metric.direction, study.spec.metric.name,
                           {"hash": study.hash, "cells_total": study.n_cells, "sampler": study.spec.sampler,
                            "kind": study.kind.name, "created_ns": time.time_ns()})
        else:
            opt = existing
        session = Session(study, storage, opt, c)
        reap(session)
        parent = opt.user_attrs.get(parent_run.ATTR)
        if not parent or not parent_run.exists(c, parent):  # a new study, or a tracking store that lost it
            opt.set_user_attr(parent_run.ATTR, parent_run.create(study, c))
        session.parent = opt.user_attrs[parent_run.ATTR]
        parent_run.forget_lost_runs(session)
        study.kind.prepare(session)
    return session


def _fresh(opt, study: Study, within_s: float = 120.0) -> bool:
    """A study another ``--new`` worker of this very study created moments ago
    (several workers started together with --new): join it rather than archive
    it under the others' feet. Only while nothing has finished and every
    claimed trial's worker is alive: a stranded claim is archived as always."""
    import socket

    created = opt.user_attrs.get("created_ns")
    if created is None or opt.user_attrs.get("hash") != study.hash:
        return False
    if (time.time_ns() - int(created)) / 1e9 > within_s:
        return False
    if O.trials(opt, O.TrialState.COMPLETE, O.TrialState.PRUNED, O.TrialState.FAIL):
        return False
    here = socket.gethostname()
    for t in O.trials(opt, O.TrialState.RUNNING):
        host, pid = t.user_attrs.get("host"), t.user_attrs.get("pid")
        if host is None or (host == here and not O.pid_alive(pid)):
            return False
    return True


def reap(session: Session, locked: bool = False) -> list[int]:
    """Fail the trials whose worker is dead (in every Optuna study of the
    study), and mark their runs KILLED; ``locked``: take the study lock first."""
    if locked:
        with O.study_lock(session.storage, session.study.name):
            return reap(session)
    reaped = []
    for opt in session.study.kind.optuna_studies(session):
        reaped += O.reap_dead(session.storage, opt)
    _kill_orphan_runs(session)
    return reaped


def _kill_orphan_runs(session: Session) -> None:
    """A run whose trial is no longer running is over: mark it killed. The
    MLflow side is searched, since a worker can die after creating its run
    and before recording the run id on the trial."""
    c, opt = session.client, session.opt
    running = {}
    for o in session.study.kind.optuna_studies(session):
        running[o.study_name] = {t.number for t in O.trials(o, O.TrialState.RUNNING)}
    errors = {t.number: t.user_attrs.get("error") for t in O.trials(opt)}
    running_ids = {t.user_attrs.get("mlflow_run_id") for o in session.study.kind.optuna_studies(session)
                   for t in O.trials(o, O.TrialState.RUNNING)}
    exp = c.get_experiment_by_name(opt.study_name)
    if exp is None:
        return
    for run in c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'", max_results=10_000):
        trial = run.data.tags.get(T.key(T.TRIAL))
        if not trial:  # not a trial's run (a budget check's: ``ablation.study.budget`` ends its own)
            continue
        if run.data.tags.get(T.key(T.PHASE)) == T.PHASE_TUNING:  # a tuning trial: its own Optuna study
            if run.info.run_id not in running_ids:
                tracking.Run(c, run.info.run_id).finish("KILLED", "worker died")
            continue
        older = run.data.tags.get(T.key(T.STUDY_HASH)) != opt.user_attrs.get("hash")
        if older or int(trial) not in running[opt.study_name]:
            tracking.Run(c, run.info.run_id).finish("KILLED", errors.get(int(trial)) or "worker died")


# ---- workers ----------------------------------------------------------------

# How often a worker with nothing to claim looks again while others' cells run. A study ends
# when its last cell does only once every idle worker has looked (at 2 s, 1 s of 2 workers'
# time at the end of every study); a look costs a few store queries on a core that is idle.
IDLE_POLL_S = 0.5


def open_session(study: Study, storage_url: str | None, tracking_uri: str | None) -> Session:
    """A prepared study, opened by a worker."""
    storage = open_storage(storage_url)
    kind = study.kind
    opt = O.load(storage, study.name, sampler=kind.sampler(study), pruner=kind.pruner(study))
    if opt is None:
        raise StudyError(f"study '{study.name}' is not prepared in {storage_url or default_storage()}; "
                         f"run 'python -m ablation run {study.name}'")
    c = tracking.client(tracking_uri)
    session = Session(study, storage, opt, c, tracking.get_or_create_experiment(c, study.name),
                      opt.user_attrs[parent_run.ATTR])
    kind.open(session)
    return session


def worker(study: Study, storage_url: str | None, tracking_uri: str | None, threads: int = 0,
           progress: bool = False, on_cell=None, on_idle=None) -> dict[str, int]:
    """Ask the kind for jobs and run them until the study is over; while other
    workers still run cells, wait for them (reaping the dead and running their
    cells again), so whoever finishes last sees the whole study. Returns
    outcome counts. ``on_idle()`` is called the first time this worker finds
    nothing to claim while the study goes on (its core is then free)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    session = open_session(study, storage_url, tracking_uri)
    counts = {"done": 0, "failed": 0, "pruned": 0}
    while True:
        interrupt.check()
        job = _store_call(O.retrying, study.kind.next_job, session)
        if job is None:
            if _store_call(O.retrying, _wait_for_others, session):
                if on_idle is not None:
                    on_idle()
                    on_idle = None  # the first wait only
                continue
            break
        outcome = run_cell(session, job, progress=progress)
        counts[outcome] += 1
        if on_cell is not None:
            on_cell(job.cell, outcome)
    return counts


def _store_call(fn, *args):
    """``fn(*args)``; a store that failed (a full disk, a database that stayed
    away past the grace period) is one line naming it, not a traceback."""
    from ablation.study.cells import store_failure

    try:
        return fn(*args)
    except (O.StorageInternalError, OSError) as e:
        line = store_failure(e)
        if line is None:
            raise
        raise TrackingError(line) from None


def _wait_for_others(session: Session) -> bool:
    """With nothing to claim: reap dead workers and re-queue their cells;
    True (after a short sleep if only others' trials are running) while the
    study is not over. Each wait is bounded: a live worker finishes its cell,
    a dead one is reaped within the grace period."""
    study = session.study
    with O.study_lock(session.storage, study.name):
        reap(session)
        if study.kind.requeue(session, retry_failed=False):
            return True
    studies = study.kind.optuna_studies(session)
    running = any(O.trials(o, O.TrialState.RUNNING) for o in studies)
    if not running:
        return any(O.trials(o, O.TrialState.WAITING) for o in studies)
    # others' trials run (a waiting trial may be held back until one of them finishes)
    time.sleep(min(IDLE_POLL_S, O.heartbeat_s()))
    return True


def reap_stopped(study: Study, storage_url: str | None, tracking_uri: str | None, pids: frozenset[int]) -> None:
    """After a Ctrl-C: a worker stopped between claiming a cell and recording
    it as interrupted leaves it RUNNING; fail it now rather than at the next run."""
    storage = open_storage(storage_url)
    opt = O.load(storage, study.name)
    if opt is None:
        return
    session = Session(study, storage, opt, tracking.client(tracking_uri),
                      parent=opt.user_attrs.get(parent_run.ATTR, ""))
    study.kind.open(session)
    with O.study_lock(storage, study.name):
        for o in study.kind.optuna_studies(session):
            O.reap_dead(storage, o, pids)
        reap(session)
