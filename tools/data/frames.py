"""Import pandas DataFrames in canonical columns (the demo shop, tests): all or nothing, idempotent.

Frames go through the same SQL validation as files (each row's `line_no` is its 1-based position
in its frame), so a bad row of generated data is rejected with a reason, never stored half-typed.
A second import of identical frames (same content hash) adds nothing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tools.data.formats import CANONICAL_FIELDS, GENERIC_CSV
from tools.data.importers import ImportReport, run_chunks, utcnow, _insert_new
from tools.data.schema import ITEM_COLUMNS, USER_COLUMNS, ImportFailed

FRAME_BATCH_ROWS = 250_000


def frames_sha256(frames: dict[str, pd.DataFrame | None]) -> str:
    """Content hash of the frames (row order and values), for idempotent re-imports."""
    digest = hashlib.sha256()
    for name in sorted(frames):
        frame = frames[name]
        if frame is None or frame.empty:
            continue
        digest.update(name.encode() + b":" + ",".join(map(str, frame.columns)).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _as_chunks(frame: pd.DataFrame, target: str):
    """Arrow chunks with the reader columns (line_no, raw, nf, problem, truncated) + string fields."""
    columns = [c for c in CANONICAL_FIELDS[target] if c in frame.columns]
    for start in range(0, len(frame), FRAME_BATCH_ROWS):
        part = frame.iloc[start:start + FRAME_BATCH_ROWS]
        n = len(part)
        data = {
            "line_no": pa.array(np.arange(start + 1, start + n + 1, dtype=np.int64)),
            "problem": pa.nulls(n, pa.string()),
            "truncated": pa.array(np.zeros(n, dtype=bool)),
            "nf": pa.array(np.full(n, len(columns), dtype=np.int32)),
        }
        fields = {}
        for col in columns:
            arr = pa.array(part[col], from_pandas=True)
            if pa.types.is_timestamp(arr.type):
                if arr.type.tz is not None:
                    arr = pc.cast(arr, pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
                arr = pc.strftime(arr, format="%Y-%m-%d %H:%M:%S")
            fields[col] = pc.cast(arr, pa.large_string())
        data["raw"] = pc.binary_join_element_wise(
            *[pc.fill_null(v, pa.scalar("", pa.large_string())) for v in fields.values()],
            pa.scalar(",", pa.large_string()))
        data.update(fields)
        yield pa.table(data)


def import_frames(con: duckdb.DuckDBPyConnection, source_name: str, events=None, reviews=None, items=None,
                  users=None, fmt: str = "frames") -> ImportReport:
    """Import canonical frames in one transaction; see the module docstring."""
    t0 = time.perf_counter()
    started = utcnow()
    frames = {"events": events, "reviews": reviews, "items": items, "users": users}
    for name, frame in frames.items():
        if frame is not None and not isinstance(frame, pd.DataFrame):
            raise ImportFailed(f"{source_name}: {name} must be a pandas DataFrame, got {type(frame).__name__}")
    for name in ("events", "reviews"):
        frame = frames[name]
        if frame is not None and not frame.empty:
            from tools.data.formats import REQUIRED_FIELDS

            missing = [c for c in REQUIRED_FIELDS[name] if c not in frame.columns]
            if missing:
                raise ImportFailed(f"{source_name}: {name} frame lacks columns {missing}")
    sha = frames_sha256(frames)
    main = "events" if events is not None and not events.empty else "reviews"
    report = ImportReport(source_name, fmt, main, sha256=sha)
    prior = con.execute("SELECT import_id FROM import_log WHERE sha256 = ? ORDER BY import_id LIMIT 1",
                        [sha]).fetchone()
    if prior:
        report.already_imported, report.import_id = True, prior[0]
        return report
    con.execute("BEGIN TRANSACTION")
    try:
        for name, schema in (("users", USER_COLUMNS), ("items", ITEM_COLUMNS)):
            frame = frames[name]
            if frame is None or frame.empty:
                continue
            cols = [c for c in schema if c in frame.columns]
            con.register("_frame", frame[cols])
            try:
                report.added[name] = _insert_new(
                    con, name, ", ".join(cols),
                    f"SELECT {', '.join(cols)} FROM (SELECT DISTINCT ON ({cols[0]}) * FROM _frame)")
            finally:
                con.unregister("_frame")
        for name in ("events", "reviews"):
            frame = frames[name]
            if frame is None or frame.empty:
                continue
            part = ImportReport(source_name, fmt, name, sha256=sha if name == main else f"{sha}:{name}")
            spec = replace(GENERIC_CSV, name=fmt, target=name, engine="frames", ts_unit="auto",
                           fields={c: f'"{c}"' for c in CANONICAL_FIELDS[name] if c in frame.columns})
            n_cols = len(spec.fields)
            run_chunks(con, part, spec, _as_chunks(frame, name), n_cols, None, False, True, None, started, t0)
            for key in ("rows_read", "rows_imported", "rows_rejected", "rows_dropped", "duplicates", "pii_masks"):
                setattr(report, key, getattr(report, key) + getattr(part, key))
            for key, value in part.added.items():
                report.added[key] = report.added.get(key, 0) + value
            report.problems += part.problems
            report.import_id = report.import_id or part.import_id
        if report.import_id is None:  # only users/items: still log it, so a re-import is a no-op
            report.import_id = con.execute("SELECT coalesce(max(import_id), 0) + 1 FROM import_log").fetchone()[0]
            con.execute("INSERT INTO import_log VALUES (?, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0, false, ?, ?)",
                        [report.import_id, source_name, sha, fmt, "items,users", started, utcnow()])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    report.seconds = time.perf_counter() - t0
    return report
