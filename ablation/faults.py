"""A test-only hook that kills this process at a named step of the study
protocol, so the tests can prove that a re-run repairs a kill at that step.

``ABLATION_TEST_FAULT=STEP`` (or ``STEP:N``) SIGKILLs the process the first
(the N-th) time it reaches ``point(STEP)``. Unset, ``point`` is one dict lookup.
Steps: ``claim.running`` (a trial is RUNNING, nothing else recorded),
``claim.pid`` (heartbeat and pid recorded, host not yet), ``run.created`` (the
MLflow run exists, its id is not on the trial yet), ``cell.epoch`` (after a
training epoch), ``store.mlflow`` / ``store.optuna`` (a new SQLite store is
migrated aside, not yet moved into place).
"""

from __future__ import annotations

import os
import signal

ENV = "ABLATION_TEST_FAULT"
STEPS = ("claim.running", "claim.pid", "run.created", "cell.epoch", "store.mlflow", "store.optuna")
_seen: dict[str, int] = {}


def point(step: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != step:
        return
    _seen[step] = _seen.get(step, 0) + 1
    if _seen[step] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
