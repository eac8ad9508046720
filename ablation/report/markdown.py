"""The report as markdown: a pure function of the loaded runs and their
analysis, so the same runs always give the same text."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ablation.report.analysis import Analysis
from ablation.report.budget import section as budget_section
from ablation.report.common import (
    MARKER, data_row, fairness_section, figures_section, finish, fmt_p, fmt_value, header, marker, num, plural,
    reproduce_section, setup_section, table,
)
from ablation.report.load import StudyRuns
from ablation.report.stats import Interval, label
from ablation.report.power import power_section
from ablation.report.verdict import equivalence_cell, equivalence_method, seeds_needed_method, seeds_text

__all__ = ["MARKER", "header_marker", "render"]

TOP_CLASSES = 10


def _ci(row) -> str:
    if row is None or row["n"] == 0:
        return "no runs"
    if row["n"] < 2:
        return f"{row['mean']:.4f} [n/a (1 seed)]"
    return f"{row['mean']:.4f} [{row['lo']:.4f}, {row['hi']:.4f}]"


def _diff_ci(iv: Interval) -> str:
    if iv.n == 0:
        return "n/a (no common seed)"
    if not iv.has_ci:
        return "n/a (1 seed)"
    return f"[{iv.lo:+.4f}, {iv.hi:+.4f}]"


def _count(row) -> str:
    if row is None or row["n"] == 0:
        return "n/a"
    lo, hi = int(round(row["min"])), int(round(row["max"]))
    return f"{lo:,}" if lo == hi else f"{lo:,} to {hi:,}"


def _mark(info, arm: str) -> str:
    if arm != info.baseline:
        return ""
    return " (baseline)" if info.baseline_declared else " (reference)"


def header_marker(runs: StudyRuns, a: Analysis) -> str:
    """A machine-readable first line; the index is built from these."""
    decisions = {arm: c.decision for arm, c in a.decisions.items()}
    return marker(runs.info, a.verdict.sentence, f"{len(runs.cells)}/{runs.n_expected}", not a.violations,
                  extra={"decisions": decisions, "min_effect": a.verdict.min_effect})


def method(runs: StudyRuns, a: Analysis) -> str:
    """How the decisions were reached: the tests, the margin, the correction across arms."""
    info, m = runs.info, a.verdict.min_effect
    given = "as the study file sets it" if info.min_effect else f"the default for {label(info.metric)}"
    n = len(a.decisions)
    k = n if info.design.adaptive else a.n_hypotheses  # the adaptive looks counted every arm (ablation.decision)
    same = ""
    if a.groups and not info.design.adaptive:
        named = "; ".join(" = ".join(f"`{x}`" for x in g) for g in a.groups)
        same = (f" {named}: identical at every seed, one computation, so each group is one hypothesis of the "
                "correction and its arms share the adjusted p and the decision.")
    return (
        f"Smallest effect of interest ±{m:g} in {label(info.metric)} ({given}). Each arm is paired with the "
        f"{a.verdict.word} `{info.baseline}` by seed (arm minus {a.verdict.word}): `equivalent` when both "
        f"one-sided paired t-tests reject a difference of {m:g} or more (TOST), else `better` or `worse` when the "
        f"two-sided paired t-test rejects equal means, else `undecided`; {info.design.describe(n, n_hypotheses=k)}."
        f"{same} Intervals are 95% Student-t intervals over seeds, except the equivalence interval. "
        f"{equivalence_method(k, info.design.adaptive)} {seeds_needed_method(m, 0.05 / max(k, 1), k)}"
    )


def render(runs: StudyRuns, a: Analysis, figures: dict[str, str]) -> str:
    info = runs.info
    out = header(info, header_marker(runs, a), "Study", a.violations, "arms", "the verdict below may not answer the question")
    out += [
        "## Verdict", "", f"**{a.verdict.sentence}**", "", a.verdict.others, "",
        f"From {len(runs.cells)} of {runs.n_expected} cells ({plural(len(info.arms), 'arm')} x "
        + (f"adaptive seeds, {info.design.min} to {info.design.max} per arm" if info.design.adaptive
           else plural(len(info.seeds), "seed"))
        + f"). Study metric `{info.metric}` ({info.direction}).", "",
        method(runs, a), "",
    ]
    out += _setup(runs)
    out += fairness_section(a.fairness)
    out += _budget(runs, a)
    out += _per_arm(runs, a)
    out += _accuracy_gaps(runs, a)
    out += _paired(runs, a)
    out += power_section(runs, a)
    out += _classes(runs, a)
    out += figures_section(figures)
    out += reproduce_section(info)
    out += _runs_appendix(runs)
    return finish(out)


def _budget(runs: StudyRuns, a: Analysis) -> list[str]:
    """The budget check of a study with an epoch cap (``report.budget``); nothing for one without."""
    if a.budget is None:
        return []
    info = runs.info
    command = info.command.replace("ablation run ", "ablation budget ", 1) if info.command else ""
    return budget_section(a.budget, info.name, info.metric, command)


def _setup(runs: StudyRuns) -> list[str]:
    info = runs.info
    levels = []
    for f in info.factors:
        vals = list(dict.fromkeys(fmt_value(info.arm_levels.get(arm, {}).get(f)) for arm in info.arms))
        levels.append(f"`{f}`: " + ", ".join(vals))
    arms = []
    for arm in info.arms:
        lv = ", ".join(f"{k}={fmt_value(v)}" for k, v in info.arm_levels.get(arm, {}).items())
        arms.append(f"`{arm}`" + _mark(info, arm) + (f": {lv}" if lv else ""))
    budget = "none" if info.param_budget is None else f"{info.param_budget:,} ± {info.budget_tolerance:.1%}"
    what = [
        ("what varies", "; ".join(levels) or "not logged"),
        ("arms (declared order)", "; ".join(arms) + (
            "" if info.baseline_declared else f"; no baseline declared: the first arm `{info.baseline}` is the reference")),
        data_row(info, runs.cells),
        ("seeds", f"adaptive: {info.design.min} to {info.design.max} paired seeds per arm, in the order "
                  f"{', '.join(map(str, info.seeds))}" if info.design.adaptive else ", ".join(map(str, info.seeds))),
    ]
    unstarted = runs.n_expected - len(runs.cells) - len(runs.missing)
    complete = f"{len(runs.cells)} / {runs.n_expected} cells done" + (f"; {unstarted} not started" if unstarted > 0 else "")
    kids = runs.children
    outside = kids[~kids["arm"].isin(info.arms) | ~kids["seed"].isin(info.seeds)]
    tail = [("ignored", f"{len(outside)} cell runs outside the declared arms x seeds")] if len(outside) else []
    out = setup_section(info, what, complete, after=[("parameter budget", budget)], tail=tail)
    if not runs.missing.empty:
        missing = [{"arm": f"`{r['arm']}`", "seed": r["seed"], "reason": r["reason"]} for r in runs.missing.to_dict("records")]
        out += ["### Missing cells", "", table(missing), ""]
    return out


def _per_arm(runs: StudyRuns, a: Analysis) -> list[str]:
    info = runs.info
    s = a.summary.set_index(["arm", "metric"])

    def row(arm, metric):
        return s.loc[(arm, metric)] if (arm, metric) in s.index else None

    quality = list(a.paired)
    qrows, crows = [], []
    for arm in info.arms:
        name = f"`{arm}`" + _mark(info, arm)
        r = {"arm": name, "decision": a.decisions[arm].decision if arm in a.decisions else f"({a.verdict.word})",
             "seeds": int(row(arm, info.metric)["n"])}
        r.update({label(m): _ci(row(arm, m)) for m in quality})
        r[f"{label(info.metric)} per seed"] = _per_seed(runs.cells, arm, info.metric)
        for m, ceil in a.ceilings.items():
            mean = row(arm, m)["mean"]
            r[f"{label(m)} / ceiling"] = f"{mean / ceil:.1%}" if np.isfinite(mean) else "n/a"
        for m, per_arm in a.arm_ceilings.items():
            mean, own = row(arm, m)["mean"], per_arm.get(arm)
            r[f"{label(m)} ceiling of its input"] = "n/a" if own is None else f"{own:.4f}"
            r[f"{label(m)} / that ceiling"] = f"{mean / own:.1%}" if own and np.isfinite(mean) else "n/a"
        qrows.append(r)
        cost = {"arm": name, "parameters": _count(row(arm, "n_params")), "MACs / frame": _count(row(arm, "macs_per_frame"))}
        for metric, title, fmt in (
            ("epochs_run", "epochs run", "{:.1f}"), ("train_time_s", "train time (s)", "{:.1f}"),
            ("frames_per_s", "frames / s", "{:,.0f}"),
        ):
            v = row(arm, metric)
            cost[title] = fmt.format(v["mean"]) if v is not None and v["n"] > 0 else "n/a"
        crows.append(cost)
    ceil = ", ".join(f"{label(m)} {c:.4f}" for m, c in a.ceilings.items())
    out = ["## Results per arm", "", "Mean and [95% CI] over seeds.", ""]
    if ceil:
        out += [f"Bayes ceiling (best accuracy any classifier can reach on this data): {ceil}.", ""]
    out += [table(qrows), "", "Cost (mean over seeds; parameter counts as min to max when seeds differ):", "", table(crows), ""]
    if a.gaps:
        out += ["Left out of a metric's numbers because the run has no finite value for it:", ""]
        out += [f"- {label(m)}: {', '.join(where)}" for m, where in a.gaps.items()]
        out += [""]
    return out


def _accuracy_gaps(runs: StudyRuns, a: Analysis) -> list[str]:
    """The way from the whole-utterance ceiling down to each arm's val accuracy, when the ceilings are logged."""
    m = "val.acc"
    if m not in a.ceilings or m not in a.arm_ceilings:
        return []
    s = a.summary.set_index(["arm", "metric"])
    rows = []
    for arm in runs.info.arms:
        own, train = a.arm_ceilings[m].get(arm), a.train_acc.get(arm)
        val = s.loc[(arm, m), "mean"] if (arm, m) in s.index else np.nan
        rows.append({
            "arm": f"`{arm}`", "its input": a.views.get(arm, "not logged"),
            "utterance ceiling": f"{a.ceilings[m]:.4f}", "input ceiling": num(own), "train acc": num(train),
            "val acc": num(val), "context-limited": _gap(a.ceilings[m], own), "fit-limited": _gap(own, train),
            "generalisation": _gap(train, val),
        })  # fmt: skip
    return [
        "## Where the accuracy goes", "",
        "Per arm, means over seeds: *context-limited* = whole-utterance ceiling - the information ceiling of "
        "the arm's input (what its input cannot tell); *fit-limited* = input ceiling - train accuracy; "
        "*generalisation* = train accuracy - val accuracy. Train accuracy is the running mean over the last "
        "epoch's batches (dropout on), so it reads a little low. Both ceilings condition on the clean statics "
        f"and the true speaker {_speaker_known(runs.info.data_source)}, which no model sees: they are upper "
        "bounds on what the features allow (`python -m ablation data ceiling` says exactly what they condition on).", "",
        table(rows), "",
    ]  # fmt: skip


def _speaker_known(source: str | None) -> str:
    """What of the speaker the ceilings of a synthphone corpus know: version 2 adds its mixing of the cepstra."""
    from ablation.data import synthphone
    from ablation.errors import ConfigError

    scheme, _, preset = (source or "").partition(":")
    try:
        version = synthphone.resolve(preset).version if scheme == "synthphone" else 1
    except ConfigError:
        version = 1
    return "offset and rate" if version == 1 else "offset, rate and mixing of the cepstra"


def _gap(hi, lo) -> str:
    return "n/a" if hi is None or lo is None or not (np.isfinite(hi) and np.isfinite(lo)) else f"{hi - lo:+.4f}"


def _per_seed(cells: pd.DataFrame, arm: str, metric: str) -> str:
    """Every seed's value of an arm, in seed order: nothing hides behind the mean."""
    col = "metrics." + metric
    rows = cells[cells["arm"] == arm].sort_values("seed") if col in cells.columns else cells.iloc[:0]
    return ", ".join(f"{int(r['seed'])}: {num(float(r[col]))}" for _, r in rows.iterrows()) or "none"


def _paired(runs: StudyRuns, a: Analysis) -> list[str]:
    info = runs.info
    out = [f"## Paired differences vs the {a.verdict.word} `{info.baseline}`", ""]
    if len(info.arms) < 2:
        return out + ["(one arm: nothing to compare)", ""]
    adaptive = info.design.adaptive
    rows = []
    for c in a.decisions.values():
        iv = Interval(c.mean_diff, c.lo, c.hi, c.n)
        row = {
            "arm": f"`{c.arm}`", "decision": c.decision, "pairs": c.n,
            "mean diff": f"{c.mean_diff:+.4f}" if np.isfinite(c.mean_diff) else "n/a",
            "95% CI": _diff_ci(iv), "equivalence interval": equivalence_cell(c),
            "P(beats)": f"{c.p_beats:.2f} ({c.wins:g}/{c.n})" if c.n else "n/a",
            "p (paired t)": fmt_p(c.p_diff), f"p (TOST ±{c.min_effect:g})": fmt_p(c.p_equiv),
        }
        if adaptive:
            row["tested at alpha"] = f"{c.level:.4g}"
        else:
            row["Holm p (t)"], row["Holm p (TOST)"] = fmt_p(c.p_diff_adj), fmt_p(c.p_equiv_adj)
        row["seeds needed"] = seeds_text(c.seeds_needed) if c.decision == "undecided" else ""
        rows.append(row)
    out += [f"Study metric: {label(info.metric)} (arm minus {a.verdict.word}); P(beats) is the share of paired seeds "
            f"on which the arm is ahead of the {a.verdict.word} (a tie counts half).", "", table(rows), ""]
    others = [m for m in a.paired if m != info.metric]
    if others:
        rows = []
        for arm in [x for x in info.arms if x != info.baseline]:
            r = {"arm": f"`{arm}`"}
            for m in others:
                p = a.paired[m].set_index("arm").loc[arm]
                iv = Interval(p["mean_diff"], p["lo"], p["hi"], int(p["n"]))
                r[label(m)] = (f"{iv.mean:+.4f} {_diff_ci(iv)}, Holm p {fmt_p(p['p_holm'])}" if iv.n else "n/a")
            rows.append(r)
        out += ["Other metrics (mean diff [95% CI], Holm p within each metric):", "", table(rows), ""]
    return out


def _classes(runs: StudyRuns, a: Analysis) -> list[str]:
    arm = a.verdict.compared
    if a.changes.empty or arm is None:
        return []
    part = a.changes[a.changes["arm"] == arm].head(TOP_CLASSES)
    rows = [
        {"phone": r.phone, f"recall `{runs.info.baseline}`": f"{a.recall.loc[runs.info.baseline, r.phone]:.4f}",
         f"recall `{arm}`": f"{a.recall.loc[arm, r.phone]:.4f}", "mean diff": f"{r.mean_diff:+.4f}",
         "95% CI": _diff_ci(Interval(r.mean_diff, r.lo, r.hi, int(r.n)))}
        for r in part.itertuples()
    ]
    return [f"## Per-class recall: largest changes of `{arm}` vs `{runs.info.baseline}`", "",
            "Val recall, paired by seed, top classes by |mean diff|.", "", table(rows), ""]


def _runs_appendix(runs: StudyRuns) -> list[str]:
    cols = [("metrics.val.acc", "val.acc"), ("metrics.test.acc", "test.acc"), ("metrics.n_params", "n_params")]
    rows = []
    for r in runs.cells.to_dict("records"):
        row = {"arm": f"`{r['arm']}`", "seed": r["seed"], "run": f"`{r['run_id']}`"}
        for col, name in cols:
            v = r.get(col)
            row[name] = "n/a" if v is None or not np.isfinite(v) else (f"{v:,.0f}" if name == "n_params" else f"{v:.4f}")
        row["data"] = f"`{r['fingerprint']}`" if r["fingerprint"] else "n/a"
        rows.append(row)
    return ["## Runs used", "", f"MLflow experiment `{runs.info.name}`, one finished run per cell (the newest).", "",
            table(rows), ""]
