"""Decisions against hand computations: TOST, the paired t-test, Holm, the
power behind "seeds needed", the interval equivalence is decided on, and the
adaptive design's alpha spending."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from ablation.decision import SCAN_SEEDS, SEEDS_NEEDED_CAP, SeedDesign, chance, compare, seeds_needed

M = 0.005


def hand_tost(d, m):
    d = np.asarray(d, float)
    n, mean, se = len(d), d.mean(), d.std(ddof=1) / math.sqrt(len(d))
    lower = st.t.sf((mean + m) / se, n - 1)  # H0: mean <= -m
    upper = st.t.cdf((mean - m) / se, n - 1)  # H0: mean >= +m
    return max(lower, upper)


def rule_by_hand(true, sd, m, n, alpha, sims=40_000, seed=0):
    """Monte-Carlo reference from the textbook rule: normal paired differences,
    TOST (two one-sided t-tests at alpha) first, else the two-sided t-test at
    alpha -> (P(better), P(worse), P(equivalent)) and their standard error bound."""
    x = np.random.default_rng(seed).normal(true, sd, size=(sims, n))
    mean, se = x.mean(1), x.std(1, ddof=1) / math.sqrt(n)
    equiv = (st.t.sf((mean + m) / se, n - 1) < alpha) & (st.t.cdf((mean - m) / se, n - 1) < alpha)
    differ = ~equiv & (2 * st.t.sf(np.abs(mean) / se, n - 1) < alpha)
    return (differ & (mean > 0)).mean(), (differ & (mean < 0)).mean(), equiv.mean(), 0.5 / math.sqrt(sims)


def test_tost_and_t_against_hand_values():
    d = {"a": np.array([0.006, 0.003, -0.002]), "b": np.array([0.0012, -0.0004, 0.0006, 0.0002])}
    out = compare(d, M)
    for arm, x in d.items():
        assert out[arm].p_equiv == pytest.approx(hand_tost(x, M))
        assert out[arm].p_diff == pytest.approx(st.ttest_1samp(x, 0).pvalue)
        assert out[arm].n == len(x) and out[arm].mean_diff == pytest.approx(x.mean())
    pa, pb = out["a"].p_equiv, out["b"].p_equiv
    assert out["b"].p_equiv_adj == pytest.approx(min(1, 2 * min(pa, pb)))  # Holm: the smaller one doubled
    assert out["a"].p_equiv_adj == pytest.approx(max(2 * pb, pa))
    assert out["b"].decision == "equivalent" and out["a"].decision == "undecided"
    assert out["a"].wins == 2 and out["a"].p_beats == pytest.approx(2 / 3)


def test_better_worse_follow_the_metric_direction():
    d = {"up": np.array([0.010, 0.012, 0.011]), "down": np.array([-0.010, -0.012, -0.011])}
    assert {a: c.decision for a, c in compare(d, M).items()} == {"up": "better", "down": "worse"}
    assert {a: c.decision for a, c in compare(d, M, maximize=False).items()} == {"up": "worse", "down": "better"}
    assert compare(d, M, maximize=False)["down"].wins == 3


@pytest.mark.parametrize("true,sd,n,alpha", [(M, 0.0023, 4, 0.05), (0.0, 0.0023, 4, 0.05), (M, 0.001, 2, 0.05 / 6),
                                           (M / 2, 0.004, 7, 0.0125), (-M, 0.0065, 12, 0.05), (2 * M, 0.0065, 3, 0.05)])
def test_chance_is_the_rules_exact_probability(true, sd, n, alpha):
    better, worse, equiv, se = rule_by_hand(true, sd, M, n, alpha)
    for decision, ref in (("better", better), ("worse", worse), ("equivalent", equiv)):
        assert chance(decision, true, sd, M, n, alpha) == pytest.approx(ref, abs=4 * se), decision


def test_seeds_needed_where_the_noncentral_t_gave_nan():
    assert seeds_needed(0.00033, M, 0.05) == 2
    assert seeds_needed(0.001, M, 0.05 / 6) == 4
    # equivalence first holds better at +m under 0.8 at 4 seeds here: 5 are needed, not the t-test's 4
    assert chance("better", M, 0.0023, M, 4, 0.05) == pytest.approx(0.77, abs=0.01)
    assert seeds_needed(0.0023, M, 0.05) == 5
    assert seeds_needed(float("nan"), M, 0.05) is None and seeds_needed(0.002, float("nan"), 0.05) is None
    assert seeds_needed(0.2, M, 0.05) == SEEDS_NEEDED_CAP + 1


@pytest.mark.parametrize("arms", [1, 4, 6])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_seeds_needed_against_the_rule_by_hand_on_a_grid(arms, alpha):
    # from the smallest spread a committed report has shown to the largest, and one at which ~30 seeds are needed
    for i, sd in enumerate((0.00033, 0.001, 0.0023, 0.0065, 0.01)):
        n = seeds_needed(sd, M, alpha / arms)
        better, _, _, se = rule_by_hand(M, sd, M, n, alpha / arms, seed=i)
        equiv = rule_by_hand(0.0, sd, M, n, alpha / arms, seed=100 + i)[2]
        assert min(better, equiv) >= 0.8 - 3 * se, (sd, n, better, equiv)  # enough at n
        if n > 2:  # and not at n - 1
            better, _, _, se = rule_by_hand(M, sd, M, n - 1, alpha / arms, seed=i)
            equiv = rule_by_hand(0.0, sd, M, n - 1, alpha / arms, seed=100 + i)[2]
            assert min(better, equiv) < 0.8 + 3 * se, (sd, n, better, equiv)


def test_seeds_needed_bisects_as_the_scan_would_beyond_the_scan():
    sd, alpha = 0.02, 0.05
    n = seeds_needed(sd, M, alpha)
    assert n > SCAN_SEEDS
    enough = [min(chance("better", M, sd, M, k, alpha), chance("equivalent", 0.0, sd, M, k, alpha)) >= 0.8
              for k in (n - 1, n)]
    assert enough == [False, True]


def test_undecided_arm_reports_seeds_needed_at_its_spread():
    d = np.array([0.006, 0.003, -0.002])
    c = compare({"a": d, "b": d + 0.0001}, M)["a"]
    assert c.decision == "undecided" and c.seeds_needed == seeds_needed(d.std(ddof=1), M, 0.05 / 2)


def test_spending_functions_sum_to_alpha_obf_back_loads_and_pocock_front_loads():
    obf = SeedDesign(3, 10, adaptive=True).spent(0.05)
    assert list(obf) == list(range(3, 11)) and sum(obf.values()) == pytest.approx(0.05)
    assert obf[3] == pytest.approx(2 * (1 - st.norm.cdf(st.norm.ppf(0.975) / math.sqrt(0.3))))  # Lan-DeMets OBF
    assert all(a < b for a, b in zip(list(obf.values()), list(obf.values())[1:]))  # little early, most at the end
    pocock = SeedDesign(3, 10, adaptive=True, spending="pocock").spent(0.05)
    assert sum(pocock.values()) == pytest.approx(0.05) and pocock[3] == pytest.approx(0.05 * math.log(1 + (math.e - 1) * 0.3))
    assert all(a > b for a, b in zip(list(pocock.values()), list(pocock.values())[1:]))
    assert SeedDesign.fixed(3).spent(0.05) == {3: 0.05} and SeedDesign.fixed(3).levels(0.05) == {3: (0.05, 0.05)}


@pytest.mark.parametrize("design,alpha", [(SeedDesign(3, 10, adaptive=True), 0.05), (SeedDesign(2, 3, adaptive=True), 0.05),
                                          (SeedDesign(3, 10, adaptive=True, spending="pocock"), 0.025)])
def test_boundaries_hold_the_error_over_all_looks_at_alpha_even_at_one_or_two_df(design, alpha):
    # fresh null studies (a seed the boundaries were not computed from), t statistics at every look
    n = 200_000
    x = np.random.default_rng(12345).standard_normal((n, design.max))
    first2, first1 = np.zeros(n, bool), np.zeros(n, bool)
    levels = design.levels(alpha)
    for k, (two, one) in levels.items():
        t = x[:, :k].mean(1) / (x[:, :k].std(1, ddof=1) / math.sqrt(k))
        first2 |= 2 * st.t.sf(np.abs(t), k - 1) < two
        first1 |= st.t.sf(t, k - 1) < one
    se = math.sqrt(alpha * (1 - alpha) / n) + math.sqrt(alpha * (1 - alpha) / 400_000)  # this sample's + the boundaries'
    for rate in (first2.mean(), first1.mean()):
        assert abs(rate - alpha) <= 3 * se, (rate, alpha)  # at alpha: neither inflated by the looks nor wasted
    assert levels[design.min][0] == pytest.approx(design.spent(alpha)[design.min])  # first look: its exact t quantile
    # more than "each look tested at its share" (a Bonferroni split over looks, which wastes what the looks overlap)
    assert levels[design.max][0] > 1.1 * design.spent(alpha)[design.max]
    if design == SeedDesign(3, 10, adaptive=True):
        assert levels[10][0] > 2.5 * design.spent(alpha)[10]  # O'Brien-Fleming: 0.029 at the last look, not 0.011


def test_adaptive_stops_at_the_first_decided_look():
    # diverse enough to be undecided at 3 seeds, clearly better by 6
    d = np.array([0.004, 0.012, 0.002, 0.010, 0.011, 0.009, 0.010, 0.012])
    design = SeedDesign(3, 10, adaptive=True)
    c = compare({"a": d}, M, design=design)["a"]
    lv = design.levels(0.05)
    first = next(n for n in design.looks if st.ttest_1samp(d[:n], 0).pvalue < lv[n][0] and hand_tost(d[:n], M) >= lv[n][1])
    assert c.decision == "better" and c.n == first and c.level == pytest.approx(lv[first][0])
    assert c.level_equiv == pytest.approx(lv[first][1]) and first > 3
    assert st.ttest_1samp(d[:3], 0).pvalue >= lv[3][0]  # not at the first look
    short = compare({"a": d[:2]}, M, design=design)["a"]
    assert short.decision == "undecided" and short.n == 2


def _random_studies(rng, count):
    """Studies of 1 to 6 arms, some near the margin, some identical to another arm."""
    for _ in range(count):
        k, n = int(rng.integers(1, 7)), int(rng.integers(2, 11))
        diffs = {f"a{i}": rng.normal(rng.choice([0.0, M / 2, 0.9 * M, 2 * M]), rng.choice([0.0005, 0.002, 0.004]), n)
                 for i in range(k)}
        if k > 2 and rng.random() < 0.3:
            diffs["a1"] = diffs["a0"]  # one computation: one hypothesis
        yield diffs


def test_equivalent_means_the_interval_it_was_decided_on_is_inside_the_margin():
    rng = np.random.default_rng(7)
    seen = 0
    for diffs in _random_studies(rng, 300):
        groups = [["a0", "a1"]] if "a1" in diffs and diffs["a1"] is diffs["a0"] else None
        for design in (None, SeedDesign(3, 10, adaptive=True)):
            for c in compare(diffs, M, design=design, groups=groups, need_seeds=False).values():
                lo, hi, conf = c.equivalence_interval
                if c.decision == "equivalent":
                    seen += 1
                    assert -M < lo <= c.mean_diff <= hi < M, c
                if c.n >= 2:  # its confidence is the level TOST was held to
                    assert conf == pytest.approx(1 - 2 * c.level_equiv)
                    half = st.t.isf(c.level_equiv, c.n - 1) * c.sd / math.sqrt(c.n)
                    assert (lo, hi) == pytest.approx((c.mean_diff - half, c.mean_diff + half))
    assert seen > 100  # the property was exercised


def test_equivalence_levels_follow_holm_steps_and_one_arm_gets_90_percent():
    d = {"a": np.array([0.0012, -0.0004, 0.0006, 0.0002]), "b": np.array([0.004, 0.001, 0.003, 0.0035]),
         "c": np.array([0.0005, 0.0002, -0.0001, 0.0003])}
    out = compare(d, M)
    order = sorted(d, key=lambda a: out[a].p_equiv)  # smallest TOST p first: tested at alpha / 3, then / 2, then / 1
    assert [out[a].level_equiv for a in order] == pytest.approx([0.05 / 3, 0.05 / 2, 0.05])
    alone = compare({"a": d["a"]}, M)["a"]
    assert alone.equivalence_interval[2] == pytest.approx(0.90)
