"""A shop that imported reviews only (Round 9's Chinese reviews): its reviewers are users, and the
tools that need events say that events are missing, not "train the predictor"."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from tools.catalog import build_tools
from tools.catalog.context import ToolContext
from tools.data.store import EventStore

CUTOFF = datetime(2017, 12, 31)
LINES = [("c0326", "book1", 5, "这本书写得很好，值得一读"), ("c0001", "book1", 1, "印刷质量极差，缺页"),
         ("c0002", "book2", 4, "物流很快，包装完好"), ("c0003", "book2", 2, "客服态度差")]


@pytest.fixture()
def fns(tmp_path):
    reviews = pd.DataFrame({"review_id": [f"{i}-{u}" for u, i, _, _ in LINES], "user_id": [u for u, *_ in LINES],
                            "item_id": [i for _, i, _, _ in LINES],
                            "ts": [datetime(2017, 3, 13 + k) for k in range(len(LINES))],
                            "rating": [r for *_, r, _ in LINES], "title": None, "text": [t for *_, t in LINES],
                            "helpful_votes": 0, "total_votes": 0})
    store = EventStore(tmp_path / "shop.duckdb")
    report = store.import_frames("zh-reviews", reviews=reviews)
    assert report.added["reviews"] == len(LINES), report.problems[:3]
    ctx = ToolContext(store=store, cutoff=CUTOFF, audit_path=tmp_path / "audit.jsonl")
    yield ctx, {f.__name__: f for f in build_tools(ctx)}
    store.close()


def test_a_reviewer_is_a_user_and_the_tool_says_which_reviews(fns):
    ctx, tools = fns
    from tools.catalog.reads import is_known_user

    assert is_known_user(ctx, "c0326") and not is_known_user(ctx, "c9999")
    res = tools["user_history"](user_id="c0326")
    assert "book1-c0326 of item book1, 2017-03-13, 5 stars" in res["error"], res
    assert "only their 1 review" in res["error"] and "review_summary(item_id='book1')" in res["hint"]
    assert "book1-c0001 of item book1, 2017-03-14, 1 star)" in tools["explain_user"](user_id="c0001")["error"]
    assert "unknown user_id 'c9999'" in tools["user_history"](user_id="c9999")["error"]


def test_no_events_means_no_predictor_to_train(fns):
    _, tools = fns
    res = tools["at_risk_users"](horizon_days=7)
    assert "no churn model" in res["error"]
    assert "no events" in res["hint"] and "review_summary" in res["hint"], res["hint"]
    assert "shopsight predictor train" not in res["hint"]
