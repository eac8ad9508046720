"""The pipeline: load runs -> analyse -> plots -> markdown, and the index
``reports/README.md`` of every report in the output folder."""

from __future__ import annotations

import json
from pathlib import Path

from ablation import paths, tracking
from ablation.report import plots, tuning_plots
from ablation.report.analysis import Analysis, analyse
from ablation.report.load import ReportError, StudyRuns, load_study
from ablation.report.common import MARKER
from ablation.report.markdown import render
from ablation.report.stats import label
from ablation.report.tuning import TuningAnalysis, analyse_tuning
from ablation.report.tuning_markdown import render_tuning

INDEX = "README.md"
MAX_CHANGE_PANELS = 6


def _slug(name: str) -> str:
    """File-safe study name (study names are identifiers; this guards the rest)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip(".") or "study"


def _best_arms(a: Analysis, baseline: str, limit: int = MAX_CHANGE_PANELS) -> list[str]:
    """The baseline and the ``limit`` best other arms by the study metric: one
    panel each keeps the figure readable for a study with many arms."""
    rows = a.summary[(a.summary["metric"] == a.metric) & (a.summary["n"] > 0) & (a.summary["arm"] != baseline)]
    ranked = rows.sort_values("mean", ascending=not a.verdict.maximize, kind="stable")["arm"].tolist()
    return [baseline] + ranked[:limit]


def draw_figures(runs: StudyRuns, a: Analysis, fig_dir: Path) -> dict[str, Path]:
    """Every figure that has data, by title, in reading order."""
    info = runs.info
    _clear(fig_dir)
    drawn = {
        f"{label(info.metric)} by arm": plots.metric_vs_factor(
            a.summary, runs.cells, info, info.metric, a.ceilings.get(info.metric), fig_dir / "metric_by_arm.png"
        ),
        "Learning curves": plots.learning_curves(runs.history, info.arms, fig_dir / "learning_curves.png"),
        "Per-class val recall": plots.recall_heatmap(
            a.recall, fig_dir / "recall_heatmap.png", f"{info.name}: val recall per class (mean over seeds)"
        ),
        "Largest per-class recall changes vs baseline": plots.recall_changes(
            a.changes, _best_arms(a, info.baseline), info.baseline, fig_dir / "recall_changes.png"
        ),
    }
    if info.protocol == "tuned":
        from ablation.report.diagnostics import best_so_far

        drawn["Tuning budget: best so far per arm"] = best_so_far(
            info.arms, runs.tuning, info.metric, info.maximize, fig_dir / "tuning_best_so_far.png")
    return {title: path for title, path in drawn.items() if path is not None}


def _clear(fig_dir: Path) -> None:
    for old in fig_dir.glob("*.png") if fig_dir.is_dir() else []:
        old.unlink()  # a figure with no data this time must not survive from an earlier build


def draw_tuning_figures(runs: StudyRuns, a: TuningAnalysis, fig_dir: Path) -> dict[str, Path]:
    """The figures of a tuning study that have data, by title, in reading order."""
    info = runs.info
    _clear(fig_dir)
    ceiling = a.verdict.ceilings.get(info.metric)
    what = label(info.metric)
    drawn = {
        "Optimisation history": tuning_plots.optimisation_history(
            a.trials, info.metric, info.maximize, a.epoch_key, ceiling, fig_dir / "history.png",
            f"{info.name}: {what} of each trial, in sampling order",
        ),
        f"{what} against each searched value": tuning_plots.search_slices(
            a.trials, a.search, info.metric, a.epoch_key, fig_dir / "search_slices.png",
            f"{info.name}: {what} against each searched value (one point per trial)",
        ),
        f"Per-epoch {a.epoch_key} of every trial": tuning_plots.trial_curves(
            runs.history, a.trials, info.metric, a.epoch_key, fig_dir / "trial_curves.png",
            f"{info.name}: {a.epoch_key} per epoch (pruned trials end at x)",
        ),
    }
    return {title: path for title, path in drawn.items() if path is not None}


def write_report(runs: StudyRuns, out_dir: Path) -> Path:
    """Analyse loaded runs and write ``<out>/<study>.md`` plus ``<out>/<study>/*.png``;
    a tuning study (``sampler = "tpe"``) gets the tuning report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = _slug(runs.info.name)
    def relative(figures: dict[str, Path]) -> dict[str, str]:
        return {title: path.relative_to(out_dir).as_posix() for title, path in figures.items()}

    if runs.info.sampler == "tpe":
        config = out_dir / slug / "winner.toml"
        t = analyse_tuning(runs, _project_relative(config))
        config.unlink(missing_ok=True)  # a winner without a logged config must not inherit an older one
        if t.verdict.commands:
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(runs.configs[t.best_run_id], encoding="utf-8")
        text = render_tuning(runs, t, relative(draw_tuning_figures(runs, t, out_dir / slug)))
    else:
        a = analyse(runs)
        text = render(runs, a, relative(draw_figures(runs, a, out_dir / slug)))
    path = out_dir / f"{slug}.md"
    path.write_text(text, encoding="utf-8")
    return path


def _project_relative(path: Path) -> str:
    """A path as a command run from the project's folder names it."""
    try:
        return path.resolve().relative_to(paths.project_dir()).as_posix()
    except ValueError:
        return str(path.resolve())


def build_report(study_name: str, tracking_uri: str | None = None, out_dir: str | Path | None = None) -> Path:
    """Write the report of one study and refresh the index; returns the report's path."""
    out = Path(out_dir) if out_dir is not None else paths.reports_dir()
    path = write_report(load_study(study_name, tracking_uri), out)
    write_index(out)
    return path


def build_all(tracking_uri: str | None = None, out_dir: str | Path | None = None) -> tuple[list[Path], list[str]]:
    """Reports of every study in the store: (written paths, one error line per study that failed)."""
    out = Path(out_dir) if out_dir is not None else paths.reports_dir()
    names = tracking.study_names(tracking.client(tracking_uri))
    if not names:
        raise ReportError(
            f"no study runs in tracking store {tracking.resolve_tracking_uri(tracking_uri)}; "
            "run 'python -m ablation run NAME' first or pass the right --tracking-uri"
        )
    written, errors = [], []
    for name in names:
        try:
            written.append(write_report(load_study(name, tracking_uri), out))
        except ReportError as e:
            errors.append(f"{name}: {e}")
    write_index(out)
    return written, errors


def read_marker(path: Path) -> dict | None:
    """The metadata line a report starts with, or None for other markdown files."""
    with open(path, encoding="utf-8") as f:
        first = f.readline().strip()
    if not (first.startswith(MARKER) and first.endswith("-->")):
        return None
    try:
        return json.loads(first[len(MARKER) : -3])
    except json.JSONDecodeError:
        return None


def write_index(out_dir: str | Path) -> Path:
    """``README.md`` listing every report in ``out_dir`` with its question and verdict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted(out.glob("*.md")):
        meta = None if path.name == INDEX else read_marker(path)
        if meta:
            rows.append((path.name, meta))
    lines = [
        "# Reports", "",
        "One report per study, generated by `python -m ablation report NAME` (or `--all`) from the runs in "
        "MLflow. Each verdict is computed from the runs: the best arm, and for every arm against the baseline a "
        "decision at the study's smallest effect of interest: `better` or `worse` (paired t-test), `equivalent` "
        "(both one-sided tests inside the margin, TOST) or `undecided` at the seeds run, corrected across arms.", "",
    ]
    if any(meta.get("kind") == "tuning" for _, meta in rows):
        lines[-2] += (" A tuning study's verdict is its best finished trial at one seed, with the commands that "
                      "confirm it over fresh seeds.")
    if not rows:
        lines += ["(no reports yet)"]
    for name, meta in rows:
        cells = meta.get("cells", "?")
        unit = "trials done" if meta.get("kind") == "tuning" else "cells"
        flag = "" if meta.get("fair", True) else " **Fairness violation: see the report.**"
        lines += [
            f"## [{meta.get('study', name)}]({name})", "",
            f"**Question:** {meta.get('question') or '(not given)'}", "",
            f"**Verdict:** {meta.get('verdict', '')}{flag} ({cells} {unit})", "",
        ]
        decisions = meta.get("decisions") or {}
        if decisions:
            margin = meta.get("min_effect")
            lines += [f"**Decisions** (vs the baseline, smallest effect of interest ±{margin:g}): "
                      + ", ".join(f"`{arm}` {word}" for arm, word in decisions.items()), ""]
    index = out / INDEX
    index.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return index
