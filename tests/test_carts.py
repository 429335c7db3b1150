"""open_carts over a real DuckDB store with hand-made events: open carts, carts then bought, an orders-only shop;
its composed answer and takeaway facts grounded in the result."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from transformers.utils import get_json_schema

from assistant.agent import grounding
from assistant.agent.composer import compose_answer
from assistant.agent.intent import gate
from assistant.agent.takeaway import takeaway_facts
from tools.catalog import ToolContext, build_tools
from tools.data.store import EventStore

CUTOFF = datetime(2024, 4, 30, 23, 0, 0)
DAY = pd.Timedelta(days=1)
COLUMNS = ["user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"]


def _events() -> pd.DataFrame:
    c = pd.Timestamp(CUTOFF)
    rows = [
        # u1: carts i1 (2 units) and i2 two days ago, buys neither: two open lines, 2 x 10 + 1 x 4 = 24.
        ("u1", c - 2 * DAY, "cart", "i1", "food", 2, None), ("u1", c - 2 * DAY, "cart", "i2", "toys", 1, None),
        # u2: carts i1 and buys it an hour later (closed), carts i3 yesterday (open, 7.5 from its sales).
        ("u2", c - 3 * DAY, "cart", "i1", "food", 1, None), ("u2", c - 3 * DAY + pd.Timedelta(hours=1), "buy", "i1",
                                                             "food", 1, 10.0),
        ("u2", c - 1 * DAY, "cart", "i3", "food", 1, None),
        # u3: bought i1 long ago, carted it again 4 days ago and not since: open (the old buy is before the add).
        ("u3", c - 60 * DAY, "buy", "i1", "food", 1, 10.0), ("u3", c - 4 * DAY, "cart", "i1", "food", 1, None),
        # u4: carted i2 20 days ago, never bought: outside a 7-day window, inside a 30-day one.
        ("u4", c - 20 * DAY, "cart", "i2", "toys", 1, None),
        # u5: buys i3 at 7.5 (the price the catalog lacks); carts after the cutoff are never read.
        ("u5", c - 10 * DAY, "buy", "i3", "food", 2, 15.0), ("u5", c + DAY, "cart", "i2", "toys", 1, None),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def _items() -> pd.DataFrame:
    return pd.DataFrame({"item_id": ["i1", "i2", "i3"], "category_id": ["food", "toys", "food"],
                         "name": ["Kibble", "Ball", "Treats"], "price": [10.0, 4.0, None]})


def _scores() -> pd.DataFrame:
    rows = [{"user_id": u, "cutoff": pd.Timestamp(CUTOFF), "horizon_days": h, "p_churn": 1 - p, "p_buy": p,
             "p_cart": p / 2, "top_items": "i1", "top_categories": "food", "model_version": "test"}
            for h in (7, 30) for u, p in (("u1", 0.8), ("u2", 0.3), ("u3", 0.6))]
    return pd.DataFrame(rows)


def _tool(tmp_path, events: pd.DataFrame, items=None, scores=None):
    store = EventStore(tmp_path / "shop.duckdb")
    store.import_frames("test", events=events, items=items)
    if scores is not None:
        store.replace_scores(scores)
    ctx = ToolContext(store=store, cutoff=CUTOFF, audit_path=tmp_path / "audit.jsonl")
    return store, {f.__name__: f for f in build_tools(ctx)}["open_carts"]


@pytest.fixture()
def open_carts(tmp_path):
    store, fn = _tool(tmp_path, _events(), _items(), _scores())
    yield fn
    store.close()


def test_open_carts_lists_what_was_carted_and_not_bought_since(open_carts):
    r = open_carts(window_days=7)
    assert r["carts_recorded"] is True and r["currency"] == "USD"
    assert [u["user_id"] for u in r["users"]] == ["u1", "u3", "u2"]  # by open value: 24, 10, 7.5
    u1, u3, u2 = r["users"]
    assert (u1["open_items"], u1["units"], u1["open_value"]) == (2, 3, 24.0)
    assert u2["open_value"] == 7.5 and u2["items"] == ["i3"]  # i1 was bought after the add; i3 priced by its sales
    assert u3["items"] == ["i1"] and u3["last_added_days_ago"] == 4  # a buy before the add does not close it
    assert (u1["p_buy"], u1["p_cart"], r["scores_horizon_days"]) == (0.8, 0.4, 7)
    t = r["totals"]
    assert t == {"customers_with_open_carts": 3, "open_items": 4, "units": 5, "open_value": 41.5,
                 "carted_items": 5, "bought_since": 1, "share_left_open": 0.8}
    assert [i["item_id"] for i in r["items"]][:1] == ["i1"] and r["items"][0]["customers"] == 2
    assert "u4" not in {u["user_id"] for u in r["users"]} and "u5" not in {u["user_id"] for u in r["users"]}


def test_window_user_and_bad_arguments(open_carts):
    month = open_carts(window_days="30", top_k=2)  # small models write numbers as strings
    assert month["totals"]["customers_with_open_carts"] == 4 and len(month["users"]) == 2 and len(month["items"]) == 2
    mine = open_carts(user_id="u2")
    assert [u["user_id"] for u in mine["users"]] == ["u2"] and [i["item_id"] for i in mine["items"]] == ["i3"]
    assert "carted_items" not in mine["totals"]
    empty = open_carts(user_id="u5")  # bought, never carted by the cutoff
    assert empty["users"] == [] and "nothing left in the cart" in empty["note"]
    assert "window_days" in open_carts(window_days=0)["hint"]
    assert "top_k" in open_carts(top_k=500)["hint"]
    assert "unknown user_id" in open_carts(user_id="nobody")["error"]


def test_purchase_only_shop_says_no_carts_not_an_error(tmp_path):
    buys = _events()
    buys = buys[buys["behavior"] == "buy"]
    store, fn = _tool(tmp_path, buys)  # no items table, no scores: CDNOW-like
    r = fn()
    store.close()
    assert "error" not in r and r["carts_recorded"] is False and "no carts in the data" in r["note"]
    answer = compose_answer("Which carts were abandoned this week?", [("open_carts", r)])
    assert answer.startswith("There are no carts in this shop's data")
    assert takeaway_facts([("open_carts", r)])[0] == []  # nothing for the model to invent a cart from


def test_without_prices_or_scores_it_ranks_by_items(tmp_path):
    events = _events().assign(amount=None)
    store, fn = _tool(tmp_path, events)
    r = fn()
    store.close()
    assert r["totals"]["open_value"] is None and "value_note" in r and "currency" not in r
    assert r["users"][0]["user_id"] == "u1" and "p_buy" not in r["users"][0] and "scores_note" in r


def test_schema_is_typed_and_described(tmp_path):
    ctx = ToolContext(store=None, cutoff=CUTOFF, audit_path=tmp_path / "a.jsonl")
    schema = get_json_schema({f.__name__: f for f in build_tools(ctx)}["open_carts"])["function"]
    props = schema["parameters"]["properties"]
    assert props["window_days"]["type"] == "integer" and "user_id" in props and not schema["parameters"].get("required")
    assert all(p.get("description") for p in props.values())


def test_composed_answer_and_takeaway_are_grounded(open_carts):
    # The grounding test's pattern (tests/test_grounding.py): every figure of the answer is in the evidence.
    result = open_carts(window_days=7)
    for language, question in (("en", "What is sitting in carts right now?"), ("zh", "购物车里现在有什么？")):
        text = compose_answer(question, [("open_carts", result)], language=language)
        report = grounding.check(text, grounding.Evidence.from_results([result], tools=["open_carts"], question=question))
        assert report.ok, (text, report.ungrounded)
        assert "u1" in text and "24" in text
    lines, counts = takeaway_facts([("open_carts", result)])
    assert lines[0].startswith("Open carts: 4 items by 3 customers in the last 7 days")
    assert counts["takeaway_counts"]["carts_likely_buyers"] == 2  # u1 (0.8) and u3 (0.6) of the 3 scored
    report = grounding.check(" ".join(lines), grounding.Evidence.from_results([result, counts]))
    assert report.ok, report.ungrounded


def test_a_span_shorter_than_the_shortest_horizon_gets_a_note():
    verdict = gate("Who will stop buying in the next hour?", {}, horizons=(7, 30))
    assert verdict is not None and verdict.reply is None and verdict.kind == "short_horizon"
    assert "next 7 days" in verdict.note and '"in the next hour"' in verdict.note
    assert gate("Which customers will churn this week?", {}, horizons=(7, 30)) is None
    assert gate("Which carts were abandoned in the last 3 days?", {}, horizons=(7, 30)) is None  # a look-back


def test_no_short_span_note_where_the_horizons_are_shorter_than_a_day():
    # A model trained at 15- and 30-minute horizons (finetune/configs/predictor_taobao_2h.yaml) can answer "the next hour".
    assert gate("Who will stop buying in the next hour?", {}, horizons=(0.0104, 0.0208)) is None
    assert gate("Who will stop buying in the next hour?", {}, horizons=None) is None


def test_one_customers_cart_gets_no_share_of_likely_buyers(open_carts):
    lines, counts = takeaway_facts([("open_carts", open_carts(user_id="u1"))])
    assert lines and "likely" not in " ".join(lines)
    assert "carts_likely_buyers" not in counts["takeaway_counts"]


def test_a_window_with_no_cart_says_nothing_was_added(open_carts):
    r = open_carts(window_days=1)  # the latest add is exactly a day before the cutoff
    assert r["totals"]["carted_items"] == 0 and "value_note" not in r
    assert compose_answer("Carts today?", [("open_carts", r)]) == "No item was added to cart in the last day."
