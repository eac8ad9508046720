"""A report kind per kind of study (``ablation.study.kinds``): its analysis,
its figures, its markdown and what the study's parent run shows of it.
``report.build`` composes them with the sections of ``report.common``.

- ``grid``: arms compared with the baseline over paired seeds (``analyse``,
  ``markdown.render``); ``tuned``: the same from the confirmation runs, plus
  how each arm's tuning budget was spent; ``search``: the best trial of a TPE
  search, the search history, the commands that confirm the winner.

A new kind of study is one class here (``register_report_kind``) beside its
run-side module.
"""

from __future__ import annotations

import abc
import statistics
from dataclasses import replace
from pathlib import Path

from ablation import paths
from ablation import tags as T
from ablation.errors import closest
from ablation.report import budget, plots, search_plots
from ablation.report.analysis import Analysis, analyse
from ablation.report.load import ReportError, StudyRuns
from ablation.report.markdown import render
from ablation.report.stats import label
from ablation.report.search import TuningAnalysis, analyse_tuning
from ablation.report.search_markdown import render_tuning

MAX_CHANGE_PANELS = 6
_KINDS: dict[str, "ReportKind"] = {}


def register_report_kind(cls):
    _KINDS[cls.name] = cls()
    return cls


def list_report_kinds() -> list[str]:
    return list(_KINDS)


def report_kind(runs: StudyRuns) -> "ReportKind":
    name = runs.info.kind
    if name not in _KINDS:
        raise ReportError(f"study '{runs.info.name}' is of an unknown kind '{name}'{closest(name, list(_KINDS))}; "
                          "update ablation to report it")
    return _KINDS[name]


def key_safe(name: str) -> str:
    """An arm label as part of a metric or tag key (MLflow allows only ``[/\\w.\\- :]``): ``depth=2`` -> ``depth_2``."""
    import re

    return re.sub(r"[^/\w.\- :]", "_", name)


def clear(fig_dir: Path) -> None:
    for old in fig_dir.glob("*.png") if fig_dir.is_dir() else []:
        old.unlink()  # a figure with no data this time must not survive from an earlier build


class ReportKind(abc.ABC):
    name = ""

    @abc.abstractmethod
    def analyse(self, runs: StudyRuns, out_dir: Path, slug: str):
        ...

    @abc.abstractmethod
    def figures(self, runs: StudyRuns, a, fig_dir: Path) -> dict[str, Path]:
        """Every figure that has data, by title, in reading order."""
        ...

    @abc.abstractmethod
    def render(self, runs: StudyRuns, a, figures: dict[str, str]) -> str:
        ...

    @abc.abstractmethod
    def parent_summary(self, runs: StudyRuns, a) -> tuple[dict[str, float], dict[str, str]]:
        """(metrics, tags) for the study's parent run, from the report's own analysis."""
        ...


@register_report_kind
class GridReport(ReportKind):
    name = "grid"

    def analyse(self, runs: StudyRuns, out_dir: Path, slug: str) -> Analysis:
        """The arms against the baseline, and the budget check of a study with an epoch cap."""
        a = analyse(runs)
        if runs.info.budget_cap is None:
            return a
        return replace(a, budget=budget.check(runs.info, runs.cells, runs.budget, a.verdict.best))

    def figures(self, runs: StudyRuns, a: Analysis, fig_dir: Path) -> dict[str, Path]:
        info = runs.info
        clear(fig_dir)
        drawn = {
            f"{label(info.metric)} by arm": plots.metric_vs_factor(
                a.summary, runs.cells, info, info.metric, a.ceilings.get(info.metric), fig_dir / "metric_by_arm.png"
            ),
            "Learning curves": plots.learning_curves(runs.history, info.arms, fig_dir / "learning_curves.png"),
            "Per-class val recall": plots.recall_heatmap(
                a.recall, fig_dir / "recall_heatmap.png", f"{info.name}: val recall per class (mean over seeds)"
            ),
            "Largest per-class recall changes vs baseline": plots.recall_changes(
                a.changes, best_arms(a, info.baseline), info.baseline, fig_dir / "recall_changes.png"
            ),
        }
        return {title: path for title, path in drawn.items() if path is not None}

    def render(self, runs: StudyRuns, a: Analysis, figures: dict[str, str]) -> str:
        return render(runs, a, figures)

    def parent_summary(self, runs: StudyRuns, a: Analysis) -> tuple[dict[str, float], dict[str, str]]:
        """Per arm: the mean and spread of the study metric over the cells the
        verdict uses, and their count; the best arm, the verdict and each arm's
        decision; the cells used of those owed."""
        metric, col = a.metric, "metrics." + a.metric
        metrics: dict[str, float] = {}
        for arm in runs.info.arms:
            values = [float(v) for v in runs.cells.loc[runs.cells["arm"] == arm, col]] if not runs.cells.empty else []
            if not values:
                continue
            key = "arm/" + key_safe(arm)
            metrics[f"{key}/{metric}.mean"] = statistics.fmean(values)
            metrics[f"{key}/{metric}.std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            metrics[f"{key}/seeds"] = len(values)
        cells = f"{len(runs.cells)}/{runs.n_expected}"
        tags = {T.key(T.VERDICT): a.verdict.sentence, T.key(T.VERDICT_CELLS): cells,
                T.key(T.CELLS_FINISHED): str(len(runs.cells))}
        if a.verdict.best:
            tags[T.key(T.BEST_ARM)] = a.verdict.best
        for arm, c in a.decisions.items():
            tags[T.key(T.DECISION) + key_safe(arm)] = c.decision
        if a.budget is not None:
            tags[T.key(T.BUDGET_CHECK)] = a.budget.status
        return metrics, tags


@register_report_kind
class TunedReport(GridReport):
    name = "tuned"

    def figures(self, runs: StudyRuns, a: Analysis, fig_dir: Path) -> dict[str, Path]:
        from ablation.report.diagnostics import best_so_far

        drawn = super().figures(runs, a, fig_dir)
        info = runs.info
        path = best_so_far(info.arms, runs.tuning, info.metric, info.maximize, fig_dir / "tuning_best_so_far.png")
        if path is not None:
            drawn["Tuning budget: best so far per arm"] = path
        return drawn


@register_report_kind
class SearchReport(ReportKind):
    name = "search"

    def analyse(self, runs: StudyRuns, out_dir: Path, slug: str) -> TuningAnalysis:
        config = out_dir / slug / "winner.toml"
        t = analyse_tuning(runs, project_relative(config))
        config.unlink(missing_ok=True)  # a winner without a logged config must not inherit an older one
        if t.verdict.commands:
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(runs.configs[t.best_run_id], encoding="utf-8")
        return t

    def figures(self, runs: StudyRuns, a: TuningAnalysis, fig_dir: Path) -> dict[str, Path]:
        info = runs.info
        clear(fig_dir)
        ceiling = a.verdict.ceilings.get(info.metric)
        what = label(info.metric)
        drawn = {
            "Optimisation history": search_plots.optimisation_history(
                a.trials, info.metric, info.maximize, a.epoch_key, ceiling, fig_dir / "history.png",
                f"{info.name}: {what} of each trial, in sampling order",
            ),
            f"{what} against each searched value": search_plots.search_slices(
                a.trials, a.search, info.metric, a.epoch_key, fig_dir / "search_slices.png",
                f"{info.name}: {what} against each searched value (one point per trial)",
            ),
            f"Per-epoch {a.epoch_key} of every trial": search_plots.trial_curves(
                runs.history, a.trials, info.metric, a.epoch_key, fig_dir / "trial_curves.png",
                f"{info.name}: {a.epoch_key} per epoch (pruned trials end at x)",
            ),
        }
        return {title: path for title, path in drawn.items() if path is not None}

    def render(self, runs: StudyRuns, a: TuningAnalysis, figures: dict[str, str]) -> str:
        return render_tuning(runs, a, figures)

    def parent_summary(self, runs: StudyRuns, a: TuningAnalysis) -> tuple[dict[str, float], dict[str, str]]:
        """The best trial and its value, the verdict, the trials done of those planned."""
        v = a.verdict
        planned = runs.info.cells_total
        tags = {T.key(T.VERDICT): v.sentence, T.key(T.VERDICT_CELLS): f"{v.done}/{'?' if planned is None else planned}",
                T.key(T.CELLS_FINISHED): str(v.done)}
        metrics = {}
        if v.best:
            tags[T.key(T.BEST_ARM)] = v.best
            metrics[f"best/{a.metric}"] = float(v.best_value)
        return metrics, tags


def project_relative(path: Path) -> str:
    """A path as a command run from the project's folder names it."""
    try:
        return path.resolve().relative_to(paths.project_dir()).as_posix()
    except ValueError:
        return str(path.resolve())


def best_arms(a: Analysis, baseline: str, limit: int = MAX_CHANGE_PANELS) -> list[str]:
    """The baseline and the ``limit`` best other arms by the study metric: one
    panel each keeps the figure readable for a study with many arms."""
    rows = a.summary[(a.summary["metric"] == a.metric) & (a.summary["n"] > 0) & (a.summary["arm"] != baseline)]
    ranked = rows.sort_values("mean", ascending=not a.verdict.maximize, kind="stable")["arm"].tolist()
    return [baseline] + ranked[:limit]
