"""The verdict: which arm is best and, for every arm against the baseline, a
decision (better, worse, equivalent, undecided) at the study's smallest effect
of interest. Computed from the summary and the decisions, never written by
hand; the report and the index both print ``Verdict.sentence``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablation.decision import SEEDS_NEEDED_CAP, Comparison
from ablation.report.stats import label


def seeds_text(n: int | None) -> str:
    if n is None:
        return "n/a (no spread yet)"
    return f"more than {SEEDS_NEEDED_CAP}" if n > SEEDS_NEEDED_CAP else str(n)


def percent(confidence: float) -> str:
    """90%, 97.08%, 99.97%: enough digits to tell the adjusted levels apart."""
    return f"{100 * confidence:.4g}%"


def inside(lo: float, hi: float, margin: float) -> tuple[str, str]:
    """``lo`` and ``hi`` at 4 decimals, or more where 4 would round onto the margin:
    an interval that lies inside +-margin is printed inside it."""
    strictly = -margin < lo and hi < margin
    for digits in range(4, 10):
        a, b = f"{lo:+.{digits}f}", f"{hi:+.{digits}f}"
        if not strictly or (-margin < float(a) and float(b) < margin):
            break
    return a, b


def equivalence_cell(c: Comparison) -> str:
    """The interval TOST was decided on, with its confidence, for the paired table."""
    lo, hi, conf = c.equivalence_interval
    if not math.isfinite(lo):
        return "n/a"
    a, b = inside(lo, hi, c.min_effect)
    return f"[{a}, {b}] ({percent(conf)})"


def evidence(c: Comparison) -> str:
    """Mean difference, its interval and P(beats baseline), for a sentence: an
    equivalent arm's interval is the one equivalence was decided on."""
    if c.n == 0:
        return "no seed in common"
    if c.n < 2:
        return f"{c.mean_diff:+.4f} at 1 paired seed (no interval)"
    ahead = f"ahead on {c.wins:g} of {c.n} paired seeds"
    lo, hi, conf = c.equivalence_interval
    if c.decision == "equivalent" and math.isfinite(lo):
        a, b = inside(lo, hi, c.min_effect)
        return (f"{c.mean_diff:+.4f} ({percent(conf)} interval {a} to {b}, the one equivalence was decided on, "
                f"inside ±{c.min_effect:g}; {ahead})")
    return f"{c.mean_diff:+.4f} (95% CI {c.lo:+.4f} to {c.hi:+.4f}; {ahead})"


def equivalence_method(k: int, adaptive: bool) -> str:
    """How the equivalence intervals are made, for the report's method paragraph."""
    if adaptive:
        which = "the deciding look's level, from the spending of alpha / " + str(k)
    elif k > 1:
        which = f"alpha over the arm's Holm step: alpha / {k} for the smallest p, up to alpha for the largest"
    else:
        which = "alpha: a 90% interval at alpha 0.05"
    return (f"The equivalence interval is the one TOST was decided on: the (1 - 2a) t-interval at the level a each "
            f"one-sided test was held to ({which}); an arm is `equivalent` only when it lies inside the margin.")


def seeds_needed_method(m: float, alpha: float, k: int) -> str:
    """What "seeds needed" guarantees, in the report's words."""
    return (f"Seeds needed (for an undecided arm): the fewest paired seeds at which one arm tested alone at alpha "
            f"{alpha:.4g} (alpha / {k}) as Bonferroni over the arms would, by this rule, equivalence tested first, "
            f"is called `better` at a true difference of {m:g} and `equivalent` at one of 0, each in at least 80% "
            f"of studies at the arm's observed paired spread (exact chances for normal differences; at +{m:g} "
            "`better` can reach at most 1 - alpha, the rest being called equivalent).")


def outcome(c: Comparison, word: str) -> str:
    """The decision in words, with what would settle an undecided one."""
    if c.decision == "equivalent":
        return f"equivalent to the {word} (within ±{c.min_effect:g}) at {c.n} seeds"
    if c.decision in ("better", "worse"):
        return f"{c.decision} than the {word} at {c.n} seeds"
    if c.n < 2:
        return "undecided (a test needs 2 paired seeds)"
    return f"undecided at {c.n} seeds; about {seeds_text(c.seeds_needed)} paired seeds would decide it"


@dataclass(frozen=True)
class Verdict:
    metric: str
    maximize: bool
    baseline: str
    best: str | None
    best_mean: float
    compared: str | None  # the arm set against the baseline in the headline
    decisions: dict[str, Comparison]  # every non-baseline arm, declared order
    min_effect: float
    baseline_has_runs: bool = True
    word: str = "baseline"  # "reference" when the study declares no baseline
    budget: int | None = None  # epochs run, when an arm was still improving (ablation.report.diagnostics)
    budget_note: str = ""  # the study's reason for that budget (its ``budget_note``)
    cells: tuple[int, int] | None = None  # (done, expected): a verdict from fewer cells says so

    @property
    def partial(self) -> str:
        """What a verdict from an unfinished study adds: it rests on fewer cells than declared."""
        if self.cells is None or self.cells[0] >= self.cells[1]:
            return ""
        done, total = self.cells
        return (f" Partial: from {done} of {total} cells; the {total - done} missing or failed "
                "(listed in the report) could change it.")

    @property
    def headline(self) -> Comparison | None:
        return self.decisions.get(self.compared) if self.compared else None

    @property
    def sentence(self) -> str:
        """The one-line answer; at the epoch budget it holds at when an arm was still improving."""
        text = self._answer + self.partial
        if self.budget is not None:
            text += (f" This holds at {_a(self.budget)} {self.budget}-epoch budget: some arms were still improving "
                     "(see Fairness).")
            if self.budget_note:
                text += f" Why: {self.budget_note}"
        return text

    @property
    def _answer(self) -> str:
        what = label(self.metric) + ("" if self.maximize else " (lower is better)")
        if self.best is None:
            return f"No arm has a finished run with a finite {self.metric}: no verdict."
        if not self.baseline_has_runs:
            return (
                f"`{self.best}` is best on {what} ({self.best_mean:.4f}); the {self.word} `{self.baseline}` "
                "has no finished runs, so no arm can be set against it."
            )
        c = self.headline
        if c is None:
            return f"Only `{self.best}` has finished runs ({what} {self.best_mean:.4f}): nothing to compare it with."
        if self.best != self.baseline:
            return (f"`{self.best}` is best on {what} ({self.best_mean:.4f}) and {outcome(c, self.word)}: "
                    f"{evidence(c)}.")
        return (f"The {self.word} `{self.baseline}` is best on {what} ({self.best_mean:.4f}); the runner-up "
                f"`{self.compared}` is {outcome(c, self.word)}: {evidence(c)}.")

    @property
    def by_decision(self) -> dict[str, list[Comparison]]:
        out: dict[str, list[Comparison]] = {}
        for c in self.decisions.values():
            out.setdefault(c.decision, []).append(c)
        return out

    @property
    def others(self) -> str:
        """Every arm's decision, grouped."""
        if not self.decisions:
            return f"No arm to set against the {self.word}."
        parts = []
        for word in ("better", "worse", "equivalent", "undecided"):
            arms = self.by_decision.get(word, [])
            if arms:
                parts.append(f"{word}: " + ", ".join(f"`{c.arm}` ({c.mean_diff:+.4f})" if c.n else f"`{c.arm}`"
                                                      for c in arms))
        return (f"Against the {self.word}, at a smallest effect of interest of ±{self.min_effect:g}: "
                + "; ".join(parts) + ".")


def compute_verdict(summary: pd.DataFrame, decisions: dict[str, Comparison], arms: list[str], baseline: str,
                    metric: str, maximize: bool, min_effect: float, word: str = "baseline") -> Verdict:
    rows = summary[(summary["metric"] == metric) & (summary["n"] > 0)].set_index("arm")
    ranked = [a for a in arms if a in rows.index]  # declared order breaks ties
    sign = 1.0 if maximize else -1.0
    ranked.sort(key=lambda a: -sign * rows.loc[a, "mean"])
    common = dict(metric=metric, maximize=maximize, baseline=baseline, decisions=decisions, min_effect=min_effect,
                  baseline_has_runs=baseline in rows.index, word=word)
    if not ranked:
        return Verdict(best=None, best_mean=np.nan, compared=None, **common)
    best = ranked[0]
    others = [a for a in ranked if a != baseline]
    compared = best if best != baseline else (others[0] if others else None)
    if baseline not in rows.index:
        compared = None
    return Verdict(best=best, best_mean=float(rows.loc[best, "mean"]), compared=compared, **common)


def _a(n: int) -> str:
    """The article before a number read aloud: "an" for 8, 11, 18, 80-89, 800-899, ..."""
    s = str(n)
    return "an" if s.startswith("8") or (len(s) % 3 == 2 and s[:2] in ("11", "18")) else "a"
