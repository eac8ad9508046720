"""Arms identical at every seed are one computation: they enter Holm's
correction as one hypothesis and share its adjusted p and decision."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from ablation.decision import compare, holm, hypotheses
from ablation.report import analyse, build_report, load_study

from .conftest import Store

SEEDS = [0, 1, 2]
ARMS = ["p=0", "after", "before", "p=0.5"]  # the baseline first; after and before are bit-identical
VAL = {"p=0": [0.700, 0.710, 0.705], "after": [0.712, 0.719, 0.716], "before": [0.712, 0.719, 0.716],
       "p=0.5": [0.690, 0.707, 0.699]}
M = 0.005  # the default smallest effect of interest for val accuracy


def _tost(d):
    se = np.std(d, ddof=1) / math.sqrt(len(d))
    return max(st.t.sf((d.mean() + M) / se, len(d) - 1), st.t.sf((M - d.mean()) / se, len(d) - 1))


def _hand():
    """Raw and Holm-adjusted p over the 2 hypotheses (after = before, and p=0.5), by hand."""
    d = {a: np.subtract(VAL[a], VAL["p=0"]) for a in ("after", "p=0.5")}
    raw = {a: (st.ttest_rel(VAL[a], VAL["p=0"]).pvalue, _tost(d[a])) for a in d}
    adj = {}
    for k in (0, 1):
        lo, hi = sorted(d, key=lambda a: raw[a][k])
        first = min(1.0, 2 * raw[lo][k])
        adj[lo, k], adj[hi, k] = first, min(1.0, max(first, raw[hi][k]))
    return raw, adj


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("identical")
    s = Store(root)
    exp = s.experiment("placement")
    parent = s.parent(exp, "placement", ARMS, SEEDS, {a: {"model.dropout_place": a} for a in ARMS},
                      ["model.dropout_place"])
    for arm in ARMS:
        for i, seed in enumerate(SEEDS):
            s.cell(exp, parent, "placement", arm, seed, metrics={"val.acc": VAL[arm][i], "n_params": 5000},
                   params={"train.epochs": 2})
    return s, root


def test_identical_arms_are_one_hypothesis_with_hand_computed_holm(runs):
    s, _ = runs
    a = analyse(load_study("placement", s.uri))
    assert a.groups == [["after", "before"]]
    assert a.n_hypotheses == len(a.decisions) - 1 == 2
    raw, adj = _hand()
    for arm, lead in (("after", "after"), ("before", "after"), ("p=0.5", "p=0.5")):
        c = a.decisions[arm]
        assert c.p_diff == pytest.approx(raw[lead][0]) and c.p_equiv == pytest.approx(raw[lead][1])
        assert c.p_diff_adj == pytest.approx(adj[lead, 0]) and c.p_equiv_adj == pytest.approx(adj[lead, 1])
    assert a.decisions["after"].decision == a.decisions["before"].decision
    p = a.paired["val.acc"].set_index("arm")["p_holm"]
    assert p["after"] == p["before"] == pytest.approx(adj["after", 0]) and p["p=0.5"] == pytest.approx(adj["p=0.5", 0])


def test_the_report_says_the_group_is_one_hypothesis(runs):
    s, root = runs
    md = build_report("placement", s.uri, root / "reports").read_text()
    assert "Holm-corrected over 2 hypotheses for the 3 arms compared with the baseline" in md
    assert "`after` = `before`: identical at every seed, one computation, so each group is one hypothesis" in md
    assert "(alpha / 2)" in md


def test_compare_without_groups_counts_every_arm():
    diffs = {a: np.subtract(VAL[a], VAL["p=0"]) for a in ARMS[1:]}
    plain, grouped = compare(diffs, M), compare(diffs, M, groups=[["after", "before"]])
    raw = [plain[a].p_diff for a in ARMS[1:]]
    assert [plain[a].p_diff_adj for a in ARMS[1:]] == pytest.approx(list(holm(raw)))  # 3 hypotheses
    assert [grouped[a].p_diff_adj for a in ARMS[1:]] == pytest.approx(list(holm(raw, [0, 0, 2])))
    assert hypotheses(ARMS[1:], [["p=0", "after", "before"]]) == [0, 0, 2]  # the baseline is no arm here
