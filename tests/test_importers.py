"""Importers on real DuckDB: every bad input of issue 2, each real format, all-or-nothing imports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tools.data.schema import ImportFailed
from tools.data.store import EventStore

ROOT = Path(__file__).resolve().parents[1]
FINEFOOD = ROOT / "data" / "amazon_finefood_reviews_7567.csv"
CDNOW = ROOT / ".cache" / "datasets" / "CDNOW_master.txt"
GOOD = "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,pv,1511561733\n"


@pytest.fixture
def store(tmp_path):
    with EventStore(tmp_path / "shop.duckdb") as s:
        yield s


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def rejected(store: EventStore) -> pd.DataFrame:
    return store.query("SELECT line_no, field, reason, raw_line FROM rejected ORDER BY line_no")


def assert_accounted(report) -> None:
    assert report.rows_read == report.rows_imported + report.rows_rejected + report.rows_dropped


# (name, file content, line of the bad row, field, words in the reason)
BAD_ROWS = [
    ("malformed_row", GOOD + "1,2268318\n", 3, None, "expected 5 fields"),
    ("wrong_column_count", GOOD + "1,2,3,pv,1511544070,extra\n", 3, None, "found 6"),
    ("non_numeric_timestamp", GOOD + "1,2,3,pv,yesterday\n", 3, "timestamp", "'yesterday' is not unix seconds"),
    ("out_of_range_timestamp", GOOD + "1,2,3,pv,99999999999\n", 3, "timestamp", "outside 1990-01-01"),
    ("unknown_behavior", GOOD + "1,2,3,click,1511544070\n", 3, "behavior_type", "unknown behavior_type 'click'"),
    ("duplicate_rows", GOOD + GOOD.splitlines()[0] + "\n", 3, "line", "duplicate of line 1"),
    ("truncated_last_line", GOOD + "1,2268318,25", 3, None, "truncated"),
    ("not_utf8_line", GOOD.encode() + b"1,2,3,pv,15115\xff\xfe44070\n", 3, None, "not UTF-8"),
]


@pytest.mark.parametrize("name,content,line,field,words", BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_row_is_rejected_with_line_field_and_reason(store, tmp_path, name, content, line, field, words):
    report = store.import_file(write(tmp_path, f"{name}.csv", content), fmt="taobao", progress=False)
    assert_accounted(report)
    assert (report.rows_read, report.rows_imported, report.rows_rejected) == (3, 2, 1)
    rows = rejected(store)
    assert rows["line_no"].tolist() == [line]
    assert rows["field"].iloc[0] == field or (field is None and rows["field"].isna().iloc[0])
    assert words in rows["reason"].iloc[0]
    assert rows["raw_line"].iloc[0]  # the source text is kept
    assert f"{name}.csv:{line}" in report.summary()
    assert store.query("SELECT count(*) AS n FROM events")["n"][0] == 2
    log = store.query("SELECT rows_read, rows_imported, rows_rejected, duplicates FROM import_log").iloc[0]
    assert log["rows_read"] == log["rows_imported"] + log["rows_rejected"]
    assert log["duplicates"] == (1 if name == "duplicate_rows" else 0)


@pytest.mark.parametrize(
    "name,content,fmt,words",
    [
        ("empty_file", "", "taobao", "empty"),
        ("blank_file", "\n\n  \n", None, "empty"),
        ("wrong_delimiter", GOOD.replace(",", ";"), "taobao", "separated by ';'"),
        ("wrong_delimiter_detect", GOOD.replace(",", "\t"), None, "separated by TAB"),
        ("binary_file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), None, "not a text file"),
        ("unknown_format", "hello world\nfoo bar\n", None, "taobao"),
    ],
)
def test_bad_file_fails_whole_and_writes_nothing(store, tmp_path, name, content, fmt, words):
    path = write(tmp_path, f"{name}.csv", content)
    with pytest.raises(ImportFailed) as err:
        store.import_file(path, fmt=fmt, progress=False)
    assert words in str(err.value) and str(path) in str(err.value)
    assert store.summary()["tables"]["import_log"] == 0


def test_detection_error_lists_every_format(store, tmp_path):
    with pytest.raises(ImportFailed) as err:
        store.import_file(write(tmp_path, "x.txt", "what is this\n"), progress=False)
    for name in ("taobao", "retailrocket", "cdnow", "amazon_finefood", "amazon_json", "csv", "parquet"):
        assert name in str(err.value)


def test_same_file_twice_adds_nothing(store, tmp_path):
    path = write(tmp_path, "tb.csv", GOOD)
    first = store.import_file(path, progress=False)
    again = store.import_file(path, progress=False)
    assert first.rows_imported == 2 and again.already_imported and again.rows_imported == 0
    assert store.summary()["tables"]["events"] == 2 and store.summary()["tables"]["import_log"] == 1
    # The same rows under another file name are duplicates of stored rows, not new events.
    copy = write(tmp_path, "copy.csv", GOOD + "2,5,6,buy,1511561733\n")
    report = store.import_file(copy, progress=False)
    assert (report.rows_imported, report.duplicates) == (1, 2)
    assert store.summary()["tables"]["events"] == 3


def test_taobao_window_and_mapping(store, tmp_path):
    # 1511539199 is 2017-11-24 23:59:59 Beijing time: outside the release window.
    content = "1,10,100,pv,1511539199\n1,10,100,pv,1511539200\n1,11,100,fav,1512316799\n2,12,101,buy,1512316800\n"
    report = store.import_file(write(tmp_path, "tb.csv", content), progress=False)
    assert (report.rows_imported, report.rows_dropped, report.rows_rejected) == (2, 2, 0)
    events = store.events_frame()
    assert events["behavior"].tolist() == ["view", "fav"]
    assert str(events["ts"].iloc[0]) == "2017-11-24 16:00:00"  # naive UTC
    assert "Beijing" in report.summary()


def test_retailrocket(store, tmp_path):
    content = (
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n1433224214164,992329,addtocart,248676,\n"
        "1433221999827,111016,transaction,318965,4000\n1433221955914,483717,click,253185,\n"
    )
    report = store.import_file(write(tmp_path, "events.csv", content), progress=False)
    assert report.format == "retailrocket" and (report.rows_read, report.rows_imported) == (4, 3)
    events = store.events_frame().set_index("user_id")
    assert events.loc["992329", "behavior"] == "cart" and events.loc["111016", "behavior"] == "buy"
    assert str(events.loc["257597", "ts"]) == "2015-06-02 05:02:12.117000"
    assert rejected(store)["line_no"].tolist() == [5]  # the header is line 1


def test_cdnow_small_with_and_without_header(store, tmp_path):
    rows = " 00001 19970101  1   11.77\r\n 00002 19970112  2   12.00\r\n 00002 19970112  2   12.00\r\n"
    report = store.import_file(write(tmp_path, "cd.txt", rows), progress=False)
    assert report.format == "cdnow" and report.rows_imported == 3 and report.duplicates == 1
    with_header = " customer_id  date number_of_cds  dollar_value\n 00003 19970230  1   1.0\n 00004 19970301  x 2\n"
    report = store.import_file(write(tmp_path, "cd2.txt", with_header), progress=False)
    assert (report.rows_read, report.rows_imported) == (2, 0)
    reasons = rejected(store).set_index("line_no")["reason"]
    assert "is not a date like 19970101" in reasons[2] and "not a positive whole number" in reasons[3]
    e = store.events_frame()
    assert set(e["item_id"]) == {"cd"} and e["quantity"].tolist() == [1, 2, 2]


@pytest.mark.skipif(not CDNOW.exists(), reason="run `make data` for the CDNOW file")
def test_cdnow_real_file(store):
    report = store.import_file(CDNOW, progress=False)
    counts = store.query("SELECT count(*) AS n, count(DISTINCT user_id) AS u, sum(quantity) AS q FROM events")
    assert report.rows_imported == 69_659 and report.rows_rejected == 0
    assert (counts["n"][0], counts["u"][0]) == (69_659, 23_570)
    assert store.time_span() == (pd.Timestamp("1997-01-01"), pd.Timestamp("1998-06-30"))


def test_finefood_real_file(store):
    report = store.import_file(FINEFOOD, progress=False)
    assert report.format == "amazon_finefood" and report.rows_imported == 7_567 and report.rows_rejected == 0
    summary = store.summary()["tables"]
    assert (summary["reviews"], summary["users"], summary["items"]) == (7_567, 7_190, 1_167)
    log = store.query("SELECT pii_masks FROM import_log").iloc[0]
    assert log["pii_masks"] == report.pii_masks > 0
    assert not store.query("SELECT 1 FROM reviews WHERE regexp_matches(text, '[a-z0-9.]+@[a-z0-9]+\\.com')").shape[0]
    scores = store.query("SELECT rating, count(*) AS n FROM reviews GROUP BY 1 ORDER BY 1")["n"].tolist()
    assert scores == [692, 446, 644, 1070, 4715]


def test_amazon_json_both_layouts_and_pii(store, tmp_path):
    old = {"reviewerID": "A1", "asin": "B01", "overall": 4.0, "summary": "ok",
           "reviewText": "mail me at jane.doe@example.com or call 555-123-4567", "unixReviewTime": 1400000000}
    new = {"user_id": "AG2", "parent_asin": "B02", "rating": 5.0, "title": "great",
           "text": "card 4111 1111 1111 1111 worked", "timestamp": 1588687728923, "helpful_vote": 2}
    content = json.dumps(old) + "\n" + json.dumps(new) + "\n" + '{"reviewerID": "A3", "asin"\n'
    report = store.import_file(write(tmp_path, "r.jsonl", content), progress=False)
    assert report.format == "amazon_json" and (report.rows_imported, report.rows_rejected) == (2, 1)
    assert report.pii_masks == 3
    reviews = store.reviews_frame().set_index("user_id")
    assert reviews.loc["A1", "text"] == "mail me at [EMAIL] or call [PHONE]"
    assert reviews.loc["AG2", "text"] == "card [CARD] worked" and reviews.loc["AG2", "helpful_votes"] == 2
    assert str(reviews.loc["AG2", "ts"]).startswith("2020-05-05 14:08:48")
    assert "not a valid JSON object" in rejected(store)["reason"].iloc[0]


def test_pseudonymize_user_ids(store, tmp_path, monkeypatch):
    from tools.data.pii import pseudonymize

    monkeypatch.setenv("SHOPSIGHT_SECRET", "test-secret")
    store.import_file(write(tmp_path, "tb.csv", GOOD), pseudonymize=True, progress=False)
    users = set(store.events_frame()["user_id"])
    assert users == {pseudonymize("1", b"test-secret")} and "1" not in users
    assert store.query("SELECT pseudonymized FROM import_log")["pseudonymized"][0]
    assert not store.query("SELECT 1 FROM import_log WHERE sha256 LIKE '%test-secret%'").shape[0]


def test_generic_csv_with_mapping_and_parquet(store, tmp_path):
    csv_path = write(tmp_path, "shop.csv", "visitor;when;what;sku\nv1;2020-01-02 10:00:00;click;s1\n"
                                          "v2;1577959200;purchase;s2\nv3;;click;s3\n")
    mapping = {"columns": {"visitor": "user_id", "when": "ts", "what": "behavior", "sku": "item_id"},
               "behaviors": {"click": "view", "purchase": "buy"}, "delimiter": ";"}
    report = store.import_file(csv_path, fmt="csv", mapping=mapping, progress=False)
    assert (report.rows_imported, report.rows_rejected) == (2, 1)
    assert rejected(store)["field"].tolist() == ["when"]
    frame = pd.DataFrame({"user_id": ["p1", "p2"], "ts": pd.to_datetime(["2021-03-01", "2021-03-02"]),
                          "behavior": ["cart", "buy"], "item_id": ["i1", "i2"], "amount": [None, 9.5]})
    frame.to_parquet(tmp_path / "shop.parquet")
    report = store.import_file(tmp_path / "shop.parquet", progress=False)
    assert report.format == "parquet" and report.rows_imported == 2
    assert store.events_frame(users=["p2"])["amount"].tolist() == [9.5]
    with pytest.raises(ImportFailed, match="no column maps to"):
        store.import_file(csv_path, fmt="csv", mapping={"columns": {"visitor": "user_id"}, "delimiter": ";"},
                          progress=False)


KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from tools.data.store import EventStore
    store = EventStore(sys.argv[1])
    def on_phase(phase, n):
        if phase == "inserted":          # rows are in `events`, the transaction is open
            print("INSERTED", flush=True)
            time.sleep(60)
    store.import_file(sys.argv[2], progress=False, on_phase=on_phase)
    print("COMMITTED", flush=True)
""")


def test_import_killed_midway_leaves_store_as_before(tmp_path):
    db = tmp_path / "shop.duckdb"
    with EventStore(db) as s:
        s.import_file(write(tmp_path, "first.csv", GOOD), progress=False)
        before = s.summary()["tables"]
    big = write(tmp_path, "big.csv", "".join(f"{i % 97},{i},{i % 13},pv,{1511544070 + i}\n" for i in range(20000)))
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(db), str(big)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout.readline().strip() == "INSERTED"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    with EventStore(db, read_only=True) as s:
        assert s.summary()["tables"] == before
        assert s.query("SELECT count(*) AS n FROM import_log")["n"][0] == 1
    with EventStore(db) as s:  # and the same file imports cleanly afterwards
        assert s.import_file(big, progress=False).rows_imported == 20000


FAST_VS_CHUNKED = {
    "taobao": "\n".join([
        "1,2,3,pv,1511544070", "", "1,2,3,pv", "4,5,6,buy,1511544071,9", "7,8,9,pv,abc", "1,2,3,pv,1511544070",
        "   ", "7,8,9,zz,1511544070", "7,8,,pv,1511544070", "1,2,3,pv,1411544070", "7,8,9,FAV,1511544072",
        "1,2,3", ]),  # last line without newline, wrong column count: "truncated"
    "retailrocket": "\n".join([
        "", "timestamp,visitorid,event,itemid,transactionid", "1433221332117,257597,view,355908,",
        "1433221332117,257597,view,355908,", "", "1433221332118,1,addtocart,2", "x,1,view,2,",
        "1433221332119,1,transaction,2,77", "1433221332120,1,click,2,", "1433221332121,2,view,3,"]) + "\n",
}


@pytest.mark.parametrize("fmt", sorted(FAST_VS_CHUNKED))
def test_duckdb_fast_path_matches_chunked_reader_line_for_line(tmp_path, fmt):
    """The whole-file DuckDB reader (plain ASCII files) and the chunked Python reader agree exactly."""
    from tools.data import importers, readers

    path = write(tmp_path, f"{fmt}.csv", FAST_VS_CHUNKED[fmt])
    assert readers.scan_file(path)[1]  # plain: the default call takes the fast path
    results = []
    for n, chunk_bytes in enumerate((readers.DEFAULT_CHUNK_BYTES, 40)):  # 40 bytes: many tiny chunks
        with EventStore(tmp_path / f"s{n}.duckdb") as s:
            r = importers.import_file(s._writer(), path, fmt=fmt, progress=False, chunk_bytes=chunk_bytes)
            assert_accounted(r)
            results.append(((r.rows_read, r.rows_imported, r.rows_rejected, r.rows_dropped, r.duplicates),
                            rejected(s).to_dict("records"), s.events_frame()))
    assert results[0][:2] == results[1][:2]
    pd.testing.assert_frame_equal(results[0][2], results[1][2])
    assert results[0][1] and len(results[0][2])  # the file has rejected and accepted rows
