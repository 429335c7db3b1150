"""EventStore: the DuckDB file every part of ShopSight reads (see docs/contracts.md).

One writer at a time: DuckDB lets one process hold a file read-write, or many processes hold it
read-only. Readers (tools, the app, the predictor) should open `EventStore(read_only=True)`.
Inside one process a read-only store on a file that is already open read-write shares that
database (DuckDB refuses two configurations of one file in one process) and refuses writes itself.
Reads run on a fresh cursor each, so threads (Gradio) can query one store at the same time.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from tools.data import frames as frame_import
from tools.data import importers
from tools.data.importers import ImportReport
from tools.data.schema import BEHAVIORS, REASON_KIND_SQL, SCORE_COLUMNS, TABLES, StoreError, create_table_sql
from tools.paths import default_db_path

PERIODS = ("hour", "day", "week", "month", "quarter", "year")
EVENT_COLS = "user_id, ts, behavior, item_id, category_id, quantity, amount"
EVENT_ORDER = ("user_id", "ts", "behavior", "item_id")  # events_frame's row order


class EventStore:
    """The event store over one DuckDB file (or ':memory:')."""

    def __init__(self, path: str | Path | None = None, read_only: bool = False):
        self.path = str(path) if path is not None else str(default_db_path())
        self.read_only = read_only
        self._lock = threading.Lock()
        memory = os.environ.get("SHOPSIGHT_DUCKDB_MEMORY", "1GB")
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            if read_only and not Path(self.path).exists():
                raise StoreError(
                    f"no event store at {self.path}; create one with `shopsight data generate` "
                    "or `shopsight data import FILE`"
                )
        try:
            self._con = duckdb.connect(self.path, read_only=read_only and self.path != ":memory:")
        except duckdb.ConnectionException as exc:
            if "different configuration" not in str(exc):
                raise StoreError(f"cannot open {self.path}: {exc}") from None
            if not read_only:
                raise StoreError(f"{self.path} is open read-only in this process; close those stores "
                                 "before opening it for writing") from None
            # Already open read-write in this process: share that database; this store refuses writes.
            self._con = duckdb.connect(self.path, read_only=False)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise StoreError(f"cannot open {self.path}: {exc}") from None
            from tools.data.store_holder import held_store_error  # who holds it, and what to do

            raise held_store_error(self.path, str(exc), writing=not read_only) from None
        # A setting, not a connect() config: a config would clash with other connections to the file.
        self._con.execute(f"SET memory_limit = '{memory}'")
        if not read_only:
            for name in TABLES:
                self._con.execute(create_table_sql(name))
        elif not self._has_tables():
            raise StoreError(f"{self.path} has no ShopSight tables; import data first (`shopsight data generate`)")

    # ------------------------------------------------------------------ plumbing
    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        con, self._con = getattr(self, "_con", None), None
        if con is not None:
            con.close()

    def _has_tables(self) -> bool:
        names = {r[0] for r in self._con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        return "events" in names

    def _writer(self) -> duckdb.DuckDBPyConnection:
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only; open EventStore(read_only=False) to write")
        if self._con is None:
            raise StoreError("the store is closed")
        return self._con

    def _df(self, sql: str, params: list | dict | None = None) -> pd.DataFrame:
        if self._con is None:
            raise StoreError("the store is closed")
        cur = self._con.cursor()  # one cursor per read: safe across threads
        try:
            return _to_pandas(cur.execute(sql, params))
        finally:
            cur.close()

    def _one(self, sql: str, params: list | None = None):
        cur = self._con.cursor()
        try:
            return cur.execute(sql, params).fetchone()
        finally:
            cur.close()

    # ------------------------------------------------------------------ writes
    def import_file(self, path, fmt: str | None = None, mapping: dict | None = None,
                    pseudonymize: bool = False, progress: bool = True, on_phase=None) -> ImportReport:
        """Import one file, all or nothing; see `tools.data.importers.import_file`."""
        with self._lock:
            return importers.import_file(self._writer(), path, fmt=fmt, mapping=mapping,
                                         pseudonymize=pseudonymize, progress=progress, on_phase=on_phase)

    def import_frames(self, source_name: str, events=None, reviews=None, items=None, users=None,
                      fmt: str = "frames") -> ImportReport:
        """Import DataFrames in canonical columns (the demo shop, tests); all or nothing, idempotent."""
        with self._lock:
            return frame_import.import_frames(self._writer(), source_name, events=events, reviews=reviews,
                                              items=items, users=users, fmt=fmt)

    def replace_scores(self, scores: pd.DataFrame, drop_other_versions: bool = False) -> None:
        """Write predictor scores, replacing earlier rows of the same cutoff, horizon and model version.

        `drop_other_versions`: also delete every row another checkpoint wrote, in the same transaction
        (`shopsight predictor score`: scores of a replaced checkpoint are never served beside the new ones).
        """
        missing = [c for c in SCORE_COLUMNS if c not in scores.columns and "NOT NULL" in SCORE_COLUMNS[c]]
        if missing:
            raise StoreError(f"scores lack columns {missing}; expected {list(SCORE_COLUMNS)}")
        frame = scores.reindex(columns=list(SCORE_COLUMNS)).copy()
        frame["cutoff"] = pd.to_datetime(frame["cutoff"])
        con = self._writer()
        with self._lock:
            con.execute("BEGIN TRANSACTION")
            try:
                con.register("_scores", frame)
                if drop_other_versions:
                    con.execute("DELETE FROM scores WHERE model_version NOT IN (SELECT model_version FROM _scores)")
                con.execute("""DELETE FROM scores s WHERE EXISTS (SELECT 1 FROM _scores n
                    WHERE n.cutoff = s.cutoff AND n.horizon_days = s.horizon_days
                      AND n.model_version = s.model_version)""")
                con.execute("INSERT INTO scores SELECT * FROM _scores")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("_scores")

    def clear_scores(self) -> int:
        """Delete every stored score (one statement, so all or nothing); returns how many rows were deleted."""
        with self._lock:
            return int(self._writer().execute("DELETE FROM scores").fetchone()[0])

    # ------------------------------------------------------------------ reads
    def events_frame(self, until: datetime | None = None, since: datetime | None = None,
                     users: list[str] | None = None) -> pd.DataFrame:
        """Events with since < ts <= until (either bound optional), sorted by user, then time."""
        where, params = self._window(since, until)
        join = ""
        cur = self._con.cursor()
        try:
            if users is not None:
                cur.register("_users", pa.table({"user_id": pa.array([str(u) for u in users], pa.string())}))
                join = "SEMI JOIN _users USING (user_id)"
            # Sorted in Arrow, not by ORDER BY: DuckDB's string sort under the store's memory limit
            # spills to disk on millions of rows (minutes); Arrow's sort needs no limit and is about
            # 2x cheaper in CPU (bench/store_reads.py). Same binary string order as DuckDB's.
            sql = f"SELECT {EVENT_COLS} FROM events {join} {where}"
            table = cur.execute(sql, params).to_arrow_table()
            return table.sort_by([(k, "ascending") for k in EVENT_ORDER]).to_pandas()
        finally:
            cur.close()

    def user_history(self, user_id: str, until=None, last_n: int | None = None) -> pd.DataFrame:
        """One user's events up to `until`, oldest first (the last `last_n` if given)."""
        self._check_user(user_id)
        where, params = self._window(None, until, extra="user_id = $user")
        params["user"] = str(user_id)
        limit = f"LIMIT {int(last_n)}" if last_n else ""
        return self._df(f"""SELECT * FROM (SELECT {EVENT_COLS} FROM events {where}
            ORDER BY ts DESC, behavior, item_id {limit}) ORDER BY ts, behavior, item_id""", params)

    def reviews_frame(self, item_id=None, category_id=None, user_id=None, since=None, until=None) -> pd.DataFrame:
        """Reviews filtered by item, category (via items), user and time window; oldest first."""
        conds, params = [], {}
        if item_id is not None:
            self._check_id("item", item_id)
            conds.append("r.item_id = $item")
            params["item"] = str(item_id)
        if user_id is not None:
            self._check_user(user_id)
            conds.append("r.user_id = $user")
            params["user"] = str(user_id)
        if category_id is not None:
            if not self._one("SELECT 1 FROM items WHERE category_id = ? LIMIT 1", [str(category_id)]):
                raise StoreError(f"unknown category_id {category_id!r}; list categories with store.category_stats()")
            conds.append("r.item_id IN (SELECT item_id FROM items WHERE category_id = $cat)")
            params["cat"] = str(category_id)
        if since is not None:
            conds.append("r.ts > $since")
            params["since"] = pd.Timestamp(since).to_pydatetime()
        if until is not None:
            conds.append("r.ts <= $until")
            params["until"] = pd.Timestamp(until).to_pydatetime()
        where = "WHERE " + " AND ".join(conds) if conds else ""
        return self._df(f"SELECT r.* FROM reviews r {where} ORDER BY r.ts, r.review_id", params)

    def items_frame(self) -> pd.DataFrame:
        return self._df("SELECT * FROM items ORDER BY item_id")

    def users_frame(self) -> pd.DataFrame:
        return self._df("SELECT * FROM users ORDER BY user_id")

    def active_users(self, since, until) -> list[str]:
        """Users with at least one event in since < ts <= until, sorted."""
        where, params = self._window(since, until)
        return [r[0] for r in self._con.cursor().execute(
            f"SELECT DISTINCT user_id FROM events {where} ORDER BY user_id", params).fetchall()]

    def behavior_counts(self, period: str = "week", since=None, until=None) -> pd.DataFrame:
        """Events and distinct users per period start and behavior (long format)."""
        if period not in PERIODS:
            raise StoreError(f"period {period!r} is not one of {', '.join(PERIODS)}")
        where, params = self._window(since, until)
        return self._df(f"""SELECT date_trunc('{period}', ts) AS period_start, behavior,
            count(*) AS events, count(DISTINCT user_id) AS users FROM events {where}
            GROUP BY ALL ORDER BY period_start, behavior""", params)

    def item_stats(self, item_ids=None, until=None) -> pd.DataFrame:
        """Per item: events by behavior, users, revenue, view->buy conversion, reviews, mean rating."""
        where, params = self._window(None, until)
        filt, efilt = "", ""
        if item_ids is not None:
            ids = [str(i) for i in item_ids]
            known = {r[0] for r in self._con.cursor().execute(
                "SELECT item_id FROM items WHERE item_id IN (SELECT unnest($ids))", {"ids": ids}).fetchall()}
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise StoreError(f"unknown item_id {unknown[:5]}; list items with store.items_frame()")
            filt = "WHERE i.item_id IN (SELECT unnest($ids))"
            # Filter before aggregating: a tool asking about 3 items must not aggregate the whole shop.
            efilt = ("AND " if where else "WHERE ") + "item_id IN (SELECT unnest($ids))"
            params["ids"] = ids
        rwhere = where.replace("ts", "r.ts") if where else ""
        rfilt = efilt.replace("item_id", "r.item_id").replace("AND ", "AND " if rwhere else "WHERE ", 1)
        return self._df(f"""
            WITH e AS (SELECT item_id, {self._behavior_sums()}, count(DISTINCT user_id) AS users,
                         sum(amount) FILTER (WHERE behavior = 'buy') AS revenue, max(ts) AS last_ts
                       FROM events {where} {efilt} GROUP BY item_id),
                 r AS (SELECT item_id, count(*) AS reviews, avg(rating) AS mean_rating FROM reviews r {rwhere}
                       {rfilt} GROUP BY item_id)
            SELECT i.item_id, i.category_id, i.name, i.price,
                   {", ".join(f"coalesce(e.{b}s, 0) AS {b}s" for b in BEHAVIORS)},
                   coalesce(e.users, 0) AS users, coalesce(e.revenue, 0) AS revenue,
                   CASE WHEN e.views > 0 THEN e.buys / e.views END AS conversion, e.last_ts,
                   coalesce(r.reviews, 0) AS reviews, r.mean_rating
            FROM items i LEFT JOIN e USING (item_id) LEFT JOIN r USING (item_id) {filt}
            ORDER BY buys DESC, views DESC, i.item_id""", params)

    def category_stats(self, until=None) -> pd.DataFrame:
        """Per category: items, events by behavior, users, revenue, reviews, mean rating."""
        where, params = self._window(None, until, alias="e")
        return self._df(f"""
            WITH e AS (SELECT coalesce(e.category_id, i.category_id) AS category_id, {self._behavior_sums()},
                         count(DISTINCT e.user_id) AS users, sum(e.amount) FILTER (WHERE behavior = 'buy') AS revenue
                       FROM events e LEFT JOIN items i USING (item_id) {where} GROUP BY 1),
                 r AS (SELECT i.category_id, count(*) AS reviews, avg(r.rating) AS mean_rating
                       FROM reviews r JOIN items i USING (item_id) GROUP BY 1),
                 n AS (SELECT category_id, count(*) AS items FROM items GROUP BY 1)
            SELECT e.category_id, coalesce(n.items, 0) AS items,
                   {", ".join(f"e.{b}s" for b in BEHAVIORS)}, e.users, coalesce(e.revenue, 0) AS revenue,
                   coalesce(r.reviews, 0) AS reviews, r.mean_rating
            FROM e LEFT JOIN n USING (category_id) LEFT JOIN r USING (category_id)
            WHERE e.category_id IS NOT NULL ORDER BY e.buys DESC, e.views DESC, e.category_id""", params)

    def scores_frame(self, cutoff=None, horizon_days=None) -> pd.DataFrame:
        conds, params = [], {}
        if cutoff is not None:
            conds.append("cutoff = $cutoff")
            params["cutoff"] = pd.Timestamp(cutoff).to_pydatetime()
        if horizon_days is not None:
            conds.append("horizon_days = $h")
            params["h"] = int(horizon_days)
        where = "WHERE " + " AND ".join(conds) if conds else ""
        return self._df(f"SELECT * FROM scores {where} ORDER BY cutoff, horizon_days, p_churn DESC, user_id", params)

    def time_span(self) -> tuple[datetime | None, datetime | None]:
        """First and last event time (reviews if there are no events)."""
        lo, hi = self._one("SELECT min(ts), max(ts) FROM events")
        if lo is None:
            lo, hi = self._one("SELECT min(ts), max(ts) FROM reviews")
        return lo, hi

    def has_user(self, user_id: str) -> bool:
        return self._one("""SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $u)
            OR EXISTS (SELECT 1 FROM events WHERE user_id = $u)
            OR EXISTS (SELECT 1 FROM reviews WHERE user_id = $u)""", {"u": str(user_id)})[0]

    def summary(self) -> dict:
        """Tables and row counts, time span, rejected rows by reason, the last imports."""
        counts = {name: self._one(f"SELECT count(*) FROM {name}")[0] for name in TABLES}
        lo, hi = self.time_span()
        by_reason = self._df(f"""SELECT {REASON_KIND_SQL} AS reason, count(*) AS n FROM rejected
            GROUP BY 1 ORDER BY n DESC LIMIT 20""")
        imports = self._df("""SELECT import_id, source_file, format, target_table, rows_read, rows_imported,
            rows_rejected, rows_dropped, duplicates, pii_masks, pseudonymized, finished_at
            FROM import_log ORDER BY import_id DESC LIMIT 10""")
        return {
            "db_path": self.path,
            "tables": counts,
            "span": (lo.isoformat() if lo else None, hi.isoformat() if hi else None),
            "rejected_by_reason": dict(zip(by_reason["reason"], by_reason["n"].astype(int))),
            "imports": imports.to_dict("records"),
        }

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Run one read-only SELECT (or WITH ... SELECT); anything else raises StoreError."""
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise StoreError(f"invalid SQL: {exc}") from None
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise StoreError("query() runs exactly one SELECT statement; writes go through import_file")
        return self._df(sql, params)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _behavior_sums() -> str:
        return ", ".join(f"count(*) FILTER (WHERE behavior = '{b}') AS {b}s" for b in BEHAVIORS)

    @staticmethod
    def _window(since, until, extra: str | None = None, alias: str | None = None) -> tuple[str, dict]:
        col = f"{alias}.ts" if alias else "ts"
        conds, params = [], {}
        if extra:
            conds.append(extra)
        if since is not None:
            conds.append(f"{col} > $since")
            params["since"] = pd.Timestamp(since).to_pydatetime()
        if until is not None:
            conds.append(f"{col} <= $until")
            params["until"] = pd.Timestamp(until).to_pydatetime()
        if since is not None and until is not None and params["since"] >= params["until"]:
            raise StoreError(f"empty window: since {since} is not before until {until}")
        return ("WHERE " + " AND ".join(conds) if conds else ""), params

    def _check_user(self, user_id: str) -> None:
        if not self.has_user(user_id):
            raise StoreError(f"unknown user_id {user_id!r}; list users with store.users_frame() "
                             "or `shopsight data info`")

    def _check_id(self, kind: str, value: str) -> None:
        if not self._one(f"SELECT EXISTS (SELECT 1 FROM {kind}s WHERE {kind}_id = ?)", [str(value)])[0]:
            raise StoreError(f"unknown {kind}_id {value!r}; list {kind}s with store.{kind}s_frame()")


def _to_pandas(result: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Result -> DataFrame through Arrow (about 2x faster than fetch_df for string columns)."""
    return result.to_arrow_table().to_pandas()
