"""Benchmark metrics against values computed by hand (docs/benchmark.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tools.predictor import metrics as M


def test_auc_counts_ordered_pairs():
    # Positive-negative pairs: (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3 of 4.
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # A tie between a positive and a negative counts one half.
    assert M.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert math.isnan(M.roc_auc([1, 1], [0.2, 0.9]))


def test_average_precision_of_the_churn_class():
    # Ranked: 0.8 (churn), 0.4, 0.35 (churn), 0.1 -> precisions at each churner 1/1 and 2/3.
    assert M.average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx((1 + 2 / 3) / 2)


def test_brier():
    assert M.brier([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)


def test_ece_ten_equal_width_bins():
    p = [0.05, 0.15, 0.15, 0.95, 1.0]  # bins 0, 1, 1, 9, 9 (p = 1 goes to the last bin)
    y = [0, 1, 0, 1, 1]
    # bin 0: |0 - 0.05| * 1; bin 1: |0.5 - 0.15| * 2; bin 9: |1 - 0.975| * 2; over n = 5.
    assert M.expected_calibration_error(y, p) == pytest.approx((0.05 + 0.7 + 0.05) / 5)
    # Perfectly calibrated within a bin -> 0.
    assert M.expected_calibration_error([0, 1], [0.5, 0.5]) == pytest.approx(0.0)


def test_churn_metrics_has_base_rate_and_n():
    m = M.churn_metrics([0, 1, 1, 1], [0.2, 0.9, 0.8, 0.7])
    assert m["base_rate"] == 0.75 and m["n"] == 4 and m["auc"] == 1.0


def test_best_f1_threshold_and_metrics_at_it():
    y = [1, 1, 0, 1, 0]
    p = [0.9, 0.8, 0.7, 0.6, 0.1]
    # F1 at t = 0.9, 0.8, 0.7, 0.6, 0.1: 2/4, 4/5, 4/6, 6/7, 6/8 -> 0.6 wins.
    t = M.best_f1_threshold(y, p)
    assert t == pytest.approx(0.6)
    m = M.threshold_metrics(y, p, t)
    assert m["accuracy"] == pytest.approx(4 / 5)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(6 / 7)


def test_threshold_respects_ties_and_no_positive():
    assert M.best_f1_threshold([1, 0, 1], [0.5, 0.5, 0.5]) == 0.5
    assert M.best_f1_threshold([0, 0], [0.3, 0.6]) == 1.0


def test_ranking_metrics_full_ranking():
    targets = ["a", "b", "c", None]  # None: never seen before the cutoff -> a miss
    lists = [["a", "x"], ["x", "y", "b"], ["x"], ["z", None]]
    ranks = M.target_ranks(targets, lists)
    assert ranks.tolist() == [1, 3, 0, 0]
    m = M.ranking_metrics(ranks)
    assert m["hr"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx((1 + 1 / np.log2(4)) / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 4)


def test_only_the_first_ten_count():
    eleven = [f"i{k}" for k in range(11)]
    assert M.target_ranks(["i10", "i9"], [eleven, eleven]).tolist() == [0, 10]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.brier([0, 1], [0.2, 1.3])
    with pytest.raises(ValueError, match="same length"):
        M.roc_auc([0, 1, 1], [0.2, 0.3])
