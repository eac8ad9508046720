"""Decisions against hand computations: TOST, the paired t-test, Holm, the
power behind "seeds needed", and the adaptive design's alpha spending."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from ablation.decision import SeedDesign, compare, seeds_needed

M = 0.005


def hand_tost(d, m):
    d = np.asarray(d, float)
    n, mean, se = len(d), d.mean(), d.std(ddof=1) / math.sqrt(len(d))
    lower = st.t.sf((mean + m) / se, n - 1)  # H0: mean <= -m
    upper = st.t.cdf((mean - m) / se, n - 1)  # H0: mean >= +m
    return max(lower, upper)


def hand_power(n, sd, m, alpha):
    """Two-sided paired t-test power at a true difference m, and the TOST
    lower bound at a true difference 0, from the noncentral t by hand."""
    df, nc = n - 1, m * math.sqrt(n) / sd
    crit = st.t.ppf(1 - alpha / 2, df)
    diff = 1 - st.nct.cdf(crit, df, nc) + st.nct.cdf(-crit, df, nc)
    equiv = 1 - 2 * st.nct.cdf(st.t.ppf(1 - alpha, df), df, nc)
    return diff, equiv


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


def test_seeds_needed_is_the_smallest_n_with_both_powers():
    sd, alpha = 0.004, 0.025
    n = seeds_needed(sd, M, alpha)
    assert all(p >= 0.8 for p in hand_power(n, sd, M, alpha))
    assert min(hand_power(n - 1, sd, M, alpha)) < 0.8
    # and the power is real: simulated studies at n seeds decide that often
    rng = np.random.default_rng(0)
    x = rng.normal(M, sd, size=(4000, n))
    t = x.mean(1) / (x.std(1, ddof=1) / math.sqrt(n))
    assert (np.abs(t) > st.t.ppf(1 - alpha / 2, n - 1)).mean() >= 0.78
    assert seeds_needed(float("nan"), M, alpha) is None


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
