"""Benchmark: our Taobao import vs DuckDB's own read_csv into a table with no checks.

Generates an N-row Taobao UserBehavior-format CSV in a temporary folder (default 5,000,000 rows),
then times, each in its own subprocess (so peak RSS is per run): (1) raw `CREATE TABLE AS SELECT *
FROM read_csv(file)` (auto-detected types: the ids become BIGINT), (2) raw read_csv into the
canonical column types (VARCHAR ids, TIMESTAMP) with no checks, (3) `EventStore.import_file`
(hash, validation with line numbers, duplicates, users/items, one transaction). Prints a markdown table.

    .venv/bin/python bench/import_speed.py [--rows 5000000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def generate(path: Path, rows: int) -> None:
    """Taobao-format rows inside the release window: 50k users, 500k items, 5k categories."""
    import duckdb

    duckdb.connect().execute(f"""COPY (SELECT (1 + hash(i) % 50000)::VARCHAR, (1 + hash(i * 7) % 500000)::VARCHAR,
        (1 + hash(i * 13) % 5000)::VARCHAR,
        ['pv','pv','pv','pv','pv','pv','pv','cart','fav','buy'][1 + (hash(i * 3) % 10)::INT],
        (1511539200 + hash(i * 17) % 777600)::VARCHAR FROM range({rows}) t(i))
        TO '{path}' (HEADER false, QUOTE '')""")


def child(mode: str, csv_path: str, db: str) -> None:
    """Run one measurement in this process and print a JSON line."""
    import duckdb

    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "ours":
        sys.path.insert(0, str(ROOT))
        from tools.data.store import EventStore

        with EventStore(db) as store:
            report = store.import_file(csv_path, fmt="taobao", progress=False)
        rows = report.rows_imported
    else:
        con = duckdb.connect(db, config={"memory_limit": os.environ.get("SHOPSIGHT_DUCKDB_MEMORY", "1GB")})
        if mode == "raw":
            con.execute(f"CREATE TABLE raw AS SELECT * FROM read_csv('{csv_path}')")
        else:
            con.execute(f"""CREATE TABLE raw AS SELECT column0 AS user_id, column1 AS item_id,
                column2 AS category_id, column3 AS behavior, make_timestamp(column4 * 1000000) AS ts
                FROM read_csv('{csv_path}', header = false, columns = {{'column0': 'VARCHAR',
                'column1': 'VARCHAR', 'column2': 'VARCHAR', 'column3': 'VARCHAR', 'column4': 'BIGINT'}})""")
        rows = con.execute("SELECT count(*) FROM raw").fetchone()[0]
        con.close()
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu": time.process_time() - c0, "rss_mb": rss_mb}))


def measure(mode: str, csv_path: Path, tmp: Path) -> dict:
    db = tmp / f"{mode}.duckdb"
    for p in (db, Path(f"{db}.wal")):
        p.unlink(missing_ok=True)
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(csv_path), str(db)],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; the fastest is reported")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CSV", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="shopsight-bench-") as tmp_name:
        tmp = Path(tmp_name)
        csv_path = tmp / "UserBehavior.csv"
        generate(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 2**20
        labels = {"raw": "DuckDB read_csv, auto types (baseline)",
                  "raw_canonical": "DuckDB read_csv into canonical types, no checks",
                  "ours": "shopsight import (validated, all-or-nothing)"}
        results = {}
        for _ in range(args.repeat):
            for mode in labels:  # interleaved, so load changes hit every mode alike
                r = measure(mode, csv_path, tmp)
                if mode not in results or r["seconds"] < results[mode]["seconds"]:
                    results[mode] = r
        print(f"\n{args.rows:,} Taobao rows ({size_mb:.0f} MiB), {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}\n")
        print("| run | rows | seconds | rows/s | CPU s | peak RSS MB | vs baseline |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        base = results["raw"]["seconds"]
        for mode, label in labels.items():
            r = results[mode]
            print(f"| {label} | {r['rows']:,} | {r['seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} | "
                  f"{r['cpu']:.2f} | {r['rss_mb']:.0f} | {r['seconds'] / base:.2f}x |")


if __name__ == "__main__":
    main()
