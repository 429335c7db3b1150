"""at_risk_users on a small demo shop: P(lapse) recalibrated on the week before, value from ours, money units.

The churn scores are BG/NBD's P(no order) written into the real scores table (as `shopsight
predictor score` writes the Transformer's), at the cutoff and, for the calibration, a week before.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from tools.catalog import ToolContext, build_tools
from tools.data.store import EventStore
from tools.data.synth import generate_shop
from tools.predictor.baselines import bgnbd_baseline

CUTOFF = datetime(2026, 6, 1)
WEEK_BEFORE = datetime(2026, 5, 25)
VERSION = "bgnbd-as-scores"


def _scores(events: pd.DataFrame, cutoff: datetime) -> pd.DataFrame:
    frames = []
    for h in (7, 30):
        frame = bgnbd_baseline(events, cutoff, h).assign(cutoff=pd.Timestamp(cutoff), horizon_days=h,
                                                         model_version=VERSION)
        frames.append(frame.assign(p_buy=1 - frame["p_churn"]))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture()
def shop_store(tmp_path):
    shop = generate_shop(n_users=1500, seed=1, progress=False)
    events = shop.events.copy()
    events["ts"] = pd.to_datetime(events["ts"])
    buys = events.index[(events["behavior"] == "buy") & (events["ts"] < CUTOFF)]
    events.loc[buys[::40], "amount"] = 0.0  # free samples: left out of Gamma-Gamma, and the answer says so
    events = events[events["ts"] <= CUTOFF]
    store = EventStore(tmp_path / "shop.duckdb")
    reviews = shop.reviews[pd.to_datetime(shop.reviews["ts"]) <= CUTOFF]
    store.import_frames("demo-shop-test", events=events, items=shop.items, users=shop.users, reviews=reviews)
    store.replace_scores(_scores(events, CUTOFF))
    yield store, events
    store.close()


def _at_risk(store, tmp_path, **kwargs) -> dict:
    ctx = ToolContext(store=store, cutoff=CUTOFF, audit_path=tmp_path / "audit.jsonl")
    return {f.__name__: f for f in build_tools(ctx)}["at_risk_users"](**kwargs)


def test_scores_a_week_before_recalibrate_p_lapse_and_every_listed_user_has_money(shop_store, tmp_path):
    store, events = shop_store
    # Without scores of the week before there is nothing to fit on: P(lapse) stays, and the result says why.
    res = _at_risk(store, tmp_path, horizon_days=7, top_k=20)
    assert res["p_lapse_calibration"] == "not recalibrated: no churn scores as of 2026-05-25 to fit on"
    assert all(u["p_lapse"] == u["p_churn"] for u in res["users"])
    store.replace_scores(_scores(events[events["ts"] <= WEEK_BEFORE], WEEK_BEFORE))
    res = _at_risk(store, tmp_path, horizon_days=7, top_k=20)
    assert res["p_lapse_calibration"].startswith("recalibrated on the lapses seen from 2026-05-25 to 2026-06-01")
    assert "lowest mean ECE at 7 and 30 days over three validation cutoffs" in res["p_lapse_calibration"]  # how it was chosen
    users = res["users"]
    assert len(users) == 20 and all(0 < u["p_lapse"] < 1 for u in users)
    assert any(abs(u["p_lapse"] - u["p_churn"]) > 0.01 for u in users)  # the map moved them
    assert all(u["stage"] in ("new", "active", "lapsing", "at_risk") for u in users)
    assert all(u["expected_value"] is not None and u["value_at_risk"] is not None for u in users)
    values = [u["value_at_risk"] for u in users]
    assert values == sorted(values, reverse=True)
    # Four months of history before c - 90 d: the value is ours, in the shop's currency, with the
    # zero-amount orders counted out of Gamma-Gamma.
    assert res["value_model"].startswith("gradient-boosted trees") and res["currency"] == "USD"
    assert "left out of Gamma-Gamma" in res["value_note"] and not res["value_note"].startswith("0 ")
    # P(alive) from the churn model's longest horizon where it scored the customer (Round 6 of bench/results/clv.md).
    assert res["p_alive_source"].startswith(f"P(an order within 30 days) from the churn model {VERSION}")
    thirty = _scores(events, CUTOFF).query("horizon_days == 30").set_index("user_id")["p_churn"]
    assert all(u["p_alive"] == pytest.approx(1 - thirty[u["user_id"]], abs=1e-3) for u in users)
    assert res["already_lost"] > 0 and "were already lost" in res["lost_note"]
    # The reviews in the store: a <= 2-star review of the last order and silence since count as lost too.
    assert "after a bad experience: a review of 2 stars or fewer" in res["lost_note"], res["lost_note"]
    # A customer with a single order is "new" and has no usual gap of their own: the reasons say so.
    new = _at_risk(store, tmp_path, horizon_days=30, stage="new", top_k=5)["users"]
    assert new and all(u["orders"] == 1 and u["usual_gap_days"] is None for u in new)
    assert all("no usual gap of their own" in u["reasons"][0] for u in new)


def test_an_orders_only_shop_without_prices_gives_no_visit_reasons_and_no_zero_spend(shop_store, tmp_path):
    """The demo shop's visits explain some lapses; an orders-only export (CDNOW, most order tables)
    records none, so "no visits or carts" would be said of every customer there. Without prices
    spend is unknown: the tools say None, never "$0.00" (the Instacart sample read "11 orders worth $0.00")."""
    store, events = shop_store
    with_visits = _at_risk(store, tmp_path, horizon_days=30, top_k=50)
    assert any("no visits or carts in the last 30 days" in u["reasons"] for u in with_visits["users"])
    orders = events[events["behavior"] == "buy"].assign(amount=None)
    only = EventStore(tmp_path / "orders_only.duckdb")
    only.import_frames("orders-only-test", events=orders)
    only.replace_scores(_scores(orders, CUTOFF))
    try:
        res = _at_risk(only, tmp_path, horizon_days=30, top_k=50)
        assert len(res["users"]) == 50
        assert not any("visits" in reason for u in res["users"] for reason in u["reasons"])
        assert res["value_unit"] == "orders" and "currency" not in res
        ctx = ToolContext(store=only, cutoff=CUTOFF, audit_path=tmp_path / "audit.jsonl")
        tools = {f.__name__: f for f in build_tools(ctx)}
        history = tools["user_history"](user_id=res["users"][0]["user_id"])
        assert history["totals"]["orders"] > 0 and history["totals"]["spend"] is None
        segments = tools["segment_report"](segment_by="tenure", horizon_days=30)["segments"]
        assert segments and all(s["mean_spend"] is None for s in segments)
    finally:
        only.close()
