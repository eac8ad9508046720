"""Statistics of the report against hand computations (no MLflow here)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ablation.report.stats import (
    class_changes, holm, mean_ci, metric_table, metric_tables, paired_vs_baseline, phones, recall_matrix, summarise,
)
from ablation.report.verdict import compute_verdict


def hand_ci(x):
    x = np.asarray(x, dtype=float)
    n = len(x)
    mean = x.sum() / n
    sd = math.sqrt(((x - mean) ** 2).sum() / (n - 1))
    half = st.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def hand_paired_p(a, b):
    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(n))
    return 2 * st.t.sf(abs(t), n - 1)


def cells_frame(values: dict[str, list[float]], seeds=(1, 2, 3), extra: dict | None = None) -> pd.DataFrame:
    rows = []
    for arm, vs in values.items():
        for seed, v in zip(seeds, vs):
            row = {"arm": arm, "seed": seed, "metrics.val.acc": v}
            for key, table in (extra or {}).items():
                row["metrics." + key] = table[arm][seeds.index(seed)]
            rows.append(row)
    return pd.DataFrame(rows)


def test_mean_ci_matches_hand_t_interval():
    x = [0.70, 0.71, 0.705, 0.69]
    iv = mean_ci(x)
    mean, lo, hi = hand_ci(x)
    assert (iv.n, iv.mean) == (4, pytest.approx(mean))
    assert iv.lo == pytest.approx(lo) and iv.hi == pytest.approx(hi)
    assert iv.excludes(0.0) and not iv.excludes(0.70)


def test_mean_ci_one_value_and_nonfinite():
    iv = mean_ci([0.5, float("nan"), float("inf")])
    assert iv.n == 1 and iv.mean == 0.5 and math.isnan(iv.lo) and math.isnan(iv.hi) and not iv.has_ci
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)
    same = mean_ci([0.3, 0.3, 0.3])
    assert (same.lo, same.hi) == (pytest.approx(0.3), pytest.approx(0.3))


def test_holm_against_hand_computation():
    # sorted p: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04*1) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1 and monotone: 0.6*2 = 1.2 -> 1, max(1, 0.7) = 1
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    # NaN does not count as a test: m = 2
    out = holm([float("nan"), 0.2, 0.01])
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.2, 0.02])
    assert holm([0.03]) == pytest.approx([0.03])
    assert holm([]).shape == (0,)


def test_summarise_means_and_cis():
    values = {"a": [0.70, 0.71, 0.705], "b": [0.72, 0.73, 0.71]}
    s = summarise(cells_frame(values), ["a", "b"], ("val.acc",)).set_index("arm")
    for arm, x in values.items():
        mean, lo, hi = hand_ci(x)
        assert s.loc[arm, "n"] == 3
        assert s.loc[arm, ["mean", "lo", "hi"]].tolist() == pytest.approx([mean, lo, hi])
        assert (s.loc[arm, "min"], s.loc[arm, "max"]) == (min(x), max(x))


def test_paired_vs_baseline_pairs_by_seed_and_holm_corrects():
    values = {"base": [0.70, 0.71, 0.705], "x": [0.712, 0.719, 0.716], "y": [0.706, 0.713, 0.703]}
    cells = cells_frame(values).sample(frac=1.0, random_state=0)  # row order must not matter
    out = paired_vs_baseline(cells, ["base", "x", "y"], "base", "val.acc").set_index("arm")
    p = {}
    for arm in ("x", "y"):
        d = np.subtract(values[arm], values["base"])
        mean, lo, hi = hand_ci(d)
        p[arm] = hand_paired_p(values[arm], values["base"])
        assert out.loc[arm, "n"] == 3
        assert out.loc[arm, ["mean_diff", "lo", "hi", "p"]].tolist() == pytest.approx([mean, lo, hi, p[arm]])
    small, large = sorted(p, key=p.get)
    assert out.loc[small, "p_holm"] == pytest.approx(min(1, 2 * p[small]))
    assert out.loc[large, "p_holm"] == pytest.approx(min(1, max(2 * p[small], p[large])))
    assert out.loc["x", "distinguishable"] == (out.loc["x", "p_holm"] < 0.05)


def test_paired_uses_only_common_seeds():
    cells = cells_frame({"base": [0.5, 0.6, 0.7], "x": [0.55, 0.66, 0.0]})
    cells = cells[~((cells["arm"] == "x") & (cells["seed"] == 3))]
    out = paired_vs_baseline(cells, ["base", "x"], "base", "val.acc").iloc[0]
    assert out["n"] == 2 and out["mean_diff"] == pytest.approx((0.05 + 0.06) / 2)
    one = paired_vs_baseline(cells[cells["seed"] == 1], ["base", "x"], "base", "val.acc").iloc[0]
    assert one["n"] == 1 and math.isnan(one["lo"]) and math.isnan(one["p"]) and not one["distinguishable"]


def test_metric_table_keeps_declared_arm_order_and_gaps():
    cells = cells_frame({"b": [0.2, 0.3], "a": [0.1]}, seeds=(1, 2))
    table = metric_table(cells, ["a", "b", "c"], "val.acc")
    assert list(table.columns) == ["a", "b", "c"]
    assert table.loc[1, "a"] == 0.1 and math.isnan(table.loc[2, "a"]) and table["c"].isna().all()


def test_recall_matrix_and_class_changes():
    recall = {
        "recall.sil": {"base": [0.9, 0.92], "x": [0.91, 0.93]},
        "recall.aa": {"base": [0.5, 0.6], "x": [0.7, 0.75]},
        "recall.10": {"base": [0.3, 0.3], "x": [0.2, 0.3]},
        "recall.2": {"base": [0.4, 0.4], "x": [0.4, 0.4]},
    }
    cells = cells_frame({"base": [0.7, 0.7], "x": [0.7, 0.7]}, seeds=(1, 2), extra=recall)
    assert phones(cells) == ["2", "10", "aa", "sil"]
    m = recall_matrix(cells, ["base", "x"])
    assert m.loc["x", "aa"] == pytest.approx(0.725) and m.loc["base", "sil"] == pytest.approx(0.91)
    ch = class_changes(cells, ["base", "x"], "base")
    assert ch["phone"].tolist() == ["aa", "10", "sil", "2"]  # by |mean diff|, largest first
    aa = ch.iloc[0]
    mean, lo, hi = hand_ci([0.2, 0.15])
    assert [aa["mean_diff"], aa["lo"], aa["hi"]] == pytest.approx([mean, lo, hi])


def _verdict(values, seeds=(1, 2, 3), maximize=True, min_effect=0.005):
    from ablation.decision import compare
    from ablation.report.analysis import paired_diffs

    arms = list(values)
    cells = cells_frame(values, seeds=seeds)
    s = summarise(cells, arms, ("val.acc",))
    decisions = compare(paired_diffs(cells, arms, arms[0], "val.acc", list(seeds)), min_effect, maximize)
    return compute_verdict(s, decisions, arms, arms[0], "val.acc", maximize, min_effect)


def test_verdict_best_arm_better():
    v = _verdict({"base": [0.70, 0.71, 0.705], "x": [0.712, 0.719, 0.716], "y": [0.706, 0.713, 0.703]})
    assert v.best == "x" and v.compared == "x"
    assert {a: c.decision for a, c in v.decisions.items()} == {"x": "better", "y": "undecided"}
    d = np.subtract([0.712, 0.719, 0.716], [0.70, 0.71, 0.705])
    assert v.headline.mean_diff == pytest.approx(d.mean())
    assert f"{d.mean():+.4f}" in v.sentence and "better than the baseline at 3 seeds" in v.sentence
    assert v.others.startswith("Against the baseline") and "better: `x`" in v.others and "undecided: `y`" in v.others


def test_verdict_baseline_best_names_runner_up():
    v = _verdict({"base": [0.80, 0.81, 0.79], "x": [0.70, 0.78, 0.74], "y": [0.75, 0.80, 0.79]})
    assert v.best == "base" and v.compared == "y"
    assert v.sentence.startswith("The baseline `base` is best") and "runner-up `y`" in v.sentence


def test_verdict_minimize_and_one_seed():
    v = _verdict({"base": [0.5], "x": [0.4]}, seeds=(1,), maximize=False)
    assert v.best == "x" and "lower is better" in v.sentence
    assert "undecided (a test needs 2 paired seeds)" in v.sentence and "1 paired seed (no interval)" in v.sentence
    assert v.decisions["x"].decision == "undecided" and v.decisions["x"].wins == 1  # lower is better: it is ahead


def test_metric_tables_equal_one_metric_table_each():
    """One pivot of many metrics gives each metric's table exactly as its own pivot does: a run that
    lacks a value, an arm with no run, a seed an arm did not run, a metric nobody logged."""
    rng = np.random.default_rng(1)
    rows = []
    for seed in (0, 1, 2, 3):
        for arm in ("a", "b", "c"):
            if (seed, arm) == (3, "c"):
                continue
            row = {"seed": seed, "arm": arm, "status": "FINISHED"}
            for k in range(6):
                row[f"metrics.recall.p{k}"] = np.nan if rng.random() < 0.2 else float(rng.random())
            rows.append(row)
    cells = pd.DataFrame(rows)
    arms = ["b", "a", "c", "d"]
    metrics = [f"recall.p{k}" for k in range(6)] + ["recall.never"]
    tables = metric_tables(cells, arms, metrics)
    assert set(tables) == set(metrics)
    for m in metrics:
        pd.testing.assert_frame_equal(tables[m], metric_table(cells, arms, m))
    # the values themselves, against the rows they come from
    for _, row in cells.iterrows():
        got = tables["recall.p0"].loc[row["seed"], row["arm"]]
        assert got == row["metrics.recall.p0"] or (math.isnan(got) and math.isnan(row["metrics.recall.p0"]))
    assert math.isnan(tables["recall.p0"].loc[3, "c"]) and tables["recall.p0"]["d"].isna().all()
    assert tables["recall.never"].empty and list(tables["recall.never"].columns) == arms
