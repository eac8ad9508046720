"""Calibration of the decisions by simulation: many simulated 2-arm studies
with a known true difference and a seed-to-seed spread like the measured one,
each decided by ``ablation.decision.decide``, the rule ``compare`` (the
report's decisions) applies to every arm, here to all studies at once.

Three true differences: 0 (equal means: ``better`` or ``worse`` is a false
call, to stay at or under alpha), ``min_effect / 2`` (inside the margin: how
often ``equivalent`` is reached) and ``2 * min_effect`` (how often ``better``
is reached by ``max`` seeds: the power). Paired differences are drawn as
normal: the paired t-test's own model, and the spread is the measured one.

The measured spread is read from the committed reports' "Runs used" tables
(every seed's value of every arm), pooled per study over its arms.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ablation.decision import ALPHA, DECISIONS, SeedDesign, decide

BLOCK = ("<!-- statistics:simulation -->", "<!-- /statistics:simulation -->")


@dataclass(frozen=True)
class Rates:
    true_diff: float
    n_studies: int
    better: float
    worse: float
    equivalent: float
    undecided: float
    mean_seeds: float  # paired seeds the decision used, on average

    def mc_error(self, rate: float) -> float:
        """One binomial standard error of a simulated rate."""
        return math.sqrt(max(rate * (1 - rate), 1e-12) / self.n_studies)


def simulate(true_diff: float, sd: float, min_effect: float, design: SeedDesign, n_studies: int = 1000,
             seed: int = 0, alpha: float = ALPHA) -> Rates:
    """Decide ``n_studies`` simulated studies (one arm against the baseline)."""
    rng = np.random.default_rng(seed)
    diffs = rng.normal(true_diff, sd, size=(n_studies, design.max))
    code, used = decide(diffs, min_effect, design, alpha)  # one arm: Holm and Bonferroni leave alpha as it is
    counts = np.bincount(code, minlength=len(DECISIONS)) / n_studies
    return Rates(true_diff, n_studies, *map(float, counts), float(used.mean()))


def calibrate(sd: float, min_effect: float, design: SeedDesign, n_studies: int = 1000, seed: int = 0,
              alpha: float = ALPHA) -> dict[str, Rates]:
    """The three scenarios, each on its own random stream."""
    cases = {"equal means": 0.0, "inside the margin": min_effect / 2, "twice the margin": 2 * min_effect}
    return {name: simulate(diff, sd, min_effect, design, n_studies, seed + i, alpha)
            for i, (name, diff) in enumerate(cases.items())}


# ---- the measured spread ------------------------------------------------------


def _section(text: str, title: str) -> str:
    part = text.split(f"## {title}", 1)
    return part[1].split("\n## ", 1)[0] if len(part) == 2 else ""


def report_values(text: str) -> tuple[str | None, dict[str, dict[int, float]]]:
    """(baseline arm, arm -> seed -> val.acc) from a report's tables."""
    base = re.search(r"\| `([^`]+)` \(baseline\)", _section(text, "Results per arm"))
    rows: dict[str, dict[int, float]] = {}
    lines = [line for line in _section(text, "Runs used").splitlines() if line.startswith("|")]
    if len(lines) < 3:
        return None, {}
    head = [h.strip() for h in lines[0].strip("|").split("|")]
    if "val.acc" not in head:
        return None, {}
    for line in lines[2:]:
        cols = [c.strip() for c in line.strip("|").split("|")]
        try:
            rows.setdefault(cols[0].strip("`"), {})[int(cols[head.index("seed")])] = float(cols[head.index("val.acc")])
        except (ValueError, IndexError):
            continue
    return (base.group(1) if base else None), rows


def paired_spread(baseline: str, values: dict[str, dict[int, float]]) -> float | None:
    """Pooled standard deviation of the paired differences (arm minus baseline) over the arms."""
    variances = []
    for arm, by_seed in values.items():
        if arm == baseline:
            continue
        seeds = sorted(set(by_seed) & set(values.get(baseline, {})))
        if len(seeds) >= 2:
            variances.append(np.var([by_seed[s] - values[baseline][s] for s in seeds], ddof=1))
    return float(math.sqrt(np.mean(variances))) if variances else None


def measured_spreads(reports: Path) -> dict[str, float]:
    """Study -> pooled paired spread of val accuracy, for every ablation report in ``reports``."""
    out = {}
    for path in sorted(reports.glob("*.md")):
        baseline, values = report_values(path.read_text(encoding="utf-8"))
        if baseline and (sd := paired_spread(baseline, values)) is not None:
            out[path.stem] = sd
    return out


# ---- the text --------------------------------------------------------------------


def table(results: dict[str, dict[str, Rates]], min_effect: float) -> list[str]:
    lines = ["| spread (sd of paired differences) | true difference | better | worse | equivalent | undecided | "
             "mean seeds used |", "|---|---|---|---|---|---|---|"]
    for spread, rates in results.items():
        for name, r in rates.items():
            lines.append(f"| {spread} | {name} ({r.true_diff:+g}) | {r.better:.3f} | {r.worse:.3f} | "
                         f"{r.equivalent:.3f} | {r.undecided:.3f} | {r.mean_seeds:.1f} |")
    return lines


def write_block(readme: Path, lines: list[str]) -> None:
    """Replace the marked block of the README with ``lines``."""
    text = readme.read_text(encoding="utf-8")
    start, end = BLOCK
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} block to write into")
    head, rest = text.split(start, 1)
    readme.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")
