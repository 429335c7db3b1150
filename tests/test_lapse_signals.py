"""The review signals of tools/predictor/lapse_signals.py on hand-made reviews and orders."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from tools.predictor.lapse_signals import (ACTIVITY_EPS_PER_DAY, activity_change, delivery_complaints,
                                           lapse_signals)

CUTOFF = datetime(2024, 6, 30, 23, 59, 59)
END = pd.Timestamp("2024-06-30")


def _reviews(rows: list[tuple[str, int, int, str]]) -> pd.DataFrame:
    """rows: (user_id, days before the cutoff, rating, text)."""
    return pd.DataFrame([{"review_id": f"R{i}", "user_id": u, "item_id": "i1", "ts": END - pd.Timedelta(days=d)
                          + pd.Timedelta(hours=12), "rating": r, "title": "", "text": t}
                         for i, (u, d, r, t) in enumerate(rows)])


def _orders(**days_ago: list[int]) -> pd.DataFrame:
    rows = [(user, END - pd.Timedelta(days=d) + pd.Timedelta(hours=10), "buy", "i1", "c1", 1, 10.0)
            for user, ago in days_ago.items() for d in ago]
    return pd.DataFrame(rows, columns=["user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"])


def test_a_delivery_complaint_names_delivery_at_three_stars_or_fewer():
    reviews = _reviews([("a", 1, 1, "Arrived two weeks late and melted."), ("b", 1, 2, "It took 12 days to come"),
                        ("c", 1, 5, "Arrived quickly, great shipping"), ("d", 1, 1, "Stale and rancid"),
                        ("e", 1, 2, "Too much chocolate"), ("f", 1, 3, "The box was damaged")])
    assert delivery_complaints(reviews).tolist() == [True, True, False, False, False, True]


def test_bad_experience_lately_reads_the_last_30_days_only():
    reviews = _reviews([("recent_low", 5, 2, "Not good"), ("old_low", 40, 1, "Not good"),
                        ("recent_late", 3, 3, "Delivery was delayed"), ("happy", 2, 5, "Lovely"),
                        ("future", -2, 1, "Awful")])  # after the cutoff: not known yet
    users = pd.Index(["recent_low", "old_low", "recent_late", "happy", "future", "silent"])
    signals = lapse_signals(_orders(happy=[2]), reviews, CUTOFF, users)
    assert signals["bad_lately"].to_dict() == {"recent_low": 1.0, "old_low": 0.0, "recent_late": 1.0, "happy": 0.0,
                                               "future": 0.0, "silent": 0.0}


def test_a_customer_who_ordered_during_a_spell_of_late_deliveries_carries_it():
    # The shop's reviews: one a day for 90 days, a delivery complaint on every fourth day (25 %), except
    # 10-20 days before the cutoff, when every one complains. "spell" ordered 15 days ago (in it), twice;
    # "calm" ordered 50 days ago and 3 days ago (outside it); "none" ordered nothing in 30 days.
    rows = [("shop", d, 1 if (10 <= d <= 20 or d % 4 == 0) else 5,
             "Arrived late" if (10 <= d <= 20 or d % 4 == 0) else "Tasty") for d in range(0, 90)]
    reviews = _reviews(rows)
    events = _orders(spell=[15, 14], calm=[50, 1], none=[45])
    signals = lapse_signals(events, reviews, CUTOFF, pd.Index(["spell", "calm", "none"]))
    base = delivery_complaints(reviews).mean()
    # 15 days ago: the reviews of days 8..22 back, 11 complaints of 15 plus one of the other 4 (day 8)
    assert signals.loc["spell", "delivery_exposure"] == pytest.approx((12 / 15 - base) + (12 / 15 - base), abs=0.07)
    assert signals.loc["spell", "delivery_exposure"] > 0.9
    assert signals.loc["calm", "delivery_exposure"] < 0.1 and signals.loc["none", "delivery_exposure"] == 0.0
    # the bounded flag: 12 complaints of 15 at a shop share near 0.35 is far past the 1 % level
    assert signals["delivery_spell"].to_dict() == {"spell": 1.0, "calm": 0.0, "none": 0.0}


def test_a_spell_is_flagged_only_when_chance_cannot_explain_it():
    # 25 % of the reviews complain, one a day; near "mild" (ordered 15 days ago) 5 of 15 complain
    # (P(X >= 5 | 15, ~0.25) is about 0.3: chance); near "strong" (ordered 45 days ago, now outside
    # the 30 days) all complain, so "strong" is not flagged either; "both" ordered on both days.
    def complains(d: int) -> bool:
        return 40 <= d <= 50 or (not 40 <= d <= 50 and d % 4 == 0) or d in (13, 17)
    reviews = _reviews([("shop", d, 1 if complains(d) else 5, "Arrived late" if complains(d) else "Tasty")
                        for d in range(0, 90)])
    signals = lapse_signals(_orders(mild=[15], strong=[45], both=[45, 15]), reviews, CUTOFF,
                            pd.Index(["mild", "strong", "both"]))
    assert signals.loc["mild", "delivery_exposure"] > 0  # a little above the share: the exposure counts it
    assert signals["delivery_spell"].to_dict() == {"mild": 0.0, "strong": 0.0, "both": 0.0}
    late = lapse_signals(_orders(strong=[45, 44]), reviews, CUTOFF + pd.Timedelta(days=-20), pd.Index(["strong"]))
    assert late.loc["strong", "delivery_spell"] == 1.0  # 20 days earlier, the spell is within the 30 days


def test_no_reviews_no_signal():
    signals = lapse_signals(_orders(a=[3]), None, CUTOFF, pd.Index(["a"]))
    assert signals.to_dict("records") == [{"bad_lately": 0.0, "delivery_exposure": 0.0, "delivery_spell": 0.0}]


def _views(**days_ago: list[int]) -> pd.DataFrame:
    rows = [(user, END - pd.Timedelta(days=d) + pd.Timedelta(hours=15), "view", "i1", "c1", 1, np.nan)
            for user, ago in days_ago.items() for d in ago]
    return pd.DataFrame(rows, columns=["user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"])


def test_activity_that_fell_after_the_last_order_reads_lower_than_activity_that_rose():
    # Both ordered 10 days before the cutoff and browsed every other day in the 30 days before it.
    # "cooled" browsed once since (a late order's effect), "warmed" every day since; "silent" not at all.
    before = list(range(12, 41, 2))  # 15 views in the 30 days before the order's day (days 11..40 back)
    events = pd.concat([_orders(cooled=[10], warmed=[10], silent=[10]),
                        _views(cooled=[*before, 4], warmed=[*before, *range(0, 10)], silent=before)], ignore_index=True)
    change = activity_change(events, CUTOFF, pd.Index(["cooled", "warmed", "silent"]))
    since = change["activity_since_order"]
    assert since["warmed"] > 0 > since["cooled"] > since["silent"]
    # silent: no event in the 10 days since; before: 15 events over 30 days (the order's day counts in neither)
    assert since["silent"] == pytest.approx(np.log(ACTIVITY_EPS_PER_DAY / (15 / 30 + ACTIVITY_EPS_PER_DAY)))
    assert since["warmed"] == pytest.approx(np.log((10 / 10 + ACTIVITY_EPS_PER_DAY) / (15 / 30 + ACTIVITY_EPS_PER_DAY)),
                                            rel=1e-4)  # the cutoff is 23:59:59: 10 days less a second
    own = change["activity_vs_own_rate"]
    assert own["warmed"] > 0 > own["cooled"] > own["silent"]
    # silent: 2 events in the last 14 days (the view 12 days back, the order); before them 14 views since
    # the first, 40 days back at 15:00, that is 26 days and 9 hours before the last 14 days began
    assert own["silent"] == pytest.approx(np.log(3 / (14 / (26 + 9 / 24) * 14 + 1)), rel=1e-4)


def test_activity_change_reads_nothing_after_the_cutoff_and_0_where_undefined():
    before = list(range(12, 41, 2))
    events = pd.concat([_orders(a=[10], fresh=[1], newbie=[5]), _views(a=before, fresh=before, visitor=[3, 20]),
                        _views(a=[-1, -2, -3])], ignore_index=True)  # a's views after the cutoff: not known yet
    users = pd.Index(["a", "fresh", "newbie", "visitor", "unseen"])
    change = activity_change(events, CUTOFF, users)
    assert change.loc["a"].tolist() == activity_change(events[events["ts"] <= CUTOFF], CUTOFF, users).loc["a"].tolist()
    assert change.loc["a", "activity_since_order"] < 0  # no event since its order, up to the cutoff
    assert change.loc["fresh", "activity_since_order"] == 0.0  # ordered yesterday: under 3 days since, no rate
    assert change.loc["newbie", "activity_since_order"] == 0.0  # first seen on the order's day: no "before"
    assert change.loc["newbie", "activity_vs_own_rate"] == 0.0  # first seen in the last 14 days: no own rate
    assert change.loc["visitor", "activity_since_order"] == 0.0  # no order
    assert change.loc["unseen"].tolist() == [0.0, 0.0]


def test_orders_only_data_gives_finite_activity_change():
    # CDNOW-like: only orders, no visit. D2 reads eps against the order rate before the last order.
    events = _orders(steady=[70, 60, 50, 40, 30, 20, 10], slowing=[100, 95, 90, 85, 40], once=[50],
                     recent=[80, 12, 6, 2])
    change = activity_change(events, CUTOFF, pd.Index(["steady", "slowing", "once", "recent"]))
    assert np.isfinite(change.to_numpy()).all()
    assert (change["activity_since_order"] <= 0).all()  # nothing follows the last order
    assert change.loc["once", "activity_since_order"] == 0.0  # first seen on its only order's day
    assert change.loc["steady", "activity_since_order"] == pytest.approx(
        np.log(ACTIVITY_EPS_PER_DAY / (3 / 30 + ACTIVITY_EPS_PER_DAY)))  # 40, 30, 20 days back: 30 days before day 10
    # recent: 3 orders in the last 14 days against 1 in the 66 days and 14 hours of history before them
    assert change.loc["recent", "activity_vs_own_rate"] == pytest.approx(np.log(4 / (1 / (66 + 14 / 24) * 14 + 1)),
                                                                         rel=1e-4)
    assert change.loc["recent", "activity_vs_own_rate"] > change.loc["slowing", "activity_vs_own_rate"]
