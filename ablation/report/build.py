"""The pipeline: load runs -> analyse -> figures -> markdown, by the report
kind of the study's kind (``report.kinds``), and the index
``reports/README.md`` of every report in the output folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ablation import paths, tracking
from ablation.report.common import MARKER
from ablation.report.kinds import ReportKind, report_kind
from ablation.report.load import ReportError, StudyRuns, load_study

INDEX = "README.md"


def _slug(name: str) -> str:
    """File-safe study name (study names are identifiers; this guards the rest)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip(".") or "study"


@dataclass(frozen=True)
class Built:
    """A study's report as built: where it was written (None: analysed only),
    the runs it was built from, its analysis and its kind."""

    path: Path | None
    runs: StudyRuns
    analysis: object
    kind: ReportKind

    def summary(self) -> tuple[dict[str, float], dict[str, str]]:
        """What the study's parent run shows: from this very analysis."""
        return self.kind.parent_summary(self.runs, self.analysis)


def draw_figures(runs: StudyRuns, a, fig_dir: Path) -> dict[str, Path]:
    """The figures of the study's report kind that have data, by title, in reading order."""
    return report_kind(runs).figures(runs, a, fig_dir)


draw_tuning_figures = draw_figures  # one entry point for every kind


def write(runs: StudyRuns, out_dir: Path) -> Built:
    """Analyse loaded runs and write ``<out>/<study>.md`` plus ``<out>/<study>/*.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = _slug(runs.info.name)
    kind = report_kind(runs)
    a = kind.analyse(runs, out_dir, slug)
    figures = {title: p.relative_to(out_dir).as_posix() for title, p in kind.figures(runs, a, out_dir / slug).items()}
    path = out_dir / f"{slug}.md"
    path.write_text(kind.render(runs, a, figures), encoding="utf-8")
    return Built(path, runs, a, kind)


def write_report(runs: StudyRuns, out_dir: Path) -> Path:
    return write(runs, out_dir).path


def analyse_study(study_name: str, tracking_uri: str | None = None) -> Built:
    """A study's analysis, as its report would be built, without writing it."""
    import tempfile

    runs = load_study(study_name, tracking_uri)
    kind = report_kind(runs)
    with tempfile.TemporaryDirectory() as tmp:  # what an analysis writes beside a report (a winner's config) goes
        return Built(None, runs, kind.analyse(runs, Path(tmp), _slug(study_name)), kind)


def build(study_name: str, tracking_uri: str | None = None, out_dir: str | Path | None = None,
          runs: StudyRuns | None = None) -> Built:
    """Write the report of one study and refresh the index; ``runs``: the study's runs, loaded
    just now by the caller (else loaded here)."""
    out = Path(out_dir) if out_dir is not None else paths.reports_dir()
    if runs is not None and runs.info.name != study_name:
        raise ValueError(f"runs of study {runs.info.name!r} given for the report of {study_name!r}")
    built = write(runs if runs is not None else load_study(study_name, tracking_uri), out)
    write_index(out)
    return built


def build_report(study_name: str, tracking_uri: str | None = None, out_dir: str | Path | None = None) -> Path:
    """Write the report of one study and refresh the index; returns the report's path."""
    return build(study_name, tracking_uri, out_dir).path


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
