"""The model's own words after a composed answer: a short prompt of the facts that matter.

The composer (assistant/agent/composer.py) states the figures; the model adds what a person
reads between them -- what the listed customers share, why this one customer is at risk, what
happened to customers like them. It reads a few lines of facts made here from this turn's tool
results (about 150-300 prompt tokens, prompts/agent_takeaway.j2), not the whole conversation, so
its prefill is short; the grounding and claim checks (assistant/agent/grounding.py) keep only the
sentences that are true.

    lines, counts = takeaway_facts([("at_risk_users", result)])
    text = render("agent_takeaway", question=q, facts=lines, focus=focus_of(tools), language="en")
    evidence = Evidence.from_results(results + [counts], ...)  # the counts ground "4 of 5"

Counts computed here ("4 of the 5 are overdue") are no tool's output, so `counts` is handed to
the check as evidence beside the tool results: the model may repeat them, nothing else.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from assistant.agent.answer_views import FEATURE_WORDS, STAGE_WORDS, days, money, number, percent
from assistant.agent.claims import REASON_KINDS
from tools.aspects import ASPECTS, find_aspects

MAX_FACT_LINES = 8
# What the model is asked to say after each tool's answer (the first tool of the turn decides).
FOCUS = {
    "at_risk_users": "what these customers have in common",
    "explain_user": "what raises this customer's risk and what lowers it, in plain words",
    "similar_cases": "what happened to past customers like this one",
    "segment_report": "which group stands out and how much it differs from the others",
    "predict_next": "what this customer is likely to do next",
    "user_history": "what this customer's recent activity shows",
    "review_summary": "what the reviewers praise and what they complain about",
    "open_carts": "what the open carts show",
}
# How a reason kind of claims.REASON_KINDS reads in a fact line.
REASON_PHRASES = {"overdue": "overdue (past their usual gap between orders)",
                  "within_gap": "still within their usual gap between orders",
                  "a_little_past": "a little past their usual gap", "single_order": "a single order so far",
                  "no_visits": "no visits or carts in the last 30 days", "few_buys": "at most one purchase"}


def focus_of(tools: list[str]) -> str:
    """What the takeaway should be about, from the turn's first tool."""
    return next((FOCUS[t] for t in tools if t in FOCUS), "what stands out in these results")


def takeaway_facts(results: list[tuple[str, Any]], currency: str = "$") -> tuple[list[str], dict]:
    """Fact lines for the takeaway prompt and the counts behind them (evidence for the check).

    Args:
        results: (tool name, sanitized result) pairs of this turn, in call order.
        currency: the symbol or ISO code amounts are written with.
    """
    lines: list[str] = []
    counts: dict[str, int] = {}
    for name, result in results:
        builder = _FACTS.get(name)
        if builder is not None and isinstance(result, dict):
            lines += builder(result, counts, currency)
    return lines[:MAX_FACT_LINES], {"takeaway_counts": counts}


def _share(count: int, total: int) -> str:
    return f"{count} of {total}"


def _at_risk(r: dict, counts: dict, cur: str) -> list[str]:
    users = [u for u in r.get("users") or [] if isinstance(u, dict)]
    if not users:
        # Nothing to read between the lines: the composer already says the list is empty, and a model
        # asked anyway invented a level ("The churn rate is high", "$0 at risk": new_user_trial.md Round 8).
        return []
    n = len(users)
    lines = [f"{n} customers are listed, for the next {number(r.get('horizon_days', ''))} days."]
    kinds = Counter(kind for u in users for kind in {k for x in u.get("reasons") or []
                                                     for k, (marks, _) in REASON_KINDS.items()
                                                     if any(m in str(x).lower() for m in marks)})
    for kind, count in kinds.most_common(3):
        counts[f"reason_{kind}"] = count
        lines.append(f"{_share(count, n)} listed customers: {REASON_PHRASES[kind]}.")
    stages = Counter(str(u["stage"]) for u in users if u.get("stage"))
    if stages:
        lines.append("Stages: " + ", ".join(f"{c} {STAGE_WORDS['en'].get(s, s)}" for s, c in stages.most_common()) + ".")
    single = sum(1 for u in users if u.get("orders") == 1)
    if single:
        counts["single_order"] = single
    gaps = sorted(u["days_since_last_buy"] for u in users if isinstance(u.get("days_since_last_buy"), (int, float)))
    if gaps:
        lines.append(f"Days since their last order: from {days(gaps[0])} to {days(gaps[-1])}.")
    segments = Counter(str(u["segment"]) for u in users if u.get("segment"))
    if segments and segments.most_common(1)[0][1] > 1:
        seg, c = segments.most_common(1)[0]
        counts["top_segment"] = c
        lines.append(f"Most common shopper type: {seg.replace('_', ' ')} ({_share(c, n)}).")
    return lines


def _explain(r: dict, counts: dict, cur: str) -> list[str]:
    lines = [f"User {r.get('user_id')}: chance of no purchase in the next {number(r.get('horizon_days', ''))} days: "
             f"{percent(r.get('p_churn'))}."]
    if r.get("too_little_history"):
        lines.append(f"Too little history to explain: {r['too_little_history']}.")
    drivers = sorted((d for d in r.get("drivers") or [] if isinstance(d, dict) and isinstance(d.get("effect"), (int, float))),
                     key=lambda d: -abs(d["effect"]))
    # Split by direction: a small model read "main driver: X lowers the risk" as "at risk because of X".
    for way, group in (("raises", [d for d in drivers if d["effect"] > 0]), ("lowers", [d for d in drivers if d["effect"] < 0])):
        if group:
            names = "; ".join(_driver_words(d) for d in group[:2])
            lines.append(f"What {way} the risk: {names}.")
    f = r.get("facts") if isinstance(r.get("facts"), dict) else {}
    if isinstance(f.get("orders"), (int, float)):
        spent = f", {money(f['spend'], cur)} spent" if isinstance(f.get("spend"), (int, float)) and f["spend"] else ""
        gap = days(f.get("days_since_last_buy"))
        last = f", the last {gap} day{'' if gap == '1' else 's'} ago" if (f.get("days_since_last_buy") or -1) >= 0 else ""
        lines.append(f"{number(f['orders'])} order{'' if f['orders'] == 1 else 's'}{spent}{last}.")
    if isinstance(f.get("usual_days_between_buys"), (int, float)):
        lines.append(f"Usually {days(f['usual_days_between_buys'])} days between orders.")
    if isinstance(f.get("events_30d"), (int, float)):
        trend = f"; activity is {f['trend']}" if f.get("trend") else ""
        lines.append(f"{number(f['events_30d'])} events in the last 30 days{trend}.")
    life = r.get("lifecycle") if isinstance(r.get("lifecycle"), dict) else {}
    if life.get("stage"):
        lines.append(f"Stage: {STAGE_WORDS['en'].get(str(life['stage']), str(life['stage']))}.")
    return lines


def _driver_words(d: dict) -> str:
    """A driver as the facts name it: "the time since the last visit and purchase (42% without it)"."""
    what = FEATURE_WORDS["en"].get(str(d.get("feature")), str(d.get("feature") or "an event").replace("_", " "))
    if isinstance(d.get("event"), dict):
        what = f"the {d['event'].get('behavior')} of item {d['event'].get('item_id')}"
    without = f" ({percent(d['p_churn_without'])} without it)" if isinstance(d.get("p_churn_without"), (int, float)) else ""
    return what + without


def _cases(r: dict, counts: dict, cur: str) -> list[str]:
    cases = [c for c in r.get("cases") or [] if isinstance(c, dict)]
    if not cases:
        return ["No similar past customer was found."]
    people = {str(c.get("user_id")) for c in cases if c.get("user_id")}
    churned = sum(1 for c in cases if c.get("churned") is True)
    counts.update(cases_people=len(people), cases_churned=churned, cases_kept=len(cases) - churned)
    horizon = next((c["horizon_days"] for c in cases if c.get("horizon_days")), "")
    lines = [f"{len(cases)} similar past cases ({len(people)} different customers): {churned} stopped buying "
             f"within {number(horizon)} days, {len(cases) - churned} bought again."]
    kinds = Counter(_first_sentence(str(c.get("summary") or "")) for c in cases if c.get("summary"))
    for kind, count in kinds.most_common(2):
        if kind:
            counts[f"case_kind_{len(counts)}"] = count
            lines.append(f"{_share(count, len(cases))} were described as: {kind}")
    came_back = r.get("outcomes", {}).get("came_back_share") if isinstance(r.get("outcomes"), dict) else None
    if isinstance(came_back, (int, float)):
        lines.append(f"Share that came back later: {percent(came_back)}.")
    return lines


def _first_sentence(text: str) -> str:
    """The case summary's opening description ("An occasional buyer."), without ids or numbers."""
    first = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
    return "" if re.search(r"\d", first) else first


def _segments(r: dict, counts: dict, cur: str) -> list[str]:
    rows = [s for s in r.get("segments") or [] if isinstance(s, dict)
            and isinstance(s.get("predicted_churn_rate"), (int, float))]
    if not rows:
        return []
    grouping = str(r.get("segment_by", "segment"))
    by = grouping.replace("_", " ")
    high, low = max(rows, key=lambda s: s["predicted_churn_rate"]), min(rows, key=lambda s: s["predicted_churn_rate"])
    lines = [f"Customers grouped by {by}, {len(rows)} groups, next {number(r.get('horizon_days', ''))} days."]
    lines.append(f"Highest predicted churn: {group_words(grouping, high.get('segment'))} at "
                 f"{percent(high['predicted_churn_rate'])} ({number(high.get('users', ''))} customers).")
    lines.append(f"Lowest predicted churn: {group_words(grouping, low.get('segment'))} at "
                 f"{percent(low['predicted_churn_rate'])} ({number(low.get('users', ''))} customers).")
    spend = [s for s in rows if isinstance(s.get("mean_spend"), (int, float))]
    if spend:
        top = max(spend, key=lambda s: s["mean_spend"])
        lines.append(f"Highest mean spend: {group_words(grouping, top.get('segment'))}, {money(top['mean_spend'], cur)}.")
    return lines


def group_words(grouping: str, label: Any) -> str:
    """A group of segment_report as words, its label quoted: a bare "365d+" was read as "the 365th group".

    Tenure bands say what their numbers count ("0-30d": customers for 0 to 30 days), a spend band or
    a shop segment says which kind of group it is, a first-purchase category what was bought.
    """
    label = str(label)
    span = re.fullmatch(r"(\d+)-(\d+)d", label)
    if grouping == "tenure" and span:
        return f'the "{label}" group (customers for {span.group(1)} to {span.group(2)} days)'
    open_end = re.fullmatch(r"(\d+)d\+", label)
    if grouping == "tenure" and open_end:
        return f'the "{label}" group (customers for {open_end.group(1)} days or more)'
    if grouping == "value_band":
        return f'the "{label}" spend band'
    if grouping == "first_category":
        return f'customers whose first purchase was in "{label}"'
    return f'the "{label}" {grouping.replace("_", " ")}'


_ORDINAL_RE = re.compile(r"\b\d+(?:st|nd|rd|th)\b|第\s*\d+", re.I)


def without_invented_ordinals(text: str, facts: list[str]) -> tuple[str, list[str]]:
    """The takeaway without its sentences that rank by a number no fact line ranks by.

    A label or id read as a position ("365d+" as "the 365th group", "segment 3" as "the 3rd") is
    no claim the number check sees: the number itself is in the results. The fact lines never
    give a numeric ordinal, so one in the takeaway was made up.

    Returns:
        (the kept sentences, the ordinals dropped).
    """
    stated = " ".join(facts).lower()
    kept, dropped = [], []
    for sentence in re.split(r"(?<=[.!?。！？])\s+", text.strip()):
        made_up = [m.group(0) for m in _ORDINAL_RE.finditer(sentence) if m.group(0).lower() not in stated]
        if made_up:
            dropped += made_up
        elif sentence:
            kept.append(sentence)
    return " ".join(kept), dropped


_SHARE_RE = re.compile(r"\b(\d+) of (?:the )?(\d+)\b")
_OF_THE_RE = re.compile(r"\s*of the (\d+)\b[^,.]*,", re.I)
_PART_RE = re.compile(r"\b(\d+) (?:are|is|were|have|has|will)\b")
_ALL_RE = re.compile(r"\b(?:all|every|everyone|everybody|each of)\b|所有|全部", re.I)
_NONE_RE = re.compile(r"\b(?:none|no one|nobody|not one|not a single|no (?:customers?|users?|cases?))\b|没有一个", re.I)


def without_overstated_shares(text: str, facts: list[str]) -> tuple[str, list[str]]:
    """The takeaway without its sentences that say "all" or "none" where every share the facts give is partial.

    The fact lines count ("7 of 10 listed customers: overdue", "8 of 10 ... likely to buy"); a sentence
    turning them into "all the customers are overdue" or "none will buy" is no number the grounding check
    can test, and it overstates. Only when the facts give shares and none of them is whole (n of n) or
    empty (0 of n) is the quantifier made up; a sentence with a count of its own is left to that check.

    Returns:
        (the kept sentences, the quantifiers dropped).
    """
    shares = [(int(k), int(n)) for k, n in _SHARE_RE.findall(" ".join(facts)) if int(n) > 0]
    for line in facts:  # "Of the 10 customers with the most left in their carts, 8 are likely ... and 2 are unlikely"
        whole_group = _OF_THE_RE.match(line)
        if whole_group and int(whole_group.group(1)) > 0:
            shares += [(int(k), int(whole_group.group(1))) for k in _PART_RE.findall(line[whole_group.end():])]
    if not shares:
        return text, []
    whole = any(k == n for k, n in shares)
    empty = any(k == 0 for k, n in shares)
    kept, dropped = [], []
    for sentence in re.split(r"(?<=[.!?。！？])\s*", text.strip()):
        if not sentence:
            continue
        counted = re.search(r"\d", sentence)
        word = None if counted else ((not whole and _ALL_RE.search(sentence)) or (not empty and _NONE_RE.search(sentence)))
        if word:
            dropped.append(word.group(0))
        else:
            kept.append(sentence)
    return " ".join(kept), dropped


def likelihood_words(p: float) -> str:
    """A chance as the words the claim check accepts for it (assistant/agent/count_claims.py `likely_problem`)."""
    return "likely" if p >= 0.5 else "unlikely"


def without_unstated_aspects(text: str, facts: list[str]) -> tuple[str, list[str]]:
    """The takeaway without its sentences that name an aspect of a purchase no fact line names.

    Fine Food reviews: "they also complain about the lack of customer service" after facts that named taste
    and price only, and "not only a product but also a service" of an item whose one review praised its
    quality (new_user_trial.md Round 9b). An aspect is found by the review analysis' own keywords
    (tools/aspects.py: "customer service" is service, "shipping" delivery); quoted review text is left out.

    Returns:
        (the kept sentences, the aspects dropped).
    """
    stated = " ".join(facts)
    stated_aspects = set(find_aspects(stated)) | {a for a in ASPECTS if a in stated.lower()}
    kept, dropped = [], []
    for sentence in re.split(r"(?<=[.!?。！？])\s*", text.strip()):
        if not sentence:
            continue
        unstated = [a for a in find_aspects(re.sub(r"«[^»]*»?", "", sentence)) if a not in stated_aspects]
        if unstated:
            dropped += unstated
        else:
            kept.append(sentence)
    return " ".join(kept), dropped


def _next(r: dict, counts: dict, cur: str) -> list[str]:
    lines = []
    cats = [c for c in r.get("next_categories") or [] if isinstance(c, dict)]
    if cats:
        lines.append("Likely next categories: " + ", ".join(f"{c.get('category_id')} ({percent(c.get('p'))})"
                                                          for c in cats[:3]) + ".")
    buy = r.get("p_buy") if isinstance(r.get("p_buy"), dict) else {}
    for key, p in buy.items():
        if isinstance(p, (int, float)):
            # The chance in words too: beside a bare "7%" the model wrote "likely to buy something within 30 days".
            lines.append(f"Chance of buying anything within {str(key).rstrip('d')} days: {percent(p)} "
                         f"({likelihood_words(p)}).")
    if r.get("next_behavior"):
        lines.append(f"If they act again at all, the most likely action is: {r['next_behavior']}.")
    return lines


def _history(r: dict, counts: dict, cur: str) -> list[str]:
    t = r.get("totals") if isinstance(r.get("totals"), dict) else {}
    events = [e for e in r.get("events") or [] if isinstance(e, dict)]
    lines = []
    if t:
        # No category is no line of its own: "mostly no one category" came back as "no orders, no categories,
        # and no recent events" of a customer with 37 orders (new_user_trial.md Round 9b).
        top = f"; mostly {t['top_category']}" if t.get("top_category") else ""
        lines.append(f"{number(t.get('events', ''))} events and {number(t.get('orders', ''))} orders over "
                     f"{number(t.get('tenure_days', ''))} days{top}.")
        if (t.get("orders") or 0) > 0 and isinstance(t.get("days_since_last_buy"), (int, float)):
            lines.append(f"Last order {days(t['days_since_last_buy'])} days ago.")
    kinds = Counter(str(e.get("behavior")) for e in events)
    if events:
        counts.update({f"recent_{k}": c for k, c in kinds.items()})
        lines.append(f"The {len(events)} most recent events: " + ", ".join(f"{c} {k}" for k, c in kinds.most_common()) + ".")
        cats = Counter(str(e.get("category_id")) for e in events if e.get("category_id"))
        if cats:
            cat, c = cats.most_common(1)[0]
            counts["recent_top_category"] = c
            lines.append(f"Most recent events are in {cat} ({_share(c, len(events))}).")
    return lines


def _reviews(r: dict, counts: dict, cur: str) -> list[str]:
    if not r.get("n_reviews"):  # nothing to read: asked anyway, the model made a review up ("praises the sound")
        return []
    s = r.get("sentiment") if isinstance(r.get("sentiment"), dict) else {}
    rating = f", mean rating {number(r['mean_rating'], 1)} stars" if isinstance(r.get("mean_rating"), (int, float)) else ""
    lines = [f"{number(r.get('n_reviews', 0))} reviews{rating}: {number(s.get('positive') or 0)} positive, "
             f"{number(s.get('negative') or 0)} negative."]
    aspects = [a for a in r.get("aspects") or [] if isinstance(a, dict)]
    praised = sorted(aspects, key=lambda a: -((a.get("positive") or 0) - (a.get("negative") or 0)))
    blamed = sorted(aspects, key=lambda a: -((a.get("negative") or 0) - (a.get("positive") or 0)))
    liked = [a for a in praised if (a.get("positive") or 0) > (a.get("negative") or 0)][:2]
    faulted = [a for a in blamed if (a.get("negative") or 0) >= (a.get("positive") or 0) and (a.get("negative") or 0) > 0][:2]
    # Names only, one line each: with counts beside them the 0.5B mixed up which side an aspect is on.
    if liked:
        lines.append("Reviewers mostly praise: " + " and ".join(str(a.get("aspect")) for a in liked) + ".")
    if faulted:
        lines.append("Reviewers mostly complain about: " + " and ".join(str(a.get("aspect")) for a in faulted) + ".")
    return lines


def _carts(r: dict, counts: dict, cur: str) -> list[str]:
    """open_carts: the open carts' size, how many of the listed customers are likely to buy anyway, the top item."""
    t = r.get("totals") if isinstance(r.get("totals"), dict) else {}
    if r.get("carts_recorded") is False or not t.get("open_items"):
        return []  # nothing in carts: the composer says so, and a model asked anyway invents a cart
    value = f", worth {money(t['open_value'], str(r.get('currency') or cur))}" \
        if isinstance(t.get("open_value"), (int, float)) else ""
    lines = [f"Open carts: {number(t['open_items'])} items by {number(t.get('customers_with_open_carts', 0))} "
             f"customers in the last {number(r.get('window_days', ''))} days{value}."]
    scored = [u for u in r.get("users") or [] if isinstance(u, dict) and isinstance(u.get("p_buy"), (int, float))]
    if len(scored) > 1 and not r.get("user_id"):  # one customer's own cart: the answer already gives their chance
        likely = sum(1 for u in scored if u["p_buy"] >= 0.5)  # better than even: likely to check out unprompted
        counts.update(carts_likely_buyers=likely, carts_unlikely_buyers=len(scored) - likely, carts_listed=len(scored))
        lines.append(f"Of the {len(scored)} customers with the most left in their carts, {likely} are likely to buy "
                     f"within {number(r.get('scores_horizon_days', ''))} days anyway and {len(scored) - likely} are "
                     f"unlikely to.")
    items = [i for i in r.get("items") or [] if isinstance(i, dict)]
    if items and (items[0].get("customers") or 0) > 1:
        lines.append(f"The item most often left in carts is {items[0].get('item_id')} "
                     f"({number(items[0]['customers'])} customers).")
    return lines


_FACTS = {"at_risk_users": _at_risk, "explain_user": _explain, "similar_cases": _cases, "segment_report": _segments,
          "predict_next": _next, "user_history": _history, "review_summary": _reviews,
          "open_carts": _carts}


_END = re.compile(r"[.!?。！？](?=\s|$)")


def whole_sentences(text: str, max_words: int = 30, max_sentences: int = 2) -> str:
    """The model's text without a sentence cut off by the token limit, one paragraph, no label.

    At most `max_sentences` sentences, and none twice (a small model loops). A text with no
    sentence end at all is kept (with a full stop) only when short: a long one was cut mid-thought.
    """
    text = re.sub(r"^\s*(?:\*\*)?(?:takeaway|summary|answer)\s*:?\s*(?:\*\*)?\s*:?\s*", "", text.strip(), flags=re.I)
    text = " ".join(line.strip().lstrip("-*• ").strip() for line in text.splitlines() if line.strip())
    ends = list(_END.finditer(text))
    if ends:
        sentences, start = [], 0
        for end in ends:
            sentences.append(text[start:end.end()].strip())
            start = end.end()
        kept = list(dict.fromkeys(s for s in sentences if s))
        return "" if len(kept) < len(sentences) else " ".join(kept[:max_sentences])
    return text + "." if text and len(text.split()) <= max_words else ""


_PROMPT_WORDS = ("the pattern, not the list", "not the list", "one short sentence", "use only these facts")


def echoes(text: str, question: str) -> bool:
    """Whether the takeaway only repeats the question or the prompt's own instructions."""
    def plain(x: str) -> str:
        return re.sub(r"[\W_]+", " ", x.lower()).strip()

    low = text.lower()
    return plain(text) == plain(question) or any(w in low for w in _PROMPT_WORDS)
