"""Import a source file into the event store: all or nothing, every line accounted for.

Flow of one import (one DuckDB transaction; a crash or kill before COMMIT leaves the store as it
was): hash the file (a file already imported adds nothing) -> stream chunks (readers.py) ->
validate each chunk in SQL into a temporary staging table (validate.py) -> find duplicates ->
insert accepted rows, rejected rows with their reasons, new users/items, and one import_log row.

Fast path: a plain-ASCII delimited file (Taobao, RetailRocket) is not chunked in Python; DuckDB's
parallel CSV reader reads it whole, line numbers from its file order (readers.split_lines_sql), and
one INSERT ... SELECT validates it. Other files, or a DuckDB read error, take the chunked reader;
tests/test_importers.py checks that both give the same rows, rejects and line numbers.

Invariant, checked before COMMIT: rows_read = rows_imported + rows_rejected + rows_dropped.

Re-imports (docs/contracts.md, "Re-importing a file"): a file whose content (sha256) imported rows
before adds nothing, whatever its name; a file whose earlier attempts imported nothing (every row
rejected or dropped) is imported again and replaces those attempts, so their rejected rows are
never stored twice; new content under an old name is a new import (rows already stored are
counted as duplicates).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from tools.data import readers
from tools.data.formats import FormatSpec, check_first_line
from tools.data.import_source import header_line, open_chunks, resolve_spec
from tools.data.pii import hmac_pads, register_sql, secret_key
from tools.data.schema import REASON_KIND_SQL, ImportFailed, RowProblem
from tools.data.validate import DEDUPE_KEY, STAGE_COLUMNS, chunk_select

PhaseFn = Callable[[str, int], None]  # (phase name, rows so far): for UIs and the kill test
SHOW_PROBLEMS = 5


@dataclass
class ImportReport:
    """What one import did. `rows_read == rows_imported + rows_rejected + rows_dropped` always."""

    source_file: str
    format: str
    target_table: str
    sha256: str = ""
    import_id: int | None = None
    rows_read: int = 0
    rows_imported: int = 0
    rows_rejected: int = 0
    rows_dropped: int = 0
    duplicates: int = 0
    pii_masks: int = 0
    pseudonymized: bool = False
    already_imported: bool = False
    replaced_imports: list[int] = field(default_factory=list)  # earlier attempts of this file that imported nothing
    seconds: float = 0.0
    added: dict[str, int] = field(default_factory=dict)  # rows added per table
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    problems: list[RowProblem] = field(default_factory=list)  # the first few rejected rows
    window_label: str = ""

    def summary(self) -> str:
        """Human-readable lines for the CLI."""
        if self.already_imported:
            return (
                f"{self.source_file}: already imported (import {self.import_id}, same sha256 "
                f"{self.sha256[:12]}); nothing added."
            )
        lines = [
            f"{self.source_file} ({self.format} -> {self.target_table}, import {self.import_id}, "
            f"{self.seconds:.1f}s): read {self.rows_read:,} = imported {self.rows_imported:,} "
            f"+ rejected {self.rows_rejected:,} + dropped {self.rows_dropped:,}"
        ]
        if not self.rows_read:
            lines.append("  the file has no data rows (only a header or blank lines): nothing to import")
        if self.replaced_imports:
            lines.append("  replaces import " + ", ".join(map(str, self.replaced_imports))
                         + " (same file, nothing imported then): its rejected rows were removed")
        if self.rows_dropped:
            lines.append(f"  dropped: outside {self.window_label or 'the format window'}")
        if self.duplicates:
            lines.append(f"  duplicate rows: {self.duplicates:,}")
        if self.pii_masks:
            lines.append(f"  PII masked in review text: {self.pii_masks:,} spans")
        if self.pseudonymized:
            lines.append("  user ids pseudonymized (keyed hash)")
        extra = {k: v for k, v in self.added.items() if k != self.target_table and v}
        if extra:
            lines.append("  also added: " + ", ".join(f"{v:,} {k}" for k, v in extra.items()))
        for problem in self.problems:
            lines.append("  rejected " + problem.describe(self.source_file))
        if self.rows_rejected > len(self.problems):
            lines.append(
                f"  ... {self.rows_rejected - len(self.problems):,} more; see them with "
                f"`shopsight data info` or SELECT * FROM rejected WHERE import_id = {self.import_id}"
            )
        return "\n".join(lines)


def import_file(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    fmt: str | None = None,
    mapping: dict | None = None,
    pseudonymize: bool = False,
    progress: bool = True,
    on_phase: PhaseFn | None = None,
    chunk_bytes: int = readers.DEFAULT_CHUNK_BYTES,
) -> ImportReport:
    """Import one file through `con` (a read-write connection); see the module docstring."""
    started = utcnow()
    t0 = time.perf_counter()
    path = Path(path)
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file; check the path")
    if path.stat().st_size == 0:
        raise ImportFailed(f"{path}: the file is empty (0 bytes); nothing was imported. Check the export.")
    spec = resolve_spec(path, fmt)
    if mapping and spec.name not in ("csv", "parquet"):  # a named format fixes its own columns and units
        raise ImportFailed(
            f"{path}: a mapping (--map, --const, --ts-unit, --mapping) applies to --format csv or parquet, but the "
            f"file is read as {spec.name}; drop the mapping, or add --format csv to map its columns yourself.")
    if spec.engine not in ("parquet",):
        check_first_line(path, spec)
    sha, plain, truncated_line = readers.scan_file(path)
    report = ImportReport(str(path), spec.name, spec.target, sha256=sha, pseudonymized=pseudonymize,
                          window_label=spec.window_label)
    fast = (plain and spec.engine == "split" and len(spec.delimiter) == 1
            and chunk_bytes == readers.DEFAULT_CHUNK_BYTES and not set("*?[{") & set(str(path)))  # no glob chars
    if fast:
        # Fast path: DuckDB reads and splits the whole file in parallel; no Python per chunk.
        skip = header_line(path, spec) if spec.header else None
        chunks, expected = [readers.split_lines_sql(path, spec, truncated_line, skip)], spec.n_fields
    else:
        chunks, expected, spec = open_chunks(path, spec, mapping, chunk_bytes, progress)  # checks the mapping
    report.format, report.target_table = spec.name, spec.target
    prior = con.execute(
        "SELECT import_id FROM import_log WHERE sha256 = ? AND rows_imported > 0 ORDER BY import_id LIMIT 1", [sha]
    ).fetchone()
    if prior:
        getattr(chunks, "close", lambda: None)()
        report.already_imported, report.import_id = True, prior[0]
        return report
    # Earlier attempts that imported nothing are replaced (in the import's transaction) rather
    # than kept beside it: their rejected rows would otherwise be stored twice.
    report.replaced_imports = [r[0] for r in con.execute(
        "SELECT import_id FROM import_log WHERE sha256 = ? AND rows_imported = 0 ORDER BY import_id", [sha]
    ).fetchall()]
    keep_raw = spec.engine in ("csv", "parquet")  # records there are not lines we can re-read

    # Staging happens outside the transaction, in a temp table DuckDB can spill to disk past this
    # limit (transaction-local rows cannot be spilled): peak RSS stays bounded by it, not the file.
    limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    con.execute(f"SET memory_limit = '{os.environ.get('SHOPSIGHT_IMPORT_MEMORY', '768MB')}'")
    try:
        try:
            run_chunks(con, report, spec, chunks, expected, path, pseudonymize, keep_raw, on_phase, started, t0,
                       own_transaction=True)
        except _FastPathFailed:  # e.g. a line longer than DuckDB's max_line_size: read it in chunks instead
            chunks, expected, spec = open_chunks(path, spec, mapping, chunk_bytes, progress)
            run_chunks(con, report, spec, chunks, expected, path, pseudonymize, keep_raw, on_phase, started, t0,
                       own_transaction=True)
    finally:
        con.execute(f"SET memory_limit = '{limit}'")
    return report


def run_chunks(con, report: ImportReport, spec: FormatSpec, chunks, expected: int, path: Path | None,
               pseudonymize: bool, keep_raw: bool, on_phase: PhaseFn | None, started: datetime,
               t0: float, own_transaction: bool = False) -> None:
    """Stage and validate one source, then insert it and log it in one transaction.

    With `own_transaction` the writes run in a transaction opened here after staging (staging only
    touches temp tables); otherwise the caller's transaction is open already.
    """
    params = {}
    if pseudonymize:
        ipad, opad = hmac_pads(secret_key())
        params = {"ipad": ipad, "opad": opad}
    register_sql(con)  # review texts are masked by tools.data.pii's masker, called from SQL
    sql = chunk_select(spec, expected, pseudonymize, keep_raw)
    stage_ddl = ", ".join(f"{k} {v}" for k, v in STAGE_COLUMNS[spec.target].items())
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _stage ({stage_ddl})")
        staged = 0
        for chunk in chunks:
            if isinstance(chunk, str):  # a whole-file SELECT (the fast path): one set-based INSERT
                try:
                    con.execute(f"INSERT INTO _stage BY NAME "
                                f"{chunk_select(spec, expected, pseudonymize, keep_raw, chunk)}", params or None)
                except duckdb.Error as exc:  # only temp tables touched so far: the caller retries in chunks
                    raise _FastPathFailed(str(exc)) from exc
                staged = con.execute("SELECT count(*) FROM _stage").fetchone()[0]
            else:
                con.register("chunk", chunk)
                try:
                    con.execute(f"INSERT INTO _stage BY NAME {sql}", params or None)
                finally:
                    con.unregister("chunk")
                staged += chunk.num_rows
            if on_phase:
                on_phase("staged", staged)
        # Staging needed file order (line numbers); the inserts do not: let them run in parallel.
        order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
        con.execute("SET preserve_insertion_order = false")
        if own_transaction:
            con.execute("BEGIN TRANSACTION")
        try:
            import_id = con.execute("SELECT coalesce(max(import_id), 0) + 1 FROM import_log").fetchone()[0]
            report.import_id = import_id
            if report.replaced_imports:
                for table in ("rejected", "import_log"):
                    con.execute(f"DELETE FROM {table} WHERE import_id IN (SELECT unnest($ids))",
                                {"ids": report.replaced_imports})
            _finalize(con, path, spec, report, keep_raw, on_phase)
            report.seconds = time.perf_counter() - t0
            con.execute(
                "INSERT INTO import_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [import_id, report.source_file, report.sha256, spec.name, spec.target, report.rows_read,
                 report.rows_imported, report.rows_rejected, report.rows_dropped, report.duplicates,
                 report.pii_masks, pseudonymize, started, utcnow()],
            )
            if on_phase:
                on_phase("before_commit", report.rows_imported)
            if own_transaction:
                con.execute("COMMIT")
        except BaseException:
            if own_transaction:
                con.execute("ROLLBACK")
            raise
    finally:
        try:  # inside a failed caller transaction this fails; its ROLLBACK drops them then
            if "order" in locals():
                con.execute(f"SET preserve_insertion_order = {str(order).lower()}")
            con.execute("DROP TABLE IF EXISTS _stage")
            con.execute("DROP TABLE IF EXISTS _dup")
        except duckdb.Error:
            pass


class _FastPathFailed(Exception):
    """DuckDB's reader could not stage the whole file (nothing stored yet); use the chunked reader."""


def utcnow() -> datetime:
    """Naive UTC now (the store keeps naive UTC timestamps)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _finalize(con, path: Path, spec: FormatSpec, report: ImportReport, keep_raw: bool, on_phase) -> None:
    """Duplicates, then inserts into the target, rejected, users and items; fills `report`."""
    target, import_id, source = spec.target, report.import_id, report.source_file
    key = DEDUPE_KEY[target]
    ok = "reason IS NULL AND NOT dropped"
    # Duplicates inside the file: group by a 64-bit hash first (cheap), then compare full keys.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _dup AS
        WITH g AS (SELECT h FROM _stage WHERE {ok} GROUP BY h HAVING count(*) > 1),
        c AS (SELECT line_no, {", ".join(key)} FROM _stage WHERE {ok} AND h IN (SELECT h FROM g))
        SELECT line_no, first_line FROM (
            SELECT line_no, min(line_no) OVER (PARTITION BY {", ".join(key)}) AS first_line FROM c)
        WHERE line_no <> first_line""")
    # Rows already in the store (another file with the same rows).
    counts = con.execute(f"""
        SELECT min(ts) FILTER (WHERE {ok}), max(ts) FILTER (WHERE {ok}), count(*) FILTER (WHERE {ok}),
               count(*), count(*) FILTER (WHERE reason IS NOT NULL), count(*) FILTER (WHERE dropped)
        FROM _stage""").fetchone()
    span = counts[:3]
    report.rows_read, invalid, report.rows_dropped = (int(x) for x in counts[3:])
    if span[2] and con.execute(f"SELECT count(*) FROM {target} WHERE ts BETWEEN ? AND ?", span[:2]).fetchone()[0]:
        cond = " AND ".join(f"t.{k} IS NOT DISTINCT FROM s.{k}" for k in key)
        con.execute(f"""
            INSERT INTO _dup SELECT s.line_no, NULL FROM _stage s
            WHERE s.reason IS NULL AND NOT s.dropped AND s.line_no NOT IN (SELECT line_no FROM _dup)
              AND EXISTS (SELECT 1 FROM {target} t WHERE t.ts BETWEEN $lo AND $hi AND {cond})""",
            {"lo": span[0], "hi": span[1]})
    report.duplicates = con.execute("SELECT count(*) FROM _dup").fetchone()[0]
    if not spec.dedupe:
        con.execute("DELETE FROM _dup")  # counted, but kept: see the format's note
    if on_phase:
        on_phase("deduplicated", report.duplicates)

    present = _target_columns(con, target)
    cols = [c for c in STAGE_COLUMNS[target] if c in present]
    con.execute(f"""
        INSERT INTO {target} ({", ".join(cols)})
        SELECT {", ".join("s." + c for c in cols)} FROM _stage s
        WHERE s.reason IS NULL AND NOT s.dropped AND s.line_no NOT IN (SELECT line_no FROM _dup)""")
    if on_phase:
        on_phase("inserted", 0)
    con.execute(
        "INSERT INTO rejected SELECT ?, ?, line_no, raw, field, reason FROM _stage WHERE reason IS NOT NULL",
        [import_id, source],
    )
    dup_raw = "s.raw"
    if report.duplicates and spec.dedupe and not keep_raw:
        wanted = {r[0] for r in con.execute("SELECT line_no FROM _dup").fetchall()}
        lines = readers.fetch_lines(path, wanted)
        con.register("_dup_lines", pa.table({"line_no": list(lines), "text": list(lines.values())}))
        dup_raw = "(SELECT text FROM _dup_lines l WHERE l.line_no = d.line_no)"
    con.execute(f"""
        INSERT INTO rejected SELECT ?, ?, d.line_no, {dup_raw}, 'line',
          CASE WHEN d.first_line IS NULL THEN 'duplicate of a row already in the store; nothing to fix'
               ELSE 'duplicate of line ' || d.first_line || '; identical rows are imported once' END
        FROM _dup d JOIN _stage s USING (line_no)""", [import_id, source])

    if target == "reviews":
        report.pii_masks = int(con.execute(f"""SELECT coalesce(sum(masks), 0) FROM _stage
            WHERE {ok} AND line_no NOT IN (SELECT line_no FROM _dup)""").fetchone()[0])
    report.rows_rejected = invalid + (report.duplicates if spec.dedupe else 0)
    report.rows_imported = report.rows_read - report.rows_rejected - report.rows_dropped
    report.added[target] = report.rows_imported
    report.added["users"] = _insert_new(con, "users", "user_id", f"SELECT DISTINCT user_id FROM _stage WHERE {ok}")
    category = "any_value(category_id)" if target == "events" else "NULL"
    report.added["items"] = _insert_new(
        con, "items", "item_id, category_id",
        f"SELECT item_id, {category} FROM _stage WHERE {ok} GROUP BY item_id")
    by_reason = con.execute(
        f"SELECT {REASON_KIND_SQL} AS r, count(*) FROM rejected WHERE import_id = ? GROUP BY r ORDER BY 2 DESC",
        [import_id]).fetchall()
    report.rejected_by_reason = {r: int(n) for r, n in by_reason}
    report.problems = [
        RowProblem(line_no=r[0], field=r[1], reason=r[2], raw_line=r[3] or "")
        for r in con.execute(
            "SELECT line_no, field, reason, raw_line FROM rejected WHERE import_id = ? ORDER BY line_no LIMIT ?",
            [import_id, SHOW_PROBLEMS]).fetchall()
    ]
    # The invariant, checked against what actually landed, before COMMIT.
    landed = con.execute(
        f"SELECT (SELECT count(*) FROM rejected WHERE import_id = $i)", {"i": import_id}).fetchone()[0]
    if landed != report.rows_rejected or report.rows_imported < 0:
        raise RuntimeError(f"import accounting mismatch: {report}")


def _target_columns(con, table: str) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND NOT internal", [table]).fetchall()}


def _insert_new(con, table: str, columns: str, select_sql: str) -> int:
    """Insert rows whose first column is not yet in `table`; return how many."""
    first = columns.split(",")[0].strip()
    before = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    con.execute(f"""INSERT INTO {table} ({columns})
        SELECT * FROM ({select_sql}) n WHERE n.{first} IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{first} = n.{first})""")
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before
