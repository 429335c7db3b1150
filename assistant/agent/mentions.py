"""The ids a question names, read the way people write them.

"user 1814", "cust #42", "usr 2827", "cliente 3607", "用户 3710" name a user; "item P00458",
"sku P1" an item. People also drop the noun ("why is 4955 at risk?", "recent activity 4058") or
name a segment or category as it is spelled in the shop ("snacker customers", "cat_treats",
"home cook"). `mentions(text)` returns every candidate, in order; which of them is really an id
of some kind is for the tools' own read-only checks (`ToolSpec.known`) to say.

A bare number is a candidate only when it cannot be a count or a date: at least 3 digits, not
after "top"/"last"/"first" and the like, not before a counted noun ("12 customers", "30 days",
"8 events"), not a year ("in 2026"), and not part of a date, a time, a decimal or an amount. A count like "top 15" is
never read as user 15; a user with a one- or two-digit id is named with its noun ("user 15").
"""

from __future__ import annotations

import re

# Ids are ASCII: in Chinese, written without spaces, "和客户161类似的客户" names user 161 (E he10 found no id there).
ID_PATTERN = r"([A-Za-z0-9][A-Za-z0-9_-]*\d[A-Za-z0-9_-]*|\d+)"
USER_NOUNS = (r"user|customer|cust|usr|client|buyer|shopper|member|account|cliente|usuario|usuário|utente|"
              r"utilisateur|utilisatrice|kunde|nutzer")
USER_REF_RE = re.compile(rf"\b(?:{USER_NOUNS})(?:'s)?(?:\s+(?:id|no\.?|number))?\s*[#:=]?\s*{ID_PATTERN}\b", re.I)
ITEM_REF_RE = re.compile(rf"\b(?:item|product|sku|article|producto|produit)(?:'s)?(?:\s+id)?\s*[#:=]?\s*{ID_PATTERN}\b",
                         re.I)
# Chinese, simplified and traditional, and Japanese ("顧客1814が", "ユーザー 42", "会員 7").
USER_REF_ZH_RE = re.compile(rf"(?:用户|用戶|客户|客戶|顾客|顧客|会员|會員|会員|ユーザー|お客様|お客さま)\s*(?:id|ID|编号)?\s*[#:：]?\s*{ID_PATTERN}")

# What a count of 100 or more is followed by: plural nouns and units ("250 customers", "120 USD"). A
# singular noun is no count there: in "will 2895 order next", 2895 is a customer.
_COUNTED = (r"customers|users|clients|people|persons|shoppers|buyers|custs|usrs|accounts|members|folks|events|"
            r"actions|orders|purchases|items|products|skus|categories|cases|lookalikes|reviews|segments|groups|"
            r"rows|results|names|ids|days|weeks|months|years|hours|d|wk|wks|mo|mos|usd|eur|gbp|dollars|euros|"
            r"bucks|percent|pct|x|times|stars|clientes|usuarios|utilisateurs|jours|días|dias|semaines|semanas|"
            r"mois|meses")
_COUNT_WORDS_BEFORE = (r"top|last|first|next|bottom|best|worst|latest|newest|recent|highest|lowest|biggest|"
                       r"largest|k|n|limit|show|list|give|get|return|which|name|only|about|around|over|under|"
                       r"within|past|than|least|most|every|per")
# A number touching Chinese characters is still a number ("客户161类似"), unless a unit or counter follows
# ("2026年", "300元", "30天").
_NUMBER_RE = re.compile(r"(?<![A-Za-z0-9_.,:/$€£#-])(\d{3,})(?![A-Za-z0-9_.,:/%-]*\d)(?![A-Za-z0-9_%])"
                        r"(?!\s*(?:年|月|日|天|周|週|个|個|位|名|元|块|次|件|笔))")
_COUNT_BEFORE_RE = re.compile(rf"\b(?:{_COUNT_WORDS_BEFORE})\s*[=:]?\s*$", re.I)
_COUNT_AFTER_RE = re.compile(rf"^\s*-?\s*(?:{_COUNTED})\b", re.I)
_YEAR_RE = re.compile(r"\b(?:in|since|during|year|of|from|until|till|before|after|by)\s+$", re.I)  # "in 2026"
_TOKEN_RE = re.compile(r"[^\W\d_][\w-]*|\w*\d\w*", re.UNICODE)
_WORD_RE = re.compile(r"[^\W\d_]+", re.UNICODE)
# A band's label as the shop writes it: a range "0-30d", "30-90d" or an open end "365d+".
_BAND_RE = re.compile(r"(?<![\w-])\d+(?:-\d+[a-z]*|[a-z]*\+)(?![\w-])", re.I)


def referenced_ids(text: str) -> list[tuple[str, str]]:
    """("user" | "item", id) for every id named with its noun ("user 1814", "item P00458", "用户 3710")."""
    refs = [(m.start(), "user", m.group(1)) for m in USER_REF_RE.finditer(text)]
    refs += [(m.start(), "user", m.group(1)) for m in USER_REF_ZH_RE.finditer(text)]
    refs += [(m.start(), "item", m.group(1)) for m in ITEM_REF_RE.finditer(text)]
    return [(kind, value) for _, kind, value in sorted(refs)]


def bare_numbers(text: str) -> list[str]:
    """Numbers written without a noun that may be ids: not counts, dates, times, decimals or amounts."""
    found = []
    for match in _NUMBER_RE.finditer(text):
        before, after = text[:match.start()], text[match.end():]
        year = re.fullmatch(r"(?:19|20)\d\d", match.group(1)) and _YEAR_RE.search(before)
        if _COUNT_BEFORE_RE.search(before) or _COUNT_AFTER_RE.match(after) or year:
            continue
        found.append(match.group(1))
    return found


def mentions(text: str) -> list[str]:
    """Every string of `text` that may be an id, in order, each once: ids named with their noun,
    bare numbers that are no count, band labels ("0-30d", "365d+"), word tokens ("P00458", "cat_treats", "snacker"), and runs of
    two or three words joined as the shop spells them ("home cook" -> "home_cook"), with a plural
    "s" dropped as well ("snackers" -> "snacker")."""
    out: list[str] = [value for _, value in referenced_ids(text)] + bare_numbers(text) + _BAND_RE.findall(text)
    words = _WORD_RE.findall(text.lower())
    for token in _TOKEN_RE.findall(text):
        if not token.isdigit():
            out.append(token)
    for size in (3, 2):
        for i in range(len(words) - size + 1):
            out.append("_".join(words[i:i + size]))
    out += [w[:-1] for w in list(out) if len(w) > 3 and re.search(r"[^\Wsiu\d]s$", w, re.I)]
    return list(dict.fromkeys(out))
