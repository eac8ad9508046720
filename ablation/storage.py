"""The files of the local stores (SQLite databases of MLflow and Optuna):
the lock files beside them and the check that this user can write them.
Optuna itself is ``ablation.study``'s business (its private ``_optuna``)."""

from __future__ import annotations

import os
from pathlib import Path

from ablation.errors import TrackingError

LOCK_TIMEOUT_S = 300


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, whole (messages are kept to one line, not cut)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


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
