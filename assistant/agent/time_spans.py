"""Spans of time in plain words, as days: "this week" (7), "the coming month" (30), "2 weeks" (14).

One reading for the places that need it: the notes the agent adds to a question
(assistant/agent/session.py `time_notes`), argument grounding (assistant/agent/tool_specs.py), where
"this month" is what grounds `horizon_days: 30` and `since: "30d"`, and the gate's horizon check
(assistant/agent/intent.py).

Besides English words it reads the shorthand ops staff type ("7d", "30d", "this wk", "2 wks",
"1 mo") and the plain spans of the other languages people ask in: French ("cette semaine",
"ce mois-ci", "30 jours"), Spanish ("esta semana", "este mes", "30 días") and Chinese ("本周",
"本月", "30天"). A question in those languages is answered in English (assistant/agent/intent.py),
but its horizon is still the one it asked for.

How long someone has been a customer ("with us over a year", "customers for more than 6 months",
"accounts older than 90 days") is no span here: it is neither a horizon nor a window, but a group of
customers by tenure (`tenure_spans`; assistant/agent/cues.py reads it as the tenure grouping).
"""

from __future__ import annotations

import re

UNIT_DAYS = {"day": 1, "week": 7, "fortnight": 14, "month": 30, "quarter": 90, "year": 365}
# Shorthand units after a count ("30d", "2 wks", "1 mo") or after "this"/"next" ("this wk").
_SHORT_UNITS = {"d": "day", "wk": "week", "wks": "week", "w": "week", "mo": "month", "mos": "month",
                "mth": "month", "mths": "month"}
_COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "this": 1, "next": 1, "coming": 1, "past": 1, "last": 1,
                "two": 2, "three": 3, "four": 4, "six": 6, "twelve": 12}
_ADVERBS = {"daily": 1, "weekly": 7, "monthly": 30, "quarterly": 90, "yearly": 365}
# A band's label is no span: "0-30d", "30-90 days", "365d+" name groups of customers by tenure
# (segment_report's groups), so a count after "<digits>-" or before "+" is not read.
_NOT_A_RANGE_END = r"(?<!\d-)(?<!\d\s-\s)"
_NOT_OPEN_ENDED = r"(?!\+)"
_SPAN_RE = re.compile(_NOT_A_RANGE_END + r"\b(?:(\d+|" + "|".join(_COUNT_WORDS) + r")[\s-]+(" + "|".join(UNIT_DAYS)
                      + r")s?|(" + "|".join(_ADVERBS) + r"))\b" + _NOT_OPEN_ENDED, re.I)
_SHORT_RE = re.compile(_NOT_A_RANGE_END + r"(?<![\w.])(?:(\d+)\s?|(this|next|past|last|coming)\s+)("
                       + "|".join(sorted(_SHORT_UNITS, key=len, reverse=True)) + r")\b" + _NOT_OPEN_ENDED, re.I)
# Other languages: (pattern, unit). A leading number counts the units; none means one.
_FOREIGN_SPANS = [
    # French: cette semaine, la semaine prochaine, ce mois(-ci), le mois prochain, 30 jours, 2 semaines
    (r"\b(?:cette|la|une)\s+semaine(?:\s+prochaine)?\b", "week"), (r"\b(?:ce|le|un)\s+mois(?:-ci|\s+prochain)?\b", "month"),
    (r"\b(\d+)\s+jours?\b", "day"), (r"\b(\d+)\s+semaines\b", "week"),
    # Spanish: esta semana, la próxima semana, este mes, el próximo mes, 30 días, 2 semanas
    (r"\b(?:esta|la\s+próxima|la\s+proxima|una)\s+semana\b", "week"),
    (r"\b(?:este|el\s+próximo|el\s+proximo|un)\s+mes\b", "month"), (r"\b(\d+)\s+d[ií]as?\b", "day"),
    # Chinese: 本周 / 这周 / 下周 / 一周, 本月 / 这个月 / 下个月 / 一个月, 30天 / 7日
    (r"(?:本|这|這|下|一)(?:个|個)?(?:周|週|星期|礼拜)", "week"), (r"(?:本|这|這|下|一)(?:个|個)?月", "month"),
    (r"(\d+)\s*(?:天|日)", "day"), (r"(\d+)\s*(?:个|個)?(?:周|星期)", "week"), (r"(\d+)\s*(?:个|個)月", "month"),
    # Japanese: 今週 / 来週, 今月 / 来月, 3か月 / 3ヶ月 (30日 / 7日 as Chinese)
    (r"(?:今|来|來)週", "week"), (r"(?:今|来|來)月", "month"), (r"(\d+)\s*(?:か|ヶ|カ|ケ)月", "month"),
    # Dutch: deze week, volgende week, deze maand, volgende maand, 30 dagen, 2 weken
    (r"\b(?:deze|volgende)\s+week\b", "week"), (r"\b(?:deze|volgende)\s+maand\b", "month"),
    (r"\b(\d+)\s+dagen\b", "day"), (r"\b(\d+)\s+weken\b", "week"),
    # German: diese Woche, nächste Woche, diesen Monat, nächsten Monat, 14 Tage, 2 Wochen, 3 Monate
    (r"\b(?:diese|nächste|naechste|eine)\s+woche\b", "week"), (r"\b(?:diesen|nächsten|naechsten|einen)\s+monat\b", "month"),
    (r"\b(\d+)\s+tag(?:e|en)?\b", "day"), (r"\b(\d+)\s+wochen\b", "week"), (r"\b(\d+)\s+monat(?:e|en)?\b", "month"),
    (r"\b(\d+)\s+jahr(?:e|en)?\b", "year"),
    # Portuguese: esta / nesta semana, este / neste mês, 30 dias (as Spanish), 6 meses, 2 anos
    (r"\b(?:nesta|próxima|proxima)\s+semana\b", "week"), (r"\b(?:este|neste|próximo|proximo)\s+mês\b", "month"),
    (r"\b(\d+)\s+meses\b", "month"), (r"\b(\d+)\s+(?:anos|años|año)\b", "year"),
    # Italian: questa settimana, questo mese, 30 giorni, 6 mesi, 2 anni
    (r"\b(?:questa|prossima)\s+settimana\b", "week"), (r"\b(?:questo|prossimo)\s+mese\b", "month"),
    (r"\b(\d+)\s+giorni\b", "day"), (r"\b(\d+)\s+mesi\b", "month"), (r"\b(\d+)\s+anni\b", "year"),
    # French years: 2 ans; Chinese years: 2年
    (r"\b(\d+)\s+ans\b", "year"), (r"\b(\d+)\s+mois\b", "month"), (r"(?<!\d)(\d{1,2})\s*年", "year"),
]
_FOREIGN_RE = [(re.compile(p, re.I), unit) for p, unit in _FOREIGN_SPANS]
# A unit of time right after a number, in these languages: "6 months", "90 Tage", "2 años", "30天". Such a
# number is a span or a tenure: no count (assistant/agent/counts.py), and as a bare number no horizon
# (assistant/agent/tool_specs.py `_conversation`): "older than 6 months" is no `horizon_days` of 6.
UNIT_AFTER_RE = re.compile(
    r"^\s*-?\s*(?:(?:days?|d|weeks?|wks?|w|months?|mos?|mths?|years?|yrs?|y|quarters?|hours?|h)\b|"
    r"(?:d[ií]as?|semanas?|mes(?:es)?|mês|años?|anos?|jours?|semaines?|mois|ans?|années?|giorni|settiman[ae]|"
    r"mes[ei]|ann[io]|tag(?:e|en)?|wochen?|monat(?:e|en)?|jahr(?:e|en)?)\b|(?:个|個)?(?:天|日|周|週|星期|月|年))", re.I)
_EXPLICIT_DAYS_RE = re.compile(r"\b\d+\s*(?:-\s*)?days?\b", re.I)


# A span that says how long someone has been a customer is no window and no horizon: "with us over a year",
# "customers for more than 6 months", "accounts older than 90 days", "signed up 2 years ago". A bare "since"
# is left alone: "reviews since last month" is a look-back window.
# It groups customers by tenure (segment_report's "tenure"); read as a horizon it asked for 365 days ahead
# and the gate refused the question (bench/results/agent_eval.md, Round 8, hc01).
_HOW_LONG = r"(?:over|more\s+than|at\s+least|longer\s+than|less\s+than|under|about|almost|nearly|roughly|around)"
_WHO = r"(?:customers?|members?|clients?|accounts?|shoppers?|buyers?|users?|people|ones)"
_TENURE_BEFORE_RE = re.compile(
    r"(?:\bwith\s+us(?:\s+for)?|"  # "with us over a year", "with us for 2 years"
    r"\bbeen\s+(?:a\s+|our\s+)?(?:" + _WHO[3:-1] + r"|around|here|shopping|buying|ordering)"
    r"(?:\s+(?:with\s+us|here|from\s+us))?(?:\s+for)?|"  # "has been a customer for 3 years"
    r"\b" + _WHO + r"\s+(?:(?:with\s+us|here)\s+)?for(?=\s+" + _HOW_LONG + r")|"  # "customers for more than 6 months"
    r"\b(?:older|longer)\s+than|\btenure\s+(?:of|over|above|under|below)|\bmember\s+since|"
    # other languages: "länger als 90 Tage dabei", "seit über 2 Jahren", "depuis plus d'un an", "hace 2 años",
    # "há mais de 6 meses", "da più di 2 anni", "注册超过"
    r"\b(?:länger|älter)\s+als|\bseit\s+(?:über|mehr\s+als)|\bdepuis\s+plus\s+d['e’]\s*|"
    r"\bdesde\s+hace|\bhace\s+más\s+de|\bhá\s+mais\s+de|\bda\s+più\s+di|注册(?:了)?(?:超过)?)"
    r"\s*(?:" + _HOW_LONG + r"\s+)?(?:the\s+(?:past|last)\s+)?$", re.I)
_TENURE_AFTER_RE = re.compile(r"^\s*(?:(?:ago|old|of\s+(?:tenure|membership)|as\s+(?:a\s+)?(?:customers?|members?)|"
                              r"(?:or\s+)?(?:more|longer)\s+(?:with\s+us|as\s+(?:a\s+)?customers?)|"
                              r"con\s+nosotros|dabei|bei\s+uns|chez\s+nous|com\s+a\s+gente|conosco|con\s+noi)\b|(?:以)?前注册)", re.I)


def _found_spans(text: str) -> list[tuple[int, str, int]]:
    """(start, phrase, days) of every span, one reading per stretch of text, in order."""
    found = []  # (start, phrase, days)
    for match in _SPAN_RE.finditer(text):
        count, unit, adverb = match.groups()
        if adverb:
            days = _ADVERBS[adverb.lower()]
        else:
            days = (int(count) if count.isdigit() else _COUNT_WORDS[count.lower()]) * UNIT_DAYS[unit.lower()]
        found.append((match.start(), match.group(0), days))
    for match in _SHORT_RE.finditer(text):
        number, _, short = match.groups()
        found.append((match.start(), match.group(0), int(number or 1) * UNIT_DAYS[_SHORT_UNITS[short.lower()]]))
    for pattern, unit in _FOREIGN_RE:
        for match in pattern.finditer(text):
            number = match.group(1) if match.groups() else None
            found.append((match.start(), match.group(0), int(number or 1) * UNIT_DAYS[unit]))
    found.sort()
    out: list[tuple[int, str, int]] = []
    end = -1
    for start, phrase, days in found:  # one reading per stretch of text ("30 días" is not also "30 d")
        if start >= end:
            out.append((start, phrase, days))
            end = start + len(phrase)
    return out


def _is_tenure(text: str, start: int, phrase: str) -> bool:
    before, after = text[max(0, start - 48):start], text[start + len(phrase):]
    return bool(_TENURE_BEFORE_RE.search(before) or _TENURE_AFTER_RE.match(after))


def spans(text: str) -> list[tuple[str, int]]:
    """(phrase, days) for every span of time the text names, in order; how long someone has been a
    customer ("with us over a year") is left out (`tenure_spans`)."""
    return [(phrase, days) for start, phrase, days in _found_spans(text) if not _is_tenure(text, start, phrase)]


def tenure_spans(text: str) -> list[tuple[str, int]]:
    """(phrase, days) for the spans that say how long someone has been a customer ("customers for more
    than 6 months", "with us over a year", "accounts older than 90 days")."""
    return [(phrase, days) for start, phrase, days in _found_spans(text) if _is_tenure(text, start, phrase)]


def gives_days(text: str) -> bool:
    """Whether the text already counts in days ("the next 30 days")."""
    return bool(_EXPLICIT_DAYS_RE.search(text))
