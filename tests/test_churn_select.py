"""Who judges the churn choice (tools/predictor/churn_select.py): held-out users judge the network, every
user of the windows judges the baselines among themselves.

A synthetic shop of 400 users built here (tests/predictor_shop.py) with real baselines fitted on it; the
"network" is a logit made here, so whether it wins is known: 40 held-out users per window, as a small shop.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predictor_shop import CUTOFF, make_shop
from tools.predictor.calibration import logit
from tools.predictor.churn_select import (TRANSFORMER, _auc, _paired_se, _weighted_auc, apply_churn_choice,
                                          baseline_scores, churn_labels, fit_chosen_baselines, select_for_horizon)

H = 14.0
HELD_OUT = 40


@pytest.fixture(scope="module")
def shop() -> pd.DataFrame:
    return make_shop(n_users=400, seed=3)


def _windows(shop: pd.DataFrame, network: str) -> list[dict]:
    """3 validation windows, newest first, 7 days apart, each (v, v + H] inside the past; the first 40 users
    (by id) are the held-out ones. `network`: "bad" ranks against recency, "good" reads the labels, blurred."""
    out, rng = [], np.random.default_rng(0)
    for k in range(3):
        v = (CUTOFF - pd.Timedelta(days=H + 7 * k)).to_pydatetime()
        truth = churn_labels(shop, v, H)
        users = np.sort(truth.index.to_numpy())[:HELD_OUT]
        recency = baseline_scores(shop, v, H, names=("recency",))[0]["recency"].reindex(users).to_numpy()
        z = -logit(recency) if network == "bad" else 2.0 * truth.reindex(users).to_numpy() + rng.normal(size=len(users))
        out.append({"cutoff": v, "user_ids": users, "churn": truth.reindex(users).to_numpy(), "transformer_logit": z})
    return out


def test_a_network_that_loses_leaves_the_choice_among_baselines_to_every_user_of_the_windows(shop):
    choice = select_for_horizon(shop, H, _windows(shop, "bad"))
    held = choice["held_out"]
    assert not held["candidates"][TRANSFORMER]["tie"] and held["chosen"] != TRANSFORMER  # it lost on held-out users
    assert choice["scored_on"] == "all users" and choice["n"] == 3 * HELD_OUT
    assert choice["n_scored"] > 6 * choice["n"]  # the same 3 windows, every user of them
    assert TRANSFORMER not in choice["candidates"] and choice["chosen"] != TRANSFORMER
    assert "chosen among the baselines on all users" in choice["reason"], choice["reason"]
    # The larger sample is the point: the same pairs' standard errors shrink.
    pairs = [n for n in held["candidates"] if n in choice["candidates"] and n not in (held["best_auc"],
                                                                                       choice["best_auc"])]
    assert pairs
    for name in pairs:
        assert choice["candidates"][name]["se_vs_best"] < held["candidates"][name]["se_vs_best"], name

    # What ships is scored the app's way: the chosen baseline(s) fitted at the training cutoff.
    fitted = fit_chosen_baselines(choice, shop, CUTOFF)
    users = np.array(sorted(shop.loc[shop["ts"] <= CUTOFF, "user_id"].unique()))
    p, why = apply_churn_choice(choice, fitted, shop, CUTOFF, users, np.zeros(len(users)), np.full(len(users), 0.5))
    assert why is None and np.all((p > 0) & (p < 1)) and p.std() > 0.01


def test_a_network_in_the_tie_is_still_judged_on_held_out_users_only(shop):
    choice = select_for_horizon(shop, H, _windows(shop, "good"))
    assert choice["candidates"][TRANSFORMER]["tie"]
    assert choice["scored_on"] == "held-out users" and "held_out" not in choice and "n_scored" not in choice


def test_the_bootstrap_auc_by_weights_equals_the_auc_of_the_resampled_rows():
    rng = np.random.default_rng(0)
    score = np.round(rng.normal(size=300), 1)  # many ties
    y = (score + rng.normal(size=300) > 0.5).astype(np.int64)
    _, groups = np.unique(score, return_inverse=True)
    for _ in range(5):
        i = rng.integers(0, 300, 300)
        w = np.bincount(i, minlength=300).astype(float)
        assert _weighted_auc(y.astype(float), groups, int(groups.max()) + 1, w) == pytest.approx(_auc(y[i], score[i]),
                                                                                                abs=1e-12)
    assert np.isnan(_weighted_auc(np.zeros(300), groups, int(groups.max()) + 1, np.ones(300)))
    assert 0 < _paired_se(y, score, -score) < 0.2


def test_a_stack_of_baselines_that_beats_each_of_them_ships_where_the_held_out_rule_would_ship_it():
    """Two baselines, each seeing half of what predicts churn (4,000 user-windows made here): their stack beats
    both by far more than one SE. Choosing among baselines after the network lost, the stack ships, as the
    held-out rule lets it; on the tiny-shop fallback (no stack) the better single baseline ships, not a fixed one."""
    from tools.predictor.churn_select import STACK, choose_among_baselines

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=4000), rng.normal(size=4000)
    y = (a + b + 0.5 * rng.normal(size=4000) > 1.5).astype(np.int64)
    logits = {"recency": b + 0.3 * rng.normal(size=4000), "lightgbm": a}
    age = np.arange(4000) % 3
    fields, how = choose_among_baselines(logits, y, age, stack_ships=True)
    cand = fields["candidates"]
    assert fields["chosen"] == STACK and fields["stack"]["models"] == ["recency", "lightgbm"], how
    assert cand[STACK]["auc"] > max(cand["recency"]["auc"], cand["lightgbm"]["auc"]) + 0.05
    single, how = choose_among_baselines(logits, y, age, stack_ships=False)
    assert single["chosen"] == "lightgbm" and "does not ship on this path" in how  # the better one of the two
    assert single["candidates"]["lightgbm"]["auc"] > single["candidates"]["recency"]["auc"]
