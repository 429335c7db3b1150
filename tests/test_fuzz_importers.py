"""Fuzzed importers (hypothesis): every format, damaged files, no crash, every row accounted for.

The cases and the properties live in bench/fuzz_importers.py (which runs 10,000 of them); here
each format gets a short derandomized run under `make test`, plus the findings the fuzzing made.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fuzz_importers import SEEDS, check_import, damaged_file, run_fuzz  # noqa: E402
from tools.data.schema import ImportFailed  # noqa: E402
from tools.data.store import EventStore  # noqa: E402

CASES_PER_FORMAT = 30


@pytest.mark.parametrize("fmt", list(SEEDS))
def test_fuzzed_files_never_crash_and_are_accounted(tmp_path, fmt):
    outcome = run_fuzz(tmp_path, fmt, CASES_PER_FORMAT)
    assert outcome["cases"] == CASES_PER_FORMAT
    assert outcome["failed"] + outcome["already"] + outcome["imported"] == CASES_PER_FORMAT


def test_damaged_parquet_page_is_a_whole_file_error(tmp_path):
    """Found by the fuzzer: a Parquet file whose header reads but whose page is damaged raised
    pyarrow's OSError mid-import instead of a clear ImportFailed."""
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"user_id": ["u1"] * 50, "item_id": ["i1"] * 50, "behavior": ["view"] * 50,
                             "timestamp": [str(1511544070 + i) for i in range(50)]}), path,
                   compression="none")
    data = bytearray(path.read_bytes())
    data[4:40] = b"\xff" * 36  # the first data page header, after the 'PAR1' magic
    path.write_bytes(bytes(data))
    with EventStore(tmp_path / "shop.duckdb") as store:
        with pytest.raises(ImportFailed, match="damaged.*re-export"):
            store.import_file(path, fmt="parquet", mapping={"columns": {}}, progress=False)
        assert store.query("SELECT count(*) AS n FROM import_log")["n"].iloc[0] == 0


def test_formula_cells_gbk_and_nul_bytes_are_rows_not_crashes(tmp_path):
    seed = SEEDS["amazon_finefood"]
    steps = [("formula", 0.9, "=cmd|' /C calc'!A0"), ("encode", 0.0, "gbk"), ("nul", 0.5, 2)]
    with EventStore(tmp_path / "shop.duckdb") as store:
        assert check_import(store, damaged_file(seed, steps, tmp_path, "f"), seed) in ("failed", "imported")


def test_out_of_range_quantity_and_rating_are_rejected_rows(tmp_path):
    """Found by the fuzzer: CAST to INTEGER ran on rejected rows too, so a quantity or rating of
    10^10 crashed the whole import with a DuckDB ConversionException."""
    cdnow = tmp_path / "cdnow.txt"
    cdnow.write_text("00001 19970101  1   11.77\n00002 19970112  10000000000   12.00\n")
    reviews = tmp_path / "r.jsonl"
    reviews.write_text('{"reviewerID": "A1", "asin": "B1", "overall": 4.0, "reviewText": "ok", "unixReviewTime": 1400000000}\n'
                       '{"reviewerID": "A2", "asin": "B1", "overall": 1e10, "reviewText": "x", "unixReviewTime": 1400000000}\n')
    with EventStore(tmp_path / "shop.duckdb") as store:
        for path, fmt in ((cdnow, "cdnow"), (reviews, "amazon_json")):
            report = store.import_file(path, fmt=fmt, progress=False)
            assert (report.rows_imported, report.rows_rejected) == (1, 1), report.summary()


def test_review_longer_than_128_kib_is_imported(tmp_path):
    """Found by the fuzzer: Python's csv field limit (131,072 characters) crashed the import."""
    seed = SEEDS["amazon_finefood"]
    long_text = "great coffee " * 20_000  # 260,000 characters
    path = tmp_path / "finefood.csv"
    path.write_text(seed.lines[0] + "\n" + seed.lines[2].rsplit(",", 1)[0] + f',"{long_text}"\n')
    with EventStore(tmp_path / "shop.duckdb") as store:
        report = store.import_file(path, fmt="amazon_finefood", progress=False)
        assert report.rows_imported == 1
        assert len(store.query("SELECT text FROM reviews")["text"].iloc[0]) > 131_072
