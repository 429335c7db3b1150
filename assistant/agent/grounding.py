"""Every number and id in an answer must come from this conversation's tool results.

`Evidence` gathers what the tools returned (numbers, id-like strings, dates, list lengths);
`check(text, evidence)` extracts the claims of an answer and marks each grounded or not;
`redact(text, report)` keeps only the sentences whose claims are all grounded;
`citations(text, results)` lists the ids of users, cases, reviews, items the answer uses.
Statements without numbers -- about drivers, directions, rankings, reasons and the topic -- are
checked too (assistant/agent/claims.py) when the evidence knows this turn's tools: a false or
off-topic statement is an ungrounded claim of kind "statement", dropped like an invented number.

Formatting is forgiven, invention is not: 0.734 grounds "0.73", "73%", "73.4 %" and
"73.4 percent"; 1234.5 grounds "$1,234.50" and "1,235"; the user id "00042" grounds
"00042" but a made-up "u_99" grounds nothing. Integers must match exactly (a count of 3
is not grounded by a probability of 2.6), except large amounts which may be rounded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from assistant.agent.claims import statement_problems

_DATE = r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?"
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
# Dates as the answer writer prints them: "June 30, 2026" and "2026年6月30日".
_WORD_DATE = r"(?:" + "|".join(m.capitalize() for m in _MONTHS) + r") \d{1,2}, \d{4}|\d{4}年\d{1,2}月\d{1,2}日"
_WORD_DATE_EN_RE = re.compile(r"([A-Za-z]+) (\d{1,2}), (\d{4})")
_WORD_DATE_ZH_RE = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日")
# A token with at least one digit and one letter/underscore: an id (u_00042, B001E4KFG0) or a
# number with a unit (7-day, 30d) -- told apart in `_classify`.
_ALNUM = r"(?<![\w.@])(?=[\w-]*\d)(?=[\w-]*[A-Za-z_])[A-Za-z0-9_][\w-]*[A-Za-z0-9_](?:@\d{8}T\d{6}Z)?"
# ^ with an optional "@YYYYMMDDTHHMMSSZ" tail: a case id (user@cutoff) is one claim, not two
_NUMBER = r"(?<![\w.])[-+]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?(?:%|percent\b|per cent\b|pct\b))?"
_DATE_RE = re.compile(_DATE)
_CASE_ID = r"(?<![\w.@])[\w-]+@\d{8}T\d{6}Z"  # a snapshot case id whose user part is all digits
_CLAIM_RE = re.compile(f"({_DATE}|{_WORD_DATE})|({_CASE_ID}|{_ALNUM})|({_NUMBER})")
_ENUMERATOR_RE = re.compile(r"^\s*(?:[-*]\s*)?\d{1,2}[.)]\s")  # "1. " / "2) " list markers
_ORDINAL_RE = re.compile(r"^\d+(?:st|nd|rd|th)$", re.I)
_UNIT_RE = re.compile(r"^(\d+(?:\.\d+)?)-?(days?|d|weeks?|w|months?|m|hours?|h|x|k|pp|stars?)$", re.I)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[*#-])")
_TOKEN_SPLIT_RE = re.compile(r"[^\w\-.:@]+")  # "@" joins a case id: user@cutoff
_NUM_IN_TEXT_RE = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
# Keys whose values are ids worth citing, and the kind each cites as.
_CITE_KINDS = {"user_id": "user", "case_id": "case", "review_id": "review", "item_id": "item",
               "category_id": "category"}


@dataclass
class Claim:
    """One number, id or date stated in an answer."""

    text: str
    kind: str  # "number" | "percent" | "id" | "date"
    sentence: int  # index of the sentence (see `split_sentences`)
    grounded: bool = False


@dataclass
class GroundingReport:
    """The claims of one answer, each marked grounded or not."""

    claims: list[Claim] = field(default_factory=list)

    @property
    def grounded(self) -> list[str]:
        return [c.text for c in self.claims if c.grounded]

    @property
    def ungrounded(self) -> list[str]:
        return [c.text for c in self.claims if not c.grounded]

    @property
    def ok(self) -> bool:
        return all(c.grounded for c in self.claims)


@dataclass
class Evidence:
    """What the tools returned, indexed for matching claims against it."""

    numbers: list[float] = field(default_factory=list)
    integers: set[int] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)  # lower-cased id-like strings and words
    texts: list[str] = field(default_factory=list)  # whole string values (for dates)
    results: list[Any] = field(default_factory=list)  # as given, for the statement checks
    tools: list[str] | None = None  # this turn's tools; None: statements are not checked
    question: str = ""

    @classmethod
    def from_results(cls, results: Iterable[Any], extra_texts: Iterable[str] = (),
                     tools: Iterable[str] | None = None, question: str = "") -> "Evidence":
        """Index tool results (dicts/lists/scalars) plus extra trusted texts (the user's questions).

        Give `tools` (the names of this turn's tools) to check statements as well as numbers.
        """
        ev = cls(tools=None if tools is None else list(tools), question=question)
        for result in results:
            ev.results.append(result)
            ev._add(result)
        for text in extra_texts:
            ev._add_string(text)
        return ev

    def _add(self, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self._add_string(str(key))
                self._add(item)
        elif isinstance(value, (list, tuple)):
            self._add_number(len(value))  # "3 users" is grounded by a list of three
            for item in value:
                self._add(item)
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, (int, float)) or hasattr(value, "item"):
            number = value.item() if hasattr(value, "item") else value
            if isinstance(number, (int, float)) and math.isfinite(number):
                self._add_number(number)
                self.tokens.add(_format_plain(number))
        else:
            self._add_string(str(value))

    def _add_number(self, number: float) -> None:
        self.numbers.append(float(number))
        if float(number).is_integer():
            self.integers.add(int(number))

    def _add_string(self, text: str) -> None:
        self.texts.append(text)
        self.tokens.add(text.strip().lower())
        for token in _TOKEN_SPLIT_RE.split(text):
            token = token.strip(".:-").lower()
            if token:
                self.tokens.add(token)
                if "_" in token:  # "events_30d" written as "events 30d": its parts are claims too
                    parts = [part for part in token.split("_") if part]
                    self.tokens.update(parts)
                    for part in parts:  # ... and "events in the last 30 days": the span is a number
                        unit = _UNIT_RE.match(part)
                        if unit:
                            self._add_number(float(unit.group(1)))
        # Dates ground themselves (has_date) and their year, never "3" or "1" from "03-01".
        for date in _DATE_RE.findall(text):
            self._add_number(int(date[:4]))
        for match in _NUM_IN_TEXT_RE.finditer(_DATE_RE.sub(" ", text)):
            self._add_number(_parse_number(match.group(0)))

    # ---------------------------------------------------------------- matching
    def has_number(self, value: float, decimals: int, percent: bool) -> bool:
        """Whether some evidence number, rounded to the claim's precision, equals the claim."""
        targets = [abs(value)]
        for evidence in self.numbers:
            candidates = [abs(evidence)]
            if percent:
                candidates.append(abs(evidence) * 100.0)
            for candidate in candidates:
                for target in targets:
                    if _rounds_to(candidate, target, decimals, percent):
                        return True
        return False

    def has_token(self, token: str) -> bool:
        return token.lower() in self.tokens

    def has_date(self, date: str) -> bool:
        day = _iso_day(date)
        return any(day in text for text in self.texts)


def _iso_day(date: str) -> str:
    """"2026-06-30T23:03" / "June 30, 2026" / "2026年6月30日" -> "2026-06-30"."""
    zh = _WORD_DATE_ZH_RE.fullmatch(date.strip())
    if zh:
        return f"{int(zh.group(1)):04d}-{int(zh.group(2)):02d}-{int(zh.group(3)):02d}"
    en = _WORD_DATE_EN_RE.fullmatch(date.strip())
    if en and en.group(1).lower() in _MONTHS:
        return f"{int(en.group(3)):04d}-{_MONTHS.index(en.group(1).lower()) + 1:02d}-{int(en.group(2)):02d}"
    return date[:10]


def _rounds_to(evidence: float, claim: float, decimals: int, percent: bool) -> bool:
    if decimals == 0 and not percent and abs(evidence) < 10:
        # Small integers (counts, ranks) must match exactly: 2.6 does not ground "3".
        return evidence == claim
    tolerance = 0.5 * 10 ** (-decimals) + 1e-9 * max(1.0, abs(evidence))
    return abs(evidence - claim) <= tolerance


def _format_plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def _parse_number(text: str) -> float:
    cleaned = re.sub(r"(?:%|percent|per cent|pct)$", "", text.strip()).strip()
    return float(cleaned.replace("$", "").replace(",", "").replace("+", ""))


def split_sentences(text: str) -> list[str]:
    """Lines, then sentences inside each line; list items and table rows stay whole."""
    pieces: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            pieces.append(line)
            continue
        if line.lstrip().startswith(("|", "-", "*")) or _ENUMERATOR_RE.match(line):
            pieces.append(line)
            continue
        pieces.extend(_SENTENCE_RE.split(line))
    return pieces


def extract_claims(text: str) -> list[Claim]:
    """Every number, id and date in `text`, with the sentence it sits in."""
    claims: list[Claim] = []
    for index, sentence in enumerate(split_sentences(text)):
        body = sentence
        enumerator = _ENUMERATOR_RE.match(body)
        if enumerator:  # a list marker is layout, not a claim
            body = " " * enumerator.end() + body[enumerator.end():]
        for match in _CLAIM_RE.finditer(body):
            date, alnum, number = match.groups()
            if date:
                claims.append(Claim(date, "date", index))
            elif alnum:
                if _ORDINAL_RE.match(alnum):
                    continue
                claims.append(Claim(alnum, "id", index))
            else:
                kind = "percent" if re.search(r"(%|percent|pct)$", number) else "number"
                claims.append(Claim(number.strip(), kind, index))
    return claims


def check(text: str, evidence: Evidence) -> GroundingReport:
    """Mark each claim of `text` grounded when the evidence holds it (formatting forgiven)."""
    claims = extract_claims(text)
    for claim in claims:
        claim.grounded = _is_grounded(claim, evidence)
    if evidence.tools is not None:
        for index, why in statement_problems(split_sentences(text), evidence.results, evidence.tools,
                                             evidence.question):
            claims.append(Claim(why, "statement", index, grounded=False))
    return GroundingReport(claims)


def _is_grounded(claim: Claim, evidence: Evidence) -> bool:
    if claim.kind == "date":
        return evidence.has_date(claim.text)
    if claim.kind == "id":
        if evidence.has_token(claim.text):
            return True
        unit = _UNIT_RE.match(claim.text)
        if unit:  # "7-day", "30d": the number is the claim
            number = unit.group(1)
            return evidence.has_number(float(number), _decimals(number), False)
        return False
    value = _parse_number(claim.text)
    if claim.kind == "number" and evidence.has_token(claim.text.lstrip("+$")):
        return True  # an id made of digits, stated exactly ("00042")
    return evidence.has_number(value, _decimals(claim.text), claim.kind == "percent")


def _decimals(text: str) -> int:
    match = re.search(r"\.(\d+)", text)
    return len(match.group(1)) if match else 0


def redact(text: str, report: GroundingReport) -> str:
    """`text` without the sentences (or list lines) that hold an ungrounded claim."""
    bad = {c.sentence for c in report.claims if not c.grounded}
    kept: list[str] = []
    for index, sentence in enumerate(split_sentences(text)):
        if index in bad:
            continue
        kept.append(sentence)
    # Sentences of one line were split on spaces; re-join them, then tidy blank runs.
    joined = "\n".join(kept)
    joined = re.sub(r"\n{3,}", "\n\n", joined)
    return joined.strip()


def citations(text: str, results: Iterable[tuple[str, Any]]) -> list[dict[str, str]]:
    """The ids (users, cases, reviews, items, categories) from tool results that `text` mentions.

    Args:
        text: the final answer.
        results: (tool name, result) pairs of this conversation.

    Returns:
        `[{"kind": "user", "id": "00042", "tool": "at_risk_users"}, ...]`, first mention first.
    """
    mentioned = {t.strip(".:-").lower() for t in _TOKEN_SPLIT_RE.split(text) if t}
    found: dict[tuple[str, str], dict[str, str]] = {}
    for tool, result in results:
        for kind, value in _ids_in(result):
            if value.lower() in mentioned and (kind, value) not in found:
                found[(kind, value)] = {"kind": kind, "id": value, "tool": tool}
    order = {value: text.find(value) for _, value in found}
    return sorted(found.values(), key=lambda c: order.get(c["id"], 0))


def _ids_in(value: Any, key: str | None = None) -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _ids_in(v, k)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _ids_in(item, key)
    elif key is not None and value is not None and not isinstance(value, bool):
        kind = _CITE_KINDS.get(key) or (key[:-4] if key.endswith("_ids") else None)
        kind = kind or (key[:-3] if key.endswith("_id") else None)
        if kind:
            yield kind, _format_plain(value) if isinstance(value, (int, float)) else str(value)
