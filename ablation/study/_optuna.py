"""Optuna behind one module: the only place in ``ablation`` that imports it.

The storage (created safely, with heartbeats), the study-wide lock, claiming
a trial, reaping the trials of dead workers, and the samplers and pruners the
kinds of study ask for. Every step a worker takes on a trial leaves the trial
recoverable if the worker is killed right after it:

- claim: WAITING -> RUNNING (atomic; only one worker wins), then a heartbeat,
  the pid, then the host. A RUNNING trial with a host on this machine whose
  pid is gone is dead now; one whose heartbeat went stale is dead (Optuna's
  own check, any host); one with no host that started more than the grace
  period ago is dead too (its worker died inside the claim).
- the study lock serialises creating, archiving and enqueueing a study and
  asking for tuning trials, across hosts: a PostgreSQL advisory lock held by
  the database itself (a SQLite file lives on one machine: a file lock beside it).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from optuna import TrialPruned, Trial, create_study, copy_study, delete_study
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import TrialState

from ablation import faults, paths
from ablation.errors import TrackingError
from ablation.storage import LOCK_TIMEOUT_S, check_writable_sqlite, first_line, writable_lock

__all__ = ["TrialPruned", "TrialState", "StorageInternalError", "Trial", "STATE_WORDS"]

# A WAITING trial's expected cost, in a unit the trials of its study share: the costliest is
# claimed first (the longest cells first: the last cell to finish, which the other workers wait
# for, is then a short one). Trials without it come after, in enqueue order.
COST = "expected_cost"
# A WAITING trial to claim before any other, whatever its cost: a cell that others' decisions wait for
# (with adaptive seeds, the baseline's: no arm's next seed is known until the baseline's seeds are done).
FIRST = "claim_first"
# what a trial's state means for the cell it stands for
STATE_WORDS = {TrialState.COMPLETE: "done", TrialState.PRUNED: "done", TrialState.RUNNING: "running",
               TrialState.WAITING: "waiting", TrialState.FAIL: "failed"}


def grace_s() -> int:
    """Seconds without a heartbeat (or without a recorded host) after which a
    RUNNING trial's worker counts as dead; ``ABLATION_GRACE_S`` shortens it."""
    try:
        return max(2, int(os.environ.get("ABLATION_GRACE_S", "60")))
    except ValueError:
        raise TrackingError(f"ABLATION_GRACE_S must be a whole number of seconds, got {os.environ['ABLATION_GRACE_S']!r}") from None


def heartbeat_s() -> int:
    return max(1, min(10, grace_s() // 4))


def default_storage() -> str:
    return f"sqlite:///{paths.mlruns_dir() / 'optuna.db'}"


def _quiet() -> None:
    import logging
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Heartbeat.*")
    logging.getLogger("alembic").setLevel(logging.ERROR)


def open_storage(url: str | None = None, read_only: bool = False):
    """An Optuna RDB storage with heartbeats, created safely on first use.
    ``read_only``: only reads follow (``list``, ``status``), so a store this
    user cannot write is opened as it is, and a missing one is not created."""
    _quiet()
    import optuna

    url = url or os.environ.get("ABLATION_STORAGE") or default_storage()
    kw = dict(heartbeat_interval=heartbeat_s(), grace_period=grace_s())
    try:
        if url.startswith("sqlite:///"):
            return _open_sqlite_read(url, kw) if read_only else _open_sqlite(url, kw)
        if url.startswith("postgresql") and not read_only:
            with _pg_lock(url, "ablation.schema"):  # two hosts creating the schema at once collide
                return optuna.storages.RDBStorage(url, **kw)
        return optuna.storages.RDBStorage(url, skip_table_creation=read_only, **kw)
    except TrackingError:
        raise
    except Exception as e:
        raise TrackingError(f"Optuna storage {url} cannot be used ({type(e).__name__}: {first_line(e)}); check --storage") from None


def check_writable(url: str | None = None) -> None:
    """Refuse, in one line, a SQLite storage this user cannot write; creates nothing (``open_storage``
    creates it, and checks again under its lock)."""
    url = url or os.environ.get("ABLATION_STORAGE") or default_storage()
    if url.startswith("sqlite:///"):
        check_writable_sqlite(Path(url[len("sqlite:///"):]), "Optuna storage", "--storage")


def _open_sqlite_read(url: str, kw: dict):
    """A SQLite store opened for reading only: no lock file, no schema check
    that writes (``mode=ro`` refuses every write), None when it does not exist."""
    import optuna

    db = Path(url[len("sqlite:///"):])
    if not db.exists():
        return None
    return optuna.storages.RDBStorage(f"sqlite:///file:{db}?mode=ro&uri=true", skip_table_creation=True,
                                      skip_compatibility_check=True, **kw)


def _open_sqlite(url: str, kw: dict):
    """A SQLite file is created and migrated aside, then moved into place, so
    a kill at any moment leaves either no store or a whole one."""
    import optuna
    from filelock import FileLock

    db = Path(url[len("sqlite:///"):])
    lock = Path(str(db) + ".lock")
    writable_lock(lock, "Optuna storage")
    check_writable_sqlite(db, "Optuna storage", "--storage")
    engine = {"connect_args": {"timeout": 120}}
    if not db.exists():
        with FileLock(str(lock), timeout=LOCK_TIMEOUT_S):
            if not db.exists():
                for stale in db.parent.glob(f".{db.name}.creating-*"):  # left by a killed creator
                    stale.unlink(missing_ok=True)
                tmp = db.with_name(f".{db.name}.creating-{os.getpid()}")
                optuna.storages.RDBStorage(f"sqlite:///{tmp}", engine_kwargs=engine, **kw).engine.dispose()
                faults.point("store.optuna")
                os.replace(tmp, db)
    return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kw)


@contextmanager
def _pg_lock(url_or_engine, name: str) -> Iterator[None]:
    """A PostgreSQL session advisory lock on ``name``, held by the database
    (so it works across machines) and given up if this process dies."""
    import sqlalchemy as sa

    engine = sa.create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    with engine.connect() as conn:
        conn.execute(sa.text(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'"))
        conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:n))"), {"n": name})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:n))"), {"n": name})
            conn.commit()
    if isinstance(url_or_engine, str):
        engine.dispose()


@contextmanager
def study_lock(storage, name: str) -> Iterator[None]:
    """Serialise the study-wide steps (create, archive, enqueue, ask) of every worker on every host."""
    from filelock import FileLock

    url = str(storage.engine.url)
    if url.startswith("postgresql"):
        with _pg_lock(storage.engine, f"ablation.study.{name}"):
            yield
    elif url.startswith("sqlite:///"):
        lock = Path(url[len("sqlite:///"):] + f".{lock_file_part(name)}.lock")
        writable_lock(lock, "study lock")
        with FileLock(str(lock), timeout=LOCK_TIMEOUT_S):
            yield
    else:
        yield


def lock_file_part(name: str) -> str:
    """A study's name as part of its lock file's name: itself when it is a safe
    file name (the names of studies and of their tuning studies, as before);
    a name with a path separator or other odd characters (an arm's label), or
    too long for a file name, is made safe and keeps a digest of the whole."""
    if re.fullmatch(r"[A-Za-z0-9._~=@+,-]{1,120}", name):
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:16]
    return re.sub(r"[^A-Za-z0-9._~=@+,-]", "_", name)[:80] + "~" + digest


# ---- studies ----------------------------------------------------------------


def load(storage, name: str, sampler=None, pruner=None):
    """The Optuna study ``name``, or None if the storage has none."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage,
                                 sampler=sampler or optuna.samplers.RandomSampler(seed=0), pruner=pruner)
    except KeyError:
        return None


def create(storage, name: str, direction: str, metric: str, attrs: dict[str, Any], sampler=None, pruner=None):
    """A new Optuna study with its metric name and user attrs."""
    opt = create_study(storage=storage, study_name=name, direction=direction, sampler=sampler, pruner=pruner)
    opt.set_metric_names([metric])
    for k, v in attrs.items():
        opt.set_user_attr(k, v)
    return opt


def archive(storage, opt) -> str:
    """Move a study aside under a new name (``NAME@HASH-TIME``), keeping its trials."""
    name = opt.study_name
    to = f"{name}@{opt.user_attrs.get('hash', 'old')}-{time.time_ns()}"
    copy_study(from_study_name=name, from_storage=storage, to_storage=storage, to_study_name=to)
    delete_study(study_name=name, storage=storage)
    return to


def grid_sampler():
    """For a study whose every trial is enqueued: it never samples."""
    import optuna

    return optuna.samplers.RandomSampler(seed=0)


def tpe_sampler(seed: int, n_startup_trials: int | None = None):
    import optuna

    kw = {} if n_startup_trials is None else {"n_startup_trials": n_startup_trials}
    return optuna.samplers.TPESampler(seed=seed, **kw)


def pruner(kind: str, max_resource: int = 1):
    """``median``, ``halving``, ``hyperband`` or ``none``."""
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_resource, reduction_factor=3)
    return optuna.pruners.NopPruner()


def trials(opt, *states: TrialState) -> list:
    """The study's trials (all, or those in ``states``), from Optuna's cache of the storage."""
    return opt.get_trials(deepcopy=False, states=states or None)


def retrying(fn, *args, **kw):
    """``fn(*args, **kw)``, tried again while the storage fails (a database
    restarting, a lost connection) for up to the grace period; then the
    storage's error is raised."""
    deadline = time.monotonic() + grace_s()
    wait = 0.5
    while True:
        try:
            return fn(*args, **kw)
        except StorageInternalError:
            if time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)
            wait = min(wait * 2, 5.0)


def tell(opt, trial, value: float | None = None, state: TrialState | None = None) -> None:
    """Record a trial's outcome (retried while the storage is briefly away: the cell's work is in it)."""
    retrying(opt.tell, trial, value, state=state, skip_if_finished=True)


# ---- trials -----------------------------------------------------------------


def trial_id(storage, opt, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(opt.study_name), number)


def mark_mine(storage, tid: int) -> None:
    """Record who runs a trial just claimed: heartbeat, pid, then host (so a
    host on the trial always comes with its pid)."""
    storage.record_heartbeat(tid)
    storage.set_trial_user_attr(tid, "pid", os.getpid())
    faults.point("claim.pid")
    storage.set_trial_user_attr(tid, "host", socket.gethostname())


def claim(storage, opt, one_at_a_time: bool = False):
    """Atomically take the next WAITING trial (one marked ``FIRST``, then the
    costliest by ``COST``, then the first enqueued; RUNNING now, recorded as
    this worker's), or None. Under the study lock: Optuna's WAITING ->
    RUNNING check reads and writes in two statements, and on SQLite (whose
    driver runs the read outside the write's transaction, and ignores FOR
    UPDATE) two workers could both take one trial and run its cell twice.
    ``one_at_a_time``: None while any trial of the study runs, so each trial
    starts once the ones before it have finished (a sampler and a pruner then
    see the same history on every machine, whatever the number of workers)."""
    with study_lock(storage, opt.study_name):
        study_id = storage.get_study_id_from_name(opt.study_name)
        if one_at_a_time and storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            return None
        waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        order = (lambda t: (not t.user_attrs.get(FIRST, False), -float(t.user_attrs.get(COST, 0.0)), t.number))
        for t in sorted(waiting, key=order):
            tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            try:
                if storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                    faults.point("claim.running")
                    mark_mine(storage, tid)
                    # The study reads through Optuna's cache of the storage, which
                    # learns of a trial claimed here only when it reads the trials.
                    opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    return Trial(opt, tid)
            except UpdateFinishedTrialError:
                continue
    return None


def ask_enqueued(storage, opt, params: dict, attrs: dict):
    """Enqueue one trial with fixed ``params`` and take it at once (call under
    the study lock, so no other worker can take it first)."""
    opt.enqueue_trial(params, user_attrs=attrs)
    trial = opt.ask()
    mark_mine(storage, trial_id(storage, opt, trial.number))
    return trial


def dead_reason(t, now: datetime.datetime, host: str) -> str | None:
    """Why a RUNNING trial's worker is known to be dead, or None if it may be alive."""
    owner = t.user_attrs.get("host")
    if owner == host and not pid_alive(t.user_attrs.get("pid")):
        return f"worker {owner}:{t.user_attrs.get('pid')} died"
    if owner is None and t.datetime_start is not None and (now - t.datetime_start).total_seconds() > grace_s():
        return "worker died while claiming the cell"
    return None


def reap_dead(storage, opt, stopped_pids: frozenset[int] = frozenset()) -> list[int]:
    """Fail the RUNNING trials whose worker is dead; returns their numbers.
    ``stopped_pids``: workers this process has just stopped (a Ctrl-C), whose
    trials are failed as interrupted even before their host was recorded."""
    import optuna

    host, now, reaped = socket.gethostname(), datetime.datetime.now(), []
    for t in opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if pid is not None and int(pid) in stopped_pids and not pid_alive(pid):
            reason = "interrupted by the user"
        else:
            reason = dead_reason(t, now, host)
        if reason is None:
            continue
        tid = trial_id(storage, opt, t.number)
        try:
            storage.set_trial_user_attr(tid, "error", reason)
            if storage.set_trial_state_values(tid, state=TrialState.FAIL):
                reaped.append(t.number)
        except UpdateFinishedTrialError:
            pass
    before = {t.number for t in opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    optuna.storages.fail_stale_trials(opt)  # stale heartbeat: a worker on any host
    after = {t.number for t in opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return reaped + sorted(before - after)


def pid_alive(pid) -> bool:
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Records the trial's heartbeat while its cell runs (other hosts use it
    to tell a live worker from a dead one)."""

    def __init__(self, storage, tid: int):
        self.storage, self.tid, self.stop = storage, tid, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop.is_set():
            try:
                self.storage.record_heartbeat(self.tid)
            except Exception:  # a missed beat is retried; the grace period covers several
                pass
            self.stop.wait(heartbeat_s())

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)
