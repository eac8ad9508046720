"""Stopping a run: SIGTERM and SIGHUP behave like Ctrl-C, and a stop asked
for is remembered, so library code that swallows a ``KeyboardInterrupt``
cannot let the run carry on: the next ``check()`` raises it again."""

from __future__ import annotations

import signal
import threading

_asked = threading.Event()
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _handler(signum, frame):
    _asked.set()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def install() -> dict:
    """Route SIGINT, SIGTERM and SIGHUP to ``KeyboardInterrupt`` (main thread
    only); returns the handlers it replaced, for ``restore``."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _handler) for sig in SIGNALS}


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
