"""Benchmark: the event store's bulk reads, ours beside the plain DuckDB query they replace.

Fills a fresh store with N synthetic events (default 6,000,000 of 100,000 users, the predictor's
scoring load) straight through SQL (the import is timed by bench/import_speed.py), then times,
in one process and interleaved: `events_frame()` vs the same rows `ORDER BY`-sorted by DuckDB and
converted with `fetch_df()`, and `item_stats()`. Reports wall and CPU seconds (CPU is the steadier
number on a shared machine).

    .venv/bin/python bench/store_reads.py [--rows 6000000] [--users 100000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.data.store import EVENT_COLS, EventStore  # noqa: E402


def fill(store: EventStore, rows: int, users: int) -> None:
    """N events over ~9 days, `users` users, 500k items in 5k categories; items table filled too."""
    con = store._writer()
    con.execute(f"""INSERT INTO events (user_id, ts, behavior, item_id, category_id, quantity, amount)
        SELECT 'u' || (1 + hash(i) % {users}), make_timestamp(((1511539200 + hash(i * 17) % 777600) * 1000000)::BIGINT),
               ['view','view','view','view','view','view','view','cart','fav','buy'][1 + (hash(i * 3) % 10)::INT],
               'i' || (1 + hash(i * 7) % 500000), 'c' || (1 + hash(i * 7) % 500000 % 5000), 1, NULL
        FROM range({rows}) t(i)""")
    con.execute("""INSERT INTO items (item_id, category_id)
        SELECT item_id, any_value(category_id) FROM events GROUP BY item_id""")
    con.execute("CHECKPOINT")


def timed(fn) -> tuple[float, float, object]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per read; the fastest is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shopsight-reads-") as tmp:
        db = Path(tmp) / "store.duckdb"
        with EventStore(db) as store:
            fill(store, args.rows, args.users)
        store = EventStore(db, read_only=True)

        def baseline():  # what events_frame did before: DuckDB sorts, fetch_df converts
            cur = store._con.cursor()
            return cur.execute(f"SELECT {EVENT_COLS} FROM events ORDER BY user_id, ts, behavior, item_id").fetch_df()

        runs = {
            "events_frame: DuckDB ORDER BY + fetch_df (baseline)": baseline,
            "events_frame() (ours: Arrow fetch + Arrow sort)": store.events_frame,
            "item_stats()": store.item_stats,
        }
        best: dict[str, tuple[float, float, int]] = {}
        frames = {}
        for _ in range(args.repeat):
            for label, fn in runs.items():
                wall, cpu, out = timed(fn)
                frames[label] = out
                if label not in best or wall < best[label][0]:
                    best[label] = (wall, cpu, len(out))
        base, ours = list(frames.values())[:2]
        same = base["user_id"].tolist() == ours["user_id"].tolist() and (base["ts"].values == ours["ts"].values).all()
        store.close()
    print(f"\n{args.rows:,} events, {args.users:,} users, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, DuckDB memory limit {os.environ.get('SHOPSIGHT_DUCKDB_MEMORY', '1GB')}\n")
    print("| read | rows | wall s | CPU s |")
    print("|---|---:|---:|---:|")
    for label, (wall, cpu, n) in best.items():
        print(f"| {label} | {n:,} | {wall:.2f} | {cpu:.2f} |")
    print(f"\nsame row order as the baseline: {same}")


if __name__ == "__main__":
    main()
