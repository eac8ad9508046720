"""Cells: one (arm, seed) pair = one Optuna trial = one MLflow child run.

What state each cell is in (from the trials: a finished trial wins), how a
cell is enqueued and claimed, and how a claimed cell is run: a failure is
recorded in both stores with its reason (Optuna FAIL + MLflow FAILED) and the
study carries on.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

from ablation import faults, interrupt, tracking
from ablation import tags as T
from ablation.errors import AblationError, DivergedError, StudyError, TrackingError
from ablation.storage import first_line
from ablation.study import _optuna as O
from ablation.study.spec import Cell, Study

# The cell index travels as a user attr set at enqueue time; the trial's params
# are the cell's factor levels and seed, so Optuna's views show the factors.
CELL = "cell"
ERROR = "error"  # trial user attr: why it failed
RUN_ID = "mlflow_run_id"  # trial user attr: its MLflow run
DIVERGED = "diverged"  # trial user attr: why a tuning trial that diverged was told pruned
LOST = "lost_trials"  # study user attr: finished trials whose run the tracking store no longer has
_RANK = {"done": 4, "running": 3, "waiting": 2, "failed": 1, "missing": 0}


@dataclass
class CellState:
    cell: int
    state: str  # done, running, waiting, failed, missing
    trial: int | None = None
    error: str = ""
    run_id: str = ""


@dataclass
class Job:
    """One claimed trial to run: the Optuna study it belongs to, the trial, the
    cell's config, its phase tag (``tags.PHASE_*``, "" for none) and whether
    the trial is a search trial (pruned, never evidence) rather than a cell."""

    opt: object
    trial: object
    cell: Cell
    phase: str = ""
    search: bool = False
    may_prune: bool = False
    run_name: str = ""
    parent: str = ""  # the MLflow run it nests under; "" for the study's parent run


def cell_of(trial) -> int | None:
    cell = trial.user_attrs.get(CELL)
    return None if cell is None else int(cell)


def cell_states(opt, n_cells: int) -> list[CellState]:
    """The state of every cell, from the trials (a finished trial wins)."""
    states = [CellState(i, "missing") for i in range(n_cells)]
    for t in live_trials(opt):
        c = cell_of(t)
        if c is None or c >= n_cells:
            continue
        s = O.STATE_WORDS[t.state]
        if _RANK[s] > _RANK[states[c].state] or (s == states[c].state == "failed"):
            states[c] = CellState(c, s, t.number, t.user_attrs.get(ERROR, ""), t.user_attrs.get(RUN_ID, ""))
    return states


def live_trials(opt, *states) -> list:
    """The study's trials (in ``states``), less those whose run was lost."""
    lost = set(opt.user_attrs.get(LOST, []))
    return [t for t in O.trials(opt, *states) if t.number not in lost]


def failed_for_good(opt, n_cells: int) -> set[int]:
    """Cells whose last trial failed by their own error (not a worker's death):
    this run will not try them again, so the seed policy counts them as settled."""
    return {s.cell for s in cell_states(opt, n_cells) if s.state == "failed" and not died(s.error)}


def enqueue(opt, cell: Cell, cost: float | None = None, first: bool = False, **attrs) -> None:
    """A WAITING trial for ``cell``, its params the cell's factor levels and seed; ``cost``: what it is
    expected to cost, in a unit every cell of the study shares (the costliest is claimed first);
    ``first``: claimed before the others (``gates_decisions``)."""
    if cost is not None:
        attrs[O.COST] = float(cost)
    if first:
        attrs[O.FIRST] = True
    opt.enqueue_trial(cell.trial_params, user_attrs={CELL: cell.index, "arm": cell.arm.label, "seed": cell.seed,
                                                     **attrs})


def gates_decisions(study: Study, cell: Cell) -> bool:
    """A cell that other cells wait for: with adaptive seeds, a baseline cell (an arm's next seed is
    wanted once its decision on the seeds so far is known, and every decision pairs with the baseline)."""
    return study.design.adaptive and study.baseline is not None and cell.arm == study.baseline


def expected_cost(cfg) -> float:
    """What a cell of ``cfg`` may cost to train, before anything has run: its epoch cap times its
    model's multiply-accumulates per frame (every cell of a study trains on the same frames). A
    rough order for the claims: 0 (enqueue order) for a user's model family, whose code may
    depend on its data's sizes, which are not read here."""
    import torch

    from ablation.models import create_model, family
    from ablation.train import model_kwargs

    if family(cfg.model.name).user:
        return 0.0
    n_classes, frame_dim = 41, 39  # the order of the cells does not depend on the corpus's sizes
    with torch.device("meta"):  # shapes only: nothing allocated, no random numbers drawn
        model = create_model(cfg.model.name, n_concat=cfg.features.n_concat, frame_dim=frame_dim,
                             n_classes=n_classes, **model_kwargs(cfg, n_classes, frame_dim))
    return float(cfg.train.epochs) * float(model.macs_per_frame())


def claimed_cell(study: Study, trial) -> Cell:
    """The cell an enqueued trial stands for; its fixed params are recorded
    as categorical params (the factor levels and the seed)."""
    cell = study.cells[cell_of(trial)]
    for name, choices in study.param_choices().items():
        trial.suggest_categorical(name, choices)  # returns the enqueued value
    return cell


def already_done(opt, cell_index: int, number: int) -> bool:
    """A cell enqueued twice (two machines starting together) runs once."""
    for t in live_trials(opt, O.TrialState.COMPLETE, O.TrialState.RUNNING):
        if t.number != number and cell_of(t) == cell_index and (t.state == O.TrialState.COMPLETE or t.number < number):
            return True
    return False


def claim_cell(study: Study, storage, opt) -> tuple[object, Cell] | None:
    """The next WAITING cell of ``opt``, claimed; a duplicate is failed and skipped."""
    while True:
        trial = O.claim(storage, opt)
        if trial is None:
            return None
        cell = claimed_cell(study, trial)
        if not already_done(opt, cell.index, trial.number):
            return trial, cell
        O.tell(opt, trial, state=O.TrialState.FAIL)


def died(error: str) -> bool:
    """A failure of the worker, not of the cell: reaped ("worker ...") or by
    Optuna's stale-heartbeat check (which records no reason)."""
    return not error or error.startswith("worker ")


def not_its_fault(error: str) -> bool:
    """A trial stopped from outside (its worker died or was interrupted), not by its own error."""
    return died(error) or error.startswith("interrupted")


def metric_value(result, name: str) -> float:
    split, what = name.split(".", 1)
    ev = result.val if split == "val" else result.test
    if ev is None:
        raise StudyError(f"metric {name} needs test labels, which this data set does not have")
    return float(getattr(ev, what))


def store_failure(e: BaseException) -> str | None:
    """One line naming the store that failed and what to do, or None if ``e``
    is not a store's failure (a full disk, a database that went away)."""
    text = f"{type(e).__name__}: {first_line(e)}"
    if isinstance(e, O.StorageInternalError):
        return f"the Optuna storage failed ({text}); check that its database is up and its disk has space, then run again"
    if (isinstance(e, OSError) and e.errno == 28) or "No space left on device" in text or "disk is full" in text:
        return f"a store ran out of disk space ({text}); free space and run again (finished cells are kept)"
    return None


def run_cell(session, job: Job, progress: bool = False) -> str:
    """Run one claimed trial; returns 'done', 'failed' or 'pruned'. A failure
    is recorded (Optuna FAIL + MLflow FAILED with the reason) and not raised.
    A search trial that diverges is pruned (its reason in the run's error tag
    and the trial's ``diverged`` attr): it counts as one of its trials."""
    from ablation import experiment

    study, storage, opt, trial, cell = session.study, session.storage, job.opt, job.trial, job.cell
    tid = O.trial_id(storage, opt, trial.number)
    tags = T.CellTags(
        study=study.name, study_hash=study.hash, arm=cell.arm.label, arm_levels=cell.arm.levels, seed=cell.seed,
        trial=trial.number, baseline=study.baseline is not None and cell.arm == study.baseline,
        worker=f"{socket.gethostname()}:{os.getpid()}", phase=job.phase,
    ).to_tags()
    metric = study.spec.metric
    key = "epoch." + metric.name.replace(".", "_")

    def report(epoch, metrics):
        # every trial's per-epoch value is an intermediate value; only a search prunes
        faults.point("cell.epoch")
        interrupt.check()
        if key in metrics:
            trial.report(metrics[key], epoch)
            if job.may_prune and trial.should_prune():
                raise O.TrialPruned(f"pruned at epoch {epoch}")

    outcome = "failed"
    with O.Heartbeat(storage, tid):
        try:
            with tracking.start_run(session.client, session.exp_id, job.run_name or cell.run_name, tags,
                                    parent_run_id=job.parent or session.parent) as run:
                faults.point("run.created")
                storage.set_trial_user_attr(tid, RUN_ID, run.run_id)
                try:
                    result = experiment.execute(cell.config, run, callbacks=[report], progress=progress)
                except (O.TrialPruned, DivergedError) as e:
                    if isinstance(e, DivergedError):
                        if not job.search:  # a cell of the comparison: a failure with its reason
                            raise
                        # A search trial whose settings diverge has spent its share of the budget and found a
                        # bad region: pruned, which TPE ranks below every complete trial (a failed trial it
                        # would ignore, and run again), without inventing a metric value for it.
                        storage.set_trial_user_attr(tid, DIVERGED, str(e))
                    run.set_tags({T.key(T.PRUNED): "true", T.key(T.ERROR): str(e)})
                    # the epochs a pruner stopped had trained: what a study's time went to (fit attaches it)
                    run.log_metrics({k: getattr(e, k) for k in ("train_time_s", "eval_time_s") if hasattr(e, k)})
                    outcome = "pruned"
            if outcome == "pruned":
                O.tell(opt, trial, state=O.TrialState.PRUNED)
                return outcome
            O.tell(opt, trial, metric_value(result, metric.name))
            return "done"
        except KeyboardInterrupt:
            storage.set_trial_user_attr(tid, ERROR, "interrupted by the user")
            O.tell(opt, trial, state=O.TrialState.FAIL)
            raise
        except Exception as e:  # recorded as data; the study carries on
            store = store_failure(e)
            reason = store or (str(e) if isinstance(e, AblationError) else f"{type(e).__name__}: {e}")
            _record_failure(opt, storage, tid, trial, reason)
            print(f"cell '{cell.run_name}' failed: {reason}", file=sys.stderr)
            if store is not None:  # the next cell would fail alike: stop this worker with that line
                raise TrackingError(reason) from None
            return "failed"


def _record_failure(opt, storage, tid: int, trial, reason: str) -> None:
    """Fail the trial with its reason; if the Optuna store itself is what
    failed, that cannot be recorded now: the trial's heartbeat goes stale and
    the next run reaps it."""
    try:
        storage.set_trial_user_attr(tid, ERROR, reason)
        O.tell(opt, trial, state=O.TrialState.FAIL)
    except Exception:
        pass
