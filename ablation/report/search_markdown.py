"""The markdown of a tuning study's report: a pure function of the loaded
runs and their tuning analysis, so the same runs always give the same text."""

from __future__ import annotations

import pandas as pd

from ablation.report.common import (
    data_row, fairness_section, figures_section, finish, fmt_value, header, marker, num, plural, reproduce_section,
    setup_section, table,
)
from ablation.report.load import StudyRuns
from ablation.report.stats import label
from ablation.report.search import TuningAnalysis


def header_marker(runs: StudyRuns, a: TuningAnalysis) -> str:
    """The machine-readable first line the index reads (``kind`` tells it trials from cells)."""
    planned = runs.info.cells_total
    cells = f"{a.verdict.done}/{'?' if planned is None else planned}"
    return marker(runs.info, a.verdict.sentence, cells, not a.violations, kind="tuning")


def _state(r) -> str:
    known = pd.notna(r.stop_epoch)
    if r.state == "finished":
        return f"finished ({r.stop_epoch} epochs)" if known else "finished"
    if r.state == "pruned":
        return f"pruned at epoch {r.stop_epoch}" if known else "pruned"
    return r.state


def render_tuning(runs: StudyRuns, a: TuningAnalysis, figures: dict[str, str]) -> str:
    info, v = runs.info, a.verdict
    out = header(info, header_marker(runs, a), "Tuning study", a.violations, "trials",
                 "the winner below may owe its place to that")
    out += ["## Verdict", "", f"**{v.sentence}**", ""]
    out += _winner(runs, a)
    out += _setup(runs, a)
    out += fairness_section(a.fairness)
    out += _trials(runs, a)
    out += figures_section(figures)
    out += reproduce_section(info, "The search:")
    out += _runs_appendix(runs, a)
    return finish(out)


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
           f"base experiment `{runs.info.base or 'n/a'}` with the study's settings:", "", table(config), "",
           table(scores), ""]
    if v.ceilings:
        out += ["The ceiling is the Bayes accuracy of the data: the best any classifier can reach on it.", ""]
    out += [v.caveat, "", v.confirm, ""]
    if v.commands:
        out += ["```", *v.commands, "```", ""]
    out += [f"Study metric `{a.metric}` ({runs.info.direction}); one seed per trial, so no trial has an interval "
            "or a test against another.", ""]
    return out


def _sampled(values: list) -> str:
    if not values:
        return "n/a"
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
        lo, hi = min(values), max(values)
        return f"{fmt_value(lo)} to {fmt_value(hi)} ({plural(len(set(values)), 'distinct value')})"
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
    what = [
        ("searched", ", ".join(f"`{p.key}`" for p in a.search) or "not logged"),
        data_row(info),
        ("seed", (", ".join(map(str, seeds)) or "not logged") + " (one run per trial)"),
    ]
    out = setup_section(info, what, complete, pruner=pruner)
    space = []
    for p in a.search:
        values = [lv[p.key] for lv in a.done["levels"] if p.key in lv]
        space.append({"parameter": f"`{p.key}`", "declared": p.declared or "not logged (no study.toml on the parent run)",
                      "sampled (done trials)": _sampled(values),
                      "best trial": fmt_value(v.levels[p.key]) if p.key in v.levels else "n/a"})
    out += ["### Search space", "", table(space), ""]
    if len(unfinished):
        rows = [{"trial": r.trial, "state": r.state, "run": f"`{r.run_id}`", "reason": r.reason or "n/a"}
                for r in unfinished.sort_values("trial").itertuples()]
        out += ["### Trials that did not finish", "", table(rows), ""]
    return out


def _trials(runs: StudyRuns, a: TuningAnalysis) -> list[str]:
    rows = []
    for r in a.done.itertuples():
        row = {"rank": "" if pd.isna(r.rank) else int(r.rank), "trial": r.trial}
        row.update({p.key: fmt_value(r.levels[p.key]) if p.key in r.levels else "n/a" for p in a.search})
        row[label(a.metric)] = num(r.value) if r.state == "finished" else f"({num(r.last_value)})"
        row["state"] = _state(r)
        row["parameters"] = num(getattr(r, "n_params"), "{:,.0f}")
        row["train time (s)"] = num(r.train_time_s, "{:.1f}")
        rows.append(row)
    return [
        "## Trials", "",
        f"Finished trials ranked by {label(a.metric)} ({runs.info.direction}), then pruned ones. A pruned trial has no "
        f"final value: in parentheses is the last `{a.epoch_key}` it reported to the pruner, an epoch value and not "
        "a best-checkpoint one.", "", table(rows), "",
    ]


def _runs_appendix(runs: StudyRuns, a: TuningAnalysis) -> list[str]:
    rows = [{"trial": r.trial, "state": r.state, "seed": "n/a" if pd.isna(r.seed) else int(r.seed), "run": f"`{r.run_id}`"}
            for r in a.trials.sort_values("trial").itertuples()]
    return ["## Runs", "", f"MLflow experiment `{runs.info.name}`, one run per trial.", "", table(rows), ""]
