"""Running a study's budget check (``ablation.report.budget`` decides what it needs and compares).

The runs a longer cap needs are trained in this process, one after another, as
MLflow runs of the study's current parent run tagged with the cells' schema and
phase ``budget`` (``tags.BudgetTags``): the report keeps them apart from the
cells, so they never enter the comparison or the parent's summaries. They are
not Optuna trials: a check is a handful of runs (``jobs`` > 1 trains them in a
small pool of processes, their threads splitting the cores). Each is its cell's
logged config with ``train.epochs`` at ``factor`` times its cap; a re-run
trains only those without a finished run at that factor.
"""

from __future__ import annotations

import os
import socket
import sys
import tomllib

from ablation import config as C
from ablation import tags as T
from ablation import tracking
from ablation.errors import AblationError, StudyError
from ablation.report import budget as B
from ablation.report.load import StudyRuns, load_study, read_artifact_text
from ablation.study.spec import Study


def check_factor(factor: float) -> None:
    if not factor > 1:
        raise StudyError(f"--factor must be above 1 (the longer cap is factor x the cap), got {factor:g}; "
                         "use e.g. --factor 2")


def check_has_cap(study: Study) -> int:
    """The study's epoch cap; a study without one is refused in one line."""
    cap = study.kind.budget_cap(study)
    if cap is None:
        raise StudyError(f"study '{study.name}' has no epoch cap to check ({study.path}): its cells do not stop by "
                         "patience under a [stopping] cap, so a longer cap changes nothing it decides; a budget check "
                         "needs protocol = \"converged\" (or \"tuned\" with [stopping])")
    return cap


def current_runs(study: Study, tracking_uri: str | None) -> StudyRuns:
    """The study's runs in MLflow, of this very study (its options included); refused otherwise."""
    runs = load_study(study.name, tracking_uri)  # a study never run: one line naming the command
    if runs.info.hash != study.hash:
        ran = runs.info.command or f"python -m ablation run {study.name}"
        raise StudyError(f"the newest runs of study '{study.name}' were made by `{ran}`, with other options or another "
                         f"study file than asked here ({runs.info.hash} != {study.hash}); give budget the same "
                         "--scale, --data, --seeds and --set, or run the study again first")
    return runs


def best_arm(runs: StudyRuns) -> str | None:
    from ablation.report.analysis import analyse

    return analyse(runs).verdict.best


def check_study(study: Study, tracking_uri: str | None, factor: float = B.DEFAULT_FACTOR, jobs: int = 1,
                log=print) -> B.BudgetCheck:
    """Train the runs the check still needs at ``factor`` and return the comparison."""
    return check_study_runs(study, tracking_uri, factor, jobs, log)[0]


def check_study_runs(study: Study, tracking_uri: str | None, factor: float = B.DEFAULT_FACTOR, jobs: int = 1,
                     log=print) -> tuple[B.BudgetCheck, StudyRuns]:
    """``check_study``, and the study's runs as they stand after it (a report built next reads them)."""
    check_factor(factor)
    check_has_cap(study)
    runs = current_runs(study, tracking_uri)
    b = B.check(runs.info, runs.cells, runs.budget, best_arm(runs), factor)
    todo = [n for n in b.retrain if n.run_id not in b.values]
    if todo:
        c = tracking.client(tracking_uri)
        exp_id = tracking.get_or_create_experiment(c, study.name)
        kill_stale(c, runs, factor)
        log(f"budget check: training {len(todo)} runs at {B.times(factor)} the cap:")
        for need in todo:
            log(f"  {need.arm} seed={need.seed} at {round(need.cap * factor)} epochs ({need.why})")
        jobs = max(1, min(jobs, len(todo), os.cpu_count() or 1))
        if jobs == 1:
            for need in todo:
                train_one(c, exp_id, runs, need, factor)
        else:
            _pool(tracking_uri, exp_id, runs, todo, factor, jobs)
        runs = current_runs(study, tracking_uri)
        b = B.check(runs.info, runs.cells, runs.budget, best_arm(runs), factor)
    return b, runs


def kill_stale(c, runs: StudyRuns, factor: float) -> None:
    """A budget run left RUNNING (its command was killed) is over: marked KILLED before it is trained again."""
    old = runs.budget
    if old.empty:
        return
    for run_id in old.loc[(old["status"] == "RUNNING") & (old["factor"] == factor), "run_id"]:
        tracking.Run(c, run_id).finish("KILLED", "its budget check was stopped")


def budget_config(c, need: B.Need, factor: float) -> C.ExperimentConfig:
    """The cell's logged config with the longer cap; nothing else changed."""
    text = read_artifact_text(c, need.run_id, "config.toml")
    if not text:
        raise StudyError(f"run {need.run_id} ({need.arm} seed={need.seed}) has no config.toml artifact to train "
                         "again; check the tracking store's artifacts")
    data = C.apply_overrides(tomllib.loads(text), {"train.epochs": round(need.cap * factor)})
    return C.build(data, f" (budget run of {need.arm} seed={need.seed})")


def train_one(c, exp_id: str, runs: StudyRuns, need: B.Need, factor: float) -> bool:
    """Train one budget run; a failure is recorded on its run (FAILED, with the reason) and printed."""
    from ablation import experiment

    info = runs.info
    tags = T.BudgetTags(
        study=info.name, study_hash=info.hash, arm=need.arm, arm_levels=info.arm_levels.get(need.arm, {}),
        seed=need.seed, baseline=need.arm == info.baseline, worker=f"{socket.gethostname()}:{os.getpid()}",
        phase=T.PHASE_BUDGET, of_run=need.run_id, factor=factor,
    ).to_tags()
    try:
        cfg = budget_config(c, need, factor)
        with tracking.start_run(c, exp_id, f"{need.arm} seed={need.seed} budget x{factor:g}", tags,
                                parent_run_id=info.parent_run_id) as run:
            experiment.execute(cfg, run)
        return True
    except Exception as e:  # recorded as data; the check carries on with the next run
        reason = str(e) if isinstance(e, AblationError) else f"{type(e).__name__}: {e}"
        print(f"budget run of '{need.arm} seed={need.seed}' failed: {reason}", file=sys.stderr)
        return False


def _pool(tracking_uri: str | None, exp_id: str, runs: StudyRuns, todo: list[B.Need], factor: float, jobs: int) -> None:
    """Train ``todo`` in ``jobs`` fresh processes, each with its share of the cores."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        for _ in pool.map(_train_in_worker, [(tracking_uri, exp_id, runs, n, factor, threads) for n in todo]):
            pass


def _train_in_worker(job) -> bool:
    import torch

    tracking_uri, exp_id, runs, need, factor, threads = job
    torch.set_num_threads(threads)
    return train_one(tracking.client(tracking_uri), exp_id, runs, need, factor)


def summary_lines(b: B.BudgetCheck, study: str, command: str = "") -> list[str]:
    """What ``budget`` and ``run`` print: the result, and each checked arm's mean at both caps."""
    out = [f"budget check: {B.result_line(b, study, command)}"]
    for arm in b.arms:
        if arm in b.longer:
            out.append(f"  {arm}: {b.at_cap[arm]:.4f} at the cap, {b.longer[arm]:.4f} at {B.times(b.factor)} the cap")
    return out
