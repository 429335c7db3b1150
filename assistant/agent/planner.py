"""Plans of several calls: a question that asks for two things gets both tools.

The router picks one first call. "Give me a short list of at-risk users and explain the first"
asks for two: after `at_risk_users` has answered, `follow_up` names the second call, with its
arguments read from the question and the first result (the first user of the list):

    call = follow_up(question, [("at_risk_users", result)], specs)
    # {"name": "explain_user", "args": {"user_id": "1814", "horizon_days": 7}}

Only tools the question asks for by name-like words are planned, at most MAX_CALLS in all,
and only with arguments that are grounded (an id in the question or in a result).
"""

from __future__ import annotations

import re
from typing import Any

from assistant.agent.cues import CART_WORDS
from assistant.agent.time_spans import spans

MAX_CALLS = 2
# What each tool answers, in the words of a question part.
_ASKS = {
    # A list of people: "which/who ... churn", "customers ... at risk", "at-risk users" (not "churn rates").
    "at_risk_users": re.compile(r"(?:\b(?:which|who)\b|\b(?:users|customers|people|buyers)\b).{0,50}"
                                r"(?:at[- ]risk|churn\w*|stop buying|leav\w+)|\bat[- ]risk (?:users|customers)\b|"
                                r"\b(?:list|top \d+|short list)\b.{0,20}\b(?:users|customers)\b|"
                                r"流失风险.{0,6}(?:用户|客户)", re.I),
    "explain_user": re.compile(r"\bexplain\w*\b|\bwhy (?:is|does|did|would|are)\b|为什么|解释", re.I),
    "similar_cases": re.compile(r"\bsimilar\b|\b(?:customers|users|people) like\b|\blike (?:him|her|them|this one)\b|"
                                r"past cases|happened to (?:customers|users|people|others)|相似", re.I),
    "user_history": re.compile(r"\bhistory\b|recent (?:events|activity)|what (?:has|have|did) .{0,30}\bdo(?:ne)?\b|"
                               r"历史记录|行为记录|最近做了", re.I),
    "predict_next": re.compile(r"\bbuy next\b|\bnext (?:purchase|item|category|buy|order)\b|"
                               r"\bwhat will (?:they|he|she|.{0,20}) buy\b|下一次|接下来.{0,4}买", re.I),
    "segment_report": re.compile(r"\bsegments?\b|\bby (?:tenure|value band|first category|spend)\b|分群", re.I),
    "review_summary": re.compile(r"\breviews?\b|\bcomplain\w*|评论|评价", re.I),
    # Carts and baskets in the languages of assistant/agent/cues.py ("what did they leave in their carts").
    "open_carts": CART_WORDS,
}
# A part of the question that points at a user of an earlier result rather than naming one.
_FIRST_USER = re.compile(r"\b(?:the )?(?:first|top|riskiest|#1|number one|first one|top one|top user|"
                         r"highest[- ]risk)\b|第一", re.I)
# "和" is left out: it also means "with" ("和用户 X 相似的客户", customers similar to user X).
_TWO_PARTS = re.compile(r"\band\b|\bthen\b|\balso\b|\bplus\b|;|，|并|然后|以及|还有", re.I)
_ITEM = re.compile(r"\b(?:item|product|sku)\s*(?:id\s*)?[#:]?\s*([A-Za-z0-9][\w-]*\d[\w-]*)\b", re.I)
_ID = re.compile(r"\b(?:user|customer)\s*(?:id\s*)?[#:]?\s*([A-Za-z0-9][\w-]*\d[\w-]*|\d+)\b|"
                 r"(?:用户|客户)\s*([A-Za-z0-9][\w-]*\d[\w-]*|\d+)", re.I)


def asked_tools(question: str) -> list[str]:
    """The tools a question asks for, in the order its words appear."""
    found = [(m.start(), name) for name, pattern in _ASKS.items() for m in [pattern.search(question)] if m]
    return [name for _, name in sorted(found)]


def follow_up(question: str, results: list[tuple[str, Any]], specs: dict) -> dict | None:
    """The next call a two-part question still needs, or None.

    Args:
        question: the user's question.
        results: (tool name, result) pairs of this turn so far (the routed first call's).
        specs: the agent's tool specs (assistant/agent/tool_specs.py), for names and id checks.
    """
    if not results or len(results) >= MAX_CALLS or not _TWO_PARTS.search(question):
        return None
    called = {name for name, _ in results}
    asked = [t for t in asked_tools(question) if t in specs]
    if len(asked) < 2 and not (asked and asked[0] not in called):
        return None
    for name in asked:
        if name in called:
            continue
        args = _arguments(name, question, results, specs)
        if args is not None:
            return {"name": name, "args": args}
    return None


def _arguments(name: str, question: str, results: list[tuple[str, Any]], specs: dict) -> dict | None:
    """Grounded arguments for `name`, or None when a required one cannot be found."""
    spec = specs[name]
    params = spec.parameters
    args: dict = {}
    if "user_id" in params:
        user = _user_in_question(question, spec) or _user_in_results(question, results)
        if user is None:
            if "user_id" in spec.required or name in ("explain_user", "user_history", "predict_next"):
                return None
        else:
            args["user_id"] = user
    if "item_id" in params:
        known = getattr(spec, "known", {}).get("item_id")
        items = [m.group(1) for m in _ITEM.finditer(question) if known is None or known(m.group(1))]
        if items:
            args["item_id"] = items[0]
        elif "item_id" in spec.required:
            return None
    if "horizon_days" in params:
        for _, result in results:
            if isinstance(result, dict) and isinstance(result.get("horizon_days"), int):
                args["horizon_days"] = result["horizon_days"]
                break
    named_days = {days for _, days in spans(question)}
    for key in params:  # a window the question names ("carts of the last 2 weeks"), when it names one span
        if key.endswith("_days") and key not in args and len(named_days) == 1:
            args[key] = next(iter(named_days))
    return args


def _user_in_question(question: str, spec: Any) -> str | None:
    known = getattr(spec, "known", {}).get("user_id")
    for match in _ID.finditer(question):
        value = match.group(1) or match.group(2)
        if known is None or known(value):
            return value
    return None


def _user_in_results(question: str, results: list[tuple[str, Any]]) -> str | None:
    """The user the question points at in an earlier result: the first of a list, or the one user."""
    for _, result in results:
        if not isinstance(result, dict):
            continue
        users = result.get("users")
        if isinstance(users, list) and users and isinstance(users[0], dict) and _FIRST_USER.search(question):
            return str(users[0].get("user_id"))
        if result.get("user_id") is not None:
            return str(result["user_id"])
    return None
