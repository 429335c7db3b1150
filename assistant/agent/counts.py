"""How many results a question asks for, in digits or words, in the languages staff ask in.

"top 5", "top five", "los 5 primeros", "die 3 größten", "前5位", "the two biggest accounts": the count
the question states is what the tool's count argument (`top_k`, `k`, `last_n`) should be. The 0.5B
model, forced to write the call, often leaves it out (Round 9: "列出本周最有可能流失的前5位客户" and
"which 3 customers ..." ran with the default 10), so the router fills it (`fill_stated_count`).

A number is no count when it is a span of time or a tenure ("30 days", "diesen Monat", "older than 6
months", "más de 2 años"): it is followed by a unit of time in one of these languages. Nor is it an id the
call already holds ("cliente 646" with "user_id": "646"), part of a word ("usr_4211", "P01000", "365d+"),
a band ("0-30d"), a share ("20%"), an amount, a decimal, or a quantity a filter states ("more than 5
orders"). Words for one ("one", "un", "一") are left out: "the top one" is no `top_k` of 1; so is the Italian
"due" (English "due to"). Only a question stating exactly one count fills the argument.
"""

from __future__ import annotations

import re
from typing import Any

from assistant.agent.mentions import referenced_ids
from assistant.agent.time_spans import UNIT_AFTER_RE
from assistant.agent.tool_specs import ToolSpec

# Count words two to twenty, by language (one is left out, see above).
_WORDS = {
    "en": "two three four five six seven eight nine ten eleven twelve fifteen twenty",
    "es": "dos tres cuatro cinco seis siete ocho nueve diez doce quince veinte",
    "pt": "dois duas três quatro cinco seis sete oito nove dez doze quinze vinte",
    "fr": "deux trois quatre cinq six sept huit neuf dix douze quinze vingt",
    "it": "tre quattro cinque sei sette otto nove dieci dodici quindici venti",
    "de": "zwei drei vier fünf sechs sieben acht neun zehn zwölf fünfzehn zwanzig",
}
_VALUES = {"en": [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 20], "es": [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20],
           "pt": [2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20], "fr": [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20],
           "it": [3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20], "de": [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20]}
NUMBER_WORDS = {word: value for lang, words in _WORDS.items() for word, value in zip(words.split(), _VALUES[lang])}
_CJK_DIGITS = {"两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}

# "more than 5 orders", "más de 2 años", "über 90 Tage": a quantity a filter or a tenure states, not a count.
_QUANTIFIER_BEFORE = re.compile(
    r"(?:\b(?:more|less|fewer|longer|older|greater|higher|lower)\s+than|\bover|\bunder|\babove|\bbelow|"
    r"\bat\s+(?:least|most)|\b(?:más|menos|mais|plus|moins|più|meno)\s+d[eia]|\b(?:mehr|weniger|länger|älter)\s+als|"
    r"\büber|超过|多于|少于)\s*$", re.I)
_DIGITS = re.compile(r"(?<![A-Za-z0-9_.,:/$€£#+-])(\d{1,3})(?![A-Za-z0-9_%]|[.,]\d|-\d|\+)")
_WORD_RE = re.compile(r"(?<![^\W\d_])(" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")(?![^\W\d_])",
                      re.I)
# "前5位", "前五名": a rank in Chinese, with the count in digits or a numeral.
_CJK_RANK = re.compile(r"前\s*([二两三四五六七八九十])\s*(?:位|名|个|個)")


def _no_count(question: str, start: int, end: int) -> bool:
    """Whether the number at [start, end) is a span of time or a quantity a filter states ("more than 5")."""
    return bool(UNIT_AFTER_RE.match(question[end:]) or _QUANTIFIER_BEFORE.search(question[:start]))


def stated_counts(question: str, ids: tuple[str, ...] = ()) -> list[int]:
    """Every count the question states, in order (spans, tenures, ids, bands, shares left out)."""
    ids = (*ids, *(value for _, value in referenced_ids(question)))
    found = []  # (position, value)
    for match in _DIGITS.finditer(question):
        if match.group(1) in ids or _no_count(question, match.start(), match.end()):
            continue
        found.append((match.start(), int(match.group(1))))
    for match in _WORD_RE.finditer(question):
        if not _no_count(question, match.start(), match.end()):
            found.append((match.start(), NUMBER_WORDS[match.group(1).lower()]))
    for match in _CJK_RANK.finditer(question):
        found.append((match.start(), _CJK_DIGITS[match.group(1)]))
    return [value for _, value in sorted(found)]


def count_arguments(spec: ToolSpec) -> list[str]:
    """The tool's optional integer arguments that count results (not a span of `*_days`)."""
    return [key for key, prop in spec.parameters.items()
            if prop.get("type") == "integer" and key not in spec.required and not key.endswith("_days")]


def fill_stated_count(spec: ToolSpec, args: dict[str, Any], question: str) -> tuple[dict, list[str]]:
    """The count argument the call left out, set to the one count the question states.

    Only when the tool has one count argument, the question states one count (or states the same one
    twice) and the value passes the schema (a `top_k` of at most 100). Returns (arguments, filled names).
    """
    keys = count_arguments(spec)
    if len(keys) != 1 or keys[0] in args:
        return args, []
    ids = tuple(str(value) for key, value in args.items() if key in spec.known and value not in (None, ""))
    counts = set(stated_counts(question, ids))
    if len(counts) != 1:
        return args, []
    filled = {**args, keys[0]: counts.pop()}
    _, problem = spec.validate(filled)
    return (args, []) if problem else (filled, [keys[0]])
