"""A test-only hook that kills (or holds) this process at a named step of the
study protocol, so the tests can prove that a re-run repairs a kill at that
step, and can line two processes up at one step.

``ABLATION_TEST_FAULT=STEP`` (or ``STEP:N``) SIGKILLs the process the first
(the N-th) time it reaches ``point(STEP)``. ``STEP@SECONDS`` holds it there
that long each time instead; ``STEP@PATH`` holds it until the file PATH
exists (at most ``HOLD_MAX_S``). Unset, ``point`` is one dict lookup.
Steps: ``claim.running`` (a trial is RUNNING, nothing else recorded),
``claim.pid`` (heartbeat and pid recorded, host not yet), ``run.created`` (the
MLflow run exists, its id is not on the trial yet), ``cell.epoch`` (after a
training epoch), ``store.mlflow`` / ``store.optuna`` (a new SQLite store is
migrated aside, not yet moved into place), ``prepare.loaded`` (under the study
lock, the study looked up, not yet created or enqueued).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "ABLATION_TEST_FAULT"
STEPS = ("claim.running", "claim.pid", "run.created", "cell.epoch", "store.mlflow", "store.optuna", "prepare.loaded")
HOLD_MAX_S = 300.0
_seen: dict[str, int] = {}


def point(step: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    spec, _, hold = spec.partition("@")
    name, _, nth = spec.partition(":")
    if name != step:
        return
    if hold:
        _hold(hold)
        return
    _seen[step] = _seen.get(step, 0) + 1
    if _seen[step] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _hold(what: str) -> None:
    try:
        time.sleep(float(what))
        return
    except ValueError:
        pass
    deadline = time.monotonic() + HOLD_MAX_S
    while not Path(what).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
