"""Decisions instead of p-values: each arm against the baseline is ``better``,
``worse``, ``equivalent`` or ``undecided`` at the study's smallest effect of
interest ``m`` (in the metric's units), from the paired differences over seeds.

Per arm, on the paired differences ``d`` (arm minus baseline, in seed order):

- ``equivalent``: both one-sided paired t-tests reject a difference of ``m`` or
  more in either direction (TOST: ``mean(d) > -m`` and ``mean(d) < +m``), so
  the difference is smaller than anything the study cares about;
- else ``better`` / ``worse``: the two-sided paired t-test rejects equal means,
  with the sign in the metric's direction;
- else ``undecided``.

Equivalence is tested first: a difference shown to lie inside +-m is one that
does not matter, however surely it is not zero. TOST at one-sided level ``a``
passes exactly when the ``1 - 2a`` t-interval lies inside +-m, so each arm
carries the level its equivalence was held to (``level_equiv``: alpha over its
Holm step, or the deciding look's) and shows that interval.

"Seeds needed" is exact for one arm tested alone (``chance``: the rule's
probabilities for normal differences, integrated over the sample sd), and
``decide_studies`` decides many simulated studies of several arms as
``compare`` does, for the power a study's own design has
(``ablation.simulate``).

Two designs. A **fixed** design (a list of seeds) looks once, with Holm's
correction over the arms within each family (difference, equivalence). An
**adaptive** design (``seeds = { min, max }``) looks after ``min``, ``min + 1``,
..., ``max`` paired seeds and stops an arm at its first decision. Each family's
error over all looks is held at ``alpha / arms`` (Bonferroni over arms) by a
group-sequential design: a Lan-DeMets spending function (O'Brien-Fleming-type
``2 - 2 Phi(z_{alpha/2} / sqrt(t))`` by default, which spends almost nothing
early and keeps nearly the fixed design's alpha for the last look; or
Pocock-type ``alpha ln(1 + (e - 1) t)``; ``t`` = seeds / ``max``) says how much
of it each look may spend, and each look's critical t value is the one whose
chance of being crossed there, and at no earlier look, under the null is that
share. The t statistics' joint law under the null has no closed form, but it
does not depend on the spread (the statistics are scale-free), so the critical
values are computed once by simulating it (``NULL_PATHS`` seeded paths, see
``boundaries``); a look whose share is too small to estimate that way (under
``MIN_TAIL_PATHS`` paths) takes the t quantile of its own share, which can only
spend less. The same boundaries serve each one-sided test of TOST: at a true
difference of exactly -m (or +m) its statistic has the same null law.

The runner uses the same functions to decide whether to add seeds, so the
report's decision is the one that stopped the study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import integrate, special, stats

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 50  # adaptive max above this is refused: beyond it, seed noise is not what limits a study
MAX_ARMS = 50  # the simulation refuses more arms than this: a study of that many is not one question
DEFAULT_MIN_EFFECT = {"val.acc": 0.005, "test.acc": 0.005, "val.macro_f1": 0.005, "test.macro_f1": 0.005,
                      "val.loss": 0.01}  # half a point of accuracy; a hundredth of a nat
DECISIONS = ("better", "worse", "equivalent", "undecided")
SEEDS_NEEDED_CAP = 1000  # seeds needed above this are printed as "more than 1000"
SCAN_SEEDS = 40  # seeds_needed tries every count up to this, then bisects
TAIL = 1e-12  # chance() integrates the spread's law between these quantiles
SPENDING = ("obf", "pocock")  # Lan-DeMets spending functions; the first is the default
NULL_PATHS = 400_000  # simulated null studies behind the adaptive critical values (total level to about 3e-4)
NULL_SEED = 0
MIN_TAIL_PATHS = 20  # a look whose share of alpha is fewer simulated crossings than this uses its t quantile


def default_min_effect(metric: str) -> float:
    return DEFAULT_MIN_EFFECT.get(metric, 0.005)


def spend(kind: str, alpha: float, t: float) -> float:
    """Lan-DeMets spending function: the alpha spent by information fraction ``t`` (0 < t <= 1)."""
    if kind == "obf":  # O'Brien-Fleming-type: almost nothing early, nearly alpha left for the end
        return float(2 * stats.norm.sf(stats.norm.isf(alpha / 2) / math.sqrt(t)))
    if kind == "pocock":  # Pocock-type: an even spend
        return alpha * math.log(1 + (math.e - 1) * t)
    raise ValueError(f"unknown spending function {kind!r}; one of {', '.join(SPENDING)}")


SPENDING_TEXT = {"obf": "O'Brien-Fleming-type (2 - 2 Phi(z_(alpha/2) / sqrt(t)))",
                 "pocock": "Pocock-type (alpha ln(1 + (e - 1) t))"}


@dataclass(frozen=True)
class SeedDesign:
    """Which paired seed counts a comparison is looked at: once at ``max``
    (fixed), or at every count from ``min`` to ``max`` (adaptive)."""

    min: int
    max: int
    adaptive: bool = False
    spending: str = "obf"

    @classmethod
    def fixed(cls, n: int) -> SeedDesign:
        return cls(n, n, False)

    @property
    def looks(self) -> list[int]:
        return list(range(self.min, self.max + 1)) if self.adaptive else [self.max]

    def spent(self, alpha: float = ALPHA) -> dict[int, float]:
        """Seeds at each look -> the share of ``alpha`` spent there (they sum to ``alpha``)."""
        if not self.adaptive:
            return {self.max: alpha}
        f = [spend(self.spending, alpha, n / self.max) for n in self.looks]
        return {n: a - b for n, a, b in zip(self.looks, f, [0.0] + f[:-1])}

    def levels(self, alpha: float = ALPHA) -> dict[int, tuple[float, float]]:
        """Seeds at each look -> the nominal levels its p-values are held to:
        (two-sided difference test, each one-sided test of TOST)."""
        if not self.adaptive:
            return {self.max: (alpha, alpha)}
        return dict(zip(self.looks, boundaries(self.min, self.max, self.spending, alpha)))

    def describe(self, n_arms: int, alpha: float = ALPHA, n_hypotheses: int | None = None) -> str:
        arms = f"over the {n_arms} arm{'s' * (n_arms != 1)} compared with the baseline"
        if not self.adaptive:
            if n_hypotheses is not None and n_hypotheses != n_arms:
                arms = (f"over {n_hypotheses} hypotheses for the {n_arms} arms compared with the baseline "
                        "(arms identical at every seed are one)")
            return f"Holm-corrected {arms} within each family (difference, equivalence), at alpha = {alpha}"
        lv = self.levels(alpha / max(n_arms, 1))
        first, last = lv[self.min][0], lv[self.max][0]
        return (f"adaptive seeds: looks after {self.min} to {self.max} paired seeds, an arm stops at its first "
                f"decision; alpha = {alpha}, Bonferroni {arms}, spent over the looks within each family by a "
                f"Lan-DeMets {SPENDING_TEXT[self.spending]} function (t = seeds / {self.max}); each look's critical "
                f"t value makes the null chance of a first crossing there that look's share, computed by simulating "
                f"the t statistics' joint null law ({NULL_PATHS:,} paths; it does not depend on the spread), so "
                f"the two-sided test's nominal level is {first:.2g} at the first look and {last:.3g} at the last")


def _t_stats(s: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    """One-sample t statistics against 0 from running sums and sums of squares of n values."""
    var = np.maximum(q - s * s / n, 0.0) / (n - 1)
    return (s / n) / np.sqrt(var / n)


@lru_cache(maxsize=64)
def boundaries(first: int, last: int, spending: str, alpha: float) -> tuple[tuple[float, float], ...]:
    """Nominal (two-sided, one-sided) levels at looks ``first`` .. ``last`` of
    the group-sequential t-test that spends ``alpha`` by ``spending``: at each
    look, the critical value whose first crossing there, on seeded simulated
    null paths, has the look's share as its frequency (the first look, with
    nothing before it, is the exact t quantile of its share). Deterministic."""
    looks = range(first, last + 1)
    f = [spend(spending, alpha, n / last) for n in looks]
    share = dict(zip(looks, np.diff([0.0] + f)))
    rng = np.random.default_rng(NULL_SEED)
    s = np.zeros(NULL_PATHS)
    q = np.zeros(NULL_PATHS)
    alive = {2: np.ones(NULL_PATHS, bool), 1: np.ones(NULL_PATHS, bool)}  # not yet crossed, per sidedness
    out = []
    for n in range(1, last + 1):
        z = rng.standard_normal(NULL_PATHS)
        s += z
        q += z * z
        if n < first:
            continue
        t = _t_stats(s, q, n)
        levels = []
        for sides, stat in ((2, np.abs(t)), (1, t)):
            a = share[n]
            tail = int(a * NULL_PATHS)
            if n == first or tail < MIN_TAIL_PATHS:
                crit = float(stats.t.isf(a / sides, n - 1))
            else:  # the (tail + 1)-th largest among paths not yet stopped: `tail` of them cross here first
                rest = stat[alive[sides]]
                crit = float(np.partition(rest, len(rest) - tail - 1)[len(rest) - tail - 1])
            alive[sides] &= ~(stat > crit)
            levels.append(float(sides * stats.t.sf(crit, n - 1)))
        out.append((levels[0], levels[1]))
    return tuple(out)


@dataclass(frozen=True)
class Comparison:
    """One arm against the baseline, on the paired seeds the decision used."""

    arm: str
    decision: str  # one of DECISIONS
    n: int  # paired seeds used
    mean_diff: float  # arm minus baseline, in the metric's units
    lo: float  # 95% t-interval of the mean difference (NaN below 2 seeds)
    hi: float
    sd: float  # spread of the paired differences (NaN below 2 seeds)
    p_diff: float  # two-sided paired t-test of equal means
    p_equiv: float  # TOST: the larger of the two one-sided p-values against -m and +m
    p_diff_adj: float  # corrected over arms (Holm; NaN for the adaptive design, which tests at `level`)
    p_equiv_adj: float
    level: float  # the difference test's nominal level at the deciding look (per arm); alpha for Holm
    wins: float  # paired seeds on which the arm beats the baseline (a tie counts half)
    seeds_needed: int | None  # for an undecided arm: paired seeds for power POWER at min_effect
    min_effect: float
    # each one-sided TOST test's nominal level: the deciding look's (adaptive), alpha over the arm's Holm step (fixed)
    level_equiv: float = math.nan

    @property
    def p_beats(self) -> float:
        """P(arm beats baseline) over the paired seeds."""
        return self.wins / self.n if self.n else math.nan

    @property
    def equivalence_interval(self) -> tuple[float, float, float]:
        """(lo, hi, confidence): the ``1 - 2 level_equiv`` t-interval of the mean
        difference, the one TOST decided on: ``equivalent`` (when reached)
        exactly because it lies inside +-min_effect. NaN below 2 seeds."""
        if self.n < 2 or not np.isfinite(self.level_equiv):
            return math.nan, math.nan, math.nan
        half = float(stats.t.isf(self.level_equiv, self.n - 1)) * self.sd / math.sqrt(self.n)
        return self.mean_diff - half, self.mean_diff + half, 1 - 2 * self.level_equiv


def _tests(d: np.ndarray, m: float) -> tuple[float, float]:
    """(two-sided paired p, TOST p) of paired differences ``d`` at margin ``m``:
    the one-sample t statistics of ``d`` against 0, -m and +m, one call to the
    t distribution (the simulation runs this tens of thousands of times)."""
    n = len(d)
    if n < 2:
        return math.nan, math.nan
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:  # no spread: each test is decided by the mean alone
        return (0.0 if mean != 0 else 1.0), (0.0 if abs(mean) < m else 1.0)
    se = sd / math.sqrt(n)
    # upper tail of: |t| against 0; t against -m (H0 mean <= -m); -t against +m (H0 mean >= +m)
    tails = stats.t.sf([abs(mean) / se, (mean + m) / se, (m - mean) / se], n - 1)
    return float(min(1.0, 2 * tails[0])), float(max(tails[1], tails[2]))


def _tests_many(d: np.ndarray, m: float) -> tuple[np.ndarray, np.ndarray]:
    """``_tests`` for each row of ``d`` (studies x paired seeds, at least 2 seeds)."""
    n = d.shape[1]
    mean, sd = d.mean(1), d.std(1, ddof=1)
    flat = sd == 0.0
    se = np.where(flat, 1.0, sd) / math.sqrt(n)
    tails = stats.t.sf(np.stack([np.abs(mean) / se, (mean + m) / se, (m - mean) / se]), n - 1)
    p_diff = np.minimum(1.0, 2 * tails[0])
    p_equiv = np.maximum(tails[1], tails[2])
    p_diff = np.where(flat, np.where(mean != 0, 0.0, 1.0), p_diff)
    p_equiv = np.where(flat, np.where(np.abs(mean) < m, 0.0, 1.0), p_equiv)
    return p_diff, p_equiv


def decide(gains: np.ndarray, min_effect: float, design: SeedDesign, level_alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The adaptive design's decisions for many comparisons at once: ``gains``
    (comparisons x paired seeds, in the metric's direction) -> (index into
    DECISIONS, paired seeds the decision used). A comparison stops at its first
    decided look; equivalence is tested first, as in ``_call``."""
    k = len(gains)
    code = np.full(k, DECISIONS.index("undecided"))
    used = np.full(k, min(gains.shape[1], design.max))
    open_ = np.ones(k, bool)
    for n, (l_diff, l_equiv) in design.levels(level_alpha).items():
        if n > gains.shape[1] or not open_.any():
            break
        p_diff, p_equiv = _tests_many(gains[:, :n], min_effect)
        equiv = open_ & (p_equiv < l_equiv)
        diff = open_ & ~equiv & (p_diff < l_diff)
        code[equiv] = DECISIONS.index("equivalent")
        code[diff] = np.where(gains[diff, :n].mean(1) > 0, DECISIONS.index("better"), DECISIONS.index("worse"))
        used[open_] = n
        open_ &= ~(equiv | diff)
    return code, used


def decide_studies(gains: np.ndarray, min_effect: float, design: SeedDesign, alpha: float = ALPHA,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``compare``'s decisions for many studies of several arms at once:
    ``gains`` (studies x arms x paired seeds, in the metric's direction) ->
    (studies x arms index into DECISIONS, paired seeds used). Fixed design:
    Holm over the arms within each family; adaptive: each arm on its own at
    ``alpha / arms`` (``decide``). Every arm has at least 2 seeds."""
    studies, k, n = gains.shape
    if design.adaptive:
        code, used = decide(gains.reshape(studies * k, n), min_effect, design, alpha / k)
        return code.reshape(studies, k), used.reshape(studies, k)
    n = min(n, design.max)
    p_diff, p_equiv = _tests_many(gains[:, :, :n].reshape(studies * k, n), min_effect)
    adj_d, adj_e = holm_rows(p_diff.reshape(studies, k)), holm_rows(p_equiv.reshape(studies, k))
    mean = gains[:, :, :n].mean(2)
    code = np.where(adj_e < alpha, DECISIONS.index("equivalent"),
                    np.where(adj_d < alpha, np.where(mean > 0, DECISIONS.index("better"), DECISIONS.index("worse")),
                             DECISIONS.index("undecided")))
    return code, np.full((studies, k), n)


def _call(gain_mean: float, p_diff: float, p_equiv: float, level: float) -> str:
    if p_equiv < level:
        return "equivalent"
    if p_diff < level:
        return "better" if gain_mean > 0 else "worse"
    return "undecided"


def chance(decision: str, true_diff: float, sd: float, min_effect: float, n: int, alpha: float) -> float:
    """The exact probability that one arm, tested alone at level ``alpha`` on
    ``n`` paired seeds whose differences are normal (mean ``true_diff``, sd
    ``sd``), gets ``decision`` from the fixed design's rule, equivalence tested
    first. Given the sample sd ``s`` (a scaled chi variable), ``equivalent`` is
    ``|mean| < m - c1 se`` and ``better`` is ``mean > max(c2 se, m - c1 se)``
    (``c1``, ``c2``: the one- and two-sided critical t values): normal
    probabilities of the mean, integrated over the law of ``s``."""
    if decision not in ("better", "worse", "equivalent"):
        raise ValueError(f"no chance of {decision!r}: one of better, worse, equivalent")
    df = n - 1
    c1, c2 = float(stats.t.isf(alpha, df)), float(stats.t.isf(alpha / 2, df))
    sn = sd / math.sqrt(n)  # sd of the mean
    log_norm = (df / 2 - 1) * math.log(2) + math.lgamma(df / 2)

    def density(w: float) -> float:  # chi with df degrees of freedom; s = sd * w / sqrt(df)
        return math.exp((df - 1) * math.log(w) - w * w / 2 - log_norm) if w > 0 else float(df == 1) * math.exp(-log_norm)

    def given(w: float) -> float:  # P(decision | s), special.ndtr: scipy.stats per point is 100x slower here
        se = sn * w / math.sqrt(df)
        edge = min_effect - c1 * se  # equivalent inside (-edge, +edge)
        if decision == "equivalent":
            return float(special.ndtr((edge - true_diff) / sn) - special.ndtr((-edge - true_diff) / sn)) if edge > 0 else 0.0
        cut = max(c2 * se, edge)
        z = (true_diff - cut) / sn if decision == "better" else (-cut - true_diff) / sn
        return float(special.ndtr(z))

    # over the chi law's bulk (all but 2e-12 of it): on (0, inf) the quadrature misses a narrow peak at large df
    lo, hi = (math.sqrt(stats.chi2.ppf(TAIL, df)), math.sqrt(stats.chi2.isf(TAIL, df)))
    return float(integrate.quad(lambda w: given(w) * density(w), lo, hi, limit=200)[0])


def seeds_needed(sd: float, min_effect: float, alpha: float, power: float = POWER) -> int | None:
    """The fewest paired seeds at which a fixed design, each test at level
    ``alpha``, decides an arm either way with probability ``power``: a true
    difference of ``min_effect`` called ``better`` and a true difference of 0
    called ``equivalent``, both exactly (``chance``, with equivalence tested
    first, which holds ``better`` at +m to at most ``1 - alpha``). None without
    a spread; ``SEEDS_NEEDED_CAP + 1`` when even that many would not do."""
    if not (np.isfinite(sd) and np.isfinite(min_effect)) or sd <= 0 or min_effect <= 0:
        return None

    def enough(n: int) -> bool:
        return (chance("better", min_effect, sd, min_effect, n, alpha) >= power
                and chance("equivalent", 0.0, sd, min_effect, n, alpha) >= power)

    for n in range(2, SCAN_SEEDS + 1):  # a plain scan where few degrees of freedom make the powers uneven
        if enough(n):
            return n
    if not enough(SEEDS_NEEDED_CAP):
        return SEEDS_NEEDED_CAP + 1
    lo, hi = SCAN_SEEDS, SEEDS_NEEDED_CAP  # beyond, both powers rise with n: bisect (not enough at lo, enough at hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


def hypotheses(arms: list[str], groups: list[list[str]] | None = None) -> list[int]:
    """Each arm's hypothesis, as the index of the first arm of its group:
    arms that are one computation (``groups``, e.g. the identical arms of
    ``ablation.report.diagnostics``) are one hypothesis, not separate evidence.
    Arms not in ``arms`` are ignored, so a group may name the baseline."""
    first = {}
    for g in groups or []:
        members = [a for a in g if a in arms]
        for a in members:
            first[a] = arms.index(members[0])
    return [first.get(a, i) for i, a in enumerate(arms)]


def compare(diffs: dict[str, np.ndarray], min_effect: float, maximize: bool = True,
            design: SeedDesign | None = None, alpha: float = ALPHA, need_seeds: bool = True,
            groups: list[list[str]] | None = None) -> dict[str, Comparison]:
    """Every arm's decision. ``diffs``: arm -> paired differences (arm minus
    baseline) in seed order; ``design`` defaults to one look at all seeds;
    ``need_seeds=False`` skips the power search (the simulation has no use for it).
    ``groups``: arms that are one computation; in the fixed design each group
    enters Holm's correction once and its arms share the adjusted p and the
    decision. The adaptive design ignores it: its looks are the ones the
    runner stopped the study at, which counted every arm."""
    sign = 1.0 if maximize else -1.0
    n_arms = max(len(diffs), 1)
    out = {}
    if design is None or not design.adaptive:
        arms = list(diffs)
        same = hypotheses(arms, groups)
        n_hyp = max(len(set(same)), 1)
        raw = {arm: _tests(np.asarray(d, float), min_effect) for arm, d in diffs.items()}
        adj_d = holm([raw[a][0] for a in arms], same)
        adj_e = holm([raw[a][1] for a in arms], same)
        steps = holm_steps([raw[a][1] for a in arms], same)  # each arm's TOST level: alpha / its Holm step
        for i, arm in enumerate(arms):
            d = np.asarray(diffs[arm], float)
            call = _call(sign * d.mean() if len(d) else 0.0, adj_d[i], adj_e[i], alpha) if len(d) >= 2 else "undecided"
            out[arm] = _comparison(arm, d, call, raw[arm], (adj_d[i], adj_e[i]), alpha, sign, min_effect,
                                   alpha / n_hyp if need_seeds else None, alpha / steps[i])
        for i, arm in enumerate(arms):  # one hypothesis, one decision: the group's first arm's
            if same[i] != i:
                lead = out[arms[same[i]]]
                out[arm] = replace(out[arm], decision=lead.decision, seeds_needed=lead.seeds_needed)
        return out
    level_alpha = alpha / n_arms
    levels = design.levels(level_alpha)
    for arm, d_all in diffs.items():
        d_all = np.asarray(d_all, float)
        if len(d_all) < design.min:  # fewer paired seeds than the first look
            d, call, (l_diff, l_equiv) = d_all, "undecided", levels[design.min]
        else:
            code, used = decide(sign * d_all[None, : design.max], min_effect, design, level_alpha)
            d, call = d_all[: int(used[0])], DECISIONS[int(code[0])]
            l_diff, l_equiv = levels[len(d)]
        out[arm] = _comparison(arm, d, call, _tests(d, min_effect), (math.nan, math.nan), l_diff, sign, min_effect,
                               alpha / n_arms if need_seeds else None, l_equiv)
    return out


def _comparison(arm, d, call, p, adj, level, sign, min_effect, power_alpha, level_equiv=math.nan) -> Comparison:
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n >= 2 else math.nan
    lo = hi = math.nan
    if n >= 2:
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        lo, hi = mean - half, mean + half
    gain = sign * d
    wins = float((gain > 0).sum() + 0.5 * (gain == 0).sum())
    needed = seeds_needed(sd, min_effect, power_alpha) if call == "undecided" and power_alpha else None
    return Comparison(arm=arm, decision=call, n=n, mean_diff=mean, lo=lo, hi=hi, sd=sd, p_diff=p[0], p_equiv=p[1],
                      p_diff_adj=adj[0], p_equiv_adj=adj[1], level=level, wins=wins, seeds_needed=needed,
                      min_effect=min_effect, level_equiv=level_equiv)


def holm_steps(pvalues, same: list[int] | None = None) -> np.ndarray:
    """Each entry's Holm multiplier: the number of hypotheses from its rank on
    (``m`` for the smallest p, 1 for the largest), the stable order ``holm``
    uses. ``holm``'s adjusted p is at least ``p * step``, so an adjusted p
    under alpha means the raw p is under ``alpha / step``: the level whose
    interval the decision can be shown with. NaN where p is NaN."""
    if same is not None:
        reps = sorted(set(same))
        steps = holm_steps([pvalues[r] for r in reps])
        return np.array([steps[reps.index(r)] for r in same], dtype=np.float64)
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    out[order] = len(idx) - np.arange(len(idx))
    return out


def holm_rows(p: np.ndarray) -> np.ndarray:
    """``holm`` of each row of ``p`` (studies x arms, all finite), for the simulation."""
    k = p.shape[1]
    order = np.argsort(p, axis=1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=1) * (k - np.arange(k))
    out = np.empty_like(p)
    np.put_along_axis(out, order, np.minimum(1.0, np.maximum.accumulate(ranked, axis=1)), axis=1)
    return out


def holm(pvalues, same: list[int] | None = None) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1);
    NaN entries stay NaN and do not count towards the number of tests.
    ``same[i]``: the entry whose hypothesis entry ``i`` is (``hypotheses``):
    one test per distinct hypothesis, its adjusted p given to every entry of it."""
    if same is not None:
        reps = sorted(set(same))
        adj = holm([pvalues[r] for r in reps])
        return np.array([adj[reps.index(r)] for r in same], dtype=np.float64)
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


# ---- adaptive seeds: which seeds each arm wants ---------------------------------


def paired(arms: list[str], baseline: str, seeds: list[int], values: dict[tuple[str, int], float],
           extent: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Arm -> differences from the baseline (arm minus baseline), in seed order,
    on the seeds among its first ``extent`` (default: every seed) that both have
    finished: a seed either side lacks (failed, not run yet) is left out, not
    the end of the arm's pairs. The one definition the report, ``status`` and
    the adaptive seed policy share."""
    out = {}
    for arm in arms:
        if arm == baseline:
            continue
        diffs = []
        for seed in seeds[: (extent or {}).get(arm, len(seeds))]:
            a, b = values.get((arm, seed)), values.get((baseline, seed))
            if a is not None and b is not None:
                diffs.append(a - b)
        out[arm] = np.asarray(diffs, dtype=np.float64)
    return out


def extents(arms: list[str], baseline: str, seeds: list[int], values: dict[tuple[str, int], float],
            design: SeedDesign, min_effect: float, maximize: bool,
            failed: frozenset[tuple[str, int]] | set = frozenset()) -> dict[str, int]:
    """How many leading seeds each arm wants given the finished values (the
    baseline: the most any arm wants). An arm grows by one seed when every
    paired seed up to its extent is settled (both values in, or a cell of the
    pair ``failed`` for good) and it is still undecided: a failed cell costs
    its arm that pair, not the seeds after it."""
    extent = {arm: design.min for arm in arms if arm != baseline}

    def settled(arm: str) -> bool:
        return all(((arm, s) in values and (baseline, s) in values) or (arm, s) in failed or (baseline, s) in failed
                   for s in seeds[: extent[arm]])

    while True:
        now = compare(paired(arms, baseline, seeds, values, extent), min_effect, maximize, design, need_seeds=False)
        grown = [arm for arm, c in now.items()
                 if c.decision == "undecided" and settled(arm) and extent[arm] < design.max]
        for arm in grown:
            extent[arm] += 1
        if not grown:
            break
    extent[baseline] = max(extent.values(), default=design.min)
    return extent
