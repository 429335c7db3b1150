"""Canonical tables of the event store and the errors that validation raises.

Every importer turns its source into rows of these tables; every reader (predictor, tools,
benchmark) reads only these. Timestamps are stored as naive UTC `TIMESTAMP`.
"""

from __future__ import annotations

from dataclasses import dataclass

BEHAVIORS: tuple[str, ...] = ("view", "cart", "fav", "buy")

# Column name -> DuckDB type, in table order.
EVENT_COLUMNS: dict[str, str] = {
    "user_id": "VARCHAR NOT NULL",
    "ts": "TIMESTAMP NOT NULL",
    "behavior": "VARCHAR NOT NULL",
    "item_id": "VARCHAR NOT NULL",
    "category_id": "VARCHAR",
    "quantity": "INTEGER NOT NULL DEFAULT 1",
    "amount": "DOUBLE",
}
REVIEW_COLUMNS: dict[str, str] = {
    "review_id": "VARCHAR NOT NULL",
    "user_id": "VARCHAR NOT NULL",
    "item_id": "VARCHAR NOT NULL",
    "ts": "TIMESTAMP NOT NULL",
    "rating": "INTEGER",
    "title": "VARCHAR",
    "text": "VARCHAR",
    "helpful_votes": "INTEGER",
    "total_votes": "INTEGER",
}
ITEM_COLUMNS: dict[str, str] = {
    "item_id": "VARCHAR NOT NULL",
    "category_id": "VARCHAR",
    "name": "VARCHAR",
    "price": "DOUBLE",
}
USER_COLUMNS: dict[str, str] = {
    "user_id": "VARCHAR NOT NULL",
    "signup_ts": "TIMESTAMP",
    "segment": "VARCHAR",
}
REJECTED_COLUMNS: dict[str, str] = {
    "import_id": "INTEGER NOT NULL",
    "source_file": "VARCHAR NOT NULL",
    "line_no": "BIGINT",
    "raw_line": "VARCHAR",
    "field": "VARCHAR",
    "reason": "VARCHAR NOT NULL",
}
IMPORT_LOG_COLUMNS: dict[str, str] = {
    "import_id": "INTEGER NOT NULL",
    "source_file": "VARCHAR NOT NULL",
    "sha256": "VARCHAR NOT NULL",
    "format": "VARCHAR NOT NULL",
    "target_table": "VARCHAR NOT NULL",
    "rows_read": "BIGINT NOT NULL",
    "rows_imported": "BIGINT NOT NULL",
    "rows_rejected": "BIGINT NOT NULL",
    "rows_dropped": "BIGINT NOT NULL DEFAULT 0",  # outside the format's documented window
    "duplicates": "BIGINT NOT NULL DEFAULT 0",
    "pii_masks": "BIGINT NOT NULL DEFAULT 0",
    "pseudonymized": "BOOLEAN NOT NULL DEFAULT FALSE",
    "started_at": "TIMESTAMP NOT NULL",
    "finished_at": "TIMESTAMP NOT NULL",
}
# Written by tools.predictor.score: one row per user, cutoff and horizon.
SCORE_COLUMNS: dict[str, str] = {
    "user_id": "VARCHAR NOT NULL",
    "cutoff": "TIMESTAMP NOT NULL",
    "horizon_days": "INTEGER NOT NULL",
    "p_churn": "DOUBLE NOT NULL",
    "p_buy": "DOUBLE",
    "p_cart": "DOUBLE",
    "top_items": "VARCHAR",  # space-separated item ids, best first
    "top_categories": "VARCHAR",  # space-separated category ids, best first
    "model_version": "VARCHAR NOT NULL",
}

TABLES: dict[str, dict[str, str]] = {
    "events": EVENT_COLUMNS,
    "reviews": REVIEW_COLUMNS,
    "items": ITEM_COLUMNS,
    "users": USER_COLUMNS,
    "rejected": REJECTED_COLUMNS,
    "import_log": IMPORT_LOG_COLUMNS,
    "scores": SCORE_COLUMNS,
}


# The kind of a rejection, for counts: the reason without its fix, line numbers or quoted values, so
# "duplicate of line 91181; ..." and "duplicate of line 54554; ..." count as one kind. An unknown
# behavior keeps its value: each distinct one is what a `behaviors:` mapping would have to add.
REASON_KIND_SQL = (r"split_part(split_part(regexp_replace(CASE WHEN reason LIKE 'unknown %' THEN reason "
                   r"ELSE regexp_replace(reason, '''[^'']*''', '''...''', 'g') END, "
                   r"'line \d+', 'line N', 'g'), ': ', 1), '; ', 1)")


def create_table_sql(name: str) -> str:
    """`CREATE TABLE IF NOT EXISTS` for one canonical table."""
    columns = ",\n  ".join(f"{col} {typ}" for col, typ in TABLES[name].items())
    return f"CREATE TABLE IF NOT EXISTS {name} (\n  {columns}\n)"


@dataclass(frozen=True)
class RowProblem:
    """Why one source row was rejected: kept in `rejected` and shown to the user."""

    line_no: int | None
    field: str | None
    reason: str
    raw_line: str = ""

    def describe(self, source_file: str) -> str:
        where = f"{source_file}:{self.line_no}" if self.line_no is not None else source_file
        field = f" field '{self.field}'" if self.field else ""
        return f"{where}{field}: {self.reason}"


def shown_names(names) -> list[str]:
    """Column names as an error message may show them: a file chooses its header, so each name is
    cut to 40 characters and loses line breaks and angle brackets (no chat or HTML markup)."""
    out = []
    for name in names:
        text = " ".join(str(name).split()).replace("<", "‹").replace(">", "›")
        out.append(text if len(text) <= 40 else text[:39] + "…")
    return out


class ImportFailed(Exception):
    """A whole file cannot be imported (not text, empty, unknown format, wrong delimiter).

    The message names the file, what was wrong and how to fix the call; nothing is written.
    """


class StoreError(Exception):
    """A query or write against the event store that cannot be honoured (unknown id, bad window)."""
