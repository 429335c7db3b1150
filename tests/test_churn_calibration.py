"""The churn map that ships with `calibrate_on: pooled`: pooled Platt, or one that follows a drifting base rate.

Hand-made labelled windows (a model's logit and a buy label per user-window), so the drift is known:
a closed cohort whose buy rate falls steadily as it ages, and a shop whose rate does not move.
"""

import numpy as np

from tools.predictor.calibration import apply_calibration, choose_pooled_map, fit_platt
from tools.predictor.metrics import expected_calibration_error

DAY = 86_400
STRIDE = 14 * DAY
N_WINDOWS = 10
GAP = 3 * STRIDE  # a 30-day horizon on 14-day strides: the newest labelled window is 42 days before now
USERS = 3000


def _windows(drift_per_window: float, seed: int = 0):
    """Labelled windows (oldest first) and the window at `now`; buy logit = the model's z + the cohort's drift."""
    rng = np.random.default_rng(seed)
    cutoffs = np.arange(N_WINDOWS) * STRIDE
    now = cutoffs[-1] + GAP

    def window(t: float) -> tuple[np.ndarray, np.ndarray]:
        z = rng.normal(-1.0, 1.2, USERS)  # what the model says, blind to the cohort's age
        true = z - drift_per_window * t / STRIDE
        return z, (rng.random(USERS) < 1 / (1 + np.exp(-true))).astype(float)

    parts = [window(c) for c in cutoffs]
    z = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return z, y, np.repeat(cutoffs, USERS).astype(float), now, window(now)


def _churn_ece(y: np.ndarray, p_buy: np.ndarray) -> float:
    return expected_calibration_error((1 - y).astype(int), 1 - p_buy)


def test_a_cohort_whose_buy_rate_falls_ships_the_drift_aware_map_and_it_is_better_calibrated_next():
    z, y, cut, now, (z_next, y_next) = _windows(drift_per_window=0.12)
    pooled = fit_platt(z, y)
    shipped, record = choose_pooled_map(z, y, cut, now, pooled)
    assert record["shipped"] == "trend", record["why"]
    assert len(record["judged_windows"]) == 3 and record["gap_days"] == 42
    assert record["oot_ece"]["pooled"] - record["oot_ece"]["trend"] > record["margin"]
    assert shipped["trend_logit_per_day"] < 0  # buying gets rarer as the cohort ages
    ece_pooled = _churn_ece(y_next, apply_calibration(z_next, pooled))
    ece_shipped = _churn_ece(y_next, apply_calibration(z_next, shipped))
    assert ece_shipped < 0.5 * ece_pooled  # the pooled map predicts the windows' average rate, long past
    assert abs((1 - apply_calibration(z_next, shipped)).mean() - (1 - y_next).mean()) < 0.02


def test_a_shop_whose_rate_does_not_move_keeps_the_pooled_map():
    z, y, cut, now, _ = _windows(drift_per_window=0.0, seed=1)
    pooled = fit_platt(z, y)
    shipped, record = choose_pooled_map(z, y, cut, now, pooled)
    assert record["shipped"] == "pooled" and shipped == pooled, record["why"]
    assert set(record["oot_ece"]) == {"pooled", "recent", "trend"}  # both judged, neither beat it by the margin
    # Raw logits that beat every map stay raw (None) unless a drift-aware map beats them out of time.
    kept, record = choose_pooled_map(z, y, cut, now, None)
    assert kept is None and record["pooled_is_raw"]


def test_a_map_that_cannot_be_judged_at_the_distance_it_is_used_stays_pooled():
    z, y, cut, _, _ = _windows(drift_per_window=0.12)
    pooled = fit_platt(z, y)
    far = cut.max() + N_WINDOWS * STRIDE  # a horizon longer than the labelled span: nothing lies that far back
    shipped, record = choose_pooled_map(z, y, cut, far, pooled)
    assert shipped == pooled and record["shipped"] == "pooled" and "no map can be judged" in record["why"]


def test_the_ece_noise_floor_is_what_perfectly_calibrated_labels_show_and_shrinks_with_the_sample():
    """Labels drawn from p itself are calibrated by construction: their ECE is noise only, about
    sqrt(p (1 - p) / n) per bin; four times the users, half the floor. A model whose level is off by 0.02
    sits above the floor by about that much (ECE >= |mean p - rate|)."""
    from tools.predictor.metrics import ece_noise_floor

    rng = np.random.default_rng(0)
    p = rng.uniform(0.80, 0.99, 4000)  # a churn-like spread (CDNOW: 0.82-0.94 at 30 and 90 days)
    small, large = ece_noise_floor(p[:1000]), ece_noise_floor(p)
    assert 0 < large["mean"] < large["p90"] < small["mean"]
    assert 0.4 < large["mean"] / small["mean"] < 0.6
    y = (rng.random(4000) < p).astype(int)
    assert expected_calibration_error(y, p) < 2 * large["p90"]
    shifted = np.clip(p - 0.02, 0, 1)
    assert expected_calibration_error(y, shifted) >= abs(shifted.mean() - y.mean()) > large["p90"]


def test_the_level_shift_of_the_noise_floor_report_keeps_the_ranking_and_hits_the_rate():
    from tools.predictor.bench_calibration import _shift_to_rate

    p = np.random.default_rng(1).uniform(0.6, 0.99, 500)
    q = _shift_to_rate(p, 0.7)
    assert abs(q.mean() - 0.7) < 1e-9 and (np.argsort(q, kind="stable") == np.argsort(p, kind="stable")).all()
