"""Fuzz every importer format with hypothesis: no crash, every row accounted for, nothing half-written.

Each case starts from a valid file of one format and breaks it: random bytes, truncation, a wrong
encoding (GBK, UTF-16, Latin-1), a huge field, NUL bytes, formula-like cells (`=cmd|...`),
duplicated and random lines; a Parquet file gets the same cell damage or corrupted bytes. One
import per case, into one store per format. What must hold (`check_import`):
- the import either raises `ImportFailed` (a whole-file error) and then the store is unchanged,
  or returns a report with rows_read == rows_imported + rows_rejected + rows_dropped, and the
  store grew by exactly the imported and rejected rows it reports;
- any other exception is a crash.
tests/test_fuzz_importers.py runs a few hundred cases under `make test`; this script runs the
large count and writes bench/results/fuzz_importers.md:

    .venv/bin/python bench/fuzz_importers.py --cases 10000 [--big-rows 1000000] [--formats csv ...] [--seed N]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tools.data.schema import ImportFailed  # noqa: E402
from tools.data.store import EventStore  # noqa: E402

FORMULAS = ["=cmd|' /C calc'!A0", "=HYPERLINK(\"http://x.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1:A9)",
            "=1+1\t", "\t=cmd"]
FINEFOOD_HEADER = "Id,ProductId,UserId,ProfileName,HelpfulnessNumerator,HelpfulnessDenominator,Score,Time,Summary,Text"


@dataclass(frozen=True)
class Seed:
    """A valid file of one format: its lines (header first, if any) and how to import it."""

    fmt: str
    suffix: str
    lines: tuple[str, ...]
    mapping: dict | None = None


SEEDS = {
    "taobao": Seed("taobao", ".csv", ("1,2268318,2520377,pv,1511544070", "1,2333346,2520771,pv,1511561733",
                                      "2,5,6,buy,1511600000")),
    "retailrocket": Seed("retailrocket", ".csv", ("timestamp,visitorid,event,itemid,transactionid",
                                                  "1433221332117,257597,view,355908,",
                                                  "1433224214164,992329,transaction,248676,4000")),
    "cdnow": Seed("cdnow", ".txt", ("00001 19970101  1   11.77", "00002 19970112  1   12.00",
                                    "00002 19970112  5   77.00")),
    "amazon_finefood": Seed("amazon_finefood", ".csv", (
        FINEFOOD_HEADER,
        '1,B001E4KFG0,A3SGXH7AUHU8GW,delmartian,1,1,5,1303862400,Good Quality,"I have bought several, call 555-123-4567"',
        '2,B00813GRG4,A1D87F6ZCVE5NK,dll pa,0,0,1,1346976000,Not as Advertised,"Product arrived labeled as Jumbo"')),
    "amazon_json": Seed("amazon_json", ".jsonl", (
        json.dumps({"reviewerID": "A1", "asin": "B01", "overall": 4.0, "summary": "ok",
                    "reviewText": "mail me at jane@example.com", "unixReviewTime": 1400000000}),
        json.dumps({"user_id": "AG2", "parent_asin": "B02", "rating": 5.0, "title": "great",
                    "text": "很好 4111 1111 1111 1111", "timestamp": 1588687728923, "helpful_vote": 2}))),
    "csv": Seed("csv", ".csv", ("user_id,item_id,behavior,timestamp", "u1,i1,view,1511544070",
                                "u2,i2,buy,2017-11-25 10:00:00"), mapping={"columns": {}}),
    "parquet": Seed("parquet", ".parquet", ("user_id,item_id,behavior,timestamp", "u1,i1,view,1511544070",
                                            "u2,i2,buy,1511600000"), mapping={"columns": {}}),
}

# One damage step: (kind, where in [0, 1), a payload). Drawn as a list and applied in order.
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_step = st.one_of(
    st.tuples(st.just("bytes"), st.floats(0, 1), st.binary(min_size=1, max_size=24)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.none()),
    st.tuples(st.just("encode"), st.just(0.0), st.sampled_from(["gbk", "utf-16", "latin-1", "utf-8-sig"])),
    st.tuples(st.just("huge"), st.floats(0, 1), st.integers(1_000, 300_000)),
    st.tuples(st.just("nul"), st.floats(0, 1), st.integers(1, 4)),
    st.tuples(st.just("formula"), st.floats(0, 1), st.sampled_from(FORMULAS)),
    st.tuples(st.just("duplicate"), st.floats(0, 1), st.none()),
    st.tuples(st.just("line"), st.floats(0, 1), _text),
    st.tuples(st.just("cell"), st.floats(0, 1), _text),
)
damage = st.lists(_step, min_size=1, max_size=4)


def _cell_edit(lines: list[str], where: float, value: str) -> None:
    """Replace one cell of one data line with `value` (keeps the delimiter structure)."""
    body = range(1 if len(lines) > 1 else 0, len(lines))
    if not len(body):
        return
    i = body[int(where * len(body)) % len(body)]
    sep = "," if "," in lines[i] else " "
    cells = lines[i].split(sep)
    cells[int(where * 97) % len(cells)] = value
    lines[i] = sep.join(cells)


def damaged_file(seed: Seed, steps: list[tuple], folder: Path, name: str) -> Path:
    """Write `seed` with `steps` applied; returns the path."""
    lines = list(seed.lines)
    raw_steps = []
    encoding = "utf-8"
    for kind, where, payload in steps:
        if kind in ("formula", "cell"):
            _cell_edit(lines, where, payload.replace("\n", " ") if seed.fmt != "parquet" else payload)
        elif kind == "huge":
            _cell_edit(lines, where, "x" * payload)
        elif kind == "duplicate":
            lines.append(lines[int(where * len(lines)) % len(lines)])
        elif kind == "line":
            lines.insert(int(where * (len(lines) + 1)), payload)
        elif kind == "encode":
            encoding = payload
            _cell_edit(lines, 0.5, "中文评论 好吃")
        else:
            raw_steps.append((kind, where, payload))
    path = folder / f"{name}{seed.suffix}"
    if seed.fmt == "parquet":
        header, *rows = [line.split(",") for line in lines]
        width = len(header)
        rows = [(r + [""] * width)[:width] for r in rows]
        table = pa.table({h: [r[j] for r in rows] for j, h in enumerate(header)})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
    else:
        data = "\n".join(lines).encode(encoding, errors="replace") + b"\n"
    for kind, where, payload in raw_steps:
        at = int(where * len(data))
        if kind == "bytes":
            data = data[:at] + payload + data[at:]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "nul":
            data = data[:at] + b"\0" * payload + data[at:]
    path.write_bytes(data)
    return path


def store_counts(store: EventStore) -> dict[str, int]:
    tables = ("events", "reviews", "rejected", "import_log", "users", "items")
    row = store.query("SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in tables)).iloc[0]
    return {t: int(v) for t, v in zip(tables, row)}


def check_import(store: EventStore, path: Path, seed: Seed) -> str:
    """Import `path` and check the properties; returns 'failed' (whole-file error), 'already' or
    'imported'. Raises AssertionError when a property breaks; any other exception is a crash."""
    before = store_counts(store)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    replaced_rejects = int(store.query(
        "SELECT count(*) AS n FROM rejected WHERE import_id IN "
        "(SELECT import_id FROM import_log WHERE sha256 = ? AND rows_imported = 0)", [sha])["n"].iloc[0])
    try:
        report = store.import_file(path, fmt=seed.fmt, mapping=seed.mapping, progress=False)
    except ImportFailed as exc:
        assert str(exc), "an ImportFailed needs a message"
        assert store_counts(store) == before, f"{path.name}: a whole-file error changed the store"
        return "failed"
    after = store_counts(store)
    assert report.rows_read == report.rows_imported + report.rows_rejected + report.rows_dropped, report
    if report.already_imported:
        assert after == before, f"{path.name}: an already-imported file changed the store"
        return "already"
    assert after[report.target_table] - before[report.target_table] == report.rows_imported, report
    assert after["rejected"] - before["rejected"] == report.rows_rejected - replaced_rejects, report
    return "imported"


def run_fuzz(folder: Path, fmt: str, cases: int, seed_no: int = 0) -> dict[str, int]:
    """Run `cases` hypothesis cases for one format into one store; counts of each outcome."""
    seed = SEEDS[fmt]
    outcome = {"cases": 0, "failed": 0, "already": 0, "imported": 0}
    store = EventStore(folder / f"{fmt}.duckdb")

    # seed 0: hypothesis's derandomized stream (what the tests run); another seed: other cases.
    @settings(max_examples=cases, deadline=None, database=None, derandomize=seed_no == 0,
              suppress_health_check=list(HealthCheck))
    @hypothesis_seed(seed_no)
    @given(steps=damage)
    def one_case(steps):
        outcome["cases"] += 1
        path = damaged_file(seed, steps, folder, f"{fmt}-{outcome['cases']}")
        try:
            outcome[check_import(store, path, seed)] += 1
        finally:
            path.unlink()

    try:
        one_case()
    finally:
        store.close()
    return outcome


def big_file_case(folder: Path, rows: int) -> dict:
    """A Taobao file of `rows` rows with a bad row every 1,000 and a truncated last line."""
    path = folder / "big.csv"
    with path.open("w") as fh:
        for i in range(rows):
            if i % 1000 == 999:
                fh.write(f"{i},{i % 500},7,click,1511544070\n")
            else:
                fh.write(f"{i % 50_000},{i % 500_000},{i % 5000},pv,{1511544070 + i % 700_000}\n")
        fh.write("1,2,3,p")
    with EventStore(folder / "big.duckdb") as store:
        t0 = time.perf_counter()
        outcome = check_import(store, path, Seed("taobao", ".csv", ()))
        report = store.query("SELECT rows_read, rows_imported, rows_rejected, rows_dropped FROM import_log").iloc[0]
    return {"outcome": outcome, "seconds": time.perf_counter() - t0, **{k: int(v) for k, v in report.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="total cases, split evenly over the formats")
    parser.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the one large file (0: skip)")
    parser.add_argument("--formats", nargs="*", default=list(SEEDS), choices=list(SEEDS))
    parser.add_argument("--seed", type=int, default=0, help="0: the derandomized cases; N: another stream")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz_importers.md"))
    args = parser.parse_args()
    per_format = -(-args.cases // len(args.formats))
    rows, crashes = [], 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            t0 = time.perf_counter()
            try:
                outcome = run_fuzz(Path(tmp), fmt, per_format, args.seed)
                crash = ""
            except Exception as exc:  # noqa: BLE001 - a crash is the finding; report it, go on
                outcome, crash = {"cases": 0, "failed": 0, "already": 0, "imported": 0}, f"{type(exc).__name__}: {exc}"
                crashes += 1
            rows.append((fmt, outcome, time.perf_counter() - t0, crash[:300]))
            print(fmt, outcome, f"{time.perf_counter() - t0:.0f}s", crash[:300], flush=True)
        big = big_file_case(Path(tmp), args.big_rows) if args.big_rows else None
    total = sum(o["cases"] for _, o, _, _ in rows)
    lines = [
        "# Fuzzed importers (hypothesis)", "",
        f"Command: `.venv/bin/python bench/fuzz_importers.py {' '.join(sys.argv[1:])}`",
        f"Total: {total:,} cases, {crashes} crashes (a crash stops that format's run), "
        f"{time.perf_counter() - started:.0f} s.", "",
        "| format | cases | whole-file errors (store unchanged) | already imported | imported (accounted) | seconds | crash |",
        "|---|---|---|---|---|---|---|",
    ]
    for fmt, o, secs, crash in rows:
        lines.append(f"| {fmt} | {o['cases']:,} | {o['failed']:,} | {o['already']:,} | {o['imported']:,} | "
                     f"{secs:.0f} | {crash or 'none'} |")
    if big:
        lines += ["", f"Large file: {args.big_rows:,} Taobao rows, a bad row every 1,000 and a truncated last "
                  f"line: {big['outcome']}, read {big['rows_read']:,} = imported {big['rows_imported']:,} + "
                  f"rejected {big['rows_rejected']:,} + dropped {big['rows_dropped']:,}, {big['seconds']:.1f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
