"""Metrics against hand-computed values on small examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ablation.metrics import evaluate_predictions, per_class_table

# 4 classes; class 3 never occurs in y_true but is predicted once
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
Y_PRED = [0, 0, 1, 3, 1, 1, 0, 2, 2, 2, 1, 0]
CONFUSION = [  # [true, pred], counted by hand
    [2, 1, 0, 1],
    [1, 2, 0, 0],
    [1, 1, 3, 0],
    [0, 0, 0, 0],
]


def test_against_a_hand_computation():
    r = evaluate_predictions(np.array(Y_TRUE), np.array(Y_PRED), n_classes=4, loss=0.75)
    assert r.acc == pytest.approx(7 / 12)
    assert r.confusion.tolist() == CONFUSION
    assert r.support.tolist() == [4, 3, 5, 0]
    assert r.n_frames == 12
    assert r.loss == 0.75
    # recall = diagonal / row sum; the absent class has none
    assert r.recall[:3] == pytest.approx([2 / 4, 2 / 3, 3 / 5])
    assert math.isnan(r.recall[3])
    # precision = diagonal / column sum; class 3 was predicted once, wrongly
    assert r.precision == pytest.approx([2 / 4, 2 / 4, 3 / 3, 0.0])
    f1 = [2 * p * q / (p + q) for p, q in ((0.5, 0.5), (0.5, 2 / 3), (1.0, 0.6))]
    assert f1 == pytest.approx([0.5, 4 / 7, 0.75])
    # macro-F1 over the classes present in y_true only (class 3 would add a 0)
    assert r.macro_f1 == pytest.approx(sum(f1) / 3)
    assert r.summary("val") == {"val.acc": r.acc, "val.macro_f1": r.macro_f1, "val.loss": 0.75}


def test_a_present_class_never_predicted_counts_zero_in_macro_f1():
    r = evaluate_predictions([0, 1, 1], [0, 0, 0], n_classes=2)
    assert r.acc == pytest.approx(1 / 3)
    assert r.recall.tolist() == [1.0, 0.0]
    assert r.precision == pytest.approx([1 / 3, 0.0])
    # F1 of class 0 = 2 * (1/3 * 1) / (1/3 + 1) = 0.5; class 1 = 0
    assert r.macro_f1 == pytest.approx(0.25)
    assert math.isnan(r.loss)


def test_perfect_predictions():
    y = np.array([3, 1, 1, 0, 3])
    r = evaluate_predictions(y, y, n_classes=5)
    assert r.acc == 1.0 and r.macro_f1 == 1.0
    assert r.recall[[0, 1, 3]].tolist() == [1.0, 1.0, 1.0]
    assert np.isnan(r.recall[[2, 4]]).all()
    assert np.array_equal(r.confusion, np.diag([1, 2, 0, 2, 0]))


def test_matches_a_brute_force_count_on_random_labels():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
    r = evaluate_predictions(y, p, n_classes=7)
    conf = np.zeros((7, 7), dtype=int)
    for a, b in zip(y, p):
        conf[a, b] += 1
    assert np.array_equal(r.confusion, conf)
    assert r.acc == pytest.approx(np.trace(conf) / 500)
    assert r.recall == pytest.approx(np.diag(conf) / conf.sum(1))
    assert r.precision == pytest.approx(np.diag(conf) / conf.sum(0))


def test_per_class_table_has_one_row_per_class():
    r = evaluate_predictions(np.array(Y_TRUE), np.array(Y_PRED), n_classes=4)
    df = per_class_table(r, ("sil", "aa", "iy", "s"))
    assert list(df.columns) == ["class", "support", "recall", "precision"]
    assert df["class"].tolist() == ["sil", "aa", "iy", "s"]
    assert df["support"].tolist() == [4, 3, 5, 0]
    assert df["recall"].iloc[:3].tolist() == pytest.approx([0.5, 2 / 3, 0.6])
    assert math.isnan(df["recall"].iloc[3])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_scikit_learn_to_the_last_digit(seed):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(seed)
    n = 41
    y_true = rng.integers(0, n - 3, 5000)  # the last classes never occur
    y_pred = np.where(rng.random(5000) < 0.6, y_true, rng.integers(0, n - 1, 5000))  # the last never predicted
    r = evaluate_predictions(y_true, y_pred, n)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=np.arange(n),
                                                                     zero_division=0)
    assert np.array_equal(r.confusion, confusion_matrix(y_true, y_pred, labels=np.arange(n)))
    assert np.array_equal(r.support, support) and np.array_equal(r.precision, precision)
    present = support > 0
    assert np.array_equal(r.recall[present], recall[present]) and np.isnan(r.recall[~present]).all()
    assert r.macro_f1 == float(np.mean(f1[present]))
