"""SQL that turns one staged chunk into typed canonical rows with a reason for every bad row.

One `SELECT` per chunk does the casting and every check in DuckDB (vectorised, no Python row
loop). The first failing check names the field and says what to fix; a row with no reason is
accepted, unless it falls outside the format's window (`dropped`).
"""

from __future__ import annotations

from datetime import datetime

from tools.data.formats import FormatSpec
from tools.data.pii import mask_sql, pseudonymize_sql

TS_MIN = datetime(1990, 1, 1)
TS_MAX = datetime(2100, 1, 1)
_EPOCH = datetime(1970, 1, 1)
_MIN_S = (TS_MIN - _EPOCH).total_seconds()
_MAX_S = (TS_MAX - _EPOCH).total_seconds()

# Column name -> type of the staging table, per target.
STAGE_COLUMNS = {
    "events": {
        "line_no": "BIGINT", "raw": "VARCHAR", "user_id": "VARCHAR", "ts": "TIMESTAMP",
        "behavior": "VARCHAR", "item_id": "VARCHAR", "category_id": "VARCHAR", "quantity": "INTEGER",
        "amount": "DOUBLE", "masks": "INTEGER", "field": "VARCHAR", "reason": "VARCHAR",
        "dropped": "BOOLEAN", "h": "UBIGINT",
    },
    "reviews": {
        "line_no": "BIGINT", "raw": "VARCHAR", "review_id": "VARCHAR", "user_id": "VARCHAR",
        "item_id": "VARCHAR", "ts": "TIMESTAMP", "rating": "INTEGER", "title": "VARCHAR", "text": "VARCHAR",
        "helpful_votes": "INTEGER", "total_votes": "INTEGER", "masks": "INTEGER", "field": "VARCHAR",
        "reason": "VARCHAR", "dropped": "BOOLEAN", "h": "UBIGINT",
    },
}
EVENT_KEY = ("user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount")
DEDUPE_KEY = {"events": EVENT_KEY, "reviews": ("review_id",)}


def q(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


_OFFSET_RE = r"([+-])(\d\d)(:?(\d\d))?$"  # +02:00, +0200 or +02 (PostgreSQL writes the last)
_OFFSET_MINUTES = (  # minutes east of UTC written after an ISO date-time ('...T14:05:00+02:00'), else 0
    rf"coalesce(CASE WHEN regexp_matches(f_ts, '\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)? ?[+-]\d\d(:?\d\d)?$') THEN "
    f"(CASE regexp_extract(f_ts, '{_OFFSET_RE}', 1) WHEN '-' THEN -1 ELSE 1 END) * "
    f"(CAST(regexp_extract(f_ts, '{_OFFSET_RE}', 2) AS BIGINT) * 60 "
    f"+ coalesce(TRY_CAST(regexp_extract(f_ts, '{_OFFSET_RE}', 4) AS BIGINT), 0)) END, 0)"
)


def _ts_sql(unit: str) -> tuple[str, str, str]:
    """(parsed-without-range, in-range timestamp, what a valid value looks like) over `f_ts`."""
    lo, hi = q(TS_MIN.isoformat(sep=" ")), q(TS_MAX.isoformat(sep=" "))
    if unit in ("s", "ms", "auto"):
        num = "n_ts"
        if unit == "s":
            seconds = num
            hint = "unix seconds, e.g. 1511544070"
        elif unit == "ms":
            seconds = f"({num} / 1000.0)"
            hint = "unix milliseconds, e.g. 1433221332117"
        else:  # numbers >= 1e11 are milliseconds (1e11 s is the year 5138)
            seconds = f"(CASE WHEN abs({num}) >= 1e11 THEN {num} / 1000.0 ELSE {num} END)"
            hint = ("unix seconds / milliseconds or an ISO date-time like 2017-11-25 10:00:00; for another "
                    "layout give it with --ts-unit, e.g. --ts-unit ''%d/%m/%Y'' for 30/06/2017 (ts_unit: in a "
                    "--mapping YAML)")
        in_range = (
            f"CASE WHEN {seconds} >= {_MIN_S} AND {seconds} < {_MAX_S} "
            f"THEN make_timestamp(CAST({seconds} * 1000000 AS BIGINT)) END"
        )
        parsed = f"{num}"
        if unit == "auto":
            # DuckDB's cast to TIMESTAMP drops a UTC offset (14:05+02:00 -> 14:05); the store is UTC, so
            # the offset is subtracted here. A date-time without an offset is taken as UTC.
            iso = f"(TRY_CAST(f_ts AS TIMESTAMP) - to_minutes({_OFFSET_MINUTES}))"
            parsed = f"coalesce(CAST({num} AS VARCHAR), CAST({iso} AS VARCHAR))"
            in_range = f"coalesce({in_range}, CASE WHEN {iso} >= {lo} AND {iso} < {hi} THEN {iso} END)"
        return parsed, in_range, hint
    fmt = "%Y%m%d" if unit == "yyyymmdd" else unit
    parsed = f"TRY_STRPTIME(f_ts, {q(fmt)})"
    in_range = f"CASE WHEN {parsed} >= {lo} AND {parsed} < {hi} THEN {parsed} END"
    hint = "a date like 19970101" if unit == "yyyymmdd" else f"a date-time in the format {fmt}"
    return parsed, in_range, hint


def _label(spec: FormatSpec, canonical: str) -> str:
    """The name of the source field behind a canonical column, for messages."""
    expr = spec.fields.get(canonical, "")
    if spec.field_names and expr.startswith("c") and expr[1:].isdigit():
        return spec.field_names[int(expr[1:]) - 1]
    if expr.startswith('"') and expr.endswith('"'):
        return expr.strip('"')
    return canonical


def chunk_select(spec: FormatSpec, expected_fields: int, pseudonymize: bool, keep_raw: bool,
                 source: str = "chunk") -> str:
    """The SELECT over `source` (default: the registered relation `chunk`) yielding STAGE_COLUMNS[spec.target]."""
    target = spec.target
    canon = ("user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount")
    if target == "reviews":
        canon = ("review_id", "user_id", "item_id", "ts", "rating", "title", "text", "helpful_votes", "total_votes")
    src_cols = []
    for name in canon:
        expr = spec.fields.get(name)
        if expr is None:
            src_cols.append(f"NULL::VARCHAR AS f_{name}")
        elif name in ("title", "text"):  # keep inner whitespace and newlines of texts
            src_cols.append(f"nullif(CAST({expr} AS VARCHAR), '') AS f_{name}")
        elif spec.engine in ("split", "whitespace"):  # cut fields: no padding to trim (trim is costly)
            src_cols.append(f"nullif({expr}, '') AS f_{name}")
        else:
            src_cols.append(f"nullif(trim(CAST({expr} AS VARCHAR)), '') AS f_{name}")
    ts_parsed, ts_value, ts_hint = _ts_sql(spec.ts_unit)
    L = {name: _label(spec, name) for name in canon}

    checks: list[tuple[str, str, str]] = [  # (field, failing condition, message)
        ("NULL", "problem IS NOT NULL", "problem"),
    ]
    names = ",".join(spec.field_names) if spec.field_names else f"{expected_fields} columns"
    sep = "whitespace" if spec.engine == "whitespace" else repr(spec.delimiter)
    if spec.engine != "jsonl":
        checks.append((
            "NULL",
            f"nf <> {expected_fields}",
            f"'expected {expected_fields} fields (' || {q(names)} || ') separated by ' || {q(sep)} || "
            f"', found ' || nf || CASE WHEN truncated THEN '; the last line has no newline, so the file looks "
            f"truncated: re-export or re-download it' ELSE ': fix or delete the line' END",
        ))
    else:
        checks.append(("NULL", "jraw IS NULL",
                       "'not a valid JSON object' || CASE WHEN truncated THEN '; the last line has no newline, "
                       "so the file looks truncated: re-download it' ELSE ': fix or delete the line' END"))
    required = ("user_id", "item_id", "ts", "behavior") if target == "events" else ("user_id", "item_id", "ts")
    if target == "reviews" and "review_id" in spec.fields:
        required = ("review_id", *required)
    for name in required:
        checks.append((q(L[name]), f"f_{name} IS NULL", q(f"missing {L[name]}: every row needs one")))
        if name == "ts":
            checks.append((q(L["ts"]), f"{ts_parsed} IS NULL",
                           f"{q(L['ts'])} || ' ' || (chr(39) || f_ts || chr(39)) || ' is not {ts_hint}'"))
            checks.append((q(L["ts"]), "v_ts IS NULL",
                           f"{q(L['ts'])} || ' ' || f_ts || ' is outside {TS_MIN.date()}..{TS_MAX.date()}: "
                           f"check the unit (seconds vs milliseconds) or fix the value'"))
    if target == "events":
        allowed = ", ".join(spec.behaviors) if spec.behaviors else ", ".join(("view", "cart", "fav", "buy"))
        checks.append((q(L["behavior"]), "v_behavior IS NULL",
                       f"'unknown ' || {q(L['behavior'])} || ' ' || (chr(39) || f_behavior || chr(39)) || ': expected one of {allowed}; name other values in a --mapping YAML, e.g. behaviors: {{click: view}}'"))
        checks.append((q(L["quantity"]), "f_quantity IS NOT NULL AND (v_quantity IS NULL OR v_quantity < 1 "
                       "OR v_quantity <> floor(v_quantity) OR v_quantity > 1000000)",
                       f"{q(L['quantity'])} || ' ' || (chr(39) || f_quantity || chr(39)) || ' is not a positive whole number'"))
        checks.append((q(L["amount"]), "f_amount IS NOT NULL AND (v_amount IS NULL OR NOT (v_amount >= 0 "
                       "AND v_amount < 1e12))",
                       f"{q(L['amount'])} || ' ' || (chr(39) || f_amount || chr(39)) || ' is not an amount >= 0: write a plain number with a decimal point, e.g. 9.99, without a currency sign'"))
    else:
        checks.append((q(L["rating"]), "f_rating IS NOT NULL AND (v_rating IS NULL OR NOT (v_rating BETWEEN 1 AND 5) "
                       "OR v_rating <> floor(v_rating))",
                       f"{q(L['rating'])} || ' ' || (chr(39) || f_rating || chr(39)) || ' is not a whole rating 1..5'"))

    # Conditions are evaluated once (into `chk`); field and reason are looked up by its number.
    chk_case = "CASE " + " ".join(f"WHEN {cond} THEN {i}" for i, (_, cond, _) in enumerate(checks)) + " END"
    field_case = "CASE chk " + " ".join(f"WHEN {i} THEN {fld}" for i, (fld, _, _) in enumerate(checks)) + " END"
    reason_case = "CASE chk " + " ".join(f"WHEN {i} THEN {msg}" for i, (_, _, msg) in enumerate(checks)) + " END"

    typed = [f"{ts_value} AS v_ts"]
    if target == "events":
        behaviors = spec.behaviors or {b: b for b in ("view", "cart", "fav", "buy")}
        mapped = " ".join(f"WHEN {q(k)} THEN {q(v)}" for k, v in behaviors.items())
        typed += [
            f"coalesce(CASE f_behavior {mapped} END, CASE lower(f_behavior) {mapped} END) AS v_behavior",
            "TRY_CAST(f_quantity AS DOUBLE) AS v_quantity",
            "TRY_CAST(f_amount AS DOUBLE) AS v_amount",
        ]
    else:
        typed += ["TRY_CAST(f_rating AS DOUBLE) AS v_rating"]

    user = pseudonymize_sql("f_user_id") if pseudonymize else "f_user_id"
    raw = "raw" if keep_raw else "CASE WHEN reason IS NOT NULL THEN raw END"
    if spec.window:
        lo, hi = (q(b.isoformat(sep=" ")) for b in spec.window)
        dropped = f"(reason IS NULL AND NOT (v_ts >= {lo} AND v_ts < {hi}))"
    else:
        dropped = "false"
    if target == "events":
        out = [
            f"{user} AS user_id", "v_ts AS ts", "v_behavior AS behavior", "f_item_id AS item_id",
            "f_category_id AS category_id", "coalesce(TRY_CAST(v_quantity AS INTEGER), 1) AS quantity",
            "v_amount AS amount", "0 AS masks",
        ]
        key = "hash(user_id, ts, item_id, behavior)"  # a pre-filter: candidates are compared on every column
    else:
        text_sql, text_count = mask_sql("f_text")
        title_sql, title_count = mask_sql("f_title")
        review_id = "f_review_id" if "review_id" in spec.fields else (
            f"f_item_id || '-' || {user} || '-' || f_ts"
        )
        out = [
            f"{review_id} AS review_id", f"{user} AS user_id", "f_item_id AS item_id", "v_ts AS ts",
            "TRY_CAST(v_rating AS INTEGER) AS rating", f"{title_sql} AS title", f"{text_sql} AS text",
            "TRY_CAST(TRY_CAST(f_helpful_votes AS DOUBLE) AS INTEGER) AS helpful_votes",
            "TRY_CAST(TRY_CAST(f_total_votes AS DOUBLE) AS INTEGER) AS total_votes",
            f"CAST(({text_count}) + ({title_count}) AS INTEGER) AS masks",
        ]
        key = "hash(review_id)"
    if spec.engine == "jsonl":  # json_extract on a malformed line raises: extract from valid lines only
        source = "(SELECT *, CASE WHEN json_valid(raw) THEN raw END AS jraw FROM chunk)"
    return f"""
WITH src AS (
  SELECT line_no, raw, nf, problem, truncated, {"jraw, " if spec.engine == "jsonl" else ""}{", ".join(src_cols)}
  FROM {source}
  -- blank lines are not records; trim only short lines (trim over every row is costly)
  WHERE problem IS NOT NULL OR NOT (raw = '' OR (strlen(raw) < 16 AND trim(raw) = ''))
), nums AS (
  SELECT *, TRY_CAST(f_ts AS DOUBLE) AS n_ts FROM src
), typed AS (
  SELECT *, {", ".join(typed)} FROM nums
), coded AS (
  SELECT *, {chk_case} AS chk FROM typed
), checked0 AS (
  SELECT *, {field_case} AS field, {reason_case} AS reason FROM coded
), checked AS (
  SELECT * REPLACE (CASE WHEN truncated AND chk > 1 THEN reason || '; this last line has no newline, so the file '
    || 'may be truncated: re-export or re-download it' ELSE reason END AS reason) FROM checked0
), canon AS (
  SELECT line_no, {raw} AS raw, field, reason, {dropped} AS dropped, {", ".join(out)} FROM checked
)
SELECT *, {key} AS h FROM canon"""
