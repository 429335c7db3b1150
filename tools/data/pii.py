"""Privacy helpers: the one PII masker (emails, phone numbers, card numbers) and pseudonymized ids.

One masker serves the importer (review titles and texts, in SQL through `mask_sql`), the review
tools, the user serializer and the agent's view of tool results (assistant/agent/untrusted.py).
It is meant for untrusted free text only: ids, counts and timestamps that tools return are never
passed through it. What counts as PII, kept strict so that ids and timestamps survive:
- email: `name@domain.tld`;
- card: 13-19 digits (single spaces or dashes allowed between them) starting with 2-6 (the major
  networks) that pass the Luhn check; a 13-digit millisecond timestamp starts with 1 and stays;
- phone: a leading `+` and 8-15 digits, or 9-15 digits in at least three groups split by
  spaces, dots, dashes or an area code in parentheses (two groups when the first starts with a
  trunk 0, as in 010-65529988); a digits-only run is never a phone
  (order ids such as 1511544070 stay), except a Chinese mobile number (11 digits, 13x-19x);
  thousands-grouped numbers (1 000 000) and dates (2024-05-01 10:00) are not phones.
tests/test_pii.py holds the table of test strings (ids, timestamps, phones of several countries,
cards, emails, Chinese numbers) with the expected output of each.

    >>> mask_pii("call +1 415-555-0134 about order 1511544070")
    ('call [PHONE] about order 1511544070', 1)

In SQL, `register_sql(con)` adds the masker to a DuckDB connection as a function; `mask_sql`
writes the expressions that call it only on texts a cheap RE2 pre-filter flags (most reviews hold
no candidate, so Python runs on few rows).

Pseudonymization is HMAC-SHA256 of the id under a secret key. The key comes from the
environment variable SHOPSIGHT_SECRET or from a key file created on first use under the
ShopSight home folder (mode 0600); it is never written to the database.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from tools.paths import shopsight_home

# re.ASCII: \b and \w see only ASCII letters, so "电话13800138000" still has a boundary before 1.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", re.ASCII)
_CARD = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")
_PHONE_PLUS = re.compile(r"(?<![\w+])\+[0-9](?:[ .-]?\(?[0-9]+\)?)+(?![0-9])", re.ASCII)
_PHONE_GROUPS = re.compile(
    r"(?<![\w.+:/-])(?:\([0-9]{2,5}\)[ .-]?|[0-9]{1,5}[ .-])(?:[0-9]{1,5}[ .-]){0,4}[0-9]{2,8}(?![\w]|[.:/-][0-9])",
    re.ASCII)
_PHONE_CN_MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
_DATE_START = re.compile(r"(?:19|20)[0-9]{2}[-./ ][01]?[0-9][-./ ][0-3]?[0-9](?![0-9])")
_THOUSANDS = re.compile(r"[0-9]{1,3}(?:([ .,])[0-9]{3})(?:\1[0-9]{3})*")
# A superset of every pattern above in RE2 syntax (DuckDB): texts that miss it hold no PII.
PREFILTER_SQL = r"@|[0-9][0-9 ().+-]{6,}"

TOKENS = {"email": "[EMAIL]", "card": "[CARD]", "phone": "[PHONE]"}


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum every payment card number carries."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(ch for ch in text if "0" <= ch <= "9")


def _card(match: re.Match) -> str:
    digits = _digits(match.group())
    if digits[0] in "23456" and luhn_ok(digits):
        return TOKENS["card"]
    return match.group()


def _phone_plus(match: re.Match) -> str:
    return TOKENS["phone"] if 8 <= len(_digits(match.group())) <= 15 else match.group()


def _phone_groups(match: re.Match) -> str:
    text = match.group()
    n_digits = len(_digits(text))
    groups = len(re.findall(r"[0-9]+", text))
    # Two groups pass only as "0AA NNNNNNNN" (trunk 0 + area code, as in 010-65529988).
    two_ok = groups == 2 and text.startswith(("(", "0")) and n_digits >= 10
    if not 9 <= n_digits <= 15 or (groups < 3 and not two_ok):
        return text
    if _THOUSANDS.fullmatch(text) or _DATE_START.match(text):
        return text
    return TOKENS["phone"]


# (name, pattern, replacement) in the order applied: emails first (they may hold digits), then
# cards (before phones, which could eat parts of them), then phones.
_STEPS = (
    ("email", _EMAIL, TOKENS["email"]),
    ("card", _CARD, _card),
    ("phone", _PHONE_PLUS, _phone_plus),
    ("phone", _PHONE_GROUPS, _phone_groups),
    ("phone", _PHONE_CN_MOBILE, TOKENS["phone"]),
)

SECRET_ENV = "SHOPSIGHT_SECRET"
KEY_FILE_NAME = "secret.key"
PSEUDONYM_PREFIX = "u_"
PSEUDONYM_HEX_CHARS = 16  # 64 bits: no collisions expected below ~10^8 users


def mask_pii(text: str | None) -> tuple[str, int]:
    """Mask emails, phone numbers and card numbers in untrusted free text.

    Args:
        text: Any customer- or user-written text (review body, title, a pasted question). None
            is treated as "". Never pass ids or timestamps: they are not PII.

    Returns:
        The masked text and how many spans were masked.
    """
    if not text:
        return text or "", 0
    return _mask_cached(text)


@functools.lru_cache(maxsize=4096)  # the SQL side asks for the text and the count of one review
def _mask_cached(text: str) -> tuple[str, int]:
    total = 0
    for _name, pattern, repl in _STEPS:
        if callable(repl):
            hits = [0]

            def counted(match: re.Match, repl=repl, hits=hits) -> str:
                out = repl(match)
                hits[0] += out != match.group()
                return out

            text = pattern.sub(counted, text)
            total += hits[0]
        else:
            text, n = pattern.subn(repl, text)
            total += n
    return text, total


SQL_MASK_FUNCTION = "shopsight_mask_pii"
SQL_COUNT_FUNCTION = "shopsight_pii_count"


def register_sql(con) -> None:
    """Add the masker to DuckDB connection `con` (needed by `mask_sql`); safe to call twice."""
    import duckdb

    for name, fn, returns in ((SQL_MASK_FUNCTION, lambda t: mask_pii(t)[0], "VARCHAR"),
                              (SQL_COUNT_FUNCTION, lambda t: mask_pii(t)[1], "INTEGER")):
        try:
            con.create_function(name, fn, ["VARCHAR"], returns, side_effects=False)
        except duckdb.NotImplementedException as exc:  # registered on this connection already
            if "already created" not in str(exc):
                raise


def mask_sql(column: str) -> tuple[str, str]:
    """SQL expressions (DuckDB) for the masked `column` and the number of masks in it.

    The same masker as `mask_pii` (register it on the connection first with `register_sql`),
    called only where the RE2 pre-filter `PREFILTER_SQL` finds a candidate.
    """
    candidate = f"regexp_matches({column}, '{PREFILTER_SQL}')"
    masked = f"CASE WHEN {candidate} THEN {SQL_MASK_FUNCTION}({column}) ELSE {column} END"
    count = f"CASE WHEN {candidate} THEN {SQL_COUNT_FUNCTION}({column}) ELSE 0 END"
    return masked, count


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
