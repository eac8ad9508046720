"""Calibration of the decisions by simulation: many simulated studies of one
or several arms against a shared baseline, with known true differences and a
seed-to-seed spread like the measured one, each decided by
``ablation.decision.decide_studies``, the rule ``compare`` (the report's
decisions) applies to every arm, here to all studies at once.

Scenarios: one arm at a true difference of 0 (equal means: ``better`` or
``worse`` is a false call, to stay at or under alpha across the arms),
``min_effect / 2`` (inside the margin: how often ``equivalent`` is reached),
``min_effect`` (at the margin: ``equivalent`` is the false call there) or
``2 * min_effect`` (how often ``better`` is reached: the power), every other
arm equal to the baseline, so that with several arms both families can be
wrong in one study (and an arm's power is the one Holm or Bonferroni leave it
when the others have nothing to show). Paired differences are drawn as
normal (the paired t-test's own model) at the measured spread; the arms share
the baseline's seeds, so two arms' differences share its noise: with equal
variances their correlation is 0.5 (``RHO``).

The measured spread is read from the committed reports' "Runs used" tables
(every seed's value of every arm), pooled per study over its arms.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ablation.decision import ALPHA, DECISIONS, SeedDesign, decide_studies

BLOCK = ("<!-- statistics:simulation -->", "<!-- /statistics:simulation -->")
RHO = 0.5  # correlation of two arms' paired differences through the shared baseline (equal variances)
BETTER, WORSE, EQUIVALENT = (DECISIONS.index(d) for d in ("better", "worse", "equivalent"))


@dataclass(frozen=True)
class Rates:
    true_diffs: tuple[float, ...]  # each arm's true difference from the baseline
    n_studies: int
    better: float  # the first arm's decisions' rates (the others are at 0)
    worse: float
    equivalent: float
    undecided: float
    mean_seeds: float  # paired seeds the decision used, on average
    any_false_difference: float = 0.0  # studies with a better or worse call where the truth is 0 or the other sign
    any_wrong: float = 0.0  # studies with any wrong call: that, or equivalent where the truth is at least the margin

    @property
    def arms(self) -> int:
        return len(self.true_diffs)

    @property
    def true_diff(self) -> float:
        """The first arm's true difference, the one its rates are of."""
        return self.true_diffs[0]

    def mc_error(self, rate: float) -> float:
        """One binomial standard error of a simulated rate (a per-arm rate over correlated arms errs less)."""
        return math.sqrt(max(rate * (1 - rate), 1e-12) / self.n_studies)


def draw(true_diffs, sd: float, n_seeds: int, n_studies: int, rng: np.random.Generator,
         rho: float = RHO) -> np.ndarray:
    """Paired differences, studies x arms x seeds: each arm's own noise plus
    the baseline's, shared by every arm of a study (correlation ``rho``)."""
    true = np.asarray(true_diffs, dtype=np.float64)
    own = rng.standard_normal((n_studies, len(true), n_seeds))
    shared = rng.standard_normal((n_studies, 1, n_seeds))
    return true[None, :, None] + sd * (math.sqrt(1 - rho) * own + math.sqrt(rho) * shared)


def wrong_calls(code: np.ndarray, true_diffs, min_effect: float) -> tuple[np.ndarray, np.ndarray]:
    """Per study: (a false difference call, any wrong call) among its arms."""
    true = np.asarray(true_diffs, dtype=np.float64)[None, :]
    false_diff = ((code == BETTER) & (true <= 0)) | ((code == WORSE) & (true >= 0))
    false_equiv = (code == EQUIVALENT) & (np.abs(true) >= min_effect)
    return false_diff.any(1), (false_diff | false_equiv).any(1)


def simulate(true_diff, sd: float, min_effect: float, design: SeedDesign, n_studies: int = 1000,
             seed: int = 0, alpha: float = ALPHA, arms: int = 1, rho: float = RHO) -> Rates:
    """Decide ``n_studies`` simulated studies of ``arms`` arms; ``true_diff``
    is every arm's true difference, or one per arm. The per-arm rates are the first arm's."""
    true = tuple(float(x) for x in np.broadcast_to(np.asarray(true_diff, dtype=np.float64), (arms,)))
    diffs = draw(true, sd, design.max, n_studies, np.random.default_rng(seed), rho)
    code, used = decide_studies(diffs, min_effect, design, alpha)
    counts = np.bincount(code[:, 0], minlength=len(DECISIONS)) / n_studies
    false_diff, any_wrong = wrong_calls(code, true, min_effect)
    return Rates(true, n_studies, *map(float, counts), float(used[:, 0].mean()), float(false_diff.mean()),
                 float(any_wrong.mean()))


def scenarios(min_effect: float, arms: int) -> dict[str, list[float]]:
    """Scenario name -> each arm's true difference: the first arm's is the scenario's, the others' 0."""
    return {name: [diff] + [0.0] * (arms - 1) for name, diff in (
        ("equal means", 0.0), ("inside the margin", min_effect / 2), ("at the margin", min_effect),
        ("twice the margin", 2 * min_effect))}


def calibrate(sd: float, min_effect: float, design: SeedDesign, n_studies: int = 1000, seed: int = 0,
              alpha: float = ALPHA, arms: int = 1, rho: float = RHO) -> dict[str, Rates]:
    """Every scenario, each on its own random stream."""
    return {name: simulate(diffs, sd, min_effect, design, n_studies, seed + i, alpha, arms, rho)
            for i, (name, diffs) in enumerate(scenarios(min_effect, arms).items())}


@dataclass(frozen=True)
class DesignPower:
    better: float  # P(an arm at twice the margin is called better), the other arms equal to the baseline
    equivalent: float  # P(an arm equal to the baseline is called equivalent), every arm equal to it
    n_studies: int


def design_power(sd: float, min_effect: float, design: SeedDesign, arms: int, n_studies: int = 4000,
                 seed: int = 0, alpha: float = ALPHA, rho: float = RHO) -> DesignPower:
    """The power a study's own design has at spread ``sd``: with ``arms``
    arms decided as the report decides them (Holm or Bonferroni over them)."""
    ahead = simulate([2 * min_effect] + [0.0] * (arms - 1), sd, min_effect, design, n_studies, seed, alpha, arms, rho)
    even = simulate(0.0, sd, min_effect, design, n_studies, seed + 1, alpha, arms, rho)
    return DesignPower(ahead.better, even.equivalent, n_studies)


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


def table(results: list[tuple[str, dict[str, Rates]]]) -> list[str]:
    """One row per (spread, scenario) of ``results`` (spread label, scenario -> rates), in order:
    per-arm rates, then the study-wide (family-wise) ones."""
    lines = ["| arms | spread (sd of paired differences) | the arm's true difference | better | worse | equivalent | "
             "undecided | "
             "any false difference call | any wrong call | mean seeds used |", "|---|---|---|---|---|---|---|---|---|---|"]
    for spread, rates in results:
        for name, r in rates.items():
            lines.append(f"| {r.arms} | {spread} | {name} ({r.true_diff:+g}) | {r.better:.3f} | {r.worse:.3f} | "
                         f"{r.equivalent:.3f} | {r.undecided:.3f} | {r.any_false_difference:.3f} | {r.any_wrong:.3f} | "
                         f"{r.mean_seeds:.1f} |")
    return lines


def write_block(readme: Path, lines: list[str]) -> None:
    """Replace the marked block of the README with ``lines``."""
    text = readme.read_text(encoding="utf-8")
    start, end = BLOCK
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} block to write into")
    head, rest = text.split(start, 1)
    readme.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")
