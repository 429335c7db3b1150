"""Spans of time in plain words, as days: "this week" (7), "the coming month" (30), "2 weeks" (14).

One reading for the two places that need it: the notes the agent adds to a question
(assistant/agent/session.py `time_notes`) and argument grounding (assistant/agent/tool_specs.py), where
"this month" is what grounds `horizon_days: 30` and `since: "30d"`.
"""

from __future__ import annotations

import re

UNIT_DAYS = {"day": 1, "week": 7, "fortnight": 14, "month": 30, "quarter": 90, "year": 365}
_COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "this": 1, "next": 1, "coming": 1, "past": 1, "last": 1,
                "two": 2, "three": 3, "four": 4, "six": 6, "twelve": 12}
_ADVERBS = {"daily": 1, "weekly": 7, "monthly": 30, "quarterly": 90, "yearly": 365}
_SPAN_RE = re.compile(r"\b(?:(\d+|" + "|".join(_COUNT_WORDS) + r")[\s-]+(" + "|".join(UNIT_DAYS) + r")s?|("
                      + "|".join(_ADVERBS) + r"))\b", re.I)
_EXPLICIT_DAYS_RE = re.compile(r"\b\d+\s*(?:-\s*)?days?\b", re.I)


def spans(text: str) -> list[tuple[str, int]]:
    """(phrase, days) for every span of time the text names, in order."""
    found = []
    for match in _SPAN_RE.finditer(text):
        count, unit, adverb = match.groups()
        if adverb:
            days = _ADVERBS[adverb.lower()]
        else:
            days = (int(count) if count.isdigit() else _COUNT_WORDS[count.lower()]) * UNIT_DAYS[unit.lower()]
        found.append((match.group(0), days))
    return found


def gives_days(text: str) -> bool:
    """Whether the text already counts in days ("the next 30 days")."""
    return bool(_EXPLICIT_DAYS_RE.search(text))
