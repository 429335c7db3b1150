"""Tool results turned into what an answer says: percentages, money, dates and plain driver names.

The answer templates (prompts/agent_answer.j2, prompts/agent_answer_zh.j2) only assemble
sentences; every value they print is a string made here from a tool result, so the prose
never shows an internal field name (`p_churn`, `model_version`) or a raw timestamp, and every
figure still rounds back to a number the tool returned (the grounding check forgives rounding).

    view = view_of("at_risk_users", result, language="en")
    view["users"][0]["risk"]   # "73%"   (from p_churn 0.734)
    view["as_of"]              # "June 30, 2026"   (from "2026-06-30T23:03:41")
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Callable

MAX_LISTED = 5  # rows written out in prose; the table below the chat shows them all
MAX_DRIVERS = 3

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
# The predictor's feature groups (tools/predictor/explain.py FEATURE_GROUPS), as a person says them.
FEATURE_WORDS = {
    "en": {"recency": "the time since the last visit and purchase", "frequency": "how often they have bought",
           "recent_activity": "their activity in recent weeks", "monetary": "how much they spend",
           "purchase_gap": "their usual gap between purchases", "tenure": "how long they have been a customer"},
    "zh": {"recency": "距上次访问和购买的时间", "frequency": "购买频率", "recent_activity": "最近几周的活跃度",
           "monetary": "消费金额", "purchase_gap": "通常的购买间隔", "tenure": "成为客户的时长"},
}
NEXT_ACTION_WORDS = {"en": {"buy": "a purchase", "view": "a view", "cart": "adding to cart", "fav": "saving an item"},
                     "zh": {"buy": "购买", "view": "浏览", "cart": "加购", "fav": "收藏"}}
BEHAVIOR_WORDS = {"en": {"buy": "bought", "view": "viewed", "cart": "added to cart", "fav": "saved"},
                  "zh": {"buy": "购买", "view": "浏览", "cart": "加购", "fav": "收藏"}}


def number(value: Any, decimals: int = 3) -> str:
    """Integers as is, floats to at most `decimals` places, trailing zeros dropped."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def percent(p: Any) -> str:
    """A probability or rate as a percentage: 0.734 -> "73%", 0.004 -> "0.4%"."""
    if not isinstance(p, (int, float)) or isinstance(p, bool):
        return "?"
    value = 100.0 * float(p)
    if 0 < abs(value) < 1 or 99.5 <= abs(value) < 100:  # "100%" of a 0.998 would overstate it
        return f"{value:.1f}%"
    return f"{value:.0f}%"


def money(amount: Any, currency: str = "$") -> str:
    """An amount with its currency and two decimals: 906.27 -> "$906.27", or "906.27 USD" for an ISO
    code, or "1.50 expected orders" when the shop has no prices (currency "orders")."""
    if not isinstance(amount, (int, float)) or isinstance(amount, bool):
        return ""
    if currency == "orders":
        return f"{float(amount):,.2f} expected orders"
    if len(currency) == 3 and currency.isalpha():
        return f"{float(amount):,.2f} {currency.upper()}"
    return f"{currency}{float(amount):,.2f}"


def _currency(r: dict, default: str) -> str:
    """The unit a result states for its money fields (tools pass the shop's currency or "orders")."""
    return "orders" if r.get("value_unit") == "orders" else str(r.get("currency") or default)


STAGE_WORDS = {"en": {"new": "new", "active": "active", "lapsing": "lapsing", "at_risk": "at risk", "lost": "lost",
                      "visitor": "visitor (no order yet)"},
               "zh": {"new": "新客户", "active": "活跃", "lapsing": "渐失", "at_risk": "有风险", "lost": "已流失",
                      "visitor": "访客（尚未下单）"}}


def day(stamp: Any, language: str = "en") -> str:
    """A timestamp as a date a person reads: "June 30, 2026" (en) or "2026年6月30日" (zh)."""
    try:
        when = datetime.fromisoformat(str(stamp)[:19])
    except ValueError:
        return ""
    if language == "zh":
        return f"{when.year}年{when.month}月{when.day}日"
    return f"{_MONTHS[when.month - 1]} {when.day}, {when.year}"


def days(value: Any) -> str:
    """A count of days, rounded to whole days."""
    return number(round(float(value))) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def view_of(tool: str, result: dict, language: str = "en", currency: str = "$", side: str = "") -> dict:
    """The template's view of one tool result: {"tool": name, ...strings}; unknown tools: {"tool", "fields"}.

    `side` is the side of the reviews the question asks for ("negative": complaints, "positive": praise,
    assistant/agent/cues.py `review_side`); only review_summary reads it.
    """
    builder = _VIEWS.get(tool)
    if builder is None:
        return {"tool": tool, "fields": _plain_fields(result)}
    if tool == "review_summary":
        return {"tool": tool, **_reviews(result, language, currency, side)}
    return {"tool": tool, **builder(result, language, currency)}


# ---------------------------------------------------------------------------------------- per tool
def _at_risk(r: dict, lang: str, cur: str) -> dict:
    cur = _currency(r, cur)
    users = [{"id": str(u.get("user_id")),
              "risk": percent(u["p_lapse"] if isinstance(u.get("p_lapse"), (int, float)) else u.get("p_churn")),
              "stage": STAGE_WORDS[lang].get(str(u.get("stage")), "") if u.get("stage") else "",
              "value": money(u.get("value_at_risk"), cur) if u.get("value_at_risk") else "",
              "days_since_buy": days(u.get("days_since_last_buy")), "orders": number(u.get("orders", "")),
              "reasons": [str(x) for x in u.get("reasons") or []]}
             for u in r.get("users") or []]
    return {"horizon": number(r.get("horizon_days", "")), "segment": r.get("segment") or "",
            "by_value": r.get("rank_by") == "value_at_risk", "as_of": day(r.get("as_of"), lang),
            "in_orders": cur == "orders",
            "lapse": any(isinstance(u.get("p_lapse"), (int, float)) for u in r.get("users") or []),
            "money_at_risk": money(r.get("money_at_risk"), cur) if r.get("money_at_risk") is not None else "",
            "lost_note": str(r.get("lost_note") or ""), "value_note": str(r.get("value_note") or ""),
            "users": users[:MAX_LISTED], "n": len(users), "more": max(0, len(users) - MAX_LISTED),
            "mean_risk": percent(r["mean_p_churn"]) if isinstance(r.get("mean_p_churn"), (int, float)) else "",
            "population": str(r.get("population") or "")}


def _driver(d: dict, facts: dict, lang: str) -> dict:
    effect = d.get("effect")
    if d.get("type") == "event" and isinstance(d.get("event"), dict):
        e = d["event"]
        what = {"behavior": BEHAVIOR_WORDS[lang].get(str(e.get("behavior")), str(e.get("behavior"))),
                "item": str(e.get("item_id", "")), "category": str(e.get("category_id") or ""),
                "date": day(e.get("ts"), lang)}
        name = ""
    else:
        what, name = None, FEATURE_WORDS[lang].get(str(d.get("feature")), str(d.get("feature", "")).replace("_", " "))
    return {"event": what, "name": name, "detail": _feature_detail(str(d.get("feature")), facts, lang),
            "raises": isinstance(effect, (int, float)) and effect > 0,
            "before": percent(d["p_churn_without"]) if isinstance(d.get("p_churn_without"), (int, float)) else "",
            "size": percent(abs(effect)) if isinstance(effect, (int, float)) else ""}


def _feature_detail(feature: str, f: dict, lang: str) -> str:
    """The fact behind a feature driver, in words ("41 days since the last purchase")."""
    zh = lang == "zh"
    if feature == "recency" and isinstance(f.get("days_since_last_buy"), (int, float)):
        return f"距上次购买 {days(f['days_since_last_buy'])} 天" if zh else \
            f"{days(f['days_since_last_buy'])} day{'' if days(f['days_since_last_buy']) == '1' else 's'} since the last purchase"
    if feature == "frequency" and isinstance(f.get("orders"), (int, float)):
        return f"共 {number(f['orders'])} 笔订单" if zh else f"{number(f['orders'])} orders so far"
    if feature == "recent_activity" and isinstance(f.get("events_30d"), (int, float)):
        return f"近 30 天 {number(f['events_30d'])} 次行为" if zh else f"{number(f['events_30d'])} events in the last 30 days"
    if feature == "purchase_gap" and isinstance(f.get("usual_days_between_buys"), (int, float)):
        return f"通常每 {days(f['usual_days_between_buys'])} 天购买一次" if zh else \
            f"usually {days(f['usual_days_between_buys'])} days between purchases"
    if feature == "tenure" and isinstance(f.get("tenure_days"), (int, float)):
        return f"成为客户 {number(f['tenure_days'])} 天" if zh else f"a customer for {number(f['tenure_days'])} days"
    return ""


def _explain(r: dict, lang: str, cur: str) -> dict:
    facts = r.get("facts") if isinstance(r.get("facts"), dict) else {}
    # Largest effect first, except that the first one is what the answer calls the main reason, so it
    # is the largest that *raises* the risk: the largest of all may lower it, and "90%, mainly because of
    # their activity in recent weeks, which lowers the risk" contradicted itself (new_user_trial.md Round 9b).
    ranked = sorted((d for d in r.get("drivers") or [] if isinstance(d, dict)),
                    key=lambda d: -abs(d["effect"]) if isinstance(d.get("effect"), (int, float)) else 0)
    main = next((d for d in ranked if isinstance(d.get("effect"), (int, float)) and d["effect"] > 0), None)
    ranked = ([main] + [d for d in ranked if d is not main]) if main is not None else ranked
    drivers = [_driver(d, facts, lang) for d in ranked]
    return {"user": str(r.get("user_id")), "risk": percent(r.get("p_churn")), "horizon": number(r.get("horizon_days", "")),
            "drivers": drivers[:MAX_DRIVERS], "too_little": str(r.get("too_little_history") or ""),
            "left_out": str(r.get("drivers_left_out") or ""), "as_of": day(r.get("as_of"), lang),
            "orders": number(facts.get("orders", "")), "spend": money(facts.get("spend"), cur),
            "days_since_buy": days(facts.get("days_since_last_buy")), "tenure": number(facts.get("tenure_days", "")),
            "events_30d": number(facts.get("events_30d", "")), "top_category": str(facts.get("top_category") or ""),
            "trend": str(facts.get("trend") or ""), **_lifecycle(r.get("lifecycle"), lang, cur),
            "rhythm": _on_rhythm(r)}


def _on_rhythm(r: dict) -> str:
    """The usual gap in days when a customer on rhythm has a high chance of no purchase within the horizon.

    A 93% chance of no purchase in 7 days beside "Stage: active (0% chance of lapsing)" read as a
    contradiction on CDNOW (new_user_trial.md Round 8): one who orders every 222 days rarely buys within 7.
    """
    life = r.get("lifecycle") if isinstance(r.get("lifecycle"), dict) else {}
    gap, horizon, p = life.get("usual_gap_days"), r.get("horizon_days"), r.get("p_churn")
    if life.get("stage") == "active" and isinstance(gap, (int, float)) and isinstance(horizon, (int, float)) \
            and isinstance(p, (int, float)) and p >= 0.5 and gap > horizon:
        return days(gap)
    return ""


def _lifecycle(life: Any, lang: str, cur: str) -> dict:
    """The stage block of explain_user (tools/catalog/users.py `_lifecycle_of`), in words."""
    if not isinstance(life, dict) or not life.get("stage"):
        return {"stage": ""}
    cur = _currency(life, cur)
    return {"stage": STAGE_WORDS[lang].get(str(life["stage"]), str(life["stage"])),
            "lapse": percent(life["p_lapse"]) if isinstance(life.get("p_lapse"), (int, float)) else "",
            "stage_value": money(life.get("value_at_risk"), cur) if life.get("value_at_risk") is not None else "",
            "stage_reasons": [str(x) for x in life.get("reasons") or []][:3]}


def _history(r: dict, lang: str, cur: str) -> dict:
    t = r.get("totals") if isinstance(r.get("totals"), dict) else {}
    events = [{"date": day(e.get("ts"), lang), "behavior": BEHAVIOR_WORDS[lang].get(str(e.get("behavior")),
                                                                                   str(e.get("behavior"))),
               "item": str(e.get("item_id", "")), "category": str(e.get("category_id") or ""),
               "amount": money(e.get("amount"), cur)} for e in r.get("events") or [] if isinstance(e, dict)]
    return {"user": str(r.get("user_id")), "events": events[:MAX_LISTED], "n": len(events),
            "total_events": number(t.get("events", "")), "orders": number(t.get("orders", "")),
            "spend": money(t.get("spend"), cur), "tenure": days(t.get("tenure_days")),
            "days_since_buy": days(t.get("days_since_last_buy")) if (t.get("orders") or 0) > 0 else "",
            "top_category": str(t.get("top_category") or "")}


def _next(r: dict, lang: str, cur: str) -> dict:
    def ranked(rows: Any, key: str) -> list[dict]:
        return [{"id": str(x.get(key)), "p": percent(x["p"]) if isinstance(x.get("p"), (int, float)) else ""}
                for x in rows or [] if isinstance(x, dict)][:3]

    buy = r.get("p_buy") if isinstance(r.get("p_buy"), dict) else {}
    chances = [{"days": str(k).rstrip("d"), "p": percent(v)} for k, v in buy.items() if isinstance(v, (int, float))]
    return {"user": str(r.get("user_id")), "categories": ranked(r.get("next_categories"), "category_id"),
            "next_items": ranked(r.get("next_items"), "item_id"),
            "behavior": NEXT_ACTION_WORDS[lang].get(str(r.get("next_behavior")), "") if r.get("next_behavior") else "",
            "buy": chances}


_SEGMENT_BY = {"en": {"value_band": "recent spend", "tenure": "tenure", "first_category": "first purchase category",
                      "segment": "customer segment"},
               "zh": {"value_band": "近期消费", "tenure": "客户时长", "first_category": "首单品类", "segment": "客户分群"}}


def _segments(r: dict, lang: str, cur: str) -> dict:
    rows = [{"name": str(s.get("segment")), "users": number(s.get("users", "")),
             "churn": percent(s.get("predicted_churn_rate")), "buy": percent(s.get("predicted_buy_rate")),
             "spend": money(s.get("mean_spend"), cur)} for s in r.get("segments") or [] if isinstance(s, dict)]
    by = str(r.get("segment_by", "segment"))
    return {"by": _SEGMENT_BY[lang].get(by, by.replace("_", " ")), "horizon": number(r.get("horizon_days", "")),
            "segments": rows[:8], "top": rows[0] if rows else None, "bottom": rows[-1] if len(rows) > 1 else None,
            "population": str(r.get("population") or ""),
            "no_labels": "no segment labels" in str(r.get("note") or "")}  # segment_report grouped by spend instead


def _cases(r: dict, lang: str, cur: str) -> dict:
    o = r.get("outcomes") if isinstance(r.get("outcomes"), dict) else {}
    cases = []
    for c in r.get("cases") or []:
        if not isinstance(c, dict):
            continue
        # The case id is what a reader opens and the answer cites (the bench's fact `cases[0].case_id`).
        cases.append({"id": str(c.get("case_id") or ""), "user": str(c.get("user_id") or ""),
                      "date": day(c.get("cutoff"), lang),
                      "title": str(c.get("title") or ""), "outcome": str(c.get("outcome") or ""),
                      "similarity": number(c["similarity"], 2) if isinstance(c.get("similarity"), (int, float)) else "",
                      "churned": c.get("churned"), "buys_after": number(c.get("buys_after", "")),
                      "horizon": number(c.get("horizon_days", "")),
                      "return_days": number(c["days_to_return"]) if isinstance(c.get("days_to_return"), (int, float))
                      else ""})
    horizon = next((c["horizon"] for c in cases if c["horizon"]), "")
    return {"n": number(o.get("n_snapshots", 0)), "churned": number(o.get("churned", 0)),
            "retained": number(o.get("retained", 0)),
            "rate": percent(o["churn_rate"]) if isinstance(o.get("churn_rate"), (int, float)) else "",
            "horizon": horizon, "cases": cases[:MAX_LISTED],
            # "after how long" of those who came back: the median over the cases whose return day is stored.
            "return_days": number(o["median_days_to_return"])
            if isinstance(o.get("median_days_to_return"), (int, float)) else "", "repeats": len({c["user"] for c in cases if c["user"]})
            < len([c for c in cases if c["user"]])}


def _reviews(r: dict, lang: str, cur: str, side: str = "") -> dict:
    """review_summary in words; asked for one side, the aspects that side counts most come first, and only
    quotes of that side are shown: a complaint question was answered with each aspect's majority quote,
    all praise on a mostly happy shop ("taste ...; e.g. «These are a delicious ... snack»", Round 9b)."""
    s = r.get("sentiment") if isinstance(r.get("sentiment"), dict) else {}
    scope = r.get("scope") if isinstance(r.get("scope"), dict) else {}
    pos, neg, mixed = s.get("positive") or 0, s.get("negative") or 0, s.get("mixed") or 0
    # "mostly mixed" is said only where mixed reviews outnumber the rest: 300 positive, 0 mixed and 300
    # negative read "mostly mixed ... 0 mixed" (new_user_trial.md, Round 9d); such a split is "divided".
    lean = "mixed" if mixed > pos + neg else "positive" if pos > 2 * neg else "negative" if neg > pos else "divided"
    rows = [a for a in r.get("aspects") or [] if isinstance(a, dict)]
    if side:
        rows = sorted(rows, key=lambda a: -(a.get(side) or 0))
    aspects = [{"name": str(a.get("aspect")), "n": number(a.get("reviews", "")), "pos": number(a.get("positive", 0)),
                "neg": number(a.get("negative", 0)),
                "quote": {"id": str(a["quote"].get("review_id")), "text": str(a["quote"].get("text", ""))}
                if isinstance(a.get("quote"), dict) and (not side or _quoted_side(a) == side) else None}
               for a in rows]
    quotes = r.get("quotes") if isinstance(r.get("quotes"), dict) else {}
    side_quotes = [{"id": str(q.get("review_id")), "text": str(q.get("text", ""))}
                   for q in (quotes.get(side) or [] if side else []) if isinstance(q, dict)][:2]
    return {"n": number(r.get("n_reviews", 0)), "item": str(scope.get("item_id") or ""),
            "category": str(scope.get("category_id") or ""), "since": day(scope.get("since"), lang),
            "rating": number(r["mean_rating"], 1) if isinstance(r.get("mean_rating"), (int, float)) else "",
            "positive": number(pos), "mixed": number(mixed), "negative": number(neg), "lean": lean,
            "aspects": aspects[:4], "side": side, "side_quotes": side_quotes,
            "side_top": next((a for a in aspects[:1] if a[side[:3]] != "0"), None) if side else None}


def _quoted_side(aspect: dict) -> str:
    """The side of an aspect's quote: tools/reviews.py quotes its majority, negative where negatives outnumber."""
    return "negative" if (aspect.get("negative") or 0) > (aspect.get("positive") or 0) else "positive"


def _carts(r: dict, lang: str, cur: str) -> dict:
    """open_carts (tools/catalog/carts.py): who left what in carts, and which items are left most."""
    t = r.get("totals") if isinstance(r.get("totals"), dict) else {}
    cur = str(r.get("currency") or cur)
    users = [{"id": str(u.get("user_id")), "n_items": number(u.get("open_items", "")),
              "value": money(u.get("open_value"), cur) if isinstance(u.get("open_value"), (int, float)) else "",
              "buy": percent(u["p_buy"]) if isinstance(u.get("p_buy"), (int, float)) else "",
              "added": days(u.get("last_added_days_ago"))}
             for u in r.get("users") or [] if isinstance(u, dict)]
    items = [{"id": str(i.get("item_id")), "category": str(i.get("category_id") or ""),
              "customers": number(i.get("customers", ""))} for i in r.get("items") or [] if isinstance(i, dict)]
    return {"recorded": r.get("carts_recorded") is not False, "note": str(r.get("note") or ""),
            "window": number(r.get("window_days", "")), "user": str(r.get("user_id") or ""),
            "span": "day" if r.get("window_days") == 1 else f"{number(r.get('window_days', ''))} days",
            "as_of": day(r.get("as_of"), lang), "customers": number(t.get("customers_with_open_carts", 0)),
            "open_items": number(t.get("open_items", 0)),
            "value": money(t.get("open_value"), cur) if isinstance(t.get("open_value"), (int, float)) else "",
            "carted": number(t["carted_items"]) if isinstance(t.get("carted_items"), int) else "",
            "left_share": percent(t["share_left_open"]) if isinstance(t.get("share_left_open"), (int, float)) else "",
            "buy_days": number(r["scores_horizon_days"]) if isinstance(r.get("scores_horizon_days"), int) else "",
            "users": users[:MAX_LISTED], "more": max(0, len(users) - MAX_LISTED), "left_items": items[:MAX_LISTED]}


def _plain_fields(result: dict) -> list[dict]:
    """An unknown tool's scalar fields as (label, value) strings, internal names spelled out."""
    out = []
    for key, value in result.items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and key != "model_version":
            text = day(value) if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T" else \
                number(value) if not isinstance(value, str) else value
            out.append({"label": str(key).replace("_", " "), "value": text})
    return out[:10]


_VIEWS: dict[str, Callable[[dict, str, str], dict]] = {
    "at_risk_users": _at_risk, "explain_user": _explain, "user_history": _history, "predict_next": _next,
    "segment_report": _segments, "similar_cases": _cases, "review_summary": _reviews, "open_carts": _carts,
}
