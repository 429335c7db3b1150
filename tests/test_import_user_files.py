"""Files a shop exports by hand, through the real CLI and a real DuckDB store: each imports correctly
or fails with one message naming the file and the fix (found by the new-user trial,
bench/results/new_user_trial.md)."""

from __future__ import annotations

import zipfile

import duckdb
import pytest

from assistant.cli import main

HEADER = "user_id,timestamp,event,item_id,price\n"
ROWS = "u1,2017-06-30 14:05,buy,i1,9.99\nu2,2017-06-29 10:00,view,i2,\nu1,2017-07-01 09:00,cart,i3,\n"


def _import(tmp_path, name: str, content: str | bytes, *extra: str) -> tuple[int, str]:
    src = tmp_path / name
    src.write_bytes(content if isinstance(content, bytes) else content.encode())
    db = tmp_path / "shop.duckdb"
    return main(["data", "import", str(src), "--db", str(db), "--no-progress", *extra]), str(db)


def _events(db: str) -> list[tuple]:
    with duckdb.connect(db, read_only=True) as con:
        return con.execute("SELECT user_id, ts::VARCHAR, behavior, item_id, amount FROM events ORDER BY ts").fetchall()


def test_utf8_bom_from_excel_is_not_part_of_the_first_column(tmp_path, capsys):
    code, db = _import(tmp_path, "bom.csv", b"\xef\xbb\xbf" + (HEADER + ROWS).encode())
    assert code == 0 and "imported 3 + rejected 0" in capsys.readouterr().out
    assert {row[0] for row in _events(db)} == {"u1", "u2"}


def test_utf8_bom_before_a_headerless_format(tmp_path, capsys):
    code, db = _import(tmp_path, "UserBehavior.csv", b"\xef\xbb\xbf1,2268318,2520377,pv,1511544070\n")
    assert code == 0 and "(taobao -> events" in capsys.readouterr().out
    assert _events(db)[0][0] == "1"


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_semicolon_tab_or_pipe_csv_is_read_with_its_own_delimiter(tmp_path, capsys, delimiter):
    text = (HEADER + ROWS).replace(",", delimiter)
    code, db = _import(tmp_path, "export.csv", text)
    assert code == 0 and "imported 3 + rejected 0" in capsys.readouterr().out
    assert _events(db)[-1][:4] == ("u1", "2017-07-01 09:00:00", "cart", "i3")


def test_day_first_dates_say_the_fix_then_import_with_ts_unit(tmp_path, capsys):
    text = HEADER + ROWS.replace("2017-06-30 14:05", "30/06/2017").replace("2017-06-29 10:00", "29/06/2017") \
        .replace("2017-07-01 09:00", "01/07/2017")
    code, db = _import(tmp_path, "dmy.csv", text)
    out = capsys.readouterr().out
    assert code == 0 and "imported 0 + rejected 3" in out
    assert "dmy.csv:2 field 'timestamp': timestamp '30/06/2017' is not" in out and "--ts-unit '%d/%m/%Y'" in out
    code, db = _import(tmp_path, "dmy.csv", text, "--ts-unit", "%d/%m/%Y")
    assert code == 0 and "imported 3 + rejected 0" in capsys.readouterr().out
    assert [row[1] for row in _events(db)] == ["2017-06-29 00:00:00", "2017-06-30 00:00:00", "2017-07-01 00:00:00"]
    with pytest.raises(SystemExit, match="ts_unit 'dd/mm': give s, ms, yyyymmdd or a strftime layout"):
        _import(tmp_path, "dmy2.csv", text + "u3,02/07/2017,buy,i4,\n", "--ts-unit", "dd/mm")


def test_utc_offset_is_applied_and_a_local_time_without_one_is_kept(tmp_path, capsys):
    text = HEADER + "u1,2017-06-30T14:05:00+02:00,buy,i1,\nu1,2017-06-30T14:05:00-0530,buy,i2,\n" \
        "u1,2017-06-30 14:05,buy,i3,\nu1,2017-06-30T14:05:00Z,buy,i4,\nu1,2017-06-30 14:05:00-07,buy,i5,\n"
    code, db = _import(tmp_path, "tz.csv", text)
    assert code == 0, capsys.readouterr().out
    assert {row[3]: row[1] for row in _events(db)} == {
        "i1": "2017-06-30 12:05:00", "i2": "2017-06-30 19:35:00",
        "i3": "2017-06-30 14:05:00", "i4": "2017-06-30 14:05:00", "i5": "2017-06-30 21:05:00"}  # PostgreSQL's -07


def test_duplicates_blank_lines_and_a_second_import_add_each_row_once(tmp_path, capsys):
    text = HEADER + "\n" + ROWS.replace("\n", "\n\n") + ROWS.splitlines()[0] + "\n"
    code, db = _import(tmp_path, "dups.csv", text)
    out = capsys.readouterr().out
    assert code == 0 and "imported 3 + rejected 1" in out and "dups.csv:9 field 'line': duplicate of line 3" in out
    (tmp_path / "copy.csv").write_text(text)
    code, _ = _import(tmp_path, "copy.csv", text)
    assert code == 0 and "already imported" in capsys.readouterr().out
    assert len(_events(db)) == 3


@pytest.mark.parametrize("kind", [".xlsx", ".xls"])
def test_a_spreadsheet_renamed_csv_says_save_as_csv(tmp_path, kind):
    src = tmp_path / "book.xlsx"
    if kind == ".xlsx":  # the parts every .xlsx starts with, in Excel's order
        with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as book:
            book.writestr("[Content_Types].xml", "<Types/>")
            book.writestr("_rels/.rels", "<Relationships/>")
            book.writestr("xl/workbook.xml", "<workbook/>")
            book.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
        content = src.read_bytes()
    else:  # an OLE2 compound file header, as Excel 97-2003 writes
        content = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512
    for extra in ([], ["--format", "csv"]):
        with pytest.raises(SystemExit) as err:
            _import(tmp_path, "orders.csv", content, *extra)
        message = str(err.value)
        assert "orders.csv: this is a spreadsheet workbook (" + kind in message and "nothing was written" in message
        assert "Save As" in message and "CSV UTF-8" in message


def test_an_order_export_without_behavior_or_date_says_what_to_add(tmp_path, capsys):
    text = "order_id,user_id,product_id,order_date\n7,u1,p1,2017-06-30\n7,u1,p2,2017-06-30\n8,u2,p1,2017-07-02\n"
    with pytest.raises(SystemExit) as err:
        _import(tmp_path, "orders.csv", text, "--format", "csv", "--map", "product_id=item_id")
    message = str(err.value)
    assert "orders.csv: no column maps to ts, behavior" in message
    assert "--const behavior=buy" in message and "--map order_id=ts" not in message
    no_dates = "order_id,user_id,product_id\n7,u1,p1\n"
    with pytest.raises(SystemExit, match="ts needs a date-time column"):
        _import(tmp_path, "nodates.csv", no_dates, "--format", "csv", "--map", "product_id=item_id")
    code, db = _import(tmp_path, "orders.csv", text, "--format", "csv", "--map", "product_id=item_id",
                       "--map", "order_date=ts", "--const", "behavior=buy")
    assert code == 0 and "imported 3 + rejected 0" in capsys.readouterr().out
    assert [row[2] for row in _events(db)] == ["buy"] * 3


def test_a_mapping_on_a_named_format_is_refused_not_ignored(tmp_path):
    with pytest.raises(SystemExit, match="applies to --format csv or parquet, but the file is read as taobao"):
        _import(tmp_path, "UserBehavior.csv", "1,2268318,2520377,pv,1511544070\n", "--ts-unit", "ms")


def test_info_counts_rejections_by_kind_not_by_line(tmp_path, capsys):
    text = HEADER + ROWS + ROWS + "u9,30/06/2017,buy,i9,\nu9,29/06/2017,buy,i9,\n"
    code, db = _import(tmp_path, "x.csv", text)
    capsys.readouterr()
    assert main(["data", "info", "--db", db]) == 0
    info = capsys.readouterr().out
    assert "3  duplicate of line N" in info and "2  timestamp '...' is not unix seconds" in info


def test_a_review_only_shop_gets_the_right_fix_from_predictor_and_cases(tmp_path, monkeypatch, capsys):
    """Amazon Fine Food reviews alone: training says events are missing (not 'choose a later cutoff'),
    and `cases build` still prepares the review analysis instead of failing."""
    from pathlib import Path

    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    monkeypatch.setenv("SHOPSIGHT_DB", str(tmp_path / "shop.duckdb"))
    monkeypatch.setenv("SHOPSIGHT_CHROMA_PATH", str(tmp_path / "chroma"))
    real = Path(__file__).resolve().parents[1] / "data" / "amazon_finefood_reviews_7567.csv"
    head = "".join(real.read_text(encoding="utf-8").splitlines(keepends=True)[:400])
    code, _ = _import(tmp_path, "Reviews.csv", head)
    assert code == 0 and "(amazon_finefood -> reviews" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        main(["predictor", "train", "--quiet"])
    assert "has no events (it holds" in str(err.value) and "import an events or orders file" in str(err.value)
    assert "later cutoff" not in str(err.value)
    assert main(["cases", "build", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "no customer cases to build" in out and "reviews: " in out and " analysed" in out
    # The tools read per-user facts before any answer (is this id a customer?): with no events they
    # must say "no", not crash (every `shopsight ask` raised KeyError 'tenure_days' on this shop).
    from datetime import datetime

    from tools.catalog import ToolContext
    from tools.catalog.reads import is_known_user, user_facts
    from tools.data.store import EventStore

    with EventStore(str(tmp_path / "shop.duckdb"), read_only=True) as store:
        ctx = ToolContext(store=store, cutoff=datetime(2013, 1, 1), audit_path=tmp_path / "audit.jsonl")
        # A reviewer is a user of a reviews-only shop (new_user_trial.md, Round 9d: "no user c0326" for a reviewer).
        assert is_known_user(ctx, "A3SGXH7AUHU8GW") and not is_known_user(ctx, "no-such-reviewer")
        assert len(user_facts(ctx)) == 0


def test_spreadsheet_headers_and_behavior_words_map_without_a_mapping(tmp_path, capsys):
    text = "User ID;Date;Event;Product;Price\nu1;2017-06-30 14:05;purchase;i1;9.99\nu2;2017-06-30;Add to cart;i2;\n" \
           "u3;2017-06-30;pageview;i3;9,99\nu4;2017-06-30;click;i4;\n"
    code, db = _import(tmp_path, "shop_export.csv", text.replace("Add to cart", "add_to_cart"))
    out = capsys.readouterr().out
    assert code == 0 and "read 4 = imported 2 + rejected 2" in out
    assert "shop_export.csv:4 field 'Price': Price '9,99' is not an amount >= 0: write a plain number" in out
    assert "shop_export.csv:5 field 'Event': unknown Event 'click'" in out and "behaviors: {click: view}" in out
    assert [(row[0], row[2], row[4]) for row in _events(db)] == [("u2", "cart", None), ("u1", "buy", 9.99)]


def test_a_parquet_time_with_a_zone_is_stored_as_utc(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    berlin = pa.array([1498824300_000_000], pa.timestamp("us", tz="Europe/Berlin"))  # 2017-06-30 12:05 UTC
    table = pa.table({"user_id": ["u1"], "ts": berlin, "behavior": ["buy"], "item_id": ["i1"]})
    pq.write_table(table, tmp_path / "orders.parquet")
    db = tmp_path / "shop.duckdb"
    assert main(["data", "import", str(tmp_path / "orders.parquet"), "--db", str(db), "--no-progress"]) == 0
    assert _events(str(db))[0][1] == "2017-06-30 12:05:00"  # not Berlin's 14:05


def test_utf16_unicode_text_and_a_header_only_file_say_what_is_wrong(tmp_path, capsys):
    utf16 = "user_id\ttimestamp\tevent\titem_id\nu1\t2017-06-30\tbuy\ti1\n".encode("utf-16")
    with pytest.raises(SystemExit, match=r"unicode.csv: the file is UTF-16 text .*CSV UTF-8"):
        _import(tmp_path, "unicode.csv", utf16)
    code, _ = _import(tmp_path, "empty.csv", HEADER + "\n\n")
    assert code == 0 and "the file has no data rows (only a header or blank lines)" in capsys.readouterr().out


def test_a_behaviors_mapping_adds_to_the_common_words_and_must_name_canonical_ones(tmp_path, capsys):
    text = "user,date,event,product\nu1,2017-06-30,click,i1\nu1,2017-06-30,purchase,i2\n"
    mapping = tmp_path / "m.yaml"
    mapping.write_text("behaviors: {click: view}\n")
    code, db = _import(tmp_path, "clicks.csv", text, "--format", "csv", "--mapping", str(mapping))
    assert code == 0 and "imported 2 + rejected 0" in capsys.readouterr().out
    assert sorted(row[2] for row in _events(db)) == ["buy", "view"]
    mapping.write_text("behaviors: {click: clicked}\n")
    with pytest.raises(SystemExit, match=r"behaviors \{'click': 'clicked'\} map to something other than view"):
        _import(tmp_path, "clicks2.csv", text + "u2,2017-06-30,click,i3\n", "--format", "csv", "--mapping", str(mapping))


def test_a_german_excel_export_bom_crlf_semicolon_day_first(tmp_path, capsys):
    text = "Kunde;Datum;Ereignis;Artikel;Preis\r\nu1;30.06.2017 14:05;purchase;i1;9.99\r\n"
    content = b"\xef\xbb\xbf" + text.encode()
    with pytest.raises(SystemExit) as err:
        _import(tmp_path, "export.csv", content)
    assert "separated by ';'" in str(err.value) and "--format csv (the header's delimiter is found)" in str(err.value)
    code, db = _import(tmp_path, "export.csv", content, "--format", "csv", "--map", "Kunde=user_id", "--map",
                       "Datum=ts", "--map", "Ereignis=behavior", "--map", "Artikel=item_id", "--map", "Preis=amount",
                       "--ts-unit", "%d.%m.%Y %H:%M")
    assert code == 0 and "imported 1 + rejected 0" in capsys.readouterr().out
    assert _events(db) == [("u1", "2017-06-30 14:05:00", "buy", "i1", 9.99)]


def test_a_reviews_export_is_recognised_by_its_rating_column(tmp_path, capsys):
    text = ('product_id,user_id,rating,title,review,date\np1,u1,5,Great,"Loved it, would buy again",2017-06-30\n'
            'p1,u2,1,Bad,"Arrived broken\nand late",2017-07-01\np2,u1,4.5,Ok,fine,2017-07-02\n')
    code, db = _import(tmp_path, "reviews.csv", text)
    out = capsys.readouterr().out
    assert code == 0 and "(csv -> reviews" in out and "imported 2 + rejected 1" in out
    assert "reviews.csv:5 field 'rating': rating '4.5' is not a whole rating 1..5" in out
    with duckdb.connect(db, read_only=True) as con:
        rows = con.execute("SELECT user_id, item_id, rating, title, text FROM reviews ORDER BY ts").fetchall()
    assert rows == [("u1", "p1", 5, "Great", "Loved it, would buy again"), ("u2", "p1", 1, "Bad", "Arrived broken\nand late")]


def test_an_events_file_with_a_score_column_stays_events(tmp_path, capsys):
    code, db = _import(tmp_path, "events.csv", "user_id,timestamp,event,item_id,score\nu1,2017-06-30,buy,i1,0.7\n")
    assert code == 0 and "(csv -> events" in capsys.readouterr().out
