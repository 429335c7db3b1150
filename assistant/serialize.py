"""A user's history and reviews as compact text within a token budget (English or Chinese).

Layout (templates `prompts/history_en.j2`, `prompts/history_zh.j2`):
- a summary: span, counts by behavior, recency, distinct items and categories, spend;
- older events aggregated per ISO week: counts by behavior and the top categories;
- recent events (the last `detail_days` before the cutoff) one per line;
- the user's reviews, PII-masked, defused and delimited as untrusted quotes.

Deterministic: rows are sorted on every column before use, and ties are broken by id, so the
same history always gives the same text. Only events and reviews at or before the cutoff are
read (no leakage). When the text is over the budget, the oldest parts (weeks, then events,
then reviews, all by time) are dropped first and the text says how many were left out.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from assistant import prompts

BEHAVIOR_ORDER = ("view", "cart", "fav", "buy")
LANGS = ("en", "zh")
TOP_CATEGORIES_PER_WEEK = 3


def count_tokens(text: str, tokenizer: Any = None) -> int:
    """Tokens in `text`: exact with a tokenizer, else an estimate (1 per CJK char, 1 per 4 others)."""
    if tokenizer is not None:
        return len(tokenizer.encode(text, add_special_tokens=False))
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef")
    return cjk + math.ceil((len(text) - cjk) / 4)


def _mask(text: str) -> str:
    # The data room owns what counts as PII; one definition for imports, tools and prompts.
    from tools.data.pii import mask_pii

    return mask_pii(text)[0]


def _quote(text: str) -> str:
    """Masked and defused: no tags, fences, braces or role prefixes survive into the prompt."""
    from assistant.agent.untrusted import defuse

    return f"«{defuse(_mask(text))}»"


def _ordered(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    cols = [c for c in keys if c in df.columns] + sorted(c for c in df.columns if c not in keys)
    return df.sort_values(cols, kind="mergesort", na_position="first").reset_index(drop=True)


def _behavior_counts(frame: pd.DataFrame) -> list[dict]:
    counts = frame["behavior"].astype(str).value_counts()
    order = [b for b in BEHAVIOR_ORDER if b in counts] + sorted(b for b in counts.index if b not in BEHAVIOR_ORDER)
    return [{"behavior": b, "count": int(counts[b])} for b in order]


def _fmt_ts(ts: Any) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M")


def _weeks(older: pd.DataFrame) -> list[dict]:
    """Per ISO week (Monday start): counts by behavior and the top categories."""
    if older.empty:
        return []
    week = older["ts"].dt.normalize() - pd.to_timedelta(older["ts"].dt.day_of_week, unit="D")
    out = []
    for start, rows in older.groupby(week, sort=True):
        cats: list[dict] = []
        if "category_id" in rows:
            vc = rows["category_id"].dropna().astype(str).value_counts()
            ranked = sorted(vc.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES_PER_WEEK]
            cats = [{"id": c, "count": int(n)} for c, n in ranked]
        out.append({"start": pd.Timestamp(start).strftime("%Y-%m-%d"), "ts": pd.Timestamp(start),
                    "counts": _behavior_counts(rows), "categories": cats, "events": int(len(rows))})
    return out


def _event_row(r: pd.Series) -> dict:
    amount = r.get("amount")
    quantity = r.get("quantity")
    return {
        "ts": _fmt_ts(r["ts"]), "behavior": str(r["behavior"]), "item_id": str(r["item_id"]),
        "category_id": None if pd.isna(r.get("category_id")) else str(r.get("category_id")),
        "quantity": None if quantity is None or pd.isna(quantity) or int(quantity) == 1 else int(quantity),
        "amount": None if amount is None or pd.isna(amount) else f"{float(amount):.2f}",
    }


def _review_row(r: pd.Series) -> dict:
    title = "" if pd.isna(r.get("title")) else str(r.get("title"))
    text = "" if pd.isna(r.get("text")) else str(r.get("text"))
    rating = r.get("rating")
    return {
        "ts": _fmt_ts(r["ts"]), "item_id": str(r["item_id"]),
        "rating": None if rating is None or pd.isna(rating) else int(rating),
        "title": _quote(title) if title else "", "text": _quote(text) if text else "",
    }


def serialize_user(
    history: pd.DataFrame,
    reviews: pd.DataFrame | None = None,
    cutoff: datetime | None = None,
    token_budget: int = 600,
    lang: str = "en",
    tokenizer: Any = None,
    detail_days: int = 14,
    max_detail_events: int = 30,
    max_reviews: int = 3,
) -> str:
    """One user's history and reviews as compact text within `token_budget` tokens.

    Args:
        history: The user's events (canonical `events` columns: user_id, ts, behavior, item_id,
            category_id, quantity, amount); rows after the cutoff are ignored.
        reviews: The user's reviews (canonical `reviews` columns), or None.
        cutoff: "Now" for this text (default: the last event).
        token_budget: Most tokens the text may take (counted with `tokenizer` when given).
        lang: "en" or "zh".
        tokenizer: A tokenizer for exact counts; None estimates.
        detail_days: Events this many days before the cutoff are listed one per line.
        max_detail_events: At most this many detailed events (older ones are aggregated).
        max_reviews: At most this many (most recent) reviews are quoted.

    Returns:
        The text; the same inputs always give the same text.

    Raises:
        ValueError: an unknown language, missing columns, or a budget too small for the summary.
    """
    if lang not in LANGS:
        raise ValueError(f"lang '{lang}' is not supported; use one of {', '.join(LANGS)}")
    missing = {"ts", "behavior", "item_id"} - set(history.columns)
    if missing:
        raise ValueError(f"history is missing columns {sorted(missing)}; expected the canonical events columns")
    events = history.copy()
    events["ts"] = pd.to_datetime(events["ts"])
    cutoff_ts = pd.Timestamp(cutoff) if cutoff is not None else (events["ts"].max() if len(events) else None)
    if cutoff_ts is not None:
        events = events[events["ts"] <= cutoff_ts]
    events = _ordered(events, ["ts", "behavior", "item_id", "category_id"])
    user_ids = sorted(set(history["user_id"].astype(str))) if "user_id" in history and len(history) else []
    if reviews is not None and len(reviews):
        revs = reviews.copy()
        revs["ts"] = pd.to_datetime(revs["ts"])
        if cutoff_ts is not None:
            revs = revs[revs["ts"] <= cutoff_ts]
        revs = _ordered(revs, ["ts", "review_id", "item_id"]).tail(max_reviews)
        user_ids = user_ids or sorted(set(revs["user_id"].astype(str))) if "user_id" in revs else user_ids
    else:
        revs = pd.DataFrame(columns=["ts", "item_id"])

    recent_from = cutoff_ts - timedelta(days=detail_days) if cutoff_ts is not None else None
    is_recent = events["ts"] > recent_from if recent_from is not None else pd.Series(False, index=events.index)
    recent_idx = list(events.index[is_recent])[-max_detail_events:]
    recent = events.loc[recent_idx]
    older = events.drop(index=recent_idx)
    weeks = _weeks(older)
    detail = [_event_row(r) for _, r in recent.iterrows()]
    quoted = [_review_row(r) for _, r in revs.iterrows()]

    buys = events[events["behavior"].astype(str) == "buy"]
    spent = None
    if "amount" in buys and buys["amount"].notna().any():
        spent = f"{float(buys['amount'].fillna(0).sum()):.2f}"
    summary = {
        "user_id": ", ".join(user_ids) or "unknown",
        "cutoff": _fmt_ts(cutoff_ts) if cutoff_ts is not None else "unknown",
        "n_events": int(len(events)),
        "totals": _behavior_counts(events) if len(events) else [],
        "first_seen": _fmt_ts(events["ts"].iloc[0]) if len(events) else None,
        "last_seen": _fmt_ts(events["ts"].iloc[-1]) if len(events) else None,
        "days_since_last": (cutoff_ts - events["ts"].iloc[-1]).days if len(events) else None,
        "days_since_buy": (cutoff_ts - buys["ts"].iloc[-1]).days if len(buys) else None,
        "n_items": int(events["item_id"].nunique()),
        "n_categories": int(events["category_id"].nunique()) if "category_id" in events else 0,
        "spent": spent,
        "detail_days": detail_days,
    }

    # Oldest first: what truncation drops, one unit at a time (weeks before events before
    # reviews of the same moment, since aggregates carry the least detail).
    units = [(w["ts"], 0, i) for i, w in enumerate(weeks)]
    units += [(pd.Timestamp(e["ts"]), 1, i) for i, e in enumerate(detail)]
    units += [(pd.Timestamp(q["ts"]), 2, i) for i, q in enumerate(quoted)]
    units.sort()

    def render(dropped: int) -> str:
        gone = {(kind, i) for _, kind, i in units[:dropped]}
        kept_weeks = [w for i, w in enumerate(weeks) if (0, i) not in gone]
        kept_events = [e for i, e in enumerate(detail) if (1, i) not in gone]
        kept_reviews = [q for i, q in enumerate(quoted) if (2, i) not in gone]
        omitted = {"weeks": len(weeks) - len(kept_weeks), "events": len(detail) - len(kept_events),
                   "reviews": len(quoted) - len(kept_reviews)}
        return prompts.render(f"history_{lang}", **summary, weeks=kept_weeks, events=kept_events,
                              reviews=kept_reviews, omitted=omitted, truncated=dropped > 0,
                              token_budget=token_budget)

    def fits(dropped: int) -> bool:
        return count_tokens(render(dropped), tokenizer) <= token_budget

    if fits(0):
        return render(0)
    if not fits(len(units)):
        need = count_tokens(render(len(units)), tokenizer)
        raise ValueError(f"token_budget={token_budget} is too small: the summary alone takes {need} tokens")
    lo, hi = 0, len(units)  # fits(hi) is True, fits(lo) is False
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return render(hi)
