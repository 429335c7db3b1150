"""Metrics of the benchmark protocol (docs/benchmark.md), as plain functions of arrays.

Churn: ROC-AUC, average precision of the churn class, Brier score, expected calibration
error over 10 equal-width bins, plus accuracy / precision / recall / F1 at a threshold chosen
on a validation cutoff. Rankings: HR@k, NDCG@k, MRR@k over *all* target users (full ranking,
no sampled negatives). Every function takes labels where 1 = churned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

ECE_BINS = 10
RANK_K = 10


def _as_arrays(y_true: Sequence[int], p: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64)
    q = np.asarray(p, dtype=np.float64)
    if y.shape != q.shape or y.ndim != 1:
        raise ValueError(f"labels and probabilities must be 1-d and the same length, got {y.shape} and {q.shape}")
    if np.isnan(q).any() or (q < 0).any() or (q > 1).any():
        raise ValueError("probabilities must lie in [0, 1] with no NaN")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y, q


def roc_auc(y_true: Sequence[int], p: Sequence[float]) -> float:
    """ROC-AUC (ties count one half); NaN when only one class is present."""
    y, q = _as_arrays(y_true, p)
    if len(np.unique(y)) < 2:
        return math.nan
    return float(roc_auc_score(y, q))


def average_precision(y_true: Sequence[int], p: Sequence[float]) -> float:
    """Average precision of the churn class (label 1); NaN when nobody churned."""
    y, q = _as_arrays(y_true, p)
    if y.sum() == 0:
        return math.nan
    return float(average_precision_score(y, q))


def brier(y_true: Sequence[int], p: Sequence[float]) -> float:
    """Mean squared error of the probability."""
    y, q = _as_arrays(y_true, p)
    return float(np.mean((q - y) ** 2)) if len(y) else math.nan


def expected_calibration_error(y_true: Sequence[int], p: Sequence[float], n_bins: int = ECE_BINS) -> float:
    """ECE over `n_bins` equal-width bins of [0, 1]; p = 1 falls in the last bin.

    ECE = sum over bins of (bin size / n) * |mean label - mean p| in the bin.
    """
    y, q = _as_arrays(y_true, p)
    if len(y) == 0:
        return math.nan
    bins = np.minimum((q * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    sum_p = np.bincount(bins, weights=q, minlength=n_bins)
    # |sum_y - sum_p| / n is (n_b / n) * |mean_y - mean_p| without dividing by empty bins.
    return float(np.abs(sum_y - sum_p).sum() / len(y))


def ece_noise_floor(p: Sequence[float], n_draws: int = 200, seed: int = 0) -> dict[str, float]:
    """The ECE a perfectly calibrated model with these probabilities shows at this size: labels drawn as
    Bernoulli(p) (calibrated by construction), scored by `expected_calibration_error`, `n_draws` times.

    What is left above it is systematic (a map, a base rate); a target below it is below the noise of
    the sample it is judged on. Returns the mean and the 90th percentile of the draws.
    """
    q = np.asarray(p, dtype=float)
    rng = np.random.default_rng(seed)
    draws = np.array([expected_calibration_error((rng.random(len(q)) < q).astype(np.int64), q)
                      for _ in range(n_draws)])
    return {"mean": float(draws.mean()), "p90": float(np.quantile(draws, 0.9))}


def churn_metrics(y_true: Sequence[int], p: Sequence[float]) -> dict[str, float]:
    """The protocol's churn metrics in one dict: auc, ap, brier, ece, base_rate, n."""
    y, q = _as_arrays(y_true, p)
    return {
        "auc": roc_auc(y, q),
        "ap": average_precision(y, q),
        "brier": brier(y, q),
        "ece": expected_calibration_error(y, q),
        "base_rate": float(y.mean()) if len(y) else math.nan,
        "n": float(len(y)),
    }


def best_f1_threshold(y_true: Sequence[int], p: Sequence[float]) -> float:
    """The threshold t maximizing F1 of the churn class when predicting churn for p >= t.

    Candidates are the distinct probabilities; on ties the highest threshold wins (fewest
    positives). With no positive label the threshold is 1.0 (predict churn only at p = 1).
    """
    y, q = _as_arrays(y_true, p)
    if len(y) == 0 or y.sum() == 0:
        return 1.0
    order = np.argsort(-q, kind="mergesort")
    q_sorted, y_sorted = q[order], y[order]
    tp = np.cumsum(y_sorted)
    predicted = np.arange(1, len(y) + 1)
    # Only the last index of each run of equal p is a reachable cut (p >= t takes all ties).
    last_of_run = np.r_[q_sorted[1:] != q_sorted[:-1], True]
    tp, predicted, thresholds = tp[last_of_run], predicted[last_of_run], q_sorted[last_of_run]
    f1 = 2 * tp / (predicted + y.sum())
    return float(thresholds[int(np.argmax(f1))])


def threshold_metrics(y_true: Sequence[int], p: Sequence[float], threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of the churn class when predicting churn for p >= threshold."""
    y, q = _as_arrays(y_true, p)
    pred = (q >= threshold).astype(np.int64)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {
        "threshold": float(threshold),
        "accuracy": float((pred == y).mean()) if len(y) else math.nan,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def target_ranks(targets: Sequence[str | None], rankings: Sequence[Sequence[str]], k: int = RANK_K) -> np.ndarray:
    """1-based rank of each target in its ranking's first k entries; 0 when absent (a miss).

    A target of None (never seen at or before the cutoff) is always a miss. Repeated ids in a
    ranking count at their first position.
    """
    if len(targets) != len(rankings):
        raise ValueError(f"{len(targets)} targets but {len(rankings)} rankings")
    ranks = np.zeros(len(targets), dtype=np.int64)
    for i, (target, ranking) in enumerate(zip(targets, rankings)):
        if target is None:
            continue
        for pos, item in enumerate(list(ranking)[:k], start=1):
            if item == target:
                ranks[i] = pos
                break
    return ranks


def ranking_metrics(ranks: Sequence[int]) -> dict[str, float]:
    """HR@k, NDCG@k (one relevant item: 1/log2(rank+1)) and MRR@k from `target_ranks`, plus n."""
    r = np.asarray(ranks, dtype=np.int64)
    if len(r) == 0:
        return {"hr": math.nan, "ndcg": math.nan, "mrr": math.nan, "n": 0.0}
    hit = r > 0
    safe = np.where(hit, r, 1)
    return {
        "hr": float(hit.mean()),
        "ndcg": float(np.where(hit, 1.0 / np.log2(safe + 1), 0.0).mean()),
        "mrr": float(np.where(hit, 1.0 / safe, 0.0).mean()),
        "n": float(len(r)),
    }
