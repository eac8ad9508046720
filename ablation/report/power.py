"""The power a study's own design had: at its number of arms, its measured
paired spread and its seeds, how often an arm truly twice the margin ahead
would be called ``better`` and an arm equal to the baseline ``equivalent``,
decided as the report decides (``ablation.simulate.design_power``)."""

from __future__ import annotations

import math

from ablation.decision import Comparison
from ablation.report.analysis import Analysis
from ablation.report.load import StudyRuns

STUDIES = 4000  # simulated studies per figure: a Monte-Carlo standard error of at most 0.008
SEED = 0  # the same runs always print the same figures


def pooled_spread(decisions) -> float | None:
    """The root mean of the arms' paired variances (arms with 2 or more paired seeds), as
    ``ablation.simulate.paired_spread`` pools the committed reports."""
    variances = [c.sd ** 2 for c in decisions if c.n >= 2 and math.isfinite(c.sd)]
    return math.sqrt(sum(variances) / len(variances)) if variances else None


def arms_tested(runs: StudyRuns, a: Analysis) -> int:
    """The arms each family's correction counts: every compared arm for the adaptive
    design, one per hypothesis (identical arms once) for Holm's."""
    return len(a.decisions) if runs.info.design.adaptive else a.n_hypotheses


def power_section(runs: StudyRuns, a: Analysis) -> list[str]:
    from ablation.simulate import RHO, design_power

    if not a.decisions:
        return []
    info, m = runs.info, a.verdict.min_effect
    out = ["## Power of this design", ""]
    decisions: list[Comparison] = list(a.decisions.values())
    sd, k, design = pooled_spread(decisions), arms_tested(runs, a), info.design
    if sd is None or sd == 0:
        why = "no arm has 2 paired seeds yet" if sd is None else "the paired differences have no spread"
        return out + [f"Not computed: {why}.", ""]
    p = design_power(sd, m, design, k, n_studies=STUDIES, seed=SEED)
    seeds = (f"adaptive seeds, {design.min} to {design.max} paired seeds per arm, alpha / {k} per arm over the looks"
             if design.adaptive else f"{design.max} seeds, Holm-corrected over {k} arm{'s' * (k != 1)}")
    return out + [
        f"What this study could find, decided as above ({seeds}) at its own paired spread "
        f"(sd {sd:.4f}: the arms' paired variances pooled): an arm truly {2 * m:+g} ahead of the {a.verdict.word} "
        f"(twice the margin) is called `better` in **{p.better:.0%}** of simulated studies, the other arms equal to "
        f"it; an arm equal to the {a.verdict.word} is called `equivalent` in **{p.equivalent:.0%}**, every arm equal. "
        f"{p.n_studies:,} seeded simulated studies each (normal paired differences; the arms share the "
        f"{a.verdict.word}'s seeds, correlation {RHO:g}); a Monte-Carlo standard error of at most "
        f"{0.5 / math.sqrt(p.n_studies):.3f}. A low figure says an `undecided` here is the design's, not the arms'.",
        "",
    ]
