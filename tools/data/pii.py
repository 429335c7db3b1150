"""Privacy helpers: mask emails, phone numbers and card-like numbers; pseudonymize user ids.

The patterns are written in the common subset of Python `re` (with re.ASCII) and RE2 (DuckDB's
regex engine), so the importer can mask millions of review texts in SQL and every other part
(prompts, case memory) can mask with `mask_pii` in Python and get the same result.

Pseudonymization is HMAC-SHA256 of the id under a secret key. The key comes from the
environment variable SHOPSIGHT_SECRET or from a key file created on first use under the
ShopSight home folder (mode 0600); it is never written to the database.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from tools.paths import shopsight_home

# (name, pattern, replacement), applied in this order: emails first (they may hold digits),
# then card-like runs of 13-19 digits (before phones, which would eat parts of them).
PII_PATTERNS: tuple[tuple[str, str, str], ...] = (
    ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", "[EMAIL]"),
    ("card", r"\b[0-9](?:[ -]?[0-9]){12,18}\b", "[CARD]"),
    (
        "phone",
        r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{2,4}\)[ .-]?|\b[0-9]{2,4}[ .-])[0-9]{3,4}[ .-]?[0-9]{3,4}\b",
        "[PHONE]",
    ),
)
_COMPILED = tuple((name, re.compile(pattern, re.ASCII), repl) for name, pattern, repl in PII_PATTERNS)

SECRET_ENV = "SHOPSIGHT_SECRET"
KEY_FILE_NAME = "secret.key"
PSEUDONYM_PREFIX = "u_"
PSEUDONYM_HEX_CHARS = 16  # 64 bits: no collisions expected below ~10^8 users


def mask_pii(text: str | None) -> tuple[str, int]:
    """Mask emails, phone numbers and card-like numbers in `text`.

    Args:
        text: Any text (review body, title, a user's question). None is treated as "".

    Returns:
        The masked text and how many spans were masked.
    """
    if not text:
        return text or "", 0
    total = 0
    for _name, pattern, repl in _COMPILED:
        text, n = pattern.subn(repl, text)
        total += n
    return text, total


def mask_sql(column: str) -> tuple[str, str]:
    """SQL expressions (DuckDB) for the masked `column` and the number of masks in it.

    Mirrors `mask_pii` step by step: each pattern runs on the output of the previous one.
    """
    current = column
    counts = []
    for _name, pattern, repl in PII_PATTERNS:
        quoted = "'" + pattern.replace("'", "''") + "'"
        counts.append(f"coalesce(len(regexp_extract_all({current}, {quoted})), 0)")
        current = f"regexp_replace({current}, {quoted}, '{repl}', 'g')"
    return current, " + ".join(counts)


def secret_key(home: Path | None = None) -> bytes:
    """The pseudonymization key: $SHOPSIGHT_SECRET, else the key file (created on first use)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode("utf-8")
    path = (home or shopsight_home()) / KEY_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes racing to create the key must not end up with different keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
    key = path.read_text().strip()
    if not key:
        raise ValueError(f"{path} is empty: delete it (a new key is created) or set {SECRET_ENV}")
    return key.encode("utf-8")


def pseudonymize(user_id: str, key: bytes | None = None) -> str:
    """Keyed hash of one id: 'u_' + the first 16 hex chars of HMAC-SHA256(key, id)."""
    key = key if key is not None else secret_key()
    digest = hmac.new(key, str(user_id).encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_CHARS]


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """The (inner, outer) padded keys of HMAC-SHA256, so SQL can compute the same hash."""
    if len(key) > 64:  # HMAC hashes long keys first
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def pseudonymize_sql(column: str, inner_param: str = "$ipad", outer_param: str = "$opad") -> str:
    """DuckDB expression equal to `pseudonymize(column)`; bind the pads of `hmac_pads` as BLOBs."""
    inner = f"unhex(sha256({inner_param}::BLOB || encode({column})))"
    return f"'{PSEUDONYM_PREFIX}' || left(sha256({outer_param}::BLOB || {inner}), {PSEUDONYM_HEX_CHARS})"
