"""The workspace's views on shops that are not the demo: reviews only, or orders without prices, categories or reviews.

Found by clicking through the app on the Amazon Fine Food file, CDNOW and the Instacart sample
(bench/results/new_user_trial.md, Round 9b): error badges with the reason only in a passing toast, advice
to run `shopsight predictor train` where training refuses the shop, "spend None", "item 12196 nan",
"buy cd (None)" and a review desk of blank charts with "n_reviews 0". Real DuckDB stores, the real
Workspace and the app's view functions (no server); the browser check is in test_app_browser_other_shops.py.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

import app
from assistant import ui_render
from assistant.config import Settings
from assistant.workspace import Workspace
from tools.data.store import EventStore

FINEFOOD = Path(__file__).resolve().parents[1] / "data" / "amazon_finefood_reviews_7567.csv"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))  # the audit log lands here, not in ~/.shopsight
    return tmp_path


def _settings(home: Path) -> Settings:
    return Settings(home=home, db_path=home / "shop.duckdb", chroma_path=home / "chroma",
                    models_dir=home / "models", predictor="demo", currency="EUR")


def reviews_only_store(home: Path) -> EventStore:
    """The first 40 reviews of the bundled Amazon Fine Food file: a store with reviews and no events."""
    lines = FINEFOOD.read_text(encoding="utf-8").splitlines(keepends=True)
    sample = home / "finefood_40.csv"
    sample.write_text("".join(lines[:41]), encoding="utf-8")
    store = EventStore(home / "shop.duckdb")
    store.import_file(sample, progress=False)
    return store


def orders_only_store(home: Path) -> EventStore:
    """Purchases with no amount, no category and no reviews (what the Instacart sample imports as)."""
    start = pd.Timestamp("2017-01-01")
    rows = [{"user_id": f"u{u}", "ts": start + pd.Timedelta(days=7 * k + u), "behavior": "buy",
             "item_id": f"p{(u + k) % 5}"} for u in range(6) for k in range(8)]
    store = EventStore(home / "shop.duckdb")
    store.import_frames("orders-only", events=pd.DataFrame(rows))
    return store


def test_reviews_only_shop_says_why_there_is_no_at_risk_list_instead_of_a_circular_fix(home):
    store = reviews_only_store(home)
    try:
        ws = Workspace.open(_settings(home), store=store, chat_model_factory=lambda: None)
        # `predictor train` and `cases build` refuse this store: neither is the advice.
        assert "40 reviews and no orders or events" in ws.problems["predictor"], ws.problems["predictor"]
        assert "cases are built from orders or events, and this store has none" in ws.problems["cases"]
        assert not any("predictor train" in p or "cases build" in p for p in ws.problems.values()), ws.problems
        table, download, histogram, population = app.at_risk_view(ws, "7", "value_at_risk", "", "", 25)
        assert table.empty and "user_id" in table.columns and histogram.empty
        assert population.startswith("⚠ No at-risk list: ") and "no orders or events" in population
        assert "predictor train" not in population
        panel = ui_render.summary_panel(ws.summary())
        assert "no events (the Operations tab needs orders or events)" in panel and "40 reviews" in panel
        # A reviewer opened in the drill-down: their reviews, not "unknown user ... use an id from at_risk_users".
        reviewer = str(store.query("SELECT user_id FROM reviews LIMIT 1")["user_id"].iloc[0])
        head, _, _, timeline, _ = app.drill_down_view(ws, reviewer, "7")
        assert "reviews and no orders or events" in head
        assert len(timeline) >= 1 and timeline["behavior"].str.match(r"review \d★").all(), timeline
        with pytest.raises(gr.Error, match="unknown user_id"):
            app.drill_down_view(ws, "no-such-user", "7")
        labels = [label for label, _ in ws.search_items("B00")]
        assert labels and not any("nan" in label.split() for label in labels), labels
    finally:
        store.close()


def test_orders_without_prices_categories_or_reviews_show_what_is_recorded_and_no_blank_columns(home):
    store = orders_only_store(home)
    try:
        ws = Workspace.open(_settings(home), store=store, chat_model_factory=lambda: None)
        panel = ui_render.summary_panel(ws.summary())
        assert "events buy 48" in panel
        assert "no prices (value is counted in orders, not money) · no categories · no reviews" in panel
        assert not ws.records_prices()  # the Rank-by choice then reads "Expected orders at risk"
        # No churn model here: the drill-down still shows the timeline, without the columns the shop lacks.
        head, _, _, timeline, _ = app.drill_down_view(ws, "u1", "7")
        assert head.startswith("### User u1\n⚠ No churn prediction")
        assert list(timeline.columns) == ["ts", "behavior", "item_id"], list(timeline.columns)
        sentiment, aspects, text = app.review_desk_view(ws, "item:p1")
        assert sentiment.empty and aspects.empty
        assert "This shop has no reviews at all" in text and "docs/importing.md" in text
        assert [label for label, _ in ws.search_items("p1")] == ["item p1"]  # was "item p1 nan"
    finally:
        store.close()


def test_an_item_without_reviews_in_a_shop_with_reviews_says_so(home):
    store = reviews_only_store(home)
    try:
        ws = Workspace.open(_settings(home), store=store, chat_model_factory=lambda: None)
        reviewed = set(store.query("SELECT DISTINCT item_id FROM reviews")["item_id"])
        # An item known to the shop (its items table) but never reviewed: a made-up one is refused as unknown.
        store.import_frames("one-more-item", items=pd.DataFrame([{"item_id": "NEVER-REVIEWED"}]))
        assert "NEVER-REVIEWED" not in reviewed
        sentiment, aspects, text = app.review_desk_view(ws, "item:NEVER-REVIEWED")
        assert sentiment.empty and aspects.empty
        assert "No reviews of this item up to 2012-" in text and "the shop has 40 reviews in all" in text
    finally:
        store.close()


def test_drill_down_head_leaves_out_what_the_shop_does_not_record_and_says_the_currency():
    explanation = {"p_churn": 0.9, "facts": {"orders": 37, "spend": None, "days_since_last_buy": 10,
                                             "top_category": None, "trend": "rising", "last_review": None}}
    head = ui_render.user_head_markdown("847", explanation, 7, "EUR")
    assert "spend" not in head and "top category" not in head and "last review" not in head
    assert "**orders** 37" in head and "**trend** rising" in head
    lapsing = {**explanation, "lifecycle": {"stage": "lapsing", "p_lapse": 0.74}}
    with_stage = ui_render.user_head_markdown("847", lapsing, 7)
    assert "**stage** lapsing · **p_lapse** 0.74 (the at-risk table's) · **orders** 37" in with_stage
    priced = {"p_churn": 0.5, "facts": {"orders": 3, "spend": 6973.07}}
    assert "**spend** 6,973.07 EUR" in ui_render.user_head_markdown("07983", priced, 7, "EUR")
    row = ui_render.driver_row({"type": "event", "effect": -0.04, "direction": "lowers churn risk",
                                "event": {"behavior": "buy", "item_id": "cd", "category_id": None,
                                          "ts": "1998-06-25T00:00:00"}})
    assert row["driver"] == "buy cd at 1998-06-25T00:00:00"



def test_without_prices_the_at_risk_columns_say_orders_and_the_answer_table_matches_the_tab():
    no_prices = {"horizon_days": 7, "value_unit": "orders", "users": [
        {"rank": 1, "user_id": "847", "stage": "lapsing", "p_lapse": 0.74, "value_at_risk": 68.45,
         "expected_value": 92.55, "category_id": None, "reasons": ["11 days since the last order", "an order"]}]}
    table = ui_render.at_risk_table(no_prices)
    assert list(table.columns[:6]) == ["rank", "user_id", "stage", "p_lapse", "orders_at_risk", "expected_orders"]
    # The chat's "numbers behind the answer" showed stage "lapsing"/"at_risk" raw and reasons joined by ",".
    shown = ui_render.answer_table("at_risk_users", no_prices)
    assert shown.loc[0, "reasons"] == "11 days since the last order; an order" and "category_id" not in shown
    history = ui_render.answer_table("user_history", {"events": [{"ts": "2017-12-19", "behavior": "buy",
                                                                  "item_id": "8277", "category_id": None}]})
    assert list(history.columns) == ["ts", "behavior", "item_id"]


def test_a_lifecycle_filter_nobody_matches_says_so(home):
    """Orders only, 6 customers who all bought in the last weeks: no one is "new" at the end of the data."""
    store = orders_only_store(home)
    try:
        from tools.predictor.baselines import bgnbd_baseline

        ws = Workspace.open(_settings(home), store=store, chat_model_factory=lambda: None)
        events = store.events_frame()
        scores = pd.concat([bgnbd_baseline(events, ws.cutoff, h).assign(
            cutoff=pd.Timestamp(ws.cutoff), horizon_days=h, model_version="bgnbd-as-scores") for h in (7, 30)])
        store.replace_scores(scores.assign(p_buy=1 - scores["p_churn"]))
        table, _, _, summary = app.at_risk_view(ws, "7", "p_lapse", "", "new", 25)
        assert table.empty and "user_id" in table.columns
        assert summary.startswith("**No customer to list** (stage new, 7-day horizon): pick another lifecycle stage")
    finally:
        store.close()


def test_example_questions_fit_the_shop(home):
    store = orders_only_store(home)
    try:  # no reviews: no review examples (the demo's "category dog_food_dry" was unknown here)
        examples = app.examples_for(Workspace.open(_settings(home), store=store, chat_model_factory=lambda: None))
        assert "Support" not in examples and examples["Operations"] == app.EXAMPLES["Operations"]
    finally:
        store.close()


def test_example_questions_of_a_reviews_only_shop_name_its_own_item(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    store = reviews_only_store(tmp_path)
    try:
        examples = app.examples_for(Workspace.open(_settings(tmp_path), store=store, chat_model_factory=lambda: None))
        assert list(examples) == ["Support"]  # churn questions need events
        top = store.query("SELECT item_id FROM reviews GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")["item_id"][0]
        assert examples["Support"][-1] == f"Summarize the reviews of item {top}."
    finally:
        store.close()


def test_orders_uploaded_into_a_reviews_only_store_update_what_the_workspace_says(home):
    store = reviews_only_store(home)
    try:
        ws = Workspace.open(_settings(home), store=store, chat_model_factory=lambda: None)
        assert "no orders or events" in ws.problems["predictor"]
        orders = home / "orders.csv"
        orders.write_text("user_id,timestamp,behavior,item_id,amount\n"
                          "A3SGXH7AUHU8GW,2012-01-05 10:00:00,buy,B001E4KFG0,12.50\n"
                          "A3SGXH7AUHU8GW,2012-03-05 10:00:00,buy,B001E4KFG0,12.50\n", encoding="utf-8")
        assert ws.import_upload(str(orders))["rows_imported"] == 2
        info = ws.summary()
        # Now training is the right advice (it was "import an orders or events file" for good).
        assert "shopsight predictor train" in info["problems"]["predictor"], info["problems"]
        assert info["the data records"] == "events buy 2 · prices in EUR · no categories · 40 reviews"
    finally:
        store.close()


def test_an_upload_of_newer_orders_moves_the_workspace_now_and_older_history_does_not(home):
    store = orders_only_store(home)
    try:
        ws = Workspace.open(_settings(home), store=store, chat_model_factory=lambda: None)
        opened = ws.cutoff
        assert opened == pd.Timestamp("2017-02-24").to_pydatetime()  # the last order of orders_only_store
        newer, older = home / "newer.csv", home / "older.csv"
        newer.write_text("user_id,timestamp,behavior,item_id\nu1,2017-03-10 09:00:00,buy,p1\n", encoding="utf-8")
        older.write_text("user_id,timestamp,behavior,item_id\nu2,2016-12-01 09:00:00,buy,p2\n", encoding="utf-8")
        assert ws.import_upload(str(newer))["rows_imported"] == 1
        assert ws.cutoff == pd.Timestamp("2017-03-10 09:00:00").to_pydatetime()
        assert ws.summary()["as_of"] == "2017-03-10 09:00:00"
        assert ws.context.cutoff == ws.cutoff  # the tools are rebuilt at the new "now"
        assert ws.import_upload(str(older))["rows_imported"] == 1
        assert ws.cutoff == pd.Timestamp("2017-03-10 09:00:00").to_pydatetime()
    finally:
        store.close()


def test_drivers_table_says_why_it_is_empty_with_the_key_explain_user_returns():
    from tools.catalog.users import _explanation_notes

    notes = _explanation_notes({"history": {"too_little": "only 4 events: too little history"}, "drivers": []})
    table = ui_render.drivers_frame({"p_churn": 0.94, "drivers": [], **notes})
    assert table.to_dict("records") == [{"driver": "only 4 events: too little history", "kind": "note",
                                         "effect": None, "direction": ""}]
    assert list(ui_render.drivers_frame({"drivers": []}).columns) == ["driver", "kind", "effect", "direction"]
