"""The source formats the importer reads, and how a format is recognised from a file's head.

A `FormatSpec` says how to cut a source record into fields (`engine`) and gives, for every
canonical column, a DuckDB SQL expression over those fields. Validation itself is common to
all formats (see `tools.data.validate`).

Field names inside the SQL: split engines expose `c1..cN` (the N expected fields, VARCHAR),
`jsonl` exposes `raw` (the line), `csv` / `parquet` expose the source columns by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tools.data.schema import ImportFailed

# Beijing time (UTC+8) window of the official Taobao UserBehavior release, as naive UTC bounds.
TAOBAO_WINDOW = (datetime(2017, 11, 24, 16, 0, 0), datetime(2017, 12, 3, 16, 0, 0))


@dataclass(frozen=True)
class FormatSpec:
    """How one source format maps onto a canonical table."""

    name: str
    target: str  # "events" | "reviews"
    engine: str  # "split" | "whitespace" | "jsonl" | "csv" | "parquet"
    description: str
    fields: dict[str, str]  # canonical column -> SQL over the engine's fields
    n_fields: int = 0  # split engines: expected number of fields per line
    header: tuple[str, ...] | None = None  # expected header names (lower-case); None = no header
    header_optional: bool = False  # CDNOW ships with and without a header line
    delimiter: str = ","
    field_names: tuple[str, ...] = ()  # names of c1..cN, for messages
    ts_unit: str = "s"  # "s" | "ms" | "yyyymmdd" | "auto" | a strftime format
    behaviors: dict[str, str] | None = None  # source value -> canonical behavior
    window: tuple[datetime, datetime] | None = None  # rows outside are dropped (counted)
    window_label: str = ""
    dedupe: bool = True  # identical rows after the first are rejected as duplicates
    example: str = ""
    extra: dict = field(default_factory=dict)


def _c(i: int) -> str:
    return f"c{i}"


TAOBAO = FormatSpec(
    name="taobao",
    target="events",
    engine="split",
    description="Taobao UserBehavior CSV, no header: user_id,item_id,category_id,behavior_type,timestamp",
    n_fields=5,
    field_names=("user_id", "item_id", "category_id", "behavior_type", "timestamp"),
    fields={"user_id": "c1", "item_id": "c2", "category_id": "c3", "behavior": "c4", "ts": "c5"},
    ts_unit="s",
    behaviors={"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"},
    window=TAOBAO_WINDOW,
    window_label="2017-11-25..2017-12-03 Beijing time",
    example="1,2268318,2520377,pv,1511544070",
)

RETAILROCKET = FormatSpec(
    name="retailrocket",
    target="events",
    engine="split",
    description="RetailRocket events.csv: timestamp,visitorid,event,itemid,transactionid (ms)",
    n_fields=5,
    header=("timestamp", "visitorid", "event", "itemid", "transactionid"),
    field_names=("timestamp", "visitorid", "event", "itemid", "transactionid"),
    fields={"ts": "c1", "user_id": "c2", "behavior": "c3", "item_id": "c4"},
    ts_unit="ms",
    behaviors={"view": "view", "addtocart": "cart", "transaction": "buy"},
    example="1433221332117,257597,view,355908,",
)

CDNOW = FormatSpec(
    name="cdnow",
    target="events",
    engine="whitespace",
    description="CDNOW_master.txt: customer_id yyyymmdd number_of_cds dollar_value (whitespace separated)",
    n_fields=4,
    header=("customer_id", "date", "number_of_cds", "dollar_value"),
    header_optional=True,
    field_names=("customer_id", "date", "number_of_cds", "dollar_value"),
    fields={
        "user_id": "c1",
        "ts": "c2",
        "behavior": "'buy'",
        "item_id": "'cd'",
        "quantity": "c3",
        "amount": "c4",
    },
    ts_unit="yyyymmdd",
    # Day-level data: the same customer buying the same number of CDs for the same amount twice
    # on one day is two purchases, so repeats are counted but kept.
    dedupe=False,
    example="00001 19970101  1   11.77",
)

FINEFOOD = FormatSpec(
    name="amazon_finefood",
    target="reviews",
    engine="csv",
    description="Amazon Fine Food Reviews CSV: Id,ProductId,UserId,ProfileName,...,Score,Time,Summary,Text",
    header=(
        "id",
        "productid",
        "userid",
        "profilename",
        "helpfulnessnumerator",
        "helpfulnessdenominator",
        "score",
        "time",
        "summary",
        "text",
    ),
    fields={
        "review_id": "'finefood-' || \"Id\"",
        "user_id": '"UserId"',
        "item_id": '"ProductId"',
        "ts": '"Time"',
        "rating": '"Score"',
        "title": '"Summary"',
        "text": '"Text"',
        "helpful_votes": '"HelpfulnessNumerator"',
        "total_votes": '"HelpfulnessDenominator"',
    },
    ts_unit="s",
)

_J = "json_extract_string(jraw, '$.{}')"  # jraw: the line if it is valid JSON, else NULL
AMAZON_JSON = FormatSpec(
    name="amazon_json",
    target="reviews",
    engine="jsonl",
    description=(
        "Amazon review JSON lines, 2014/2018 layout (reviewerID, asin, overall, reviewText, "
        "unixReviewTime) or 2023 layout (user_id, parent_asin, rating, text, timestamp in ms)"
    ),
    fields={
        "user_id": f"coalesce({_J.format('reviewerID')}, {_J.format('user_id')})",
        "item_id": f"coalesce({_J.format('asin')}, {_J.format('parent_asin')})",
        # unixReviewTime is seconds; the 2023 `timestamp` is milliseconds: normalise to seconds.
        "ts": (
            f"coalesce({_J.format('unixReviewTime')}, "
            f"CAST(TRY_CAST({_J.format('timestamp')} AS DOUBLE) / 1000 AS VARCHAR))"
        ),
        "rating": f"coalesce({_J.format('overall')}, {_J.format('rating')})",
        "title": f"coalesce({_J.format('summary')}, {_J.format('title')})",
        "text": f"coalesce({_J.format('reviewText')}, {_J.format('text')})",
        "helpful_votes": (
            f"coalesce({_J.format('helpful[0]')}, replace({_J.format('vote')}, ',', ''), "
            f"{_J.format('helpful_vote')})"
        ),
        "total_votes": _J.format("helpful[1]"),
    },
    ts_unit="s",
    example='{"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000013714", "overall": 5.0, ...}',
)

# Generic formats: `fields` comes from the user's column mapping (see `mapped_spec`).
GENERIC_CSV = FormatSpec(
    name="csv",
    target="events",
    engine="csv",
    description="any CSV with a header, mapped with --map source_column=canonical_field or --mapping FILE.yaml",
    fields={},
    ts_unit="auto",
)
GENERIC_PARQUET = FormatSpec(
    name="parquet",
    target="events",
    engine="parquet",
    description="any Parquet file, mapped like csv",
    fields={},
    ts_unit="auto",
)

FORMATS: dict[str, FormatSpec] = {
    spec.name: spec for spec in (TAOBAO, RETAILROCKET, CDNOW, FINEFOOD, AMAZON_JSON, GENERIC_CSV, GENERIC_PARQUET)
}

CANONICAL_FIELDS = {
    "events": ("user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"),
    "reviews": (
        "review_id",
        "user_id",
        "item_id",
        "ts",
        "rating",
        "title",
        "text",
        "helpful_votes",
        "total_votes",
    ),
}
REQUIRED_FIELDS = {
    "events": ("user_id", "ts", "behavior", "item_id"),
    "reviews": ("user_id", "item_id", "ts"),
}
# Header names that map onto canonical fields without a mapping (generic CSV / Parquet), compared
# after `header_key` ("User ID" -> "user_id").
ALIASES = {
    "user": "user_id",
    "userid": "user_id",
    "customer": "user_id",
    "customerid": "user_id",
    "item": "item_id",
    "itemid": "item_id",
    "product": "item_id",
    "productid": "item_id",
    "sku": "item_id",
    "date": "ts",
    "datetime": "ts",
    "event_time": "ts",
    "order_date": "ts",
    "created_at": "ts",
    "review_date": "ts",
    "review": "text",  # review fields: used only when the target is reviews (a rating column)
    "review_text": "text",
    "comment": "text",
    "body": "text",
    "summary": "title",
    "headline": "title",
    "stars": "rating",
    "score": "rating",
    "timestamp": "ts",
    "time": "ts",
    "event": "behavior",
    "event_type": "behavior",
    "behavior_type": "behavior",
    "product_id": "item_id",
    "category": "category_id",
    "price": "amount",
    "qty": "quantity",
    "customer_id": "user_id",
}

# Behavior values that shops' exports commonly use for the four canonical ones (generic CSV / Parquet
# without a `behaviors:` mapping); compared lower-case.
BEHAVIOR_SYNONYMS = {
    "view": "view", "pageview": "view", "page_view": "view", "pv": "view", "detail": "view",
    "cart": "cart", "add_to_cart": "cart", "addtocart": "cart", "add-to-cart": "cart",
    "fav": "fav", "favorite": "fav", "favourite": "fav", "wishlist": "fav",
    "buy": "buy", "purchase": "buy", "order": "buy", "transaction": "buy",
}


def header_key(name: str) -> str:
    """A header name as compared with canonical fields and aliases: lower-case, blanks and dashes as underscores."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


_TAOBAO_RE = re.compile(r"^\d+,\d+,\d+,(pv|buy|cart|fav),\d+$")
_CDNOW_RE = re.compile(r"^\s*\d+\s+\d{8}\s+\d+\s+[\d.]+\s*$")
_DELIMS = {"\t": "TAB", ";": "';'", "|": "'|'", ",": "','"}


def format_list() -> str:
    """One line per known format, for error messages and `--help`."""
    return "\n".join(f"  {name:16s} {spec.description}" for name, spec in FORMATS.items())


def sniff_head(path: Path, sample_bytes: int = 65536) -> tuple[bytes, list[str]]:
    """The first bytes of a file and its first non-blank text lines; refuse empty or binary files."""
    with open(path, "rb") as fh:
        head = fh.read(sample_bytes)
    if not head.strip():
        raise ImportFailed(f"{path}: the file is empty (no data lines); nothing was imported. Check the export.")
    if head.startswith(b"PAR1"):
        return head, []
    spreadsheet = excel_kind(head)
    if spreadsheet:
        raise ImportFailed(
            f"{path}: this is a spreadsheet workbook ({spreadsheet}), not a CSV, whatever its name says; open it in "
            "Excel or LibreOffice and save the sheet with File > Save As > 'CSV UTF-8 (comma delimited)', then "
            "import that file."
        )
    if head[:2] == b"\x1f\x8b" or head[:4] == b"PK\x03\x04":
        kind = "gzip" if head[:2] == b"\x1f\x8b" else "zip"
        raise ImportFailed(f"{path}: the file is {kind}-compressed; decompress it first, then import the CSV.")
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ImportFailed(
            f"{path}: the file is UTF-16 text (Excel's 'Unicode Text' export); save it as 'CSV UTF-8 (comma "
            "delimited)' instead, or convert it: iconv -f UTF-16 -t UTF-8 FILE > FILE.csv")
    if b"\0" in head:
        pos = head.index(b"\0")
        raise ImportFailed(
            f"{path}: not a text file (NUL byte at byte {pos}); give a CSV, JSON-lines or Parquet file."
        )
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")  # a byte-order mark is not text
    bad = text.count("\ufffd")
    if bad > max(2, len(text) // 100):  # a few bad bytes are bad lines; many mean it is not text
        raise ImportFailed(
            f"{path}: not UTF-8 text ({bad} undecodable bytes in the first {len(head)}); "
            "re-save the file as UTF-8 or give a Parquet file."
        )
    lines = [line.strip("\r") for line in text.split("\n")]
    if len(head) == sample_bytes:
        lines = lines[:-1]  # the sample cuts the last line
    return head, [line for line in lines if line.strip()]


def excel_kind(head: bytes) -> str:
    """'.xlsx', '.xls' or '.ods' when a file's first bytes are an Excel workbook (often renamed .csv), else ''."""
    if head[:4] == b"PK\x03\x04" and (b"xl/" in head or b"[Content_Types].xml" in head):
        return ".xlsx"  # a zip whose first entries are the workbook's parts
    if head[:4] == b"PK\x03\x04" and b"opendocument.spreadsheet" in head[:200]:
        return ".ods"  # LibreOffice Calc: the zip's first entry is its mimetype
    if head[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return ".xls"  # an OLE2 compound file: Excel 97-2003
    return ""


def detect_format(path: Path) -> str:
    """Choose the format from the file's first bytes; raise ImportFailed listing formats if none fits."""
    head, lines = sniff_head(path)
    if head.startswith(b"PAR1") or path.suffix.lower() == ".parquet":
        return "parquet"
    first = lines[0] if lines else ""
    lowered = [part.strip().strip('"').lower() for part in first.split(header_delimiter(first))]
    for spec in FORMATS.values():
        if spec.header and spec.engine != "whitespace" and tuple(lowered) == spec.header:
            return spec.name
    if tuple(first.lower().split()) == CDNOW.header or _CDNOW_RE.match(first):
        return "cdnow"
    if _TAOBAO_RE.match(first):
        return "taobao"
    if first.lstrip().startswith("{"):
        if ('"reviewerID"' in first and '"asin"' in first) or ('"user_id"' in first and '"parent_asin"' in first):
            return "amazon_json"
    if {header_key(n) for n in lowered} & ({"user_id", "item_id"} | set(ALIASES)) and len(lowered) > 1:
        return "csv"
    hint = wrong_delimiter_hint(first, ",")
    raise ImportFailed(
        f"{path}:1: cannot tell the format from the first line {first[:80]!r}.{hint}\n"
        f"Give one with --format NAME; known formats:\n{format_list()}"
    )


def header_delimiter(line: str) -> str:
    """The delimiter of a generic CSV's header line: ',' unless the line has none and uses ';', TAB or '|'.

    European spreadsheets save "CSV" with ';' (the comma is their decimal mark); such a header has
    no comma, so the guess cannot split a comma-separated header wrongly.
    """
    if "," in line:
        return ","
    counts = {delim: line.count(delim) for delim in ";\t|"}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def wrong_delimiter_hint(line: str, expected: str) -> str:
    """A sentence naming the delimiter a line seems to use, if it is not `expected`; else ''."""
    if expected in line:
        return ""
    for delim, label in _DELIMS.items():
        if delim != expected and line.count(delim) >= 2:
            return (
                f" The line is separated by {label}, not {_DELIMS.get(expected, repr(expected))}: "
                "convert the delimiter, or, if this line is a header, import it with --format csv (the header's "
                "delimiter is found) and --map COLUMN=FIELD for columns not named like user_id, ts, behavior, item_id."
            )
    return ""


def check_first_line(path: Path, spec: FormatSpec) -> None:
    """Fail fast, before any write, when the file's first line cannot be this format (e.g. delimiter)."""
    _head, lines = sniff_head(path)  # every text format: refuses empty, binary and spreadsheet files
    if spec.engine not in ("split",):
        return
    if not lines:
        return
    first = lines[0]
    if first.count(spec.delimiter) == 0:
        hint = wrong_delimiter_hint(first, spec.delimiter) or (
            f" Expected {spec.n_fields} fields separated by {spec.delimiter!r}, like {spec.example!r}."
        )
        raise ImportFailed(f"{path}:1: does not look like {spec.name}.{hint}")
