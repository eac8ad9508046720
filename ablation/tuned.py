"""Running a ``protocol = "tuned"`` study: an equal tuning budget per arm, then
confirmation runs on the study's seeds (see ``ablation.protocol``).

- Tuning: each arm has its own Optuna study (``<study>~<hash>~tune~<arm index>``)
  with the same TPE seed and pruner, and exactly ``trials`` slots enqueued as
  WAITING trials (slot k trains on tuning seed ``seeds[k % len(seeds)]``).
  A worker claims a slot like a cell; TPE samples the nuisance values from
  that arm's finished slots. A failed or killed slot is enqueued again, so a
  resumed study gives every arm exactly ``trials`` finished tuning trials.
- Confirmation: once an arm's slots are all finished, its cells are enqueued
  in the study's own Optuna study with the best trial's nuisance values (with
  adaptive seeds, the ``min`` first, then a paired seed at a time while the arm
  is undecided, as in a fixed-protocol study); the verdict is computed from
  these runs only (the report ignores tuning runs).

Both phases are MLflow children of the study's parent run, tagged by phase.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

from ablation import config as C
from ablation import adaptive, runner, stopping, tracking
from ablation import storage as storage_mod
from ablation import tags as T
from ablation.protocol import PHASE_CONFIRM, PHASE_TUNING
from ablation.study import SEED_PARAM, Arm, Cell, Study, suggest

SLOT = "slot"
NUISANCE = "nuisance"
POLL_S = 1.0


def tuning_name(study: Study, arm: Arm, main) -> str:
    """An arm's tuning study, of the study's current generation (``main``, the
    study's own Optuna study: ``--new`` starts a new parent run, so new tuning)."""
    return f"{study.name}~{main.user_attrs['mlflow_parent_run_id']}~tune~{arm.index}"


def slot_seed(study: Study, slot: int) -> int:
    seeds = study.spec.tuning.seeds
    return seeds[slot % len(seeds)]


def _sampler(study: Study, slot: int = 0):
    import optuna

    # Seeded per slot, alike for every arm: the arms differ in what they are, not in the sampler's
    # luck, and two workers claiming slots at once do not draw the same values.
    return optuna.samplers.TPESampler(seed=study.spec.tuning.seeds[0] + 7919 * slot,
                                      n_startup_trials=min(3, study.spec.tuning.trials))


def _pruner(study: Study):
    import optuna

    kind = study.spec.tuning.pruner
    cap = study.cells[0].config.train.epochs
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cap, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _open(study: Study, storage, arm: Arm, main, create: bool = False):
    import optuna

    name = tuning_name(study, arm, main)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=_sampler(study), pruner=_pruner(study))
    except KeyError:
        if not create:
            raise
    opt = optuna.create_study(storage=storage, study_name=name, direction=study.spec.metric.direction,
                              sampler=_sampler(study), pruner=_pruner(study))
    opt.set_metric_names([study.spec.metric.name])
    opt.set_user_attr("hash", study.hash)
    opt.set_user_attr("arm", arm.label)
    return opt


def slot_states(opt, n_slots: int) -> list[str]:
    """done / running / waiting / failed / missing per slot (a finished trial wins)."""
    from optuna.trial import TrialState

    rank = {"done": 4, "running": 3, "waiting": 2, "failed": 1, "missing": 0}
    out = ["missing"] * n_slots
    for t in opt.get_trials(deepcopy=False):
        k = t.user_attrs.get(SLOT)
        if k is None or k >= n_slots:
            continue
        s = {TrialState.COMPLETE: "done", TrialState.PRUNED: "done", TrialState.RUNNING: "running",
             TrialState.WAITING: "waiting", TrialState.FAIL: "failed"}[t.state]
        if rank[s] > rank[out[k]]:
            out[k] = s
    return out


def _reap(study: Study, storage, opt, c) -> None:
    """Fail the tuning trials whose worker is gone and mark their MLflow runs killed."""
    from optuna.trial import TrialState

    storage_mod.reap_dead(storage, opt)
    running = {t.user_attrs.get("mlflow_run_id") for t in opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    exp = c.get_experiment_by_name(study.name)
    if exp is None:
        return
    arm = opt.user_attrs.get("arm")
    query = f"attributes.status = 'RUNNING' and tags.`{T.key(T.PHASE)}` = '{PHASE_TUNING}'"
    for run in c.search_runs([exp.experiment_id], query, max_results=10_000):
        if run.data.tags.get(T.key(T.ARM)) == arm and run.info.run_id not in running:
            tracking.Run(c, run.info.run_id).finish("KILLED", "worker died")


def _enqueue_missing(study: Study, opt, arm: Arm) -> None:
    for k, state in enumerate(slot_states(opt, study.spec.tuning.trials)):
        if state in ("missing", "failed"):
            seed = slot_seed(study, k)
            opt.enqueue_trial({SEED_PARAM: seed}, user_attrs={SLOT: k, "arm": arm.label, "seed": seed})


def prepare(study: Study, storage, main, c) -> None:
    """Create each arm's tuning study and enqueue its missing or failed slots;
    called by ``runner.prepare_study`` under the study lock."""
    for arm in study.arms:
        opt = _open(study, storage, arm, main, create=True)
        _reap(study, storage, opt, c)
        _enqueue_missing(study, opt, arm)


def tuning_todo(study: Study, storage, main) -> int:
    """Tuning slots not yet finished, over every arm."""
    return sum(s != "done" for arm in study.arms
               for s in slot_states(_open(study, storage, arm, main), study.spec.tuning.trials))


def best_values(study: Study, opt) -> dict | None:
    """The nuisance values of an arm's best finished (not pruned) tuning trial,
    once all its slots are done; ties go to the earlier trial."""
    from optuna.trial import TrialState

    if any(s != "done" for s in slot_states(opt, study.spec.tuning.trials)):
        return None
    done = [t for t in opt.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if SLOT in t.user_attrs]
    if not done:
        return None
    sign = -1.0 if study.spec.metric.direction == "maximize" else 1.0
    best = min(done, key=lambda t: (sign * t.value, t.number))
    return {k: best.params[k] for k in study.spec.tuning.space}


def progress(study: Study, storage, main) -> list[dict]:
    """Per arm, how far its tuning is: slots done of ``trials`` (a pruned slot,
    a diverged one among them, is done), running, pruned, diverged, and the
    best value so far with its nuisance values (None before a complete trial)."""
    from optuna.trial import TrialState

    k = study.spec.tuning.trials
    sign = -1.0 if study.spec.metric.direction == "maximize" else 1.0
    out = []
    for arm in study.arms:
        try:
            opt = _open(study, storage, arm, main)
        except KeyError:  # not prepared yet
            out.append({"arm": arm.label, "done": 0, "trials": k, "running": 0, "pruned": 0, "diverged": 0,
                        "best": None, "values": {}})
            continue
        states = slot_states(opt, k)
        slots = [t for t in opt.get_trials(deepcopy=False) if SLOT in t.user_attrs]
        pruned = [t for t in slots if t.state == TrialState.PRUNED]
        complete = [t for t in slots if t.state == TrialState.COMPLETE]
        best = min(complete, key=lambda t: (sign * t.value, t.number)) if complete else None
        out.append({"arm": arm.label, "done": states.count("done"), "trials": k, "running": states.count("running"),
                    "pruned": len(pruned), "diverged": sum(runner.DIVERGED in t.user_attrs for t in pruned),
                    "best": best.value if best else None,
                    "values": {key: best.params[key] for key in study.spec.tuning.space} if best else {}})
    return out


def _enqueue_confirmations(study: Study, storage, main, tuners: dict[int, object]) -> None:
    """Enqueue the confirmation cells of every arm whose tuning is finished;
    with adaptive seeds only those its decisions want so far (``adaptive.wanted``:
    the worker calls this after every cell, so a finished look adds the next
    paired seed of each arm still undecided)."""
    with storage_mod.study_lock(storage, study.name):
        states = runner.cell_states(main, len(study.cells))
        wanted = adaptive.wanted(study, main.get_trials(deepcopy=False))
        for arm in study.arms:
            values = best_values(study, tuners[arm.index])
            if values is None:
                continue
            for cell in (c for c in study.cells if c.arm == arm):
                if wanted is not None and cell.index not in wanted:
                    continue
                if states[cell.index].state in ("missing", "failed"):
                    main.enqueue_trial(cell.trial_params, user_attrs={
                        runner._CELL: cell.index, "arm": arm.label, "seed": cell.seed, NUISANCE: json.dumps(values)})


def _with(cell: Cell, values: dict, where: str) -> Cell:
    cfg = C.build(C.apply_overrides(cell.config.to_dict(), values), where)
    return replace(cell, config=cfg)


def _tuning_cell(study: Study, trial, arm: Arm) -> Cell:
    """The config a claimed tuning slot trains: the arm's at the slot's seed, with sampled nuisance values."""
    slot = int(trial.user_attrs[SLOT])
    trial.study.sampler = _sampler(study, slot)  # the independent suggestions below draw from it
    seed = trial.suggest_categorical(SEED_PARAM, list(study.spec.tuning.seeds))  # the enqueued value
    values = suggest(trial, study.spec.tuning.space)
    base = next(c for c in study.cells if c.arm == arm)
    cfg = C.build(C.apply_overrides(base.config.to_dict(), {**values, "train.seed": seed}),
                  f" (arm {arm.label}, tuning slot {slot})")
    return Cell(slot, arm, seed, cfg)


def worker(study: Study, storage_url: str | None, tracking_uri: str | None, threads: int = 0,
           progress: bool = False, on_cell=None) -> dict[str, int]:
    """Claim and run tuning slots, then confirmation cells, until none is left."""
    import optuna
    import torch
    from optuna.trial import TrialState

    if threads:
        torch.set_num_threads(threads)
    storage = runner.open_storage(storage_url)
    main = optuna.load_study(study_name=study.name, storage=storage, sampler=runner._sampler(study))
    tuners = {arm.index: _open(study, storage, arm, main) for arm in study.arms}
    c = tracking.client(tracking_uri)
    exp_id = tracking.get_or_create_experiment(c, study.name)
    parent = main.user_attrs["mlflow_parent_run_id"]
    counts = {"done": 0, "failed": 0, "pruned": 0}
    while True:
        stopping.check()
        job = None
        for arm in study.arms:  # tuning first: confirmations wait for their arm's budget to be spent
            trial = runner.claim(storage, tuners[arm.index])
            if trial is not None:
                cell = _tuning_cell(study, trial, arm)
                job = (tuners[arm.index], trial, cell, PHASE_TUNING)
                break
        if job is None:
            _enqueue_confirmations(study, storage, main, tuners)
            trial = runner.claim(storage, main)
            if trial is not None:
                cell = runner._claimed_cell(study, trial)
                if runner._already_done(main, cell.index, trial.number):
                    main.tell(trial, state=TrialState.FAIL)
                    continue
                values = json.loads(trial.user_attrs[NUISANCE])
                job = (main, trial, _with(cell, values, f" (arm {cell.arm.label}, confirmation)"), PHASE_CONFIRM)
        if job is None:
            busy = [o for o in tuners.values() if o.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
            if not busy:
                break
            time.sleep(POLL_S)  # another worker is spending an arm's last slots: its confirmations follow
            with storage_mod.study_lock(storage, study.name):
                for arm in study.arms:
                    _reap(study, storage, tuners[arm.index], c)
                    _enqueue_missing(study, tuners[arm.index], arm)
            continue
        opt, trial, cell, phase = job
        outcome = runner.run_cell(study, storage, opt, trial, c, exp_id, parent, cell, progress=progress, phase=phase,
                                  may_prune=phase == PHASE_TUNING and study.spec.tuning.pruner != "none")
        counts[outcome] += 1
        if on_cell is not None:
            on_cell(cell, outcome)
    return counts



