"""EventStore reads, frames, scores and connection handling, on a real DuckDB file."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from tools.data.pii import hmac_pads, mask_pii, mask_sql, pseudonymize, pseudonymize_sql, register_sql
from tools.data.schema import StoreError
from tools.data.store import EventStore


def shop_frames():
    t = pd.Timestamp("2024-01-01")
    events = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
        "ts": [t, t + pd.Timedelta(hours=1), t + pd.Timedelta(days=8), t, t + pd.Timedelta(days=1),
               t + pd.Timedelta(days=20)],
        "behavior": ["view", "cart", "buy", "view", "buy", "view"],
        "item_id": ["i1", "i1", "i1", "i2", "i2", "i1"],
        "category_id": ["c1", "c1", "c1", "c2", "c2", "c1"],
        "quantity": [1, 1, 2, 1, 1, 1],
        "amount": [None, None, 20.0, None, 5.0, None],
    })
    items = pd.DataFrame({"item_id": ["i1", "i2"], "category_id": ["c1", "c2"], "name": ["tea", "cat food"],
                          "price": [10.0, 5.0]})
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "signup_ts": [t, t, t], "segment": ["a", "b", "a"]})
    reviews = pd.DataFrame({"review_id": ["r1", "r2"], "user_id": ["u1", "u2"], "item_id": ["i1", "i2"],
                            "ts": [t + pd.Timedelta(days=9), t + pd.Timedelta(days=2)], "rating": [5, 1],
                            "title": ["great", "bad"], "text": ["write me: a@b.org", "late delivery"]})
    return events, items, users, reviews


@pytest.fixture
def store(tmp_path):
    events, items, users, reviews = shop_frames()
    with EventStore(tmp_path / "shop.duckdb") as s:
        report = s.import_frames("test-shop", events=events, reviews=reviews, items=items, users=users)
        assert report.rows_imported == 8 and report.rows_rejected == 0
        yield s


def test_import_frames_is_idempotent_and_validates(store):
    events, items, users, reviews = shop_frames()
    again = store.import_frames("test-shop", events=events, reviews=reviews, items=items, users=users)
    assert again.already_imported and store.summary()["tables"]["events"] == 6
    bad = events.head(2).copy()
    bad.loc[0, "behavior"] = "teleport"
    bad.loc[1, "ts"] = pd.NaT
    report = store.import_frames("bad", events=bad)
    assert (report.rows_read, report.rows_rejected) == (2, 2)
    reasons = store.query("SELECT line_no, field, reason FROM rejected ORDER BY line_no")
    assert reasons["field"].tolist() == ["behavior", "ts"] and "teleport" in reasons["reason"][0]
    assert store.reviews_frame(item_id="i1")["text"][0] == "write me: [EMAIL]"


def test_reads(store):
    cut = datetime(2024, 1, 5)
    assert len(store.events_frame(until=cut)) == 4
    assert store.events_frame(since=cut)["user_id"].tolist() == ["u1", "u3"]
    frame = store.events_frame(users=["u2"])
    assert frame["behavior"].tolist() == ["view", "buy"] and str(frame["ts"].dtype).startswith("datetime64")
    assert store.user_history("u1", last_n=2)["behavior"].tolist() == ["cart", "buy"]
    assert store.active_users(datetime(2024, 1, 1), datetime(2024, 1, 10)) == ["u1", "u2"]
    weekly = store.behavior_counts("week")
    assert weekly["events"].sum() == 6 and set(weekly.columns) == {"period_start", "behavior", "events", "users"}
    stats = store.item_stats().set_index("item_id")
    assert stats.loc["i1", "buys"] == 1 and stats.loc["i1", "revenue"] == 20.0 and stats.loc["i1", "reviews"] == 1
    assert stats.loc["i2", "conversion"] == 1.0
    one = store.item_stats(["i2"], until=datetime(2024, 1, 1, 12))
    assert one["item_id"].tolist() == ["i2"] and (one["views"][0], one["buys"][0]) == (1, 0)
    cats = store.category_stats().set_index("category_id")
    assert cats.loc["c1", "views"] == 2 and cats.loc["c2", "mean_rating"] == 1.0
    assert store.time_span() == (pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-21"))
    assert store.has_user("u3") and not store.has_user("nobody")
    assert store.reviews_frame(category_id="c2")["review_id"].tolist() == ["r2"]
    summary = store.summary()
    assert summary["tables"]["events"] == 6 and summary["span"][0].startswith("2024-01-01")


def test_unknown_ids_and_bad_args_raise_with_hint(store):
    with pytest.raises(StoreError, match="users_frame"):
        store.user_history("nobody")
    with pytest.raises(StoreError, match="items_frame"):
        store.item_stats(["nope"])
    with pytest.raises(StoreError, match="category"):
        store.reviews_frame(category_id="nope")
    with pytest.raises(StoreError, match="period"):
        store.behavior_counts("fortnight")
    with pytest.raises(StoreError, match="SELECT"):
        store.query("DELETE FROM events")
    assert store.query("SELECT count(*) AS n FROM events WHERE user_id = ?", ["u1"])["n"][0] == 3


def test_scores_replace(store):
    cutoff = datetime(2024, 1, 10)
    scores = pd.DataFrame({"user_id": ["u1", "u2"], "cutoff": [cutoff] * 2, "horizon_days": [7, 7],
                           "p_churn": [0.2, 0.9], "model_version": ["v1", "v1"]})
    store.replace_scores(scores)
    store.replace_scores(scores.assign(p_churn=[0.3, 0.8]))
    out = store.scores_frame(cutoff=cutoff, horizon_days=7)
    assert out["p_churn"].tolist() == [0.8, 0.3]


def test_read_only_and_one_writer(tmp_path, store):
    path = tmp_path / "shop.duckdb"
    with EventStore(path, read_only=True) as reader:  # same process: shares the open database
        assert reader.summary()["tables"]["events"] == 6
        with pytest.raises(StoreError, match="read-only"):
            reader.import_frames("x", events=shop_frames()[0])
    with pytest.raises(StoreError, match="shopsight data generate"):
        EventStore(tmp_path / "missing.duckdb", read_only=True)


def test_pii_python_and_sql_agree():
    import duckdb

    texts = ["call +1 (555) 123-4567 now", "mail bob.smith@shop.co.uk", "card 4111-1111-1111-1111 ok",
             "order 12 of 3 jars, 2012-10-12, 100g", "no pii here", "tel 020 7946 0958; x@y.io",
             "upc 123456789012 and 0123456789123"]
    con = duckdb.connect()
    register_sql(con)
    masked, count = mask_sql("t")
    rows = con.execute(f"SELECT {masked}, {count} FROM (SELECT unnest($texts) AS t)", {"texts": texts}).fetchall()
    assert [(m, n) for m, n in rows] == [mask_pii(t) for t in texts]
    assert mask_pii(texts[0]) == ("call [PHONE] now", 1)
    assert mask_pii(texts[3]) == (texts[3], 0)
    ipad, opad = hmac_pads(b"k3y")
    sql = con.execute(f"SELECT {pseudonymize_sql('$u')}", {"u": "user-42", "ipad": ipad, "opad": opad}).fetchone()[0]
    assert sql == pseudonymize("user-42", b"k3y") and sql.startswith("u_") and len(sql) == 18


def test_secret_key_file_created_once(tmp_path, monkeypatch):
    from tools.data.pii import secret_key

    monkeypatch.delenv("SHOPSIGHT_SECRET", raising=False)
    key = secret_key(tmp_path)
    assert secret_key(tmp_path) == key and len(key) == 64
    assert oct((tmp_path / "secret.key").stat().st_mode & 0o777) == "0o600"
