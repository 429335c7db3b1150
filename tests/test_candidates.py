"""How the re-ranking blend is chosen on validation (tools/predictor/candidates.py::fit_blend).

The candidate tables are built by hand so that each user's outcome under each blend is known:
- "hits": the user's own top id is the target; the softmax ranks it second (0.5 vs 1.0);
- "misses": the target is no candidate at all (NDCG 0 under every blend);
- "fixed": own ranks the target second (0.9 vs 1.0), the softmax ranks it first, so own + softmax
  puts it first;
- "hurt": own ranks the target first (1.0 vs 0.9), the softmax proposes only the other id, so
  own + softmax puts it second.
Own alone scores 1 / 0 / 0.63 / 1; own + softmax 1 / 0 / 1 / 0.63.
"""

from __future__ import annotations

import numpy as np
import pytest

from tools.predictor.candidates import GENERATORS, CandidateTable, fit_blend, weight_grid

TARGET, OTHER = 10, 11
OWN, SOFTMAX = GENERATORS.index("own"), GENERATORS.index("softmax")


def _table(n_hits: int, n_misses: int, n_fixed: int, n_hurt: int = 0) -> tuple[CandidateTable, np.ndarray]:
    n = n_hits + n_misses + n_fixed + n_hurt
    ids = np.tile([OTHER, TARGET], (n, 1))  # ties (a generator with no scores) rank the other id first
    scores = np.zeros((n, 2, len(GENERATORS)))
    hits, fixed, hurt = slice(0, n_hits), slice(n_hits + n_misses, n - n_hurt), slice(n - n_hurt, n)
    t, o = 1, 0  # slots of the target and the other id
    scores[hits, t, OWN], scores[hits, t, SOFTMAX], scores[hits, o, SOFTMAX] = 1.0, 0.5, 1.0
    scores[fixed, t, OWN], scores[fixed, o, OWN], scores[fixed, t, SOFTMAX] = 0.9, 1.0, 1.0
    scores[hurt, t, OWN], scores[hurt, o, OWN], scores[hurt, o, SOFTMAX] = 1.0, 0.9, 1.0
    targets = np.full(n, TARGET)
    targets[n_hits:n_hits + n_misses] = 99  # no candidate
    return CandidateTable(ids, scores, np.zeros((n, 2))), targets


def test_a_blend_that_helps_a_few_users_and_hurts_none_is_kept():
    # 5 % of the users gain 0.37 each: 0.018 on the mean, within the 0.020 error of one mean over
    # 600 users who hit or miss, but six paired standard errors (0.003) above "own alone".
    table, targets = _table(300, 270, 30)
    chosen = fit_blend([({0.0: table}, targets)], has_softmax=True)
    weights = dict(zip(GENERATORS, chosen["weights"]))
    assert weights["own"] > 0 and weights["softmax"] > 0, chosen
    assert chosen["ndcg"] == pytest.approx(330 / 600, abs=1e-4)
    assert chosen["alone"]["own"] == pytest.approx((300 + 30 / np.log2(3)) / 600, abs=1e-4)
    assert chosen["ndcg"] >= chosen["alone"]["own"]


def test_a_gain_that_noise_can_explain_keeps_own_recent_ids_alone():
    # 12 users gain what 10 others lose: the paired difference is within one standard error of 0.
    table, targets = _table(300, 278, 12, 10)
    chosen = fit_blend([({0.0: table}, targets)], has_softmax=True)
    assert dict(zip(GENERATORS, chosen["weights"]))["softmax"] == 0, chosen
    assert chosen["ndcg"] == pytest.approx(chosen["alone"]["own"], abs=1e-4)
    assert chosen["best_ndcg"] > chosen["ndcg"]
    assert chosen["ndcg"] >= chosen["best_ndcg"] - chosen["standard_error"] - 1e-4


def test_validation_gains_rank_ties_as_the_shipped_list_does():
    # Before: a tie counted in the target's favour, so `cooc` (no scores here) "found" every target.
    table, targets = _table(300, 270, 30, 10)
    for weights in weight_grid(has_softmax=True):
        ranked = table.rank(weights, 10)
        at = np.where(ranked == targets[:, None], np.arange(ranked.shape[1])[None], 99).min(axis=1)
        expected = np.where(at < 10, 1.0 / np.log2(np.minimum(at, 10) + 2.0), 0.0)
        np.testing.assert_allclose(table.gains(weights, targets), expected, err_msg=str(weights))
