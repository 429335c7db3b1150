"""Statements about what the results count, checked: absences, chances of buying, counts of a kind.

Beside the checks of assistant/agent/claims.py, which read drivers, rankings and aspects, these read
what one customer's results count and what predict_next gives as a chance:

- absence: "no orders", "no recent events", "no customers at all" need the results to count none
  ("a pattern of no orders" of a customer with 37, new_user_trial.md Round 9b);
- likelihood: "likely to buy within 30 days" needs a chance of buying of at least 50% (and "unlikely" less);
- behaviour counts: "6 views" beside a customer's history needs 6 views among its listed events.

    absence_problem("They have no orders.", [history])   # "false: the results count 37 orders"

Each returns "" or why the sentence is false; claims.statement_problems asks them for every sentence.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Any

# "no orders", "zero recent purchases", "not a single event", "没有订单": an absence the results can count.
_ABSENT = re.compile(r"\b(?:no|zero|not a single|not any|without any)\s+(?:recent\s+)?"
                     r"(orders?|purchases?|buys?|events?|activity|activities|reviews?|customers?|users?)\b"
                     r"|\bnever\s+(?:\w+\s+)?(bought|ordered|purchased)\b(?!\s+(?:again|since|after))"
                     r"|没有(?:任何)?(?:最近的?)?(订单|购买|行为|活动|评论)", re.I)
_ABSENT_KIND = {"order": "orders", "purchase": "orders", "buy": "orders", "bought": "orders", "ordered": "orders",
                "purchased": "orders", "订单": "orders", "购买": "orders", "event": "events", "activity": "events",
                "activities": "events", "行为": "events", "活动": "events", "review": "reviews", "评论": "reviews",
                "customer": "customers", "user": "customers"}
_CHANCE_OF = re.compile(r"(?:chance|probability|likelihood|risk|odds) of (?:making )?$", re.I)
_AHEAD = re.compile(r"\s*(?:(?:in|within|over|during)\s+(?:the\s+)?(?:next|coming)\b|within\s+\d+|soon\b|"
                    r"next\b|again\b)", re.I)
_WILL_BEFORE = re.compile(r"\b(?:will|would|may|might|expect\w*|likely|predict\w*)\b[^.,;]*$", re.I)
_SPAN = re.compile(r"\s*(?:in|over|during|within) the (?:last|past) (\d+) days?", re.I)
_RECENTLY = re.compile(r"recent|lately|this (?:week|month)|最近|近期", re.I)
RECENT_DAYS = 30  # what "recent" means in the facts the takeaway reads ("events in the last 30 days")


def _counted(results: list[dict]) -> dict[str, dict[str, float]]:
    """What one customer's results count (orders, events; with how many days ago the last was), and reviews.

    Only one customer's own totals (user_history, explain_user) count orders and events: a list of
    customers says nothing about "no orders" of one of them. Customers count in any listed `users`.
    """
    counted: dict[str, dict[str, float]] = {}

    def most(kind: str, key: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            counted.setdefault(kind, {})
            counted[kind][key] = max(counted[kind].get(key, value), value)

    def least(kind: str, key: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            counted.setdefault(kind, {})
            counted[kind][key] = min(counted[kind].get(key, value), value)

    for r in results:
        own = _own_totals(r)
        if r.get("user_id") and own is not None:
            most("orders", "total", own.get("orders"))
            if (own.get("orders") or 0) > 0:
                least("orders", "days_ago", own.get("days_since_last_buy"))
            most("events", "total", own.get("events"))
            most("events", "last_30", own.get("events_30d"))
            most("events", "total", own.get("events_30d"))  # a count of the last 30 days is a count too
            least("events", "days_ago", own.get("days_since_last_event"))
        if r.get("user_id") and isinstance(r.get("events"), list) and r["events"]:
            most("events", "total", len(r["events"]))
            ages = [_days_between(e.get("ts"), r.get("as_of")) for e in r["events"] if isinstance(e, dict)]
            least("events", "days_ago", min((a for a in ages if a is not None), default=None))
        most("reviews", "total", r.get("n_reviews"))
        users = [u for u in r.get("users") or [] if isinstance(u, dict)]
        if users:
            most("customers", "total", len(users))
    return counted


def _own_totals(result: dict) -> dict | None:
    """One customer's own counts in a result: user_history's `totals`, explain_user's `facts`, else None."""
    for key in ("totals", "facts"):
        if isinstance(result.get(key), dict):
            return result[key]
    return None


def _days_between(earlier: Any, later: Any) -> float | None:
    try:
        start, end = datetime.fromisoformat(str(earlier)[:19]), datetime.fromisoformat(str(later)[:19])
    except ValueError:
        return None
    return (end - start).total_seconds() / 86400


def absence_problem(sentence: str, results: list[dict]) -> str:
    """"No orders" of a customer with 37, "no recent events" beside events 10 days old, "no customers at all"
    beside a list of two (new_user_trial.md Round 9b): an absence the results count as present.

    A span after it ("no orders in the last 30 days") is checked against how long ago the last one was;
    "recent" reads as the last 30 days. What the results do not count is left alone.
    """
    counted = _counted(results)
    for match in _ABSENT.finditer(sentence):
        if _CHANCE_OF.search(sentence[:match.start()]) or _AHEAD.match(sentence, match.end()) \
                or _WILL_BEFORE.search(sentence[:match.start()]):
            continue  # "73% chance of no purchase", "no purchase within 7 days": a prediction, not an absence
        word = next(g for g in match.groups() if g).lower()
        kind = _ABSENT_KIND.get(word.rstrip("s") if word not in _ABSENT_KIND else word)
        seen = counted.get(kind or "")
        if not seen or not seen.get("total"):
            continue
        span = _SPAN.match(sentence, match.end())
        days = float(span.group(1)) if span else RECENT_DAYS if _RECENTLY.search(match.group(0)) else None
        if kind == "customers":
            rest = sentence[match.end():].strip().lower()
            if rest and not rest.startswith(("at all", ".", ",", ";", "!")):
                continue  # "no customers in stage new" narrows the claim to a group the list may not hold
            return f"false: the results list {seen['total']:.0f} customers"
        if days is None:
            return f"false: the results count {seen['total']:.0f} {kind}"
        ago = seen.get("days_ago")
        if kind == "events" and days >= RECENT_DAYS and seen.get("last_30"):
            return f"false: {seen['last_30']:.0f} events in the last 30 days"
        if ago is not None and ago < days:
            return f"false: the last of the {kind} was {ago:.0f} days ago"
    return ""


_LIKELY_BUY = re.compile(r"\b(un)?likely\s+to\s+(?:buy|purchase|order|shop|return|come back|make a purchase)\b"
                         r"|\b(will)\s+(?:probably\s+)?(?:buy|purchase|order)\b", re.I)
_NOT_BEFORE = re.compile(r"\b(?:not|less|n't|un)\s*(?:very\s+|so\s+)?$", re.I)
_WITHIN = re.compile(r"\b(?:within|in|over)\s+(?:the\s+next\s+)?(\d+)\s*days?|\bthis (week|month)\b", re.I)


def likely_problem(sentence: str, results: list[dict]) -> str:
    """"Likely to buy something within 30 days" beside a 7% chance (new_user_trial.md Round 9b), or
    "unlikely to buy" beside 80%: the word must fall on the side of 50% the predicted chance of buying is on.

    Reads predict_next's `p_buy` ({"7d": 0.07, "30d": 0.07}); a span in the sentence picks its horizon,
    without one the word is false only where it fails for every horizon.
    """
    chances = {int(str(k).rstrip("d")): float(v) for r in results if isinstance(r.get("p_buy"), dict)
               for k, v in r["p_buy"].items() if isinstance(v, (int, float)) and str(k).rstrip("d").isdigit()}
    if not chances:
        return ""
    for match in _LIKELY_BUY.finditer(sentence):
        if re.search(r"\b(?:most|more|less|least)\s+$", sentence[:match.start()], re.I):
            continue  # "the item they are most likely to buy": which one, not whether they buy
        unlikely = bool(match.group(1)) or bool(_NOT_BEFORE.search(sentence[:match.start()]))
        span = _WITHIN.search(sentence, match.end())
        days = None if not span else int(span.group(1)) if span.group(1) else 7 if span.group(2).lower() == "week" else 30
        picked = [chances[days]] if days in chances else list(chances.values())
        if unlikely and all(p >= 0.5 for p in picked):
            return f"false: the chance of buying is {max(picked):.0%}, not unlikely"
        if not unlikely and all(p < 0.5 for p in picked):
            return f"false: the chance of buying is {min(picked):.0%}, not likely"
    return ""


# "6 views", "2 purchases", "1 added to cart": a count of one kind of event, as a customer's history lists them.
_BEHAVIOUR_COUNT = re.compile(r"\b(\d+)\s+(?:recent\s+|more\s+)?(views?|viewed|page views|purchases?|buys?|bought|"
                              r"orders?|carts?|cart adds|added to (?:the )?cart|favou?rites?|favs?|saves|saved|"
                              r"events?)\b", re.I)
_BEHAVIOUR_OF = {"view": "view", "viewed": "view", "page view": "view", "purchase": "buy", "buy": "buy",
                 "bought": "buy", "order": "buy", "cart": "cart", "cart add": "cart", "added to cart": "cart",
                 "added to the cart": "cart", "favourite": "fav", "favorite": "fav", "fav": "fav", "save": "fav",
                 "saved": "fav", "event": "events"}


def behaviour_count_problem(sentence: str, results: list[dict]) -> str:
    """"2 views" of a history whose recent events hold 6 views: a count bound to the wrong kind of event.

    The takeaway's counts ("6 view, 2 buy") ground any equal number of the answer; this binds each to its
    noun. Read only beside a customer's listed events (user_history): the recent events of each kind, and
    for purchases also every order total the results give; "N events" must be a count of events they give.
    """
    histories = [r for r in results if isinstance(r.get("events"), list) and r.get("user_id")]
    if not histories:
        return ""
    allowed: dict[str, set[int]] = {}
    for r in histories:
        kinds = Counter(str(e.get("behavior")) for e in r["events"] if isinstance(e, dict))
        for kind, count in kinds.items():
            allowed.setdefault(kind, set()).add(count)
        allowed.setdefault("events", set()).update({len(r["events"]), *kinds.values()})
    for r in results:
        own = _own_totals(r) or {}
        if isinstance(own.get("orders"), int):
            allowed.setdefault("buy", set()).add(own["orders"])
        # "a pattern of 411153 events" (a category id, new_user_trial.md Round 8): events are what the results count
        allowed.setdefault("events", set()).update(v for k in ("events", "events_30d", "events_total")
                                                   if isinstance(v := own.get(k), int))
    for match in _BEHAVIOUR_COUNT.finditer(sentence):
        noun = match.group(2).lower()
        kind = _BEHAVIOUR_OF.get(noun) or _BEHAVIOUR_OF.get(noun.rstrip("s"))
        count = int(match.group(1))
        if kind and count not in allowed.get(kind, set()):
            said = sorted(allowed.get(kind, set()))
            return f"false: {count} {noun}, where the history counts {said or 'none'}"
    return ""
