"""How a source file is read for import: its format spec, the user's column mapping, and chunks.

Split from importers.py (which owns the transaction, validation and bookkeeping): everything
here only reads the file and describes it; nothing touches the store.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from tools.data import readers
from tools.data.formats import (ALIASES, BEHAVIOR_SYNONYMS, CANONICAL_FIELDS, FORMATS, REQUIRED_FIELDS, FormatSpec, detect_format,
                                format_list, header_delimiter, header_key, sniff_head)
from tools.data.schema import BEHAVIORS, ImportFailed, shown_names


MAPPING_KEYS = ("columns", "target", "ts_unit", "behaviors", "delimiter", "constants")


def parse_mapping(mapping: dict | None) -> dict:
    """Normalise a mapping to {"columns": {source: canonical}, "target", "ts_unit", "behaviors", "delimiter",
    "constants": {canonical: value}}."""
    mapping = dict(mapping or {})
    known = set(MAPPING_KEYS)
    if mapping and not (set(mapping) & known):
        mapping = {"columns": mapping}  # a flat {source: canonical} dict
    unknown = set(mapping) - known
    if unknown:
        raise ImportFailed(f"mapping: unknown keys {sorted(unknown)}; use {sorted(known)}")
    mapping.setdefault("columns", {})
    mapping.setdefault("constants", {})
    return mapping


def mapped_spec(base: FormatSpec, names: list[str], mapping: dict, path: Path) -> FormatSpec:
    """A generic CSV/Parquet spec whose fields come from the mapping (or canonical header names)."""
    columns = {str(k): str(v) for k, v in mapping["columns"].items()}
    # A field with one value for every row (an order export has no behavior column: all are buys).
    constants = {str(k): str(v) for k, v in (mapping.get("constants") or {}).items()}
    # Identity on canonical names (and, with no mapping at all, common aliases): `--map product_id=item_id`
    # on a file that also has a `user_id` column maps that one too.
    aliases = ALIASES if not columns else {}
    # Only a column named exactly rating/review_id picks reviews: an events file may well have a "score".
    header_fields = {header_key(name) for name in names if name not in columns}
    target = mapping.get("target") or (  # a rating column makes a reviews file, mapped or named so
        "reviews" if {"review_id", "rating"} & (set(columns.values()) | set(constants) | header_fields) else "events"
    )
    if target not in CANONICAL_FIELDS:
        raise ImportFailed(f"mapping: target {target!r} is not one of {sorted(CANONICAL_FIELDS)}")
    for name in names:
        canonical = aliases.get(header_key(name), header_key(name))
        if (canonical in CANONICAL_FIELDS[target] and canonical not in columns.values()
                and canonical not in constants and name not in columns):
            columns[name] = canonical
    for source, canonical in columns.items():
        if source not in names:
            raise ImportFailed(
                f"{path}:1: mapping names column {source!r}, which the header lacks; columns are {shown_names(names)}"
            )
        if canonical not in CANONICAL_FIELDS[target]:
            raise ImportFailed(
                f"mapping: {source}={canonical}: {canonical!r} is not a field of {target}; "
                f"fields are {', '.join(CANONICAL_FIELDS[target])}"
            )
    for canonical in constants:
        if canonical not in CANONICAL_FIELDS[target]:
            raise ImportFailed(f"--const {canonical}=...: {canonical!r} is not a field of {target}; "
                               f"fields are {', '.join(CANONICAL_FIELDS[target])}")
    missing = [f for f in REQUIRED_FIELDS[target] if f not in columns.values() and f not in constants]
    if missing:
        raise ImportFailed(
            f"{path}: no column maps to {', '.join(missing)} (header: {shown_names(names)}). "
            f"{'; '.join(_missing_field_hint(f, names, columns) for f in missing)}; or give --mapping FILE.yaml"
        )
    fields = {canonical: '"' + source.replace('"', '""') + '"' for source, canonical in columns.items()}
    fields.update({canonical: "'" + value.replace("'", "''") + "'" for canonical, value in constants.items()})
    ts_unit = str(mapping.get("ts_unit") or "auto")
    if ts_unit not in ("s", "ms", "yyyymmdd", "auto") and "%" not in ts_unit:
        raise ImportFailed(f"ts_unit {ts_unit!r}: give s, ms, yyyymmdd or a strftime layout such as '%d/%m/%Y' "
                           "(30/06/2017) or '%m/%d/%Y %H:%M' (06/30/2017 14:05)")
    # The user's words are added to the common ones (a mapping for `click` keeps `purchase` working).
    behaviors = dict(BEHAVIOR_SYNONYMS)
    behaviors.update({str(k).lower(): str(v) for k, v in (mapping.get("behaviors") or {}).items()})
    wrong = {k: v for k, v in behaviors.items() if v not in BEHAVIORS}
    if wrong:
        raise ImportFailed(f"mapping: behaviors {wrong} map to something other than {', '.join(BEHAVIORS)}; "
                           "write e.g. behaviors: {click: view}")
    return replace(
        base,
        target=target,
        fields=fields,
        ts_unit=ts_unit,
        behaviors=behaviors,
        delimiter=str(mapping.get("delimiter") or ","),
    )


def _missing_field_hint(canonical: str, names: list[str], columns: dict[str, str]) -> str:
    """How to supply one required field: a column whose name suggests it, else what the field needs."""
    likely = [n for n in names if n not in columns and ALIASES.get(header_key(n), header_key(n)) == canonical]
    if likely:
        return f"map it with --map {shown_names(likely)[0]}={canonical}"
    if canonical == "behavior":
        return "if every row is a purchase (an order export), add --const behavior=buy"
    if canonical == "ts":
        return ("ts needs a date-time column (unix seconds/ms, ISO, or any layout with --ts-unit); "
                "add one to the export if the file has none")
    return f"map the column that holds it with --map COLUMN={canonical}"


def resolve_spec(path: Path, fmt: str | None) -> FormatSpec:
    name = fmt or detect_format(path)
    if name not in FORMATS:
        raise ImportFailed(f"unknown format {name!r}; known formats:\n{format_list()}")
    return FORMATS[name]


def open_chunks(path: Path, spec: FormatSpec, mapping: dict | None, chunk_bytes: int, progress: bool):
    """(chunk iterator, expected fields per record, final spec) for the spec's engine."""
    bar = _bar(path, spec, progress)
    tick = bar.update if bar else None
    if spec.engine in ("split", "whitespace", "jsonl"):
        def gen():
            first = True
            try:
                for table in readers.iter_line_chunks(path, chunk_bytes, tick):
                    if first and spec.header:
                        table = _drop_header(table, spec)
                    # The header is the first non-blank line, which may lie past a chunk of blank lines.
                    first = first and not _has_text(table)
                    yield readers.split_fields(table, spec) if spec.engine != "jsonl" else table.append_column(
                        "nf", pa.array([1] * table.num_rows, pa.int32()))
            finally:
                if bar:
                    bar.close()
        return gen(), spec.n_fields, spec
    if spec.engine == "csv":
        mapping_n = parse_mapping(mapping) if spec.name == "csv" else None
        delimiter = (mapping_n or {}).get("delimiter") or spec.delimiter
        if mapping_n is not None and not mapping_n.get("delimiter"):
            lines = sniff_head(path)[1]
            delimiter = mapping_n["delimiter"] = header_delimiter(lines[0]) if lines else delimiter
        names, batches = readers.iter_csv_chunks(path, delimiter=delimiter, on_bytes=tick)
        if mapping_n is not None:
            spec = mapped_spec(spec, names, mapping_n, path)
        elif spec.header and tuple(n.lower() for n in names) != spec.header:
            raise ImportFailed(f"{path}:1: header {shown_names(names)} is not the {spec.name} header {list(spec.header)}")
        return _closing(batches, bar), len(names), spec
    names, batches = readers.iter_parquet_chunks(path, on_bytes=tick)
    spec = mapped_spec(spec, names, parse_mapping(mapping), path)
    return _closing(batches, bar), len(names), spec


def header_line(path: Path, spec: FormatSpec) -> int | None:
    """The line number of the header (the first non-blank line) if it is the format's header."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for line_no, text in enumerate(fh, 1):
            if not text.strip():
                continue
            parts = text.lower().split() if spec.engine == "whitespace" else text.lower().split(spec.delimiter)
            return line_no if tuple(p.strip() for p in parts) == spec.header else None
    return None


def _closing(batches, bar):
    try:
        yield from batches
    finally:
        if bar:
            bar.close()


def _bar(path: Path, spec: FormatSpec, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    if spec.engine == "parquet":
        import pyarrow.parquet as pq

        return tqdm(total=pq.ParquetFile(path).metadata.num_rows, unit="rows", desc=f"import {path.name}")
    return tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"import {path.name}")


def _has_text(table: pa.Table) -> bool:
    """Whether a lines table has a non-blank line (only called until the first one is seen)."""
    return any(text.strip() for text in table["raw"].to_pylist())


def _drop_header(table: pa.Table, spec: FormatSpec) -> pa.Table:
    """Remove the header line (the first non-blank line) when it matches the format's header."""
    import pyarrow.compute as pc

    for i in range(min(table.num_rows, 50)):
        text = table["raw"][i].as_py()
        if not text.strip():
            continue
        parts = text.lower().split() if spec.engine == "whitespace" else text.lower().split(spec.delimiter)
        if tuple(p.strip() for p in parts) == spec.header:
            return table.filter(pc.not_equal(table["line_no"], table["line_no"][i]))
        break
    return table
