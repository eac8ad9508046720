"""Run a study: cells enqueued in an Optuna study, claimed by workers, each
one an MLflow child run.

- All cells are enqueued up front as WAITING trials; a worker claims the next
  one with an atomic WAITING -> RUNNING update (Optuna's own queue), so many
  processes or machines sharing one storage never run a cell twice.
- Re-running resumes: finished cells are skipped; failed cells, and cells
  whose worker died (same host: its pid is gone; another host: its heartbeat
  went stale), are failed in both stores and enqueued again.
- A changed study (any cell's config, the metric, the sampler) is refused;
  ``--new`` archives the old Optuna study and starts fresh.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ablation import paths, tracking
from ablation import tags as tags_schema
from ablation.errors import AblationError, StudyError, TrackingError
from ablation.study import Cell, Study
from ablation.tags import CellTags, StudyTags

HEARTBEAT_S = 10
GRACE_S = 60
# The cell index travels as a user attr set at enqueue time; the trial's params
# are the cell's factor levels and seed, so Optuna's views show the factors.
_CELL = "cell"


def default_storage() -> str:
    return f"sqlite:///{paths.mlruns_dir() / 'optuna.db'}"


def _quiet_optuna() -> None:
    import logging
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Heartbeat.*")
    logging.getLogger("alembic").setLevel(logging.ERROR)


def open_storage(url: str | None = None):
    """An Optuna RDB storage with heartbeats; SQLite files are created once
    under a lock (workers starting together would race on the schema)."""
    _quiet_optuna()
    import optuna
    from filelock import FileLock

    url = url or os.environ.get("ABLATION_STORAGE") or default_storage()
    kwargs = {}
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"cannot create {db.parent} for the Optuna storage: {e.strerror}") from None
        kwargs = {"connect_args": {"timeout": 120}}
    try:
        if url.startswith("sqlite:///"):
            with FileLock(str(db) + ".lock", timeout=120):
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
                )
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except Exception as e:
        raise TrackingError(
            f"Optuna storage {url} cannot be used ({type(e).__name__}: {tracking._first_line(e)}); check --storage"
        ) from None


@dataclass
class CellState:
    cell: int
    state: str  # done, running, waiting, failed, missing
    trial: int | None = None
    error: str = ""
    run_id: str = ""


def _cell_of(trial) -> int | None:
    cell = trial.user_attrs.get(_CELL)
    return None if cell is None else int(cell)


def cell_states(study_obj, n_cells: int, tuning: bool = False) -> list[CellState]:
    """The state of every cell, from the trials (a finished trial wins)."""
    from optuna.trial import TrialState

    rank = {"done": 4, "running": 3, "waiting": 2, "failed": 1, "missing": 0}
    states = [CellState(i, "missing") for i in range(n_cells)]
    trials = study_obj.get_trials(deepcopy=False)
    if tuning:  # tuning trials are not cells: count finished ones in order
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        for i, t in enumerate(finished[:n_cells]):
            states[i] = CellState(i, "done", t.number, run_id=t.user_attrs.get("mlflow_run_id", ""))
        return states
    for t in trials:
        c = _cell_of(t)
        if c is None or c >= n_cells:
            continue
        s = {
            TrialState.COMPLETE: "done", TrialState.PRUNED: "done", TrialState.RUNNING: "running",
            TrialState.WAITING: "waiting", TrialState.FAIL: "failed",
        }[t.state]
        if rank[s] > rank[states[c].state] or (s == states[c].state == "failed"):
            states[c] = CellState(c, s, t.number, t.user_attrs.get("error", ""), t.user_attrs.get("mlflow_run_id", ""))
    return states


# ---- preparing a study ------------------------------------------------------


def prepare_study(study: Study, storage, tracking_uri: str | None, new: bool = False):
    """Create or resume the Optuna study and the MLflow parent run; enqueue
    every missing cell. Returns the Optuna study."""
    import optuna
    from filelock import FileLock

    c = tracking.client(tracking_uri)
    lock = FileLock(str(paths.mlruns_dir() / f".{study.name}.prepare.lock"), timeout=300)
    with lock:
        existing = _load(storage, study.name)
        if existing is not None and existing.user_attrs.get("hash") != study.hash:
            if not new:
                raise StudyError(
                    f"study '{study.name}' changed since it began (its cells, base experiment or options differ: "
                    f"{existing.user_attrs.get('hash')} -> {study.hash}); run again with --new to archive the old "
                    f"trials and start fresh, or restore {study.path.name} and its options to continue the old one"
                )
            archive = f"{study.name}@{existing.user_attrs.get('hash', 'old')}-{int(time.time())}"
            optuna.copy_study(from_study_name=study.name, from_storage=storage, to_storage=storage,
                              to_study_name=archive)
            optuna.delete_study(study_name=study.name, storage=storage)
            existing = None
        if existing is None:
            direction = study.spec.metric.direction
            opt = optuna.create_study(storage=storage, study_name=study.name, direction=direction)
            opt.set_metric_names([study.spec.metric.name])
            opt.set_user_attr("hash", study.hash)
            opt.set_user_attr("cells_total", study.n_cells)
            opt.set_user_attr("sampler", study.spec.sampler)
        else:
            opt = existing
        _reap_dead(opt, c)
        if not opt.user_attrs.get("mlflow_parent_run_id"):
            opt.set_user_attr("mlflow_parent_run_id", _create_parent(study, c))
        if study.spec.sampler == "grid":
            for st in cell_states(opt, study.n_cells):
                if st.state in ("missing", "failed"):
                    cell = study.cells[st.cell]
                    opt.enqueue_trial(cell.trial_params,
                                      user_attrs={_CELL: cell.index, "arm": cell.arm.label, "seed": cell.seed})
    return opt


def _load(storage, name: str):
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    except KeyError:
        return None


def _reap_dead(opt, c) -> None:
    """Fail trials whose worker is gone, in Optuna and in MLflow."""
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    storage = opt._storage
    for t in opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") == host and not _pid_alive(t.user_attrs.get("pid")):
            try:
                storage.set_trial_user_attr(t._trial_id, "error", f"worker {t.user_attrs.get('pid')} died")
                storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass
    optuna.storages.fail_stale_trials(opt)
    # A run of a trial that is no longer running is over: mark it killed. The
    # MLflow side is searched too, since a worker can die after creating its
    # run and before recording the run id on the trial.
    running_trials = {t.number for t in opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    errors = {t.number: t.user_attrs.get("error") for t in opt.get_trials(deepcopy=False)}
    exp = c.get_experiment_by_name(opt.study_name)
    if exp is not None:
        for run in c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'", max_results=10_000):
            trial = run.data.tags.get(tags_schema.key(tags_schema.TRIAL))
            if trial is None:
                continue
            older = run.data.tags.get(tags_schema.key(tags_schema.STUDY_HASH)) != opt.user_attrs.get("hash")
            if older or int(trial) not in running_trials:
                tracking.Run(c, run.info.run_id).finish("KILLED", errors.get(int(trial)) or "worker died")


def _pid_alive(pid) -> bool:
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create_parent(study: Study, c) -> str:
    exp_id = tracking.get_or_create_experiment(c, study.name)
    first = study.cells[0].config
    from ablation.experiment import load_dataset_cached

    ds = load_dataset_cached(first.data.source)
    tags = StudyTags(
        study=study.name, hash=study.hash, question=study.spec.question, base=study.spec.base,
        factors=list(study.spec.factors) or list(study.spec.search), arms=[a.label for a in study.arms],
        arm_levels={a.label: a.levels for a in study.arms},
        baseline_arm=study.baseline.label if study.baseline else "",
        metric=study.spec.metric.name, direction=study.spec.metric.direction, seeds=list(study.seeds),
        scale=study.scale, sampler=study.spec.sampler, param_budget=study.param_budget or None,
        budget_tolerance=study.spec.constraints.tolerance, cells_total=study.n_cells, command=study.command(),
        data_source=ds.source, data_fingerprint=ds.fingerprint, git_commit=tracking.git_commit(),
    ).to_tags()
    run = c.create_run(exp_id, run_name=study.name, tags=tags)
    c.log_text(run.info.run_id, study.path.read_text(), "study.toml")
    c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


# ---- workers ----------------------------------------------------------------


def claim(opt):
    """Atomically take the next WAITING trial (RUNNING now), or None."""
    import optuna
    from optuna.trial import TrialState

    storage = opt._storage
    for t in storage.get_all_trials(opt._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(opt, t._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


class _Heartbeat:
    """Records the trial's heartbeat while its cell runs (other hosts use it
    to tell a live worker from a dead one)."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id, self.stop = storage, trial_id, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop.is_set():
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:
                pass
            self.stop.wait(HEARTBEAT_S)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def run_cell(study: Study, opt, trial, c, exp_id: str, parent_run_id: str, cell: Cell,
             progress: bool = False) -> str:
    """Run one claimed cell; returns 'done', 'failed' or 'pruned'. A failure
    is recorded (Optuna FAIL + MLflow FAILED with the reason) and not raised."""
    import optuna
    from optuna.trial import TrialState

    from ablation import experiment

    storage = opt._storage
    tid = trial._trial_id
    storage.set_trial_user_attr(tid, "host", socket.gethostname())
    storage.set_trial_user_attr(tid, "pid", os.getpid())
    tags = CellTags(
        study=study.name, study_hash=study.hash, arm=cell.arm.label, arm_levels=cell.arm.levels, seed=cell.seed,
        trial=trial.number, baseline=study.baseline is not None and cell.arm == study.baseline,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    ).to_tags()
    metric = study.spec.metric
    key = "epoch." + metric.name.replace(".", "_")
    may_prune = study.spec.sampler == "tpe" and study.spec.pruner != "none"

    def report(epoch, metrics):
        # every trial's per-epoch value is an intermediate value; only tuning prunes
        if key in metrics:
            trial.report(metrics[key], epoch)
            if may_prune and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    callbacks = [report]
    outcome = "failed"
    with _Heartbeat(storage, tid):
        try:
            with tracking.start_run(c, exp_id, cell.run_name, tags, parent_run_id=parent_run_id) as run:
                storage.set_trial_user_attr(tid, "mlflow_run_id", run.run_id)
                try:
                    result = experiment.execute(cell.config, run, callbacks=callbacks, progress=progress)
                except optuna.TrialPruned as e:
                    run.set_tags({tags_schema.key(tags_schema.PRUNED): "true", tags_schema.key(tags_schema.ERROR): str(e)})
                    outcome = "pruned"
            if outcome == "pruned":
                opt.tell(trial, state=TrialState.PRUNED)
                return outcome
            value = _metric_value(result, metric.name)
            opt.tell(trial, value)
            return "done"
        except KeyboardInterrupt:
            storage.set_trial_user_attr(tid, "error", "interrupted by the user")
            opt.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as e:  # recorded as data; the study carries on
            reason = str(e) if isinstance(e, AblationError) else f"{type(e).__name__}: {e}"
            storage.set_trial_user_attr(tid, "error", reason[:2000])
            opt.tell(trial, state=TrialState.FAIL)
            print(f"cell '{cell.run_name}' failed: {reason}", file=sys.stderr)
            return "failed"


def _metric_value(result, name: str) -> float:
    split, what = name.split(".", 1)
    ev = result.val if split == "val" else result.test
    if ev is None:
        raise StudyError(f"metric {name} needs test labels, which this data set does not have")
    return float(getattr(ev, what))


def tuned_cell(study: Study, trial) -> Cell:
    """The config a tuning trial samples from the study's [search] space."""
    from ablation import config as C

    base = study.cells[0].config.to_dict()
    chosen = {}
    for key, dim in study.spec.search.items():
        if dim.choices is not None:
            chosen[key] = trial.suggest_categorical(key, dim.choices)
        elif dim.int:
            chosen[key] = trial.suggest_int(key, int(dim.low), int(dim.high), log=dim.log)
        else:
            chosen[key] = trial.suggest_float(key, float(dim.low), float(dim.high), log=dim.log)
    cfg = C.build(C.apply_overrides(base, chosen), f" (tuning trial {trial.number})")
    from ablation.study import Arm

    label = " ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in chosen.items())
    return Cell(trial.number, Arm(f"trial {trial.number}", chosen, 0), cfg.train.seed, cfg)


def worker(study: Study, storage_url: str | None, tracking_uri: str | None, threads: int = 0,
           progress: bool = False, on_cell=None) -> dict[str, int]:
    """Claim and run cells until none is waiting. Returns outcome counts."""
    import optuna
    import torch

    if threads:
        torch.set_num_threads(threads)
    storage = open_storage(storage_url)
    opt = optuna.load_study(study_name=study.name, storage=storage, sampler=_sampler(study),
                            pruner=_pruner(study))
    c = tracking.client(tracking_uri)
    exp_id = tracking.get_or_create_experiment(c, study.name)
    parent = opt.user_attrs["mlflow_parent_run_id"]
    counts = {"done": 0, "failed": 0, "pruned": 0}
    while True:
        if study.spec.sampler == "tpe":
            from optuna.trial import TrialState

            finished = len(opt.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
            running = len(opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if finished + running >= study.n_cells:
                break
            trial = opt.ask()
            cell = tuned_cell(study, trial)
        else:
            trial = claim(opt)
            if trial is None:
                break
            cell = _claimed_cell(study, trial)
            if _already_done(opt, cell.index, trial.number):
                opt.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
        outcome = run_cell(study, opt, trial, c, exp_id, parent, cell, progress=progress)
        counts[outcome] += 1
        if on_cell is not None:
            on_cell(cell, outcome)
    return counts


def _claimed_cell(study: Study, trial):
    """The cell an enqueued trial stands for; its fixed params are recorded
    as categorical params (the factor levels and the seed)."""
    cell = study.cells[_cell_of(trial)]
    for name, choices in study.param_choices().items():
        trial.suggest_categorical(name, choices)  # returns the enqueued value
    return cell


def _already_done(opt, cell_index: int, number: int) -> bool:
    """A cell enqueued twice (two machines starting together) runs once."""
    from optuna.trial import TrialState

    for t in opt.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if t.number != number and _cell_of(t) == cell_index and (t.state == TrialState.COMPLETE or t.number < number):
            return True
    return False


def _sampler(study: Study):
    import optuna

    if study.spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=study.seeds[0])
    return optuna.samplers.RandomSampler(seed=0)  # never samples: every grid cell is enqueued


def _pruner(study: Study):
    import optuna

    if study.spec.sampler == "tpe" and study.spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def _worker_main(study: Study, storage_url, tracking_uri, threads, queue) -> None:
    """Entry of a --jobs worker process."""
    try:
        counts = worker(study, storage_url, tracking_uri, threads,
                        on_cell=lambda cell, outcome: queue.put((cell.run_name, outcome)))
        queue.put(("__done__", counts))
    except KeyboardInterrupt:
        pass
    except AblationError as e:
        queue.put(("__error__", str(e)))
