"""The Optuna side of a study's protocol: opening (creating) the storage, the
study-wide lock, claiming a trial, and reaping the trials of dead workers.

Every step a worker takes on a trial leaves the trial recoverable if the
worker is killed right after it:

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
import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ablation import faults, paths
from ablation.errors import TrackingError

LOCK_TIMEOUT_S = 300


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


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, whole (messages are kept to one line, not cut)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _quiet_optuna() -> None:
    import logging
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Heartbeat.*")
    logging.getLogger("alembic").setLevel(logging.ERROR)


def writable_lock(path: Path, what: str) -> None:
    """Create a lock file now, so an unwritable folder is one clear line at
    once instead of a lock that retries until its timeout."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrackingError(f"cannot create {path.parent} for the {what}: {e.strerror or e}; choose a writable folder") from None
    try:
        with open(path, "a"):
            pass
    except OSError as e:
        raise TrackingError(f"cannot write {path} for the {what}: {e.strerror or e}; choose a writable folder") from None


def check_writable_sqlite(db: Path, what: str, option: str) -> None:
    """A SQLite store that this user cannot write (a file, or the folder its
    journal goes in) is one clear line before anything is written anywhere,
    not a traceback from the first INSERT with half the study recorded."""
    for path in (db, db.parent) if db.exists() else (db.parent,):
        if path.exists() and not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
            where = "" if path == db else f" (its folder {path} is read-only to it)"
            raise TrackingError(f"the {what} {db} is not writable by this user{where}; "
                                f"run as its owner, or choose another {option}")


def open_storage(url: str | None = None):
    """An Optuna RDB storage with heartbeats, created safely on first use."""
    _quiet_optuna()
    import optuna

    url = url or os.environ.get("ABLATION_STORAGE") or default_storage()
    kw = dict(heartbeat_interval=heartbeat_s(), grace_period=grace_s())
    try:
        if url.startswith("sqlite:///"):
            return _open_sqlite(url, kw)
        if url.startswith("postgresql"):
            with _pg_lock(url, "ablation.schema"):  # two hosts creating the schema at once collide
                return optuna.storages.RDBStorage(url, **kw)
        return optuna.storages.RDBStorage(url, **kw)
    except TrackingError:
        raise
    except Exception as e:
        raise TrackingError(f"Optuna storage {url} cannot be used ({type(e).__name__}: {first_line(e)}); check --storage") from None


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
        lock = Path(url[len("sqlite:///"):] + f".{name}.lock")
        writable_lock(lock, "study lock")
        with FileLock(str(lock), timeout=LOCK_TIMEOUT_S):
            yield
    else:
        yield


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


def claim(storage, opt):
    """Atomically take the next WAITING trial (RUNNING now, recorded as
    this worker's), or None. Under the study lock: Optuna's WAITING ->
    RUNNING check reads and writes in two statements, and on SQLite (whose
    driver runs the read outside the write's transaction, and ignores FOR
    UPDATE) two workers could both take one trial and run its cell twice."""
    import optuna
    from optuna.trial import TrialState

    with study_lock(storage, opt.study_name):
        study_id = storage.get_study_id_from_name(opt.study_name)
        for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
            tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            try:
                if storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                    faults.point("claim.running")
                    mark_mine(storage, tid)
                    # The study reads through Optuna's cache of the storage, which
                    # learns of a trial claimed here only when it reads the trials.
                    opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    return optuna.Trial(opt, tid)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
    return None


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
    from optuna.trial import TrialState

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
        except optuna.exceptions.UpdateFinishedTrialError:
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
