"""Stream a source file as Arrow chunks with exact line numbers; memory is bounded by the chunk.

Every chunk is a `pyarrow.Table` with `line_no` (int64, 1-based line of the record's start),
`raw` (the record's text without its newline), `nf` (number of fields found), `problem`
(a reason set here, e.g. invalid UTF-8, else null), `truncated` (the file's last line had no
newline) and the fields: `c1..cN` for split formats, source column names for CSV / Parquet.

Line-oriented files are cut with numpy (newline offsets) and split with Arrow compute kernels,
so there is no Python loop per row on the fast path; quoted CSV uses the `csv` module, which
knows quoting and multi-line fields. `split_lines_sql` is the same for DuckDB's own reader (the
importer's fast path for plain ASCII files).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tools.data.formats import FormatSpec
from tools.data.schema import ImportFailed, shown_names

DEFAULT_CHUNK_BYTES = 8 << 20  # ~250k Taobao lines; Arrow temporaries stay < 100 MB
CSV_BATCH_ROWS = 50_000
# Python's csv refuses fields over 128 KiB by default (a long review can pass that); above this
# limit a field is a whole-file error naming its line (found by bench/fuzz_importers.py).
CSV_FIELD_LIMIT = 64 * 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"  # what Excel and Notepad put before "CSV UTF-8" text
ProgressFn = Callable[[int], None]  # called with the number of bytes (or rows) just consumed


def _fix_invalid_utf8(data: bytes) -> tuple[list[str], list[str | None]]:
    """Slow path for a chunk that is not valid UTF-8: decode line by line, flag the bad ones."""
    lines, problems = [], []
    for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
        try:
            lines.append(line.decode("utf-8").rstrip("\r"))
            problems.append(None)
        except UnicodeDecodeError as exc:
            lines.append(line.decode("utf-8", "backslashreplace").rstrip("\r"))
            problems.append(
                f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1}): "
                "re-save the file as UTF-8 or delete the line"
            )
    return lines, problems


def _lines_table(data: bytes, first_line: int, at_eof: bool) -> pa.Table:
    """Cut `data` (whole lines) into a table of `line_no`, `raw`, `problem`, `truncated`."""
    if data.isascii() or _is_utf8(data):
        arr = np.frombuffer(data, np.uint8)
        ends = np.flatnonzero(arr == 10) + 1
        if len(data) and data[-1] != 10:
            ends = np.append(ends, len(data))
        offsets = np.empty(len(ends) + 1, np.int64)
        offsets[0] = 0
        offsets[1:] = ends
        n = len(ends)
        # Zero-copy view of the chunk: string i spans its line including the newline.
        lines = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
        raw = pc.utf8_rtrim(lines, characters="\r\n")
        problem = pa.nulls(n, pa.string())
    else:
        texts, problems = _fix_invalid_utf8(data)
        n = len(texts)
        raw = pa.array(texts, pa.large_string())
        problem = pa.array(problems, pa.string())
    truncated = np.zeros(n, dtype=bool)
    if at_eof and n and not data.endswith(b"\n"):
        truncated[-1] = True
    return pa.table(
        {
            "line_no": pa.array(np.arange(first_line + 1, first_line + n + 1, dtype=np.int64)),
            "raw": raw,
            "problem": problem,
            "truncated": pa.array(truncated),
        }
    )


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def iter_line_chunks(
    path: Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES, on_bytes: ProgressFn | None = None
) -> Iterator[pa.Table]:
    """Whole-line chunks of about `chunk_bytes` each, with exact 1-based line numbers."""
    done_lines = 0
    tail = b""
    with open(path, "rb") as fh:
        while True:
            buf = fh.read(chunk_bytes)
            at_eof = not buf
            if at_eof:
                data, tail = tail, b""
                if not data:
                    break
            else:
                data = tail + buf
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a chunk: keep reading
                    tail = data
                    continue
                data, tail = data[:cut], data[cut:]
            if done_lines == 0 and data.startswith(UTF8_BOM):  # not part of the first field
                data = data[len(UTF8_BOM):]
            table = _lines_table(data, done_lines, at_eof)
            done_lines += table.num_rows
            if on_bytes:
                on_bytes(len(buf))
            yield table
            if at_eof:
                break


def _ls(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def split_fields(table: pa.Table, spec: FormatSpec) -> pa.Table:
    """Add `nf` and `c1..cN` to a lines table, splitting on the spec's delimiter (or whitespace)."""
    raw = table["raw"]
    n = spec.n_fields
    if spec.engine == "whitespace":
        trimmed = pc.utf8_trim_whitespace(raw)
        nf = pc.list_value_length(pc.split_pattern_regex(trimmed, r"\s+"))
        nf = pc.if_else(pc.equal(trimmed, ""), 0, nf)
        padded = pc.binary_join_element_wise(trimmed, _ls(" _" * n), _ls(""))
        parts = pc.split_pattern_regex(padded, r"\s+")
    else:
        nf = pc.list_value_length(pc.split_pattern(raw, spec.delimiter))
        # Padding makes every list long enough to take field N; short lines fail on `nf` anyway.
        padded = pc.binary_join_element_wise(raw, _ls(spec.delimiter * n), _ls(""))
        parts = pc.split_pattern(padded, spec.delimiter)
    for i in range(n):
        table = table.append_column(f"c{i + 1}", pc.list_element(parts, i))
    return table.append_column("nf", pc.cast(nf, pa.int32()))


class _LineRecorder:
    """Feeds lines to csv.reader and remembers the text and first line of each record."""

    def __init__(self, fh: io.TextIOBase) -> None:
        self.fh = fh
        self.line_no = 0
        self.pending: list[str] = []
        self.record_start = 1

    def __iter__(self) -> _LineRecorder:
        return self

    def __next__(self) -> str:
        line = self.fh.readline()
        if not line:
            raise StopIteration
        if not self.pending:
            self.record_start = self.line_no + 1
        self.line_no += 1
        self.pending.append(line)
        return line

    def take(self) -> tuple[int, str]:
        start, text = self.record_start, "".join(self.pending)
        self.pending = []
        return start, text


def iter_csv_chunks(
    path: Path, delimiter: str = ",", batch_rows: int = CSV_BATCH_ROWS, on_bytes: ProgressFn | None = None
) -> tuple[list[str], Iterator[pa.Table]]:
    """The header of a quoted CSV and an iterator of record batches (fields by header name)."""
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark that would glue onto the first column name.
    fh = open(path, encoding="utf-8-sig", errors="backslashreplace", newline="")
    recorder = _LineRecorder(fh)
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.reader(recorder, delimiter=delimiter, strict=False)
    try:
        header = next(reader)
    except StopIteration:
        fh.close()
        raise ImportFailed(f"{path}: the file is empty (no header line); nothing was imported.") from None
    except csv.Error as exc:
        fh.close()
        raise _unreadable_csv(path, reader.line_num, exc) from None
    recorder.take()
    names = [h.strip() for h in header]
    if len(set(names)) != len(names):
        fh.close()
        raise ImportFailed(f"{path}:1: the header repeats a column name ({shown_names(names)}); rename the duplicates.")

    def batches() -> Iterator[pa.Table]:
        try:
            while True:
                starts, raws, nfs, problems, truncs = [], [], [], [], []
                columns: list[list[str | None]] = [[] for _ in names]
                for row in reader:
                    start, text = recorder.take()
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue  # blank line: not a record
                    starts.append(start)
                    raw = text.rstrip("\r\n")
                    raws.append(raw)
                    nfs.append(len(row))
                    problems.append("\\x" in raw and _bad_utf8_reason(raw) or None)
                    truncs.append(not text.endswith("\n"))
                    for i, column in enumerate(columns):
                        column.append(row[i] if i < len(row) else None)
                    if len(starts) >= batch_rows:
                        break
                if not starts:
                    return
                if on_bytes:
                    on_bytes(sum(len(r) + 1 for r in raws))
                data = {"line_no": pa.array(starts, pa.int64()), "raw": pa.array(raws, pa.large_string())}
                data["problem"] = pa.array(problems, pa.string())
                data["truncated"] = pa.array([False] * (len(truncs) - 1) + [truncs[-1]])
                data["nf"] = pa.array(nfs, pa.int32())
                for name, column in zip(names, columns):
                    data[name] = pa.array(column, pa.large_string())
                yield pa.table(data)
        except csv.Error as exc:  # raised mid-import, while only temp tables hold anything
            raise _unreadable_csv(path, reader.line_num, exc) from None
        finally:
            fh.close()

    return names, batches()


def _unreadable_csv(path: Path, line_no: int, exc: csv.Error) -> ImportFailed:
    return ImportFailed(f"{path}:{line_no}: the CSV cannot be read there ({exc}); fix that line or re-export "
                        "the file; nothing was imported.")


def _bad_utf8_reason(raw: str) -> str | None:
    # errors="backslashreplace" turned undecodable bytes into \xNN; a literal "\x" in text is rare.
    import re

    match = re.search(r"\\x[89a-f][0-9a-f]", raw)
    if not match:
        return None
    return f"not UTF-8 text ({match.group(0)} at column {match.start() + 1}): re-save the file as UTF-8"


def iter_parquet_chunks(
    path: Path, batch_rows: int = 65_536, on_bytes: ProgressFn | None = None
) -> tuple[list[str], Iterator[pa.Table]]:
    """Column names of a Parquet file and its batches, every column cast to string."""
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ImportFailed(f"{path}: not a readable Parquet file ({exc}); re-export it.") from None
    names = list(pfile.schema_arrow.names)

    def damaged(exc: Exception) -> ImportFailed:
        reason = " ".join(str(exc).split())
        return ImportFailed(f"{path}: the Parquet file is damaged after its header ({reason}); re-export it.")

    def checked_batches() -> Iterator[pa.RecordBatch]:
        # A damaged page surfaces only when read, mid-import (found by bench/fuzz_importers.py):
        # it is a whole-file error, raised while only temp tables hold anything.
        it = pfile.iter_batches(batch_size=batch_rows)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except (OSError, pa.ArrowException) as exc:
                raise damaged(exc) from None
            yield batch

    def batches() -> Iterator[pa.Table]:
        row0 = 0
        for batch in checked_batches():
            n = batch.num_rows
            cols = {}
            for name in names:
                col = batch.column(name)
                if pa.types.is_timestamp(col.type):
                    if col.type.tz:  # strftime writes a zoned column's local time; the store is UTC
                        col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))
                    col = pc.strftime(col, format="%Y-%m-%d %H:%M:%S")
                cols[name] = pc.cast(col, pa.large_string())
            raw = pc.binary_join_element_wise(
                *[pc.fill_null(c, _ls("")) for c in cols.values()], _ls(",")
            ) if cols else pa.array([""] * n, pa.large_string())
            data = {
                "line_no": pa.array(np.arange(row0 + 1, row0 + n + 1, dtype=np.int64)),
                "raw": raw,
                "problem": pa.nulls(n, pa.string()),
                "truncated": pa.array(np.zeros(n, dtype=bool)),
                "nf": pa.array(np.full(n, len(names), dtype=np.int32)),
            }
            data.update(cols)
            row0 += n
            if on_bytes:
                on_bytes(n)
            yield pa.table(data)

    return names, batches()


def fetch_lines(path: Path, line_numbers: set[int], chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> dict[int, str]:
    """The text of a few given lines of a file (for rejected rows found after staging)."""
    found: dict[int, str] = {}
    if not line_numbers:
        return found
    wanted = np.array(sorted(line_numbers), dtype=np.int64)
    for table in iter_line_chunks(path, chunk_bytes):
        first, last = table["line_no"][0].as_py(), table["line_no"][-1].as_py()
        hits = wanted[(wanted >= first) & (wanted <= last)]
        for line_no in hits:
            found[int(line_no)] = table["raw"][int(line_no - first)].as_py()
        if last >= wanted[-1]:
            break
    return found



def scan_file(path: Path, chunk: int = 8 << 20) -> tuple[str, bool, int]:
    """(sha256, plain, last line number if the last line has no newline, else 0) in one pass.

    `plain` means ASCII with no carriage return and no 0x01 byte: then DuckDB's own CSV reader,
    reading each line as one field, yields exactly one row per line (see `split_lines_sql`).
    """
    import hashlib

    digest = hashlib.sha256()
    plain, last, newlines = True, b"", 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            newlines += block.count(b"\n")
            # C-speed checks; once one fails the rest are skipped.
            if plain and not (block.isascii() and b"\r" not in block and b"\x01" not in block):
                plain = False
            last = block[-1:]
    return digest.hexdigest(), plain, (newlines + 1 if last and last != b"\n" else 0)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def split_lines_sql(path: Path, spec: FormatSpec, truncated_line: int, skip_line: int | None = None) -> str:
    """A SELECT with the columns of `split_fields(iter_line_chunks(...))`, read by DuckDB itself.

    DuckDB's parallel CSV reader reads each line as one VARCHAR (delimiter 0x01, no quoting; blank
    lines come back as NULL) in file order, so `row_number() OVER ()` is the exact line number.
    Only for files `scan_file` calls plain and one-character delimiters; fields are cut by one
    `string_split` of the line padded with N delimiters (every list then has N + nf elements).
    """
    n, d = spec.n_fields, spec.delimiter
    fields = ", ".join(f"parts[{i + 1}] AS c{i + 1}" for i in range(n))
    skip = f"WHERE line_no <> {int(skip_line)}" if skip_line else ""
    lines = f"""SELECT coalesce(raw, '') AS raw, row_number() OVER () AS line_no
      FROM read_csv({_lit(str(path))}, columns = {{'raw': 'VARCHAR'}}, header = false, delim = {_lit(chr(1))},
                    quote = '', escape = '', auto_detect = false, strict_mode = false, new_line = '\\n')"""
    return f"""(
  SELECT line_no, raw, NULL::VARCHAR AS problem, line_no = {int(truncated_line)} AS truncated, {fields},
         CAST(len(parts) - {n} AS INTEGER) AS nf
  FROM (SELECT *, string_split(raw || {_lit(d * n)}, {_lit(d)}) AS parts FROM ({lines}) {skip})
)"""
