"""Calibration by simulation (seeded, so deterministic): the decisions' false
calls, equivalence rate and power, at the spread measured in the committed
reports, with the adaptive design the study files can ask for, for one arm
and for several sharing the baseline."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ablation.cli import main
from ablation.decision import ALPHA, DECISIONS, SeedDesign, chance, compare, decide, decide_studies
from ablation.simulate import RHO, calibrate, design_power, draw, measured_spreads, simulate, wrong_calls

REPO = Path(__file__).resolve().parents[1]
M = 0.005
N = 1000
ADAPTIVE = SeedDesign(3, 10, adaptive=True)
# the largest paired spread any committed report has shown (batchnorm's, before its runs were regenerated):
# the power claim is held at it as well as at today's largest
WORST_SEEN = 0.0068


@pytest.fixture(scope="module")
def measured():
    out = measured_spreads(REPO / "reports")
    assert len(out) >= 5, out  # the committed ablation reports carry every seed's value
    return out


@pytest.fixture(scope="module")
def spread(measured):
    return float(np.median(list(measured.values())))


@pytest.fixture(scope="module")
def rates(spread):
    return calibrate(spread, M, ADAPTIVE, n_studies=N, seed=0)


def _limit(rate=ALPHA, n=N):
    return rate + 3 * math.sqrt(rate * (1 - rate) / n)  # nominal plus three Monte-Carlo standard errors


def test_equal_means_are_not_called_different_above_alpha(rates):
    r = rates["equal means"]
    assert r.better + r.worse <= _limit()
    assert r.n_studies == N and r.better + r.worse + r.equivalent + r.undecided == pytest.approx(1)


def test_false_calls_stay_at_alpha_where_equivalence_cannot_take_them():
    # a spread ten times the margin: equivalence is out of reach, so every false call shows up
    r = simulate(0.0, 10 * M, M, ADAPTIVE, n_studies=N, seed=1)
    assert r.equivalent < 0.01 and r.better + r.worse <= _limit()
    fixed = simulate(0.0, 10 * M, M, SeedDesign.fixed(10), n_studies=N, seed=2)
    assert fixed.better + fixed.worse <= _limit() and fixed.better + fixed.worse >= ALPHA / 3  # not vacuous


def test_inside_the_margin_reaches_equivalent(rates):
    r = rates["inside the margin"]
    assert r.true_diff == M / 2 and r.equivalent >= 0.5 and r.worse <= _limit()


def test_twice_the_margin_is_called_better_with_power_by_max(rates):
    r = rates["twice the margin"]
    assert r.true_diff == 2 * M and r.better >= 0.8 and r.mean_seeds <= ADAPTIVE.max


def test_power_and_false_calls_hold_at_the_largest_spread(measured):
    for sd in (max(measured.values()), WORST_SEEN):
        out = calibrate(sd, M, ADAPTIVE, n_studies=N, seed=0)
        power = out["twice the margin"]
        # 0.8 plus three Monte-Carlo errors: the earlier Pocock design, each look tested at its share, had 0.786 here
        assert power.better - 3 * power.mc_error(0.8) >= 0.8, (sd, power)
        assert power.mean_seeds < ADAPTIVE.max  # and it stops early where it can
        equal = out["equal means"]
        assert equal.better + equal.worse <= _limit(), (sd, equal)


def test_simulation_decides_as_the_report_does():
    # the vectorised rule the simulation uses gives each study the decision compare() gives it alone
    rng = np.random.default_rng(3)
    for design in (ADAPTIVE, SeedDesign.fixed(3), SeedDesign(2, 5, adaptive=True, spending="pocock")):
        diffs = rng.normal(0.004, 0.004, size=(150, design.max))
        code, used = decide(diffs, M, design, ALPHA)
        one = [compare({"a": d}, M, design=design, need_seeds=False)["a"] for d in diffs]
        assert [DECISIONS[i] for i in code] == [c.decision for c in one] and list(used) == [c.n for c in one]
        assert len(set(code)) >= 2  # the cases are not all alike


def test_simulate_is_deterministic():
    a = simulate(0.003, 0.002, M, ADAPTIVE, n_studies=200, seed=5)
    assert a == simulate(0.003, 0.002, M, ADAPTIVE, n_studies=200, seed=5)


def test_command_prints_the_table_and_refuses_bad_input(capsys, tmp_path):
    assert main(["simulate", "--studies", "100", "--sd", "0.002", "--arms", "1,4"]) == 0
    out = capsys.readouterr().out
    assert "Adaptive seeds { min = 3, max = 10 }" in out and "| 1 | 0.0020 (given) | equal means (+0) |" in out
    assert "| 4 | 0.0020 (given) | twice the margin (+0.01) |" in out and "| 6 |" not in out
    assert main(["simulate", "--seeds-min", "5", "--seeds-max", "3"]) == 2
    assert "need 2 <= --seeds-min <= --seeds-max" in capsys.readouterr().err
    assert main(["simulate", "--reports", str(tmp_path)]) == 2
    assert "pass --sd" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value,says", [
    ("--sd", "nan", "--sd must be a positive finite number"), ("--sd", "inf", "--sd must be a positive finite number"),
    ("--sd", "-0.002", "--sd must be"), ("--sd", "0", "--sd must be"),
    ("--min-effect", "nan", "--min-effect must be a positive finite number"), ("--min-effect", "-inf", "--min-effect"),
    ("--min-effect", "0", "--min-effect must be"), ("--rho", "nan", "--rho must be a correlation"),
    ("--rho", "1", "--rho must be"), ("--rho", "-0.1", "--rho must be"), ("--arms", "0", "--arms must be"),
    ("--arms", "4,x", "--arms must be"), ("--studies", "10", "--studies must be at least 100"),
])
def test_bad_numbers_are_one_line_and_exit_2(capsys, flag, value, says):
    assert main(["simulate", "--studies", "100", "--sd", "0.002", f"{flag}={value}"]) == 2
    captured = capsys.readouterr()
    assert says in captured.err and len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert captured.out == ""  # refused before any table is printed


def test_arms_share_the_baselines_noise():
    x = draw([0.0, 0.0, 0.003], 0.002, 10, 20_000, np.random.default_rng(0))
    assert x.shape == (20_000, 3, 10)
    assert x[:, :2].std() == pytest.approx(0.002, rel=0.02) and x[:, 2].mean() == pytest.approx(0.003, abs=5e-5)
    corr = np.corrcoef(x[:, 0].ravel(), x[:, 1].ravel())[0, 1]
    assert corr == pytest.approx(RHO, abs=0.02)  # var(a - b) = 2 s^2, cov(a1 - b, a2 - b) = s^2
    assert np.corrcoef(*draw([0, 0], 1.0, 10, 20_000, np.random.default_rng(1), rho=0.0)[:, :, 0].T)[0, 1] == \
        pytest.approx(0.0, abs=0.03)


def test_many_arm_studies_decide_as_the_report_does():
    # Holm over the arms (fixed) and alpha / arms per arm (adaptive), study by study against compare()
    rng = np.random.default_rng(4)
    for design in (SeedDesign.fixed(3), SeedDesign.fixed(6), ADAPTIVE):
        gains = draw([0.0, 0.004, 0.01, 0.002], 0.004, design.max, 120, rng)
        code, used = decide_studies(gains, M, design)
        for s in range(len(gains)):
            one = compare({f"a{i}": gains[s, i] for i in range(4)}, M, design=design, need_seeds=False)
            assert [DECISIONS[i] for i in code[s]] == [c.decision for c in one.values()]
            assert list(used[s]) == [c.n for c in one.values()]
        assert len(set(code.ravel())) >= 3


def test_wrong_calls_by_hand():
    b, w, e, u = (DECISIONS.index(x) for x in ("better", "worse", "equivalent", "undecided"))
    true = [0.0, M, 2 * M, -M / 2]
    code = np.array([[u, e, b, e],  # right: equivalent at +m is wrong
                     [b, b, b, u],  # better at 0: a false difference call
                     [e, u, w, w],  # worse at +2m: false difference; worse at -m/2 is right
                     [e, b, b, e]])  # all right
    false_diff, wrong = wrong_calls(code, true, M)
    assert false_diff.tolist() == [False, True, True, False] and wrong.tolist() == [True, True, True, False]


@pytest.mark.parametrize("design", [SeedDesign.fixed(10), ADAPTIVE])
def test_family_wise_false_calls_stay_at_alpha_over_six_arms(design):
    # a spread ten times the margin: equivalence is out of reach, every false call of the 6 arms shows up
    r = simulate(0.0, 10 * M, M, design, n_studies=N, seed=1, arms=6)
    assert r.arms == 6 and r.any_false_difference <= _limit() and r.any_false_difference >= ALPHA / 3
    assert r.any_wrong == r.any_false_difference  # every arm at 0: no equivalence can be wrong
    # an arm exactly at the margin: equivalent is its wrong call, at most alpha
    at = simulate([M] + [0.0] * 5, 0.0015, M, design, n_studies=N, seed=2, arms=6)
    assert at.equivalent <= _limit() and at.any_wrong <= _limit(2 * ALPHA)


def test_power_falls_with_the_number_of_arms():
    # at 3 fixed seeds, an arm +2m ahead among arms equal to the baseline: 94% alone, about 53% of 4 (Holm),
    # at a fixed paired spread (the committed reports' median when this was measured: the figure moves with it)
    spread = 0.00231
    power = {k: calibrate(spread, M, SeedDesign.fixed(3), N, seed=0, arms=k)["twice the margin"].better
             for k in (1, 4, 6)}
    assert power[1] > power[4] + 0.1 > power[6] + 0.1 and power[1] >= 0.9
    assert power[4] == pytest.approx(0.53, abs=3 * 0.5 / math.sqrt(N) + 0.02)


@pytest.mark.parametrize("sd,n", [(0.0023, 3), (0.0065, 6)])
def test_design_power_of_one_arm_is_the_exact_chance(sd, n):
    p = design_power(sd, M, SeedDesign.fixed(n), arms=1, n_studies=4000)
    tol = 4 * 0.5 / math.sqrt(4000)
    assert p.better == pytest.approx(chance("better", 2 * M, sd, M, n, ALPHA), abs=tol)
    assert p.equivalent == pytest.approx(chance("equivalent", 0.0, sd, M, n, ALPHA), abs=tol)
