"""Lifecycle stages on hand-made histories: each rule of tools/predictor/lifecycle.py, one customer each."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from tools.predictor.lifecycle import (lapse_labels, lifecycle_frame, p_lapse, stage_counts, stage_reasons)

CUTOFF = datetime(2024, 6, 30, 23, 59, 59)
END = pd.Timestamp("2024-06-30")


def _orders(**days_ago: list[int]) -> pd.DataFrame:
    rows = [(user, END - pd.Timedelta(days=d) + pd.Timedelta(hours=10), "buy", "i1", "c1", 1, 10.0)
            for user, ago in days_ago.items() for d in ago]
    return pd.DataFrame(rows, columns=["user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"])




@pytest.fixture()
def events() -> pd.DataFrame:
    frame = _orders(steady=[42, 32, 22, 12, 2], slipping=[44, 34, 24, 14, 9], overdue=[100, 80, 60, 40, 5 + 35],
                    gone=[300, 280, 260, 200], newbie=[3], oneoff=[120])
    browse = pd.DataFrame([("browser", END + pd.Timedelta(hours=9), "view", "i1", "c1", 1, np.nan)],
                          columns=frame.columns)
    late = _orders(steady=[-3], slipping=[-20])  # after the cutoff: the steady customer orders again
    return pd.concat([frame, browse, late], ignore_index=True)


def test_each_rule_on_a_hand_made_history(events):
    st = lifecycle_frame(events, CUTOFF, 7)
    assert st.loc["steady", "stage"] == "active" and st.loc["steady", "usual_gap_days"] == 10
    assert st.loc["slipping", "stage"] == "lapsing"  # 9 days since, gap 8.75: overdue within the week
    assert st.loc["overdue", "stage"] == "at_risk"  # 40 days since a 20-day gap: 2x
    assert st.loc["overdue", "days_overdue"] == 20
    assert st.loc["gone", "stage"] == "lost"  # 200 days since a 33-day gap
    assert st.loc["newbie", "stage"] == "new" and np.isnan(st.loc["newbie", "usual_gap_days"])
    assert st.loc["newbie", "gap_source"] == "shop"
    assert st.loc["browser", "stage"] == "visitor"
    # One order 120 days ago, against the shop's usual gap (the median of the customers' own gaps).
    shop_gap = st.attrs["shop_gap_days"]
    assert shop_gap == pytest.approx(np.median([10, 8.75, 20, 100 / 3]))
    assert st.loc["oneoff", "stage"] == "lost" and 120 / shop_gap >= 3
    assert stage_counts(st) == {"new": 1, "active": 1, "lapsing": 1, "at_risk": 1, "lost": 2}


def test_a_customer_back_after_a_lapse_is_measured_against_the_gap_they_came_back_from():
    # Every 5 days from 160 to 60 days ago (usual gap 7 after the floor), then one order 4 days ago:
    # lost before that order (56 days = 8 gaps). Against the old rhythm they would be "due this week".
    heavy = list(range(60, 161, 5))
    events = _orders(back=[4, *heavy], slow=[6, 20, *[d + 16 for d in heavy]])  # slow: latest gap 14, under 2 gaps
    st = lifecycle_frame(events, CUTOFF, 7)
    assert st.loc["back", "gap_source"] == "latest" and st.loc["back", "gap_days"] == 56
    assert st.loc["back", "stage"] == "active" and not st.loc["back", "overdue_by_end"]
    assert p_lapse(st, pd.Series(0.9, index=st.index))["back"] == 0.0  # not on this week's churn list
    assert "latest 56-day gap" in stage_reasons(st.loc["back"])[0]
    # A latest gap under 3 usual gaps keeps the old rhythm: still due within the week.
    assert st.loc["slow", "gap_source"] == "own" and st.loc["slow", "stage"] == "lapsing"
    # Without the comeback order the same customer is lost (60 days = 8.6 gaps).
    before = lifecycle_frame(events[events["ts"] < END - pd.Timedelta(days=5)], datetime(2024, 6, 25), 7)
    assert before.loc["back", "stage"] == "lost" and before.loc["back", "gap_source"] == "own"


def test_a_longer_horizon_turns_active_customers_into_lapsing_ones(events):
    week, month = lifecycle_frame(events, CUTOFF, 7), lifecycle_frame(events, CUTOFF, 30)
    assert week.loc["steady", "stage"] == "active" and month.loc["steady", "stage"] == "lapsing"


def test_p_lapse_is_zero_for_those_who_cannot_lapse_and_absent_for_the_lost(events):
    st = lifecycle_frame(events, CUTOFF, 7)
    p = p_lapse(st, pd.Series(0.8, index=st.index))
    assert p["steady"] == 0.0  # cannot become overdue within 7 days
    assert p["slipping"] == 0.8 and p["overdue"] == 0.8
    assert np.isnan(p["gone"]) and np.isnan(p["browser"])


def test_realized_lapse_labels(events):
    st = lifecycle_frame(events, CUTOFF, 30)
    labels = lapse_labels(st, events, CUTOFF, 30)
    assert "gone" not in labels.index and "browser" not in labels.index
    assert labels["steady"] == 0  # ordered again 3 days after the cutoff
    assert labels["slipping"] == 0  # ordered 20 days after the cutoff
    assert labels["overdue"] == 1
    assert labels["newbie"] == 1  # no order by day 30, 33 days after one order against a 15-day shop gap


def test_reasons_say_the_rhythm_and_what_moves_the_stage(events):
    st = lifecycle_frame(events, CUTOFF, 7)
    newbie = stage_reasons(st.loc["newbie"])
    assert "single order" in newbie[0] and "no usual gap of their own" in newbie[0]
    overdue = stage_reasons(st.loc["overdue"])
    assert overdue[0].startswith("overdue: 40 days since the last order, 2.0x the usual 20-day gap")
    assert "an order now brings them back" in overdue[1] and "2024-07-20" in overdue[1]
    assert "lost since" in stage_reasons(st.loc["gone"])[1]
    slipping = stage_reasons(st.loc["slipping"])
    assert slipping[0] == "9 days since the last order, a little past the usual 9-day gap"  # 9 > 8.75, not yet 1.5x
    assert "an order before" in slipping[1]
    assert stage_reasons(st.loc["steady"])[0] == "2 days since the last order, within the usual 10-day gap"
    # A visitor has no order to count days from: a reason, not a NaN-to-int crash (explain_user of a visitor).
    assert stage_reasons(st.loc["browser"]) == ["no order yet: a visitor, not a customer"]


def test_calibration_maps_lapse_probabilities_to_the_rate_seen_before_and_keeps_zeros():
    from tools.predictor.lifecycle import LAPSE_FEATURES, LapseCalibration

    rng = np.random.default_rng(0)
    ids = [f"u{i}" for i in range(2000)]
    p_then = pd.Series(rng.uniform(0.05, 0.95, 2000), index=ids)
    quiet = pd.Series(rng.integers(0, 2, 2000), index=ids)  # half of them stopped browsing
    # The realized rate: half of what the model said for those who browse, all but sure for the quiet ones.
    lapsed = pd.Series((rng.uniform(size=2000) < np.where(quiet == 1, 0.95, p_then / 2)).astype(int), index=ids)

    def feats(p, quiet_flags):
        frame = pd.DataFrame(0.0, index=p.index, columns=list(LAPSE_FEATURES))
        frame["logit_p"] = np.log(p.clip(0.01, 0.99) / (1 - p.clip(0.01, 0.99)))
        frame["log_days_since_event"] = quiet_flags.astype(float) * 3
        return frame

    calib = LapseCalibration().fit(p_then, lapsed, feats(p_then, quiet))
    now = pd.Series([0.0, 0.6, 0.6, np.nan], index=["a", "b", "c", "d"])
    out = calib.apply(now, feats(now.fillna(0.5), pd.Series([0, 0, 1, 0], index=now.index)))
    assert out["a"] == 0.0 and np.isnan(out["d"])  # cannot lapse stays 0; lost / visitor stays NaN
    assert out["b"] == pytest.approx(0.3, abs=0.08) and out["c"] > 0.85  # the same P(no order), told apart
    few = LapseCalibration().fit(p_then.head(10), lapsed.head(10), feats(p_then, quiet).head(10))
    assert not few.fitted and few.apply(now, feats(now.fillna(0.5), quiet.head(4))).equals(now)


def test_calibrated_p_lapse_fits_on_the_window_before_the_cutoff_never_on_it(events):
    from tools.predictor.lifecycle import calibrated_p_lapse

    asked = []

    def p_no_order_at(day):
        asked.append(pd.Timestamp(day))
        return pd.Series(0.8, index=["steady", "slipping", "overdue", "gone", "newbie", "oneoff", "browser"])

    p, notes = calibrated_p_lapse(events, CUTOFF, 7, p_no_order_at)
    assert asked[0] == pd.Timestamp(CUTOFF)  # scored at c; the fit would be at c - 7 d
    assert not notes["fitted"] and "fewer than 50" in notes["why"]  # six customers: left as they are
    assert notes["fitted_at"] == "2024-06-23" and p["slipping"] == 0.8 and np.isnan(p["gone"])
    late, late_notes = calibrated_p_lapse(events, CUTOFF, 7, lambda day: "no scores then" if day != CUTOFF else
                                          p_no_order_at(day))
    assert not late_notes["fitted"] and late_notes["why"] == "no scores then" and late.equals(p)


def test_calibration_windows_step_back_from_c_minus_h_and_need_history(events):
    from tools.predictor.lifecycle import CALIBRATION_STEP_DAYS, calibration_windows

    days = calibration_windows(events, CUTOFF, 30)
    assert [pd.Timestamp(d) for d in days] == [pd.Timestamp(CUTOFF) - pd.Timedelta(days=30 + k * CALIBRATION_STEP_DAYS)
                                               for k in range(4)]
    young = events[events["ts"] > END - pd.Timedelta(days=50)]  # 50 days of data: only c - 7 d has 28 days before it
    assert [pd.Timestamp(d).date() for d in calibration_windows(young, CUTOFF, 7)] == [datetime(2024, 6, 23).date()]
    assert calibration_windows(young, CUTOFF, 30) == []


def _rhythmic_shop(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """n customers ordering every `gap` days since day 0 who each stop at a random day (some never)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        gap, stop = int(rng.integers(7, 21)), int(rng.integers(60, 400))
        for day in range(int(rng.integers(0, gap)), 200, gap):
            if day < stop:
                rows.append((f"u{u}", END - pd.Timedelta(days=150) + pd.Timedelta(days=day, hours=10), "buy", "i1",
                             "c1", 1, 10.0))
    return pd.DataFrame(rows, columns=["user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"])


def test_calibrated_p_lapse_pools_the_past_windows_and_skips_those_without_scores():
    from tools.predictor.lifecycle import calibrated_p_lapse

    shop = _rhythmic_shop()
    asked = []

    def p_no_order_at(day):
        asked.append(pd.Timestamp(day).date().isoformat())
        if pd.Timestamp(day) == pd.Timestamp(CUTOFF) - pd.Timedelta(days=35):
            return "no scores as of then"
        return pd.Series(0.5, index=shop["user_id"].unique())

    p, notes = calibrated_p_lapse(shop[shop["ts"] <= CUTOFF], CUTOFF, 7, p_no_order_at)
    assert asked == ["2024-06-30", "2024-06-23", "2024-06-09", "2024-05-26", "2024-05-12"]  # never c itself to fit
    assert notes["fitted"] and notes["windows"] == ["2024-06-23", "2024-06-09", "2024-05-12"]
    assert notes["skipped"] == ["no scores as of then"] and notes["outcomes"] > 100
    live = p.dropna()
    assert ((live == 0) | ((live > 0) & (live < 1))).all() and (live != 0.5).any()  # mapped, zeros kept


def test_recency_weights_pull_the_map_to_the_newest_window_when_the_lapse_rate_drifts():
    from tools.predictor.lifecycle import CALIBRATION_HALF_LIFE_DAYS, LapseCalibration, _pooled, window_weights

    days = [datetime(2024, 6, 23), datetime(2024, 6, 9), datetime(2024, 5, 26), datetime(2024, 5, 12)]
    assert window_weights(days, 14.0) == [1.0, 0.5, 0.25, 0.125]  # latest first; one step = one half-life
    assert window_weights(days, None) == [1.0] * 4 and CALIBRATION_HALF_LIFE_DAYS is None  # shipped since Round 8
    rng = np.random.default_rng(2)
    # The same P(no order) = 0.5 in every window, but the newest window lapsed at 0.8, the older ones at 0.2.
    parts = []
    for k, rate in enumerate([0.8, 0.2, 0.2, 0.2]):
        ids = [f"w{k}u{i}" for i in range(1000)]
        p = pd.Series(rng.uniform(0.4, 0.6, 1000), index=ids)
        feats = pd.DataFrame({"logit_p": np.log(p / (1 - p))}, index=ids)
        parts.append((p, pd.Series((rng.uniform(size=1000) < rate).astype(int), index=ids), feats))
    now = pd.Series([0.5], index=["x"])
    x = pd.DataFrame({"logit_p": [0.0]}, index=["x"])
    alike = LapseCalibration("logistic", ("logit_p",)).fit(*_pooled(parts, window_weights(days, None)))
    recent = LapseCalibration("logistic", ("logit_p",)).fit(*_pooled(parts, window_weights(days, 14.0)))
    assert alike.apply(now, x)["x"] == pytest.approx(0.35, abs=0.04)  # (0.8 + 3 x 0.2) / 4
    assert recent.apply(now, x)["x"] == pytest.approx((0.8 + 0.5 * 0.2 + 0.25 * 0.2 + 0.125 * 0.2) / 1.875, abs=0.04)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_platt_and_isotonic_maps_learn_the_level_from_p_alone(method):
    from tools.predictor.lifecycle import LapseCalibration

    rng = np.random.default_rng(1)
    ids = [f"u{i}" for i in range(3000)]
    p = pd.Series(rng.uniform(0.05, 0.95, 3000), index=ids)
    lapsed = pd.Series((rng.uniform(size=3000) < p / 2).astype(int), index=ids)  # the model says twice the rate
    calib = LapseCalibration(method).fit(p, lapsed, pd.DataFrame(index=ids))
    out = calib.apply(pd.Series([0.0, 0.8, np.nan], index=["a", "b", "c"]), pd.DataFrame(index=["a", "b", "c"]))
    assert out["a"] == 0.0 and np.isnan(out["c"]) and out["b"] == pytest.approx(0.4, abs=0.07)
    with pytest.raises(ValueError, match="choose one of logistic, platt, isotonic"):
        LapseCalibration("beta")


def test_a_bad_review_of_the_last_order_and_silence_since_is_lost_after_a_bad_experience():
    frame = _orders(burnt=[40, 30, 20, 10, 5], back=[40, 30, 20, 10, 5], happy=[40, 30, 20, 10, 5],
                    early=[40, 30, 20, 10, 5])
    visit = pd.DataFrame([("back", END - pd.Timedelta(days=2), "view", "i1", "c1", 1, np.nan)], columns=frame.columns)
    events = pd.concat([frame, visit], ignore_index=True)
    reviews = pd.DataFrame({"user_id": ["burnt", "back", "happy", "early", "burnt"],
                            "ts": [END - pd.Timedelta(days=3), END - pd.Timedelta(days=3), END - pd.Timedelta(days=3),
                                   END - pd.Timedelta(days=12), END + pd.Timedelta(days=3)],
                            "rating": [1, 2, 5, 1, 1]})
    st = lifecycle_frame(events, CUTOFF, 7, reviews)
    # 1 star for the last order (5 days ago), nothing since: lost, though the order rhythm looks on time.
    assert st.loc["burnt", "stage"] == "lost" and st.loc["burnt", "bad_rating"] == 1
    assert "lost after a bad experience: rated the last order 1 star on 2024-06-27" in stage_reasons(st.loc["burnt"])[1]
    assert st.loc["back", "stage"] == "active"  # 2 stars, but visited since: not gone
    assert st.loc["happy", "stage"] == "active"  # 5 stars
    assert st.loc["early", "stage"] == "active"  # the 1-star review was of an earlier order
    without = lifecycle_frame(events, CUTOFF, 7)  # no reviews (CDNOW, Taobao): the rule is silent
    assert (without["stage"] == "active").all() and without["bad_rating"].isna().all()
    later = reviews.assign(ts=END + pd.Timedelta(days=3))  # written after the cutoff: not known yet
    assert lifecycle_frame(events, CUTOFF, 7, later).loc["burnt", "stage"] == "active"


def test_lapse_population_is_the_customers_a_calibration_window_reads(events):
    from tools.predictor.lifecycle import lapse_population

    # slipping (overdue within the week) and overdue (at risk); not steady (on rhythm for 7 more days),
    # the newbie (3 days after a first order), gone and oneoff (lost), the browser (no order).
    assert sorted(lapse_population(events, CUTOFF, 7)) == ["overdue", "slipping"]
    assert sorted(lapse_population(events, CUTOFF, 30)) == ["newbie", "overdue", "slipping", "steady"]


def test_the_nowcast_moves_the_30_day_level_with_the_lapses_of_the_last_week():
    from tools.predictor.lapse_signals import SIGNAL_COLUMNS
    from tools.predictor.lifecycle import LAPSE_FEATURES, calibrated_p_lapse, nowcast_shift

    shop = _rhythmic_shop(n=400, seed=3)
    # A bad last week: half the customers place no order in the 7 days before the cutoff.
    quiet = shop["user_id"].isin([f"u{u}" for u in range(0, 400, 2)])
    last_week = (shop["ts"] > END - pd.Timedelta(days=6)) & (shop["ts"] <= pd.Timestamp(CUTOFF))
    shop = shop[~(quiet & last_week) & (shop["ts"] <= pd.Timestamp(CUTOFF))]

    def p_no_order_at(day):
        return pd.Series(0.5, index=shop["user_id"].unique())

    plain, notes = calibrated_p_lapse(shop, CUTOFF, 30, p_no_order_at)
    moved, moved_notes = calibrated_p_lapse(shop, CUTOFF, 30, p_no_order_at, nowcast_days=7)
    shift = moved_notes["nowcast_logit_shift"]
    assert shift > 0.5 and "nowcast_logit_shift" not in notes  # the week's lapse rate rose: the level follows
    windows = [pd.Timestamp(d).to_pydatetime() for d in notes["windows"]]
    assert nowcast_shift(shop, CUTOFF, windows, [1.0] * len(windows), 7) == pytest.approx(shift, abs=1e-3)
    assert moved.dropna().mean() > plain.dropna().mean()
    assert (moved[plain == 0] == 0).all()  # a customer who cannot lapse stays at 0
    seven, seven_notes = calibrated_p_lapse(shop, CUTOFF, 7, p_no_order_at, nowcast_days=7)
    assert "nowcast_logit_shift" not in seven_notes  # its newest window already is c - 7 d
    # The review signals as features: no reviews, so they read 0 and the map still fits.
    with_signals, signal_notes = calibrated_p_lapse(shop, CUTOFF, 30, p_no_order_at,
                                                    features=LAPSE_FEATURES + SIGNAL_COLUMNS)
    assert signal_notes["fitted"] and with_signals.dropna().between(0, 1).all()


def test_the_activity_change_joins_the_map_and_stays_finite_on_orders_only_data():
    # CDNOW-like: orders only. The activity change then reads orders (lapse_signals.activity_change): the
    # map still fits, and every feature is a number (D2 <= 0: no order follows the last one).
    from tools.predictor.lapse_signals import ACTIVITY_COLUMNS
    from tools.predictor.lifecycle import LAPSE_FEATURES, calibrated_p_lapse, lapse_features

    shop = _rhythmic_shop(n=400, seed=3)
    shop = shop[shop["ts"] <= pd.Timestamp(CUTOFF)]
    columns = tuple(dict.fromkeys(LAPSE_FEATURES + ACTIVITY_COLUMNS))  # D1 is one of the shipped features
    p, notes = calibrated_p_lapse(shop, CUTOFF, 30, lambda day: pd.Series(0.5, index=shop["user_id"].unique()),
                                  features=columns)
    assert notes["fitted"] and p.dropna().between(0, 1).all()
    live = p.dropna()
    features = lapse_features(lifecycle_frame(shop, CUTOFF, 30), shop, CUTOFF, live, columns=columns)
    assert list(features.columns) == list(columns) and np.isfinite(features.to_numpy()).all()
    assert (features["activity_since_order"] <= 0).all() and features["activity_since_order"].lt(0).any()


def test_a_clipped_feature_with_a_tight_prior_cannot_carry_a_new_larger_value_far():
    # Fitted where the exposure runs 0..1 and lapses rise with it; scored at 5 (never seen): the clip
    # reads 5 as 1, and a tight prior on its coefficient keeps the map near the exposure-blind one.
    from tools.predictor.lifecycle import LapseCalibration
    rng = np.random.default_rng(0)
    ids = pd.Index([f"u{i}" for i in range(3000)])
    p = pd.Series(rng.uniform(0.2, 0.8, len(ids)), index=ids)
    exposure = pd.Series(np.where(rng.random(len(ids)) < 0.1, rng.uniform(0, 1, len(ids)), 0.0), index=ids)
    lapsed = pd.Series((rng.random(len(ids)) < np.clip(p + 0.4 * exposure, 0, 1)).astype(int), index=ids)
    feats = pd.DataFrame({"logit_p": np.log(p / (1 - p)), "delivery_exposure": exposure})
    cols = ("logit_p", "delivery_exposure")
    now = pd.Series([0.5, 0.5], index=["x", "y"])
    now_feats = pd.DataFrame({"logit_p": [0.0, 0.0], "delivery_exposure": [1.0, 5.0]}, index=now.index)
    free = LapseCalibration("logistic", cols).fit(p, lapsed, feats).apply(now, now_feats)
    clipped = LapseCalibration("logistic", cols, clip_to_fit=("delivery_exposure",)).fit(p, lapsed, feats)
    assert clipped.upper["delivery_exposure"] == pytest.approx(exposure.max())
    capped = clipped.apply(now, now_feats)
    assert free["y"] > capped["y"] + 0.05 and capped["y"] == pytest.approx(capped["x"], abs=1e-3)
    blind = LapseCalibration("logistic", ("logit_p",)).fit(p, lapsed, feats).apply(now, now_feats)
    tight = LapseCalibration("logistic", cols, ("delivery_exposure",), {"delivery_exposure": 0.01}).fit(
        p, lapsed, feats).apply(now, now_feats)
    assert abs(tight["y"] - blind["y"]) < 0.01 < capped["y"] - blind["y"]
    with pytest.raises(ValueError, match="does not read"):
        LapseCalibration("logistic", ("logit_p",), prior_sd={"delivery_exposure": 0.5})
