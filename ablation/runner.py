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

import os
import socket
import sys
import time
from dataclasses import dataclass

from ablation import adaptive, faults, stopping, tracking
from ablation import storage as storage_mod
from ablation import tags as tags_schema
from ablation.errors import AblationError, DivergedError, StudyError
from ablation.study import SEED_PARAM, Cell, Study, suggest
from ablation.tags import CellTags, StudyTags

# The cell index travels as a user attr set at enqueue time; the trial's params
# are the cell's factor levels and seed, so Optuna's views show the factors.
_CELL = "cell"
MAX_DEATHS = 3  # a cell whose worker died this often is not re-queued again in the same run
SAME_ERROR_STOP = 3  # tuning: this many failures in a row with one error stop the study
DIVERGED = "diverged"  # trial user attr: why a tuning trial that diverged was told pruned


def default_storage() -> str:
    return storage_mod.default_storage()


def open_storage(url: str | None = None):
    """The Optuna storage (see ``ablation.storage``)."""
    return storage_mod.open_storage(url)


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


def study_states(study: Study, opt) -> list[CellState]:
    """``cell_states`` of the cells the study runs: with adaptive seeds, the
    ones its decisions so far want (the others are not owed)."""
    states = cell_states(opt, study.n_cells, study.spec.sampler == "tpe")
    wanted = adaptive.wanted(study, opt.get_trials(deepcopy=False)) if study.spec.sampler == "grid" else None
    return states if wanted is None else [s for s in states if s.cell in wanted]


# ---- preparing a study ------------------------------------------------------


def prepare_study(study: Study, storage, tracking_uri: str | None, new: bool = False):
    """Create or resume the Optuna study and the MLflow parent run; enqueue
    every missing or failed cell. Returns the Optuna study. The study lock
    makes hosts that start at the same instant create and enqueue it once."""
    import optuna

    c = tracking.client(tracking_uri)
    with storage_mod.study_lock(storage, study.name):
        existing = _load(storage, study.name)
        faults.point("prepare.loaded")
        if existing is not None and existing.user_attrs.get("hash") != study.hash and not new:
            raise StudyError(
                f"study '{study.name}' changed since it began (its cells, question, baseline, metric, base "
                f"experiment or options differ: {existing.user_attrs.get('hash')} -> {study.hash}); run again with "
                f"--new to archive the old trials and start fresh, or restore {study.path.name} and its options to "
                "continue the old one"
            )
        if existing is not None and new:  # --new always starts afresh, changed or not
            reap(storage, existing, c)
            archive = f"{study.name}@{existing.user_attrs.get('hash', 'old')}-{time.time_ns()}"
            optuna.copy_study(from_study_name=study.name, from_storage=storage, to_storage=storage,
                              to_study_name=archive)
            optuna.delete_study(study_name=study.name, storage=storage)
            existing = None
        if existing is None:
            opt = optuna.create_study(storage=storage, study_name=study.name, direction=study.spec.metric.direction)
            opt.set_metric_names([study.spec.metric.name])
            opt.set_user_attr("hash", study.hash)
            opt.set_user_attr("cells_total", study.n_cells)
            opt.set_user_attr("sampler", study.spec.sampler)
        else:
            opt = existing
        reap(storage, opt, c)
        if not opt.user_attrs.get("mlflow_parent_run_id"):
            opt.set_user_attr("mlflow_parent_run_id", _create_parent(study, c))
        if study.spec.protocol == "tuned":  # confirmations are enqueued once each arm's tuning is done
            from ablation import tuned

            tuned.prepare(study, storage, opt, c)
            return opt
        requeue(study, opt, retry_failed=True)
    return opt


def _load(storage, name: str):
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    except KeyError:
        return None


def requeue(study: Study, opt, retry_failed: bool) -> int:
    """Enqueue every grid cell that has no trial, and every failed one
    (``retry_failed``: a new run) or only those whose worker died fewer than
    ``MAX_DEATHS`` times (during a run). Call under the study lock. With
    adaptive seeds only the cells ``adaptive.wanted`` names: workers call this
    whenever they find nothing to claim, so a finished look adds the next
    paired seed of every arm still undecided."""
    if study.spec.sampler != "grid":
        return 0
    from optuna.trial import TrialState

    deaths: dict[int, int] = {}
    for t in opt.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if _died(str(t.user_attrs.get("error", ""))):
            deaths[_cell_of(t)] = deaths.get(_cell_of(t), 0) + 1
    wanted = adaptive.wanted(study, opt.get_trials(deepcopy=False))  # adaptive seeds: only what is undecided
    n = 0
    for st in cell_states(opt, study.n_cells):
        if wanted is not None and st.cell not in wanted:
            continue
        died = _died(st.error) and deaths.get(st.cell, 0) < MAX_DEATHS
        if st.state == "missing" or (st.state == "failed" and (retry_failed or died)):
            cell = study.cells[st.cell]
            opt.enqueue_trial(cell.trial_params, user_attrs={_CELL: cell.index, "arm": cell.arm.label, "seed": cell.seed})
            n += 1
    return n


def _died(error: str) -> bool:
    """A failure of the worker, not of the cell: reaped here ("worker ...") or
    by Optuna's stale-heartbeat check (which records no reason)."""
    return not error or error.startswith("worker ")


def reap(storage, opt, c) -> list[int]:
    """Fail the trials whose worker is dead, and mark their runs KILLED."""
    reaped = storage_mod.reap_dead(storage, opt)
    _kill_orphan_runs(opt, c)
    return reaped


def _kill_orphan_runs(opt, c) -> None:
    """A run of a trial that is no longer running is over: mark it killed. The
    MLflow side is searched, since a worker can die after creating its run and
    before recording the run id on the trial."""
    from optuna.trial import TrialState

    running_trials = {t.number for t in opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    errors = {t.number: t.user_attrs.get("error") for t in opt.get_trials(deepcopy=False)}
    exp = c.get_experiment_by_name(opt.study_name)
    if exp is None:
        return
    for run in c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'", max_results=10_000):
        trial = run.data.tags.get(tags_schema.key(tags_schema.TRIAL))
        if trial is None or run.data.tags.get(tags_schema.key(tags_schema.PHASE)) == "tuning":
            continue  # a tuning trial belongs to its arm's own Optuna study (ablation.tuned reaps it)
        older = run.data.tags.get(tags_schema.key(tags_schema.STUDY_HASH)) != opt.user_attrs.get("hash")
        if older or int(trial) not in running_trials:
            tracking.Run(c, run.info.run_id).finish("KILLED", errors.get(int(trial)) or "worker died")


def protocol_settings(study: Study) -> dict:
    """What the report states about the protocol: the stopping rule and tuning budget as run."""
    cfg = study.cells[0].config.train
    out = {"max_epochs": cfg.epochs, "patience": cfg.patience, "select_fraction": cfg.select_fraction}
    if study.spec.tuning is not None and study.spec.protocol == "tuned":
        out["tuning"] = study.spec.tuning.model_dump()
    return out


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
        min_effect=study.min_effect,
        seed_design={"min": study.design.min, "max": study.design.max} if study.design.adaptive else {},
        data_source=ds.source, data_fingerprint=ds.fingerprint, git_commit=tracking.git_commit(),
        protocol=study.spec.protocol, protocol_settings=protocol_settings(study),
        budget_note=study.spec.budget_note or "",
    ).to_tags()
    # MLflow's own tags: the question is the run's description, the commit links to the code
    tags = {**tags, tracking.NOTE_TAG: study.spec.question, tracking.GIT_COMMIT_TAG: tracking.git_commit().removesuffix("-dirty")}
    run = c.create_run(exp_id, run_name=study.name, tags=tags)
    c.log_text(run.info.run_id, study.path.read_text(), "study.toml")
    c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


# ---- workers ----------------------------------------------------------------


def claim(storage, opt):
    """Atomically take the next WAITING trial (see ``ablation.storage.claim``)."""
    return storage_mod.claim(storage, opt)


def run_cell(study: Study, storage, opt, trial, c, exp_id: str, parent_run_id: str, cell: Cell,
             progress: bool = False, phase: str = "", may_prune: bool | None = None) -> str:
    """Run one claimed cell; returns 'done', 'failed' or 'pruned'. A failure
    is recorded (Optuna FAIL + MLflow FAILED with the reason) and not raised.
    A tuning trial that diverges is pruned (its reason in the run's error tag
    and the trial's ``diverged`` attr): it counts as one of its arm's trials."""
    import optuna
    from optuna.trial import TrialState

    from ablation import experiment

    tid = storage_mod.trial_id(storage, opt, trial.number)
    tags = CellTags(
        study=study.name, study_hash=study.hash, arm=cell.arm.label, arm_levels=cell.arm.levels, seed=cell.seed,
        trial=trial.number, baseline=study.baseline is not None and cell.arm == study.baseline,
        worker=f"{socket.gethostname()}:{os.getpid()}", phase=phase,
    ).to_tags()
    metric = study.spec.metric
    key = "epoch." + metric.name.replace(".", "_")
    if may_prune is None:
        may_prune = study.spec.sampler == "tpe" and study.spec.pruner != "none"
    tuning = phase == "tuning" or study.spec.sampler == "tpe"  # a trial of a search, not a cell of the comparison

    def report(epoch, metrics):
        # every trial's per-epoch value is an intermediate value; only tuning prunes
        faults.point("cell.epoch")
        stopping.check()
        if key in metrics:
            trial.report(metrics[key], epoch)
            if may_prune and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    callbacks = [report]
    outcome = "failed"
    with storage_mod.Heartbeat(storage, tid):
        try:
            name = f"{cell.arm.label} tuning#{cell.index} seed={cell.seed}" if phase == "tuning" else cell.run_name
            with tracking.start_run(c, exp_id, name, tags, parent_run_id=parent_run_id) as run:
                faults.point("run.created")
                storage.set_trial_user_attr(tid, "mlflow_run_id", run.run_id)
                try:
                    result = experiment.execute(cell.config, run, callbacks=callbacks, progress=progress)
                except (optuna.TrialPruned, DivergedError) as e:
                    if isinstance(e, DivergedError):
                        if not tuning:  # a cell of the comparison: a failure with its reason
                            raise
                        # A tuning trial whose settings diverge has spent its share of the budget and found a
                        # bad region: pruned, which TPE ranks below every complete trial (a failed trial it
                        # would ignore, and run again), without inventing a metric value for it.
                        storage.set_trial_user_attr(tid, DIVERGED, str(e))
                    run.set_tags({tags_schema.key(tags_schema.PRUNED): "true", tags_schema.key(tags_schema.ERROR): str(e)})
                    # the epochs a pruner stopped had trained: what a study's time went to (fit attaches it)
                    run.log_metrics({k: getattr(e, k) for k in ("train_time_s", "eval_time_s") if hasattr(e, k)})
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
            storage.set_trial_user_attr(tid, "error", reason)
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
    chosen = suggest(trial, study.spec.search)
    seed = trial.suggest_categorical(SEED_PARAM, list(study.seeds))  # the enqueued value
    cfg = C.build(C.apply_overrides(base, {**chosen, "train.seed": seed}), f" (tuning trial {trial.number})")
    from ablation.study import Arm

    label = " ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in chosen.items())
    return Cell(trial.number, Arm(f"trial {trial.number}", chosen, 0), cfg.train.seed, cfg)


def worker(study: Study, storage_url: str | None, tracking_uri: str | None, threads: int = 0,
           progress: bool = False, on_cell=None) -> dict[str, int]:
    """Claim and run cells until every cell is done or failed; while other
    workers still run cells, wait for them (reaping the dead and running their
    cells again), so whoever finishes last sees the whole study. Returns
    outcome counts."""
    import optuna
    import torch

    if study.spec.protocol == "tuned":
        from ablation import tuned

        return tuned.worker(study, storage_url, tracking_uri, threads, progress, on_cell)
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
        stopping.check()
        if study.spec.sampler == "tpe":
            trial = ask_tuning(study, storage, opt)
            if trial is None:
                if _wait_for_others(study, storage, opt, c):
                    continue
                break
            cell = tuned_cell(study, trial)
        else:
            trial = claim(storage, opt)
            if trial is None:
                if _wait_for_others(study, storage, opt, c):
                    continue
                break
            cell = _claimed_cell(study, trial)
            if _already_done(opt, cell.index, trial.number):
                opt.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
        outcome = run_cell(study, storage, opt, trial, c, exp_id, parent, cell, progress=progress)
        counts[outcome] += 1
        if on_cell is not None:
            on_cell(cell, outcome)
    return counts


def _wait_for_others(study: Study, storage, opt, c) -> bool:
    """With nothing to claim: reap dead workers and re-queue their cells;
    True (after a short sleep if only others' cells are running) while the
    study is not over. Each wait is bounded: a live worker finishes its cell,
    a dead one is reaped within the grace period."""
    from optuna.trial import TrialState

    with storage_mod.study_lock(storage, study.name):
        reap(storage, opt, c)
        if requeue(study, opt, retry_failed=False):
            return True
    if opt.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return True
    if not opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        return False
    time.sleep(min(2.0, storage_mod.heartbeat_s()))
    return True


def ask_tuning(study: Study, storage, opt):
    """The next tuning trial, or None when finished plus running trials reach
    ``n_trials``. Asked under the study lock so parallel workers never start
    more than ``n_trials``; failures count against a budget, and the same error
    ``SAME_ERROR_STOP`` times in a row stops the study with that error."""
    from optuna.trial import TrialState

    with storage_mod.study_lock(storage, study.name):
        trials = opt.get_trials(deepcopy=False)
        by = {s: [t for t in trials if t.state == s] for s in TrialState}
        finished = len(by[TrialState.COMPLETE]) + len(by[TrialState.PRUNED])
        active = len(by[TrialState.RUNNING]) + len(by[TrialState.WAITING])
        failed = by[TrialState.FAIL]
        if finished + active >= study.n_cells:
            return None
        over = [t for t in sorted(trials, key=lambda t: t.number) if t.state.is_finished()]
        last = [str(t.user_attrs.get("error", "")) for t in over[-SAME_ERROR_STOP:] if t.state == TrialState.FAIL]
        if len(last) == SAME_ERROR_STOP and len(set(last)) == 1 and not _not_its_fault(last[0]):
            raise StudyError(f"tuning study '{study.name}' stopped: its last {SAME_ERROR_STOP} trials failed with "
                             f"the same error: {last[0]}; fix the cause and run again with --new")
        failed = [t for t in failed if not _not_its_fault(str(t.user_attrs.get("error", "")))]
        budget = failure_budget(study)
        if len(failed) >= budget:
            raise StudyError(f"tuning study '{study.name}' stopped: {len(failed)} trials failed (the budget is "
                             f"{budget}; last: {failed[-1].user_attrs.get('error', 'unknown')}); fix the cause "
                             "and run again with --new")
        # the seed is a fixed param, as in a grid study's enqueued cells; TPE samples the rest
        seed = study.seeds[0]
        opt.enqueue_trial({SEED_PARAM: seed}, user_attrs={"seed": seed})
        trial = opt.ask()  # takes the trial just enqueued (under the lock, no one else can)
        storage_mod.mark_mine(storage, storage_mod.trial_id(storage, opt, trial.number))
    return trial


def _not_its_fault(error: str) -> bool:
    """A trial stopped from outside (its worker died or was interrupted), not by its own error."""
    return _died(error) or error.startswith("interrupted")


def failure_budget(study: Study) -> int:
    """How many failed trials a tuning study tolerates (beyond its n_trials finished)."""
    return max(SAME_ERROR_STOP, study.n_cells // 4)


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


# what a --jobs worker takes from its parent's environment (a fork server keeps its own)
WORKER_ENV_PREFIXES = ("ABLATION_", "MLFLOW_")


def _worker_main(study: Study, storage_url, tracking_uri, threads, queue, env: dict | None = None) -> None:
    """Entry of a --jobs worker process: SIGTERM / SIGHUP stop it like Ctrl-C."""
    if env is not None:
        for k in [k for k in os.environ if k.startswith(WORKER_ENV_PREFIXES)]:
            del os.environ[k]
        os.environ.update(env)
    stopping.install()
    try:
        counts = worker(study, storage_url, tracking_uri, threads,
                        on_cell=lambda cell, outcome: queue.put((cell.run_name, outcome)))
        queue.put(("__done__", counts))
    except KeyboardInterrupt:
        queue.put(("__stopped__", None))
    except AblationError as e:
        queue.put(("__error__", str(e)))


# ---- the parent run, once the cells are done -------------------------------


def _key_safe(name: str) -> str:
    """An arm label as part of a metric or tag key (MLflow allows only ``[/\\w.\\- :]``): ``depth=2`` -> ``depth_2``."""
    import re

    return re.sub(r"[^/\w.\- :]", "_", name)


VERDICT_TAG = tags_schema.key("verdict")  # the report's verdict sentence
VERDICT_CELLS_TAG = tags_schema.key("verdict.cells")  # the cells it was computed from ("4/4")
DECISION_TAG = tags_schema.key("decision.")  # + arm: better, worse, equivalent or undecided vs the baseline


def verdict_tags(report: Path) -> dict[str, str]:
    """The report's verdict as parent-run tags, read from the machine-readable
    line the report starts with (what the reports index lists too), so the runs
    table can show the verdict and each arm's decision as columns."""
    from ablation.report.build import read_marker

    meta = read_marker(report) or {}
    if not meta.get("verdict"):
        return {}
    out = {VERDICT_TAG: meta["verdict"], VERDICT_CELLS_TAG: str(meta.get("cells", ""))}
    for arm, word in (meta.get("decisions") or {}).items():
        out[DECISION_TAG + _key_safe(arm)] = word
    return out


def finish_parent(study: Study, opt, tracking_uri: str | None, report: Path | None = None) -> str:
    """Make the study's parent run say what the study found: per-arm summary
    metrics (mean and spread over the finished seeds), the best arm, the
    report's verdict and per-arm decisions as tags, the report and its figures
    as artifacts, and an end time that covers every cell."""
    import statistics

    c = tracking.client(tracking_uri)
    parent = opt.user_attrs["mlflow_parent_run_id"]
    exp = c.get_experiment_by_name(study.name)
    cells = c.search_runs(
        [exp.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent}' and attributes.status = 'FINISHED'", max_results=10_000,
    )
    metric = study.spec.metric.name
    by_arm: dict[str, list[float]] = {}
    for r in cells:
        if metric in r.data.metrics:
            by_arm.setdefault(r.data.tags.get(tracking.TAG + "arm", ""), []).append(r.data.metrics[metric])
    summary: dict[str, float] = {}
    for arm, values in by_arm.items():
        key = "arm/" + _key_safe(arm)
        summary[f"{key}/{metric}.mean"] = statistics.fmean(values)
        summary[f"{key}/{metric}.std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[f"{key}/seeds"] = len(values)
    run = tracking.Run(c, parent)
    if summary:
        run.log_metrics(summary)
        pick = max if study.spec.metric.direction == "maximize" else min
        best = pick(by_arm, key=lambda a: statistics.fmean(by_arm[a]))
        run.set_tags({tracking.TAG + "study.best_arm": best, tracking.TAG + "study.cells_finished": len(cells)})
    if report is not None and report.is_file():
        run.set_tags(verdict_tags(report))
        run.log_artifact(report, "report")
        figures = report.with_suffix("")
        if figures.is_dir():
            for f in sorted(figures.iterdir()):
                if f.is_file():
                    run.log_artifact(f, f"report/{figures.name}")
    ends = [r.info.end_time for r in cells if r.info.end_time]
    c.set_terminated(parent, "FINISHED", end_time=max([int(time.time() * 1000), *ends]))
    return parent
