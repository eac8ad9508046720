"""The markdown of a tuning study's report: a pure function of the loaded
runs and their tuning analysis, so the same runs always give the same text."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ablation.report.load import StudyRuns
from ablation.report.markdown import MARKER, _n, _sizes, _table, fairness_section, figures_section
from ablation.report.stats import label
from ablation.report.tuning import TuningAnalysis
from ablation.report.tuning_verdict import fmt_value


def header_marker(runs: StudyRuns, a: TuningAnalysis) -> str:
    """The machine-readable first line the index reads (``kind`` tells it trials from cells)."""
    planned = runs.info.cells_total
    meta = {
        "study": runs.info.name,
        "question": runs.info.question,
        "verdict": a.verdict.sentence,
        "cells": f"{a.verdict.done}/{'?' if planned is None else planned}",
        "fair": not a.violations,
        "kind": "tuning",
    }
    return MARKER + json.dumps(meta, sort_keys=True).replace(">", "\\u003e") + " -->"


def _num(v: float, fmt: str = "{:.4f}") -> str:
    return fmt.format(v) if v is not None and np.isfinite(v) else "n/a"


def _state(r) -> str:
    known = pd.notna(r.stop_epoch)
    if r.state == "finished":
        return f"finished ({r.stop_epoch} epochs)" if known else "finished"
    if r.state == "pruned":
        return f"pruned at epoch {r.stop_epoch}" if known else "pruned"
    return r.state


def render_tuning(runs: StudyRuns, a: TuningAnalysis, figures: dict[str, str]) -> str:
    info, v = runs.info, a.verdict
    out = [header_marker(runs, a), f"# Tuning study `{info.name}`", "",
           f"**Question:** {info.question or '(not given)'}", ""]
    if a.violations:
        out += ["> **Fairness violation.** The trials are not compared like-for-like, so the winner below "
                "may owe its place to that:"]
        out += [f"> - **{c.name}**: {c.detail}" for c in a.violations]
        out += ["> See [Fairness](#fairness).", ""]
    out += ["## Verdict", "", f"**{v.sentence}**", ""]
    out += _winner(runs, a)
    out += _setup(runs, a)
    out += fairness_section(a.fairness)
    out += _trials(runs, a)
    out += figures_section(figures)
    out += ["## Reproduce", "", "The search:", "", "```", info.command or f"python -m ablation run {info.name}", "```", ""]
    out += _runs_appendix(runs, a)
    return "\n".join(out).rstrip() + "\n"


def _winner(runs: StudyRuns, a: TuningAnalysis) -> list[str]:
    v = a.verdict
    if v.best is None:
        return []
    best = a.trials[a.trials["arm"] == v.best].iloc[0]
    seed = "n/a" if v.seed is None else str(v.seed)
    config = [{"parameter": f"`{k}`", "value": fmt_value(x)} for k, x in v.levels.items()]
    scores = [{"metric": label(m), f"`{v.best}`": f"{v.scores[m]:.4f}",
               "fraction of the ceiling": "n/a" if (f := v.fraction(m)) is None else f"{f:.1%}"}
              for m in v.scores]
    out = [f"Full sampled configuration of `{v.best}` (seed {seed}, run `{best['run_id']}`); everything else is the "
           f"base experiment `{runs.info.base or 'n/a'}` with the study's settings:", "", _table(config), "",
           _table(scores), ""]
    if v.ceilings:
        out += ["The ceiling is the Bayes accuracy of the data: the best any classifier can reach on it.", ""]
    out += [v.caveat, "", v.confirm, "", "```", *v.commands, "```", ""]
    out += [f"Study metric `{a.metric}` ({runs.info.direction}); one seed per trial, so no trial has an interval "
            "or a test against another.", ""]
    return out


def _sampled(values: list) -> str:
    if not values:
        return "n/a"
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
        lo, hi = min(values), max(values)
        return f"{fmt_value(lo)} to {fmt_value(hi)} ({_n(len(set(values)), 'distinct value')})"
    counts = pd.Series([fmt_value(x) for x in values]).value_counts(sort=False)
    return ", ".join(f"{k} ({n}x)" for k, n in counts.sort_index().items())


def _setup(runs: StudyRuns, a: TuningAnalysis) -> list[str]:
    info, v, trials = runs.info, a.verdict, a.trials
    planned = "?" if info.cells_total is None else str(info.cells_total)
    unfinished = trials[~trials["state"].isin(("finished", "pruned"))]
    complete = f"{v.done} / {planned} trials done ({v.n_finished} finished, {v.n_pruned} pruned)"
    failed = int(unfinished["state"].isin(("failed", "killed")).sum())
    if failed:
        complete += f"; {failed} failed, not counted (the search samples a replacement)"
    running = int((unfinished["state"] == "running").sum())
    if running:
        complete += f"; {running} running"
    seeds = sorted({int(s) for s in a.done["seed"].dropna()})
    pruner = runs.study_file.get("pruner", "median") if runs.study_file else "not logged"
    rows = [
        ("base experiment", f"`{info.base}`" if info.base else "not logged"),
        ("searched", ", ".join(f"`{p.key}`" for p in a.search) or "not logged"),
        ("data", f"{info.data_source or 'not logged'}; {_sizes(info.data_sizes)}; "
                 f"fingerprint `{info.data_fingerprint or 'n/a'}`"),
        ("seed", (", ".join(map(str, seeds)) or "not logged") + " (one run per trial)"),
        ("scale / sampler / pruner", f"{info.scale or 'n/a'} / {info.sampler} / {pruner}"),
        ("code commit", f"`{info.git_commit or 'unknown'}`"),
        ("study run", f"parent `{info.parent_run_id}`, hash `{info.study_hash or 'n/a'}`, started {info.started or 'n/a'}"),
        ("completeness", complete),
    ]
    out = ["## Setup", "", _table([{"": k, " ": x} for k, x in rows]), ""]
    space = []
    for p in a.search:
        values = [lv[p.key] for lv in a.done["levels"] if p.key in lv]
        space.append({"parameter": f"`{p.key}`", "declared": p.declared or "not logged (no study.toml on the parent run)",
                      "sampled (done trials)": _sampled(values),
                      "best trial": fmt_value(v.levels[p.key]) if p.key in v.levels else "n/a"})
    out += ["### Search space", "", _table(space), ""]
    if len(unfinished):
        rows = [{"trial": r.trial, "state": r.state, "run": f"`{r.run_id}`", "reason": r.reason or "n/a"}
                for r in unfinished.sort_values("trial").itertuples()]
        out += ["### Trials that did not finish", "", _table(rows), ""]
    return out


def _trials(runs: StudyRuns, a: TuningAnalysis) -> list[str]:
    rows = []
    for r in a.done.itertuples():
        row = {"rank": "" if pd.isna(r.rank) else int(r.rank), "trial": r.trial}
        row.update({p.key: fmt_value(r.levels[p.key]) if p.key in r.levels else "n/a" for p in a.search})
        row[label(a.metric)] = _num(r.value) if r.state == "finished" else f"({_num(r.last_value)})"
        row["state"] = _state(r)
        row["parameters"] = _num(getattr(r, "n_params"), "{:,.0f}")
        row["train time (s)"] = _num(r.train_time_s, "{:.1f}")
        rows.append(row)
    return [
        "## Trials", "",
        f"Finished trials ranked by {label(a.metric)} ({runs.info.direction}), then pruned ones. A pruned trial has no "
        f"final value: in parentheses is the last `{a.epoch_key}` it reported to the pruner, an epoch value and not "
        "a best-checkpoint one.", "", _table(rows), "",
    ]


def _runs_appendix(runs: StudyRuns, a: TuningAnalysis) -> list[str]:
    rows = [{"trial": r.trial, "state": r.state, "seed": "n/a" if pd.isna(r.seed) else int(r.seed), "run": f"`{r.run_id}`"}
            for r in a.trials.sort_values("trial").itertuples()]
    return ["## Runs", "", f"MLflow experiment `{runs.info.name}`, one run per trial.", "", _table(rows), ""]
