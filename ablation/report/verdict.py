"""The verdict: which arm is best, by how much it differs from the baseline and
whether that difference is distinguishable at this many seeds. Computed from
the summary and the paired table, never written by hand; the report and the
index both print ``Verdict.sentence``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablation.report.common import fmt_p
from ablation.report.stats import ALPHA, Interval, label


@dataclass(frozen=True)
class Verdict:
    metric: str
    maximize: bool
    baseline: str
    best: str | None
    best_mean: float
    compared: str | None  # the arm set against the baseline in the headline
    diff: Interval | None
    p_holm: float
    distinguishable: bool
    distinguishable_arms: tuple[tuple[str, float], ...]
    n_testable: int  # non-baseline arms with >= 2 paired seeds
    baseline_has_runs: bool = True
    word: str = "baseline"  # "reference" when the study declares no baseline (a tuning study)

    @property
    def sentence(self) -> str:
        """The one-line answer."""
        what = label(self.metric) + ("" if self.maximize else " (lower is better)")
        if self.best is None:
            return f"No arm has a finished run with a finite {self.metric}: no verdict."
        if not self.baseline_has_runs:
            return (
                f"`{self.best}` is best on {what} ({self.best_mean:.4f}); the {self.word} `{self.baseline}` "
                "has no finished runs, so no difference to it can be given."
            )
        if self.compared is None or self.diff is None:
            return f"Only `{self.best}` has finished runs ({what} {self.best_mean:.4f}): nothing to compare it with."
        d = self.diff
        if d.n == 0:
            evidence, outcome = "no seed in common", "not comparable"
        elif d.n < 2:
            evidence, outcome = f"{d.mean:+.4f}, 1 paired seed, CI and p-value n/a", "not testable at 1 seed"
        else:
            evidence = f"{d.mean:+.4f}, 95% CI {d.lo:+.4f} to {d.hi:+.4f}, Holm p = {fmt_p(self.p_holm)}"
            outcome = ("distinguishable" if self.distinguishable else "not distinguishable") + f" at {d.n} seeds"
        if self.best != self.baseline:
            return (
                f"`{self.best}` is best on {what} ({self.best_mean:.4f}); against the {self.word} "
                f"`{self.baseline}` it differs by {evidence}: {outcome}."
            )
        return (
            f"The {self.word} `{self.baseline}` is best on {what} ({self.best_mean:.4f}); the runner-up "
            f"`{self.compared}` differs from it by {evidence}: {outcome}."
        )

    @property
    def others(self) -> str:
        """Which arms differ from the baseline at all."""
        if self.n_testable == 0:
            return f"No arm has 2 or more seeds paired with the {self.word}, so none can be tested against it."
        if not self.distinguishable_arms:
            return f"No arm is distinguishable from the {self.word} (Holm p < {ALPHA} and 95% CI excluding 0)."
        arms = ", ".join(f"`{a}` ({d:+.4f})" for a, d in self.distinguishable_arms)
        return f"Distinguishable from the {self.word} (Holm p < {ALPHA} and 95% CI excluding 0): {arms}."


def compute_verdict(
    summary: pd.DataFrame, paired: pd.DataFrame, arms: list[str], baseline: str, metric: str, maximize: bool,
    word: str = "baseline",
) -> Verdict:
    rows = summary[(summary["metric"] == metric) & (summary["n"] > 0)].set_index("arm")
    ranked = [a for a in arms if a in rows.index]  # declared order breaks ties
    sign = 1.0 if maximize else -1.0
    ranked.sort(key=lambda a: -sign * rows.loc[a, "mean"])
    dist = paired[paired["distinguishable"]]
    common = dict(
        metric=metric, maximize=maximize, baseline=baseline,
        distinguishable_arms=tuple((r.arm, float(r.mean_diff)) for r in dist.itertuples()),
        n_testable=int((paired["n"] >= 2).sum()),
        baseline_has_runs=baseline in rows.index, word=word,
    )
    if not ranked:
        return Verdict(best=None, best_mean=np.nan, compared=None, diff=None, p_holm=np.nan, distinguishable=False, **common)
    best = ranked[0]
    others = [a for a in ranked if a != baseline]
    compared = best if best != baseline else (others[0] if others else None)
    if compared is None or baseline not in rows.index:
        return Verdict(
            best=best, best_mean=float(rows.loc[best, "mean"]), compared=None, diff=None,
            p_holm=np.nan, distinguishable=False, **common,
        )
    row = paired.set_index("arm").loc[compared]
    return Verdict(
        best=best,
        best_mean=float(rows.loc[best, "mean"]),
        compared=compared,
        diff=Interval(float(row["mean_diff"]), float(row["lo"]), float(row["hi"]), int(row["n"])),
        p_holm=float(row["p_holm"]),
        distinguishable=bool(row["distinguishable"]),
        **common,
    )
