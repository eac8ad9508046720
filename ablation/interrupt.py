"""Stopping a run: SIGTERM and SIGHUP behave like Ctrl-C, and a stop asked
for is remembered, so library code that swallows a ``KeyboardInterrupt``
cannot let the run carry on: the next ``check()`` raises it again.

A stop that arrives inside a database call (SQLAlchemy, MLflow's or Optuna's
store) is raised 50 ms later, once the call has returned: interrupted there,
it can leave a SQLite write lock held by this very process, and recording
the cell as interrupted would then fail with "database is locked"."""

from __future__ import annotations

import os
import signal
import threading

_asked = threading.Event()
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_RETRY_S = 0.05
_STORE_CODE = ("sqlalchemy", "sqlite3", os.path.join("mlflow", "store"), os.path.join("optuna", "storages"))


def _in_store_call(frame) -> bool:
    while frame is not None:
        if any(part in frame.f_code.co_filename for part in _STORE_CODE):
            return True
        frame = frame.f_back
    return False


def _handler(signum, frame):
    if signum == signal.SIGALRM and not _asked.is_set():
        return
    _asked.set()
    if _in_store_call(frame):
        signal.setitimer(signal.ITIMER_REAL, _RETRY_S)  # comes back as SIGALRM
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


def install() -> dict:
    """Route SIGINT, SIGTERM and SIGHUP to ``KeyboardInterrupt`` (main thread
    only); returns the handlers it replaced, for ``restore``."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _handler) for sig in SIGNALS + (signal.SIGALRM,)}


def restore(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def asked() -> bool:
    return _asked.is_set()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was asked for (even if swallowed since)."""
    if _asked.is_set():
        raise KeyboardInterrupt("stop asked")


def reset() -> None:
    """Forget a stop (tests running several commands in one process)."""
    _asked.clear()
