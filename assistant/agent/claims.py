"""Statements an answer makes about drivers, reasons, directions, rankings and topics, checked.

The number check (assistant/agent/grounding.py) passes "The most common reason for churn is the
user's first purchase" after a next-purchase question: it has no number. This module reads
such statements and checks each against the tool results:

- direction: "recency raises the churn risk" needs a recency driver with a positive effect;
- top driver: "the main reason is X" needs X to be the driver with the largest effect;
- ranking: "user 42 is the most at risk" needs user 42 first in the at-risk list;
- common reason: "the most common reason is X" needs X to be the most frequent listed reason;
- topic: churn talk after a question no churn tool answered is off topic;
- internal names: a result's field name (`first_category`, `p_buy`) is not prose;
- extremes: "the highest churn is 48%" needs 48% to be the highest segment rate (lowest alike);
- aspects: "reviewers praise freshness" needs more positive than negative freshness reviews,
  "complain about taste" needs negative taste reviews that are not outnumbered two to one;
- what the results count (assistant/agent/count_claims.py): "no orders" of a customer with 37,
  "likely to buy" beside 7%, "2 views" of a history that lists 6.

    problems = statement_problems(split_sentences(text), results, tools=["predict_next"])
    # [(0, "off topic: churn is not what predict_next answered")]

Each problem names its sentence; grounding marks it ungrounded, so the sentence is dropped
exactly as a sentence with an invented number is.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable

from assistant.agent.count_claims import absence_problem, behaviour_count_problem, likely_problem
from assistant.agent.session import ids_by_kind
from tools.aspects import find_aspects

CHURN_TOOLS = {"at_risk_users", "explain_user", "segment_report", "similar_cases"}
_CHURN_WORDS = re.compile(r"\b(churn\w*|at[- ]risk|risk of leaving|stop(?:s|ped)? buying|lapse\w*)|流失", re.I)
_RAISES = re.compile(r"\b(raises?|raising|increases?|increasing|drives? up|pushes? up|adds? to|higher)\b|提高|升高|增加",
                     re.I)
_LOWERS = re.compile(r"\b(lowers?|lowering|reduces?|reducing|decreases?|decreasing|drives? down|protects?)\b|降低|减少",
                     re.I)
_MAIN = re.compile(r"\b(main|biggest|largest|strongest|top|most important|primary|key|chief)\s+"
                   r"(driver|reason|factor|cause)\b|mainly because of|主要原因", re.I)
_CAUSE = re.compile(r"reason|cause|because|原因", re.I)
_COMMON = re.compile(r"\bmost common (reason|driver|cause|pattern)\b|最常见", re.I)
_MOST_AT_RISK = re.compile(r"\b(?:user|customer)\s+([\w-]+)\s+(?:is|has)\s+(?:the\s+)?"
                           r"(?:most at risk|most likely to churn|highest (?:churn )?risk|riskiest)", re.I)
# Names of tool arguments and their closed choices: internal however the result spells them.
INTERNAL_NAMES = {"first_category", "value_band", "segment_by", "rank_by", "horizon_days", "top_k", "p_churn",
                  "p_buy", "p_cart", "value_at_risk", "model_version", "user_id", "item_id", "category_id",
                  "next_behavior", "as_of", "last_n", "expected_spend", "days_since_last_buy", "mean_p_churn"}
_EXTREME = re.compile(r"\b(highest|lowest|most|least)\b[^%]*?(\d+(?:\.\d+)?)\s?%", re.I)
_PRAISE = re.compile(r"\b(praise\w*|like[sd]?|love[sd]?|enjoy\w*|happy with|positive about)\b"
                     r"|称赞|喜欢|好评|良好|不错|(?<!不)满意", re.I)
_COMPLAIN = re.compile(r"\b(complain\w*|dislike[sd]?|unhappy with|negative about|criticiz\w*)\b|抱怨|不满|差评|吐槽|投诉",
                       re.I)
_SNAKE = re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")
# Words a reader uses for each feature group of the predictor (tools/predictor/explain.py).
FEATURE_SYNONYMS = {
    "recency": ("recency", "recent visit", "last visit", "last purchase", "since the last", "time since", "距上次"),
    "frequency": ("frequency", "how often", "number of orders", "orders so far", "购买频率"),
    "recent_activity": ("recent activity", "activity in recent", "events in the last", "活跃"),
    "monetary": ("monetary", "spend", "spending", "消费金额"),
    "purchase_gap": ("purchase gap", "gap between purchases", "usual gap", "购买间隔"),
    "tenure": ("tenure", "how long they have been", "customer for", "客户时长"),
}
# The reasons at_risk_users lists (tools/predictor/lifecycle.py stage_reasons, plus "no visits"), by
# kind: (marks that identify the reason, words an answer may use for it).
REASON_KINDS = {
    "overdue": (("overdue",), ("overdue", "late", "past their usual", "longer than usual")),
    "within_gap": (("within the usual",), ("within", "on schedule", "usual gap")),
    "a_little_past": (("a little past",), ("a little past", "slightly late", "just past")),
    "single_order": (("single order",), ("single order", "one order", "only one purchase", "first purchase")),
    "no_visits": (("no visits",), ("no visits", "no recent visits", "stopped visiting", "silent", "inactive")),
    "few_buys": (("at most one purchase",), ("at most one purchase", "few purchases", "browsing without buying")),
}


def statement_problems(sentences: list[str], results: Iterable[Any], tools: Iterable[str] | None = None,
                       question: str = "") -> list[tuple[int, str]]:
    """(sentence index, why it is false or off topic) for each checked statement that fails.

    Args:
        sentences: the answer split as grounding splits it (assistant/agent/grounding.py).
        results: the tool results of the conversation (dicts).
        tools: names of the tools that answered this turn; None skips the topic check.
        question: the user's question (churn asked about is on topic whatever the tools).
    """
    results = [r for r in results if isinstance(r, dict)]
    drivers = [d for r in results for d in r.get("drivers") or [] if isinstance(d, dict)]
    ranked = [u for r in results for u in (r.get("users") or [])[:1] if isinstance(u, dict)]
    ranked_all = [u for r in results for u in r.get("users") or [] if isinstance(u, dict)]
    user_ids = set(ids_by_kind(results).get("user", []))
    reasons = [str(x) for r in results for u in r.get("users") or [] if isinstance(u, dict)
               for x in u.get("reasons") or []]
    keys = _keys(results) | INTERNAL_NAMES
    tools = None if tools is None else set(tools)
    # No tool answered (a refusal, a greeting): there is no topic to stray from.
    churn_topic = not tools or bool(CHURN_TOOLS & tools) or bool(_CHURN_WORDS.search(question))
    problems = []
    for index, sentence in enumerate(sentences):
        if not sentence.strip():
            continue
        why = (_internal_name(sentence, keys) or ("off topic: the question was not about churn"
                                                  if not churn_topic and _CHURN_WORDS.search(sentence) else "")
               or _driver_problem(sentence, drivers) or _ranking_problem(sentence, ranked)
               or _common_reason_problem(sentence, reasons) or _extreme_problem(sentence, results)
               or _aspect_problem(sentence, results) or _visits_problem(sentence, reasons, len(ranked_all))
               or _because_problem(sentence, drivers) or _user_problem(sentence, user_ids, question)
               or absence_problem(sentence, results) or likely_problem(sentence, results)
               or behaviour_count_problem(sentence, results))
        if why:
            problems.append((index, why))
    return problems


def _keys(value: Any, found: set[str] | None = None) -> set[str]:
    found = set() if found is None else found
    if isinstance(value, dict):
        for k, v in value.items():
            if "_" in str(k):
                found.add(str(k).lower())
            _keys(v, found)
    elif isinstance(value, list):
        for v in value:
            _keys(v, found)
    return found


def _internal_name(sentence: str, keys: set[str]) -> str:
    names = [w for w in _SNAKE.findall(sentence.lower()) if w in keys]
    return f"internal field name {names[0]!r} in prose" if names else ""


def _named_features(sentence: str) -> list[str]:
    low = sentence.lower()
    return [f for f, words in FEATURE_SYNONYMS.items() if any(w in low for w in words)]


def _driver_problem(sentence: str, drivers: list[dict]) -> str:
    if not drivers:
        return ""
    named = _named_features(sentence)
    by_feature = {str(d.get("feature")): d for d in drivers if d.get("type") == "feature" or d.get("feature")}
    main = _MAIN.search(sentence)
    if main:
        items = [str((d.get("event") or {}).get("item_id")) for d in drivers if isinstance(d.get("event"), dict)]
        named_item = [i for i in items if i and re.search(rf"\b{re.escape(i)}\b", sentence)]
        # The main reason or cause of a risk is what raises it most; a "main driver" or "factor" may go either
        # way. "90%, mainly because of their activity in recent weeks, which lowers the risk" (Round 9b).
        raising = [d for d in drivers if isinstance(d.get("effect"), (int, float)) and d["effect"] > 0]
        if _CAUSE.search(main.group(0)) and not raising:
            if named or named_item:
                return "false: no driver raises the churn risk, so none is the main reason for it"
            return "" if re.search(r"\d", sentence) else "unsupported: names a main reason and no driver raises the risk"
        pool = raising if _CAUSE.search(main.group(0)) else drivers
        top = max(pool, key=lambda d: abs(d.get("effect") or 0))
        if top.get("feature") and named and str(top["feature"]) not in named:
            return f"false: the top driver is {top['feature']}, not {named[0]}"
        if isinstance(top.get("event"), dict) and named_item and named_item[0] != str(top["event"].get("item_id")):
            return f"false: the top driver is item {top['event'].get('item_id')}, not {named_item[0]}"
        if not named and not named_item and not re.search(r"\d", sentence):
            return "unsupported: names a main driver that is not among the drivers"
    raises, lowers = bool(_RAISES.search(sentence)), bool(_LOWERS.search(sentence))
    if raises != lowers:
        for feature in named:
            d = by_feature.get(feature)
            if d is None:
                continue
            effect = d.get("effect") or 0
            if raises and effect < 0:
                return f"false: {feature} lowers the churn risk (effect {effect})"
            if lowers and effect > 0:
                return f"false: {feature} raises the churn risk (effect {effect})"
    return ""


def _ranking_problem(sentence: str, ranked: list[dict]) -> str:
    match = _MOST_AT_RISK.search(sentence)
    if not match or not ranked:
        return ""
    first = {str(u.get("user_id")) for u in ranked}
    return "" if match.group(1) in first else f"false: user {match.group(1)} is not the highest risk"


def _common_reason_problem(sentence: str, reasons: list[str]) -> str:
    if not _COMMON.search(sentence):
        return ""
    counts = Counter(kind for text in reasons for kind, (marks, _) in REASON_KINDS.items()
                     if any(m in text.lower() for m in marks))
    if not counts:
        return "unsupported: no listed reasons to count"
    top = counts.most_common(1)[0][0]
    low = sentence.lower()
    return "" if any(w in low for w in REASON_KINDS[top][1]) else f"false: the most common listed reason is {top}"


def _extreme_problem(sentence: str, results: list[dict]) -> str:
    """"highest ... 48%" where 48% is not the highest segment rate (or "lowest" not the lowest)."""
    rates = [float(x["predicted_churn_rate"]) for r in results for x in r.get("segments") or []
             if isinstance(x, dict) and isinstance(x.get("predicted_churn_rate"), (int, float))]
    if len(rates) < 2:
        return ""
    for match in _EXTREME.finditer(sentence):
        word, value = match.group(1).lower(), float(match.group(2)) / 100
        target = max(rates) if word in ("highest", "most") else min(rates)
        if value in [round(r, 2) for r in rates] + [round(r, 3) for r in rates] and abs(value - round(target, 2)) > 0.006:
            return f"false: {match.group(2)}% is not the {word} rate ({100 * target:.0f}%)"
    return _extreme_segment_problem(sentence, results)


_EXTREME_CHURN = re.compile(r"\b(highest|lowest)\s+(?:predicted\s+)?churn\b([^,.;]*)", re.I)


def _extreme_segment_problem(sentence: str, results: list[dict]) -> str:
    """"The highest churn is the high group" where another segment has the highest churn rate."""
    segments = [x for r in results for x in r.get("segments") or []
                if isinstance(x, dict) and isinstance(x.get("predicted_churn_rate"), (int, float))]
    if len(segments) < 2:
        return ""
    for match in _EXTREME_CHURN.finditer(sentence):
        pick = max if match.group(1).lower() == "highest" else min
        target = str(pick(segments, key=lambda x: x["predicted_churn_rate"]).get("segment"))
        rest = match.group(2).lower()
        named = sorted(((m.start(), str(x.get("segment"))) for x in segments
                        for m in [re.search(rf"\b{re.escape(str(x.get('segment')).lower())}\b", rest)] if m))
        if named and named[0][1] != target:
            return f"false: the {match.group(1).lower()} churn is in {target}, not {named[0][1]}"
    return ""


def _aspect_problem(sentence: str, results: list[dict]) -> str:
    """Praise of an aspect reviewers mostly fault, or a complaint about one they mostly like."""
    aspects = {str(a.get("aspect")).lower(): a for r in results for a in r.get("aspects") or [] if isinstance(a, dict)}
    if not aspects:
        return ""
    low = re.sub(r"«[^»]*»?", "", sentence.lower())  # a quoted review is the customer's words, not a claim
    for clause in re.split(r"\b(?:but|while|whereas|although)\b|;|，但|但是?|不过", low):
        praise, complain = _PRAISE.search(clause), _COMPLAIN.search(clause)
        # Named as the results name it, or in the review analysis' own words in either language
        # ("customer service", "价格"): "质量和服务均处于良好状态" beside 0 of 3 good service reviews.
        found = set(find_aspects(clause))
        for name, a in aspects.items():
            if name not in found and not re.search(rf"\b{re.escape(name)}\b", clause):
                continue
            pos, neg = a.get("positive") or 0, a.get("negative") or 0
            if praise and not complain and neg > pos:
                return f"false: reviewers fault {name} more than they praise it ({neg} negative, {pos} positive)"
            if complain and not praise and (neg == 0 or pos > 2 * neg):
                return f"false: reviewers mostly praise {name} ({pos} positive, {neg} negative)"
    return _focus_problem(low, aspects)


_FOCUS = re.compile(r"\b(?:focus(?:es|ed|ing)?|centr?e[sd]?|center(?:s|ed)?|concentrat\w*)\s+(?:mainly\s+|mostly\s+)?on\b"
                    r"|\b(?:mainly|mostly|largely)\s+(?:about|on|concern\w*)\b|集中在|主要关注|主要涉及|主要是关于", re.I)


def _focus_problem(low: str, aspects: dict[str, dict]) -> str:
    """"The reviews focus mainly on price and service" where quality is mentioned more than price: the aspects
    a focus claim names must be the most mentioned ones (zh book3 "评价主要集中在价格和服务上", Round 10)."""
    match = _FOCUS.search(low)
    if not match:
        return ""
    rest = low[match.end():]
    named = [n for n in aspects if n in set(find_aspects(rest)) or re.search(rf"\b{re.escape(n)}\b", rest)]
    if not named:
        return ""
    counts = sorted((a.get("reviews") or 0 for a in aspects.values()), reverse=True)
    floor = counts[min(len(named), len(counts)) - 1]  # the k-th most mentioned, ties kept
    for name in named:
        if (aspects[name].get("reviews") or 0) < floor:
            top = max(aspects, key=lambda n: aspects[n].get("reviews") or 0)
            return f"false: {top} is mentioned more than {name} ({aspects[top].get('reviews')} reviews, " \
                   f"{aspects[name].get('reviews')})"
    return ""


_VISITED = re.compile(r"\b(visit(?:s|ed|ing)?|carts?|carted)\b", re.I)
_NEGATED = re.compile(r"\b(no|not|never|none|without|stopped|inactive|quiet|absence|absent|lack\w*)\b|n't", re.I)


def _visits_problem(sentence: str, reasons: list[str], n_users: int) -> str:
    """"They have visited" when most listed customers had no visits (a small model drops the "no")."""
    quiet = sum("no visits" in r.lower() for r in reasons)
    if n_users and quiet * 2 > n_users and _VISITED.search(sentence) and not _NEGATED.search(sentence):
        return f"false: {quiet} of {n_users} listed customers had no visits or carts"
    return ""


_BECAUSE = re.compile(r"\b(?:at risk|risk)\b[^.]*?\b(?:because|due to|driven by)\b(.*)()", re.I)


def _because_problem(sentence: str, drivers: list[dict]) -> str:
    """"At risk because of X" where X is a driver that lowers the risk."""
    match = _BECAUSE.search(sentence)
    if not match or not drivers:
        return ""
    named = _named_features(match.group(1) or match.group(2) or "")
    effects = {str(d.get("feature")): d.get("effect") for d in drivers if isinstance(d.get("effect"), (int, float))}
    if named and named[0] in effects and effects[named[0]] < 0:
        return f"false: {named[0]} lowers the churn risk; it is not why the customer is at risk"
    return ""


_USER_REF = re.compile(r"\b(?:user|customer)\s+(?:id\s+)?([A-Za-z0-9_-]*\d[A-Za-z0-9_-]*)\b", re.I)


def _user_problem(sentence: str, user_ids: set[str], question: str) -> str:
    """"User 3" when no result (nor the question) names a user 3: a count read as an id."""
    if not user_ids:
        return ""
    for match in _USER_REF.finditer(sentence):
        uid = match.group(1)
        if uid not in user_ids and not re.search(rf"\b{re.escape(uid)}\b", question):
            return f"unsupported: user {uid} is in no tool result"
    return ""
