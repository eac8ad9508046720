"""The study's MLflow parent run: created with the study's tags
(``tags.StudyTags``), and finished with what the study found, taken from the
same analysis the report is written from (confirmation runs only in a tuned
study), so the run and the report cannot disagree."""

from __future__ import annotations

import time

from ablation import tracking
from ablation import tags as T
from ablation.study.spec import Study

ATTR = "mlflow_parent_run_id"  # the Optuna study's user attr holding its parent run


def exists(c, run_id: str) -> bool:
    """Whether the tracking store still has the run (a deleted or emptied store has not)."""
    try:
        c.get_run(run_id)
        return True
    except Exception:  # MlflowException: not found
        return False


def create(study: Study, c) -> str:
    """A new parent run with the study's tags and its study file; returns its id."""
    from ablation.experiment import load_dataset_cached

    exp_id = tracking.get_or_create_experiment(c, study.name)
    ds = load_dataset_cached(study.cells[0].config.data.source)
    tags = T.StudyTags(
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
        protocol=study.spec.protocol, protocol_settings=study.kind.protocol_settings(study),
        budget_note=study.spec.budget_note or "", study_kind=study.kind.name,
        budget_cap=study.kind.budget_cap(study),
    ).to_tags()
    # MLflow's own tags: the question is the run's description, the commit links to the code
    tags = {**tags, tracking.NOTE_TAG: study.spec.question,
            tracking.GIT_COMMIT_TAG: tracking.git_commit().removesuffix("-dirty")}
    run = c.create_run(exp_id, run_name=study.name, tags=tags)
    c.log_text(run.info.run_id, study.path.read_text(), "study.toml")
    c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def forget_lost_runs(session) -> list[int]:
    """Finished trials whose run the tracking store no longer has (deleted or
    emptied): recorded on the study as lost, so their cells count as not run
    and are enqueued again. Returns the newly lost trial numbers."""
    from ablation.study import _optuna as O
    from ablation.study.cells import LOST, RUN_ID

    c, opt = session.client, session.opt
    done = [t for t in O.trials(opt, O.TrialState.COMPLETE, O.TrialState.PRUNED) if t.user_attrs.get(RUN_ID)]
    lost = set(opt.user_attrs.get(LOST, []))
    if not done:
        return []
    exp = c.get_experiment_by_name(opt.study_name)
    have = set()
    if exp is not None:
        have = {r.info.run_id for r in c.search_runs([exp.experiment_id], "", max_results=50_000)}
    new = [t.number for t in done if t.number not in lost and t.user_attrs[RUN_ID] not in have]
    if new:
        opt.set_user_attr(LOST, sorted(lost | set(new)))
    return new


def finish(study: Study, session, tracking_uri: str | None, built=None) -> str:
    """Make the parent run say what the study found: per-arm summaries, the
    best arm, the verdict and each arm's decision, cell counts (all from the
    report's analysis: ``built``, or analysed here when no report was written),
    the report and its figures as artifacts, and an end time covering every cell."""
    from ablation.errors import AblationError
    from ablation.report.build import analyse_study

    c = tracking.client(tracking_uri)
    parent = session.parent
    run = tracking.Run(c, parent)
    if built is None:
        try:
            built = analyse_study(study.name, tracking_uri)
        except AblationError:  # no finished cell yet (the reason is printed by the report step): nothing to summarise
            built = None
    if built is not None:
        metrics, tags = built.summary()
        run.log_metrics(metrics)
        run.set_tags(tags)
        if built.path is not None and built.path.is_file():
            run.log_artifact(built.path, "report")
            figures = built.path.with_suffix("")
            if figures.is_dir():
                for f in sorted(figures.iterdir()):
                    if f.is_file():
                        run.log_artifact(f, f"report/{figures.name}")
    exp = c.get_experiment_by_name(study.name)
    for tuning in c.search_runs([exp.experiment_id], f"tags.`{T.key(T.KIND)}` = '{T.TuningTags._kind}' AND "
                                f"tags.`{T.key(T.TUNING_OF)}` = '{parent}'", max_results=10_000):
        _end_with_children(c, exp.experiment_id, tuning.info.run_id)  # an arm's tuning ends with its last trial
    _end_with_children(c, exp.experiment_id, parent, now=True)  # the study ends now, its report written
    return parent


def _end_with_children(c, experiment_id: str, run_id: str, now: bool = False) -> None:
    """Mark a run that holds others finished, its end time that of the last of
    them (or now, with ``now`` or when none has ended)."""
    kids = c.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=10_000)
    ends = [r.info.end_time for r in kids if r.info.end_time]
    if now or not ends:
        ends.append(int(time.time() * 1000))
    c.set_terminated(run_id, "FINISHED", end_time=max(ends))
