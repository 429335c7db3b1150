"""Snapshots of users at a past cutoff, and what then happened: the rows of the case memory.

A snapshot reads only events with `ts <= cutoff`; its outcome reads `(cutoff, cutoff + H]` for
each horizon H. The text of a case describes the situation only (never the outcome), so a
text query finds customers who *looked like* this one, and the outcome is read from metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)


def case_id(user_id: str, cutoff: datetime) -> str:
    """Deterministic id of a snapshot: `user@YYYYMMDDTHHMMSSZ` (re-runs upsert, never duplicate)."""
    return f"{user_id}@{pd.Timestamp(cutoff):%Y%m%dT%H%M%SZ}"


def _round(x: float, nd: int = 2) -> float:
    return float(round(float(x), nd))


SNAPSHOT_COLUMNS = {"n_events": "int64", "n_orders": "int64", "spend": "float64", "tenure_days": "int64",
                    "days_since_last_event": "int64", "days_since_last_buy": "int64", "events_30d": "int64",
                    "buys_90d": "int64", "top_category": object, "last_items": object}


def snapshot_features(events: pd.DataFrame, cutoff: datetime, users: list[str] | None = None) -> pd.DataFrame:
    """Per-user facts as of `cutoff`, indexed by user_id (users with no event by then are absent).

    Columns: n_events, n_orders (distinct buy days), spend, tenure_days, days_since_last_event,
    days_since_last_buy (-1 when never bought), events_30d, buys_90d, top_category, last_items.
    """
    c = pd.Timestamp(cutoff)
    past = events[events["ts"] <= c]
    if users is not None:
        past = past[past["user_id"].isin(users)]
    if not len(past):  # the documented columns still: a review-only shop has no events, and readers index them
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in SNAPSHOT_COLUMNS.items()},
                            index=pd.Index([], name="user_id", dtype=object))
    g = past.groupby("user_id", sort=True)
    out = pd.DataFrame({
        "n_events": g.size(),
        "first_ts": g["ts"].min(),
        "last_ts": g["ts"].max(),
    })
    buys = past[past["behavior"] == "buy"]
    bg = buys.groupby("user_id")
    # Distinct (user, day) pairs: a vectorized nunique (a per-group lambda costs seconds at 5,000 users).
    buy_days = pd.DataFrame({"user_id": buys["user_id"], "day": buys["ts"].dt.normalize()}).drop_duplicates()
    out["n_orders"] = buy_days.groupby("user_id").size().reindex(out.index).fillna(0).astype(int)
    amount = buys["amount"].fillna(0.0) * 1.0 if "amount" in buys else pd.Series(0.0, index=buys.index)
    out["spend"] = amount.groupby(buys["user_id"]).sum().reindex(out.index).fillna(0.0)
    last_buy = bg["ts"].max().reindex(out.index)
    out["tenure_days"] = ((c - out["first_ts"]) / DAY).astype(int)
    out["days_since_last_event"] = ((c - out["last_ts"]) / DAY).astype(int)
    out["days_since_last_buy"] = ((c - last_buy) / DAY).fillna(-1).astype(int)
    last_30d = past[past["ts"] > c - 30 * DAY]
    out["events_30d"] = last_30d.groupby("user_id").size().reindex(out.index).fillna(0).astype(int)
    out["buys_90d"] = buys[buys["ts"] > c - 90 * DAY].groupby("user_id").size().reindex(out.index).fillna(0).astype(int)
    cats = past.dropna(subset=["category_id"]) if "category_id" in past else past.iloc[0:0]
    top = cats.groupby(["user_id", "category_id"]).size().reset_index(name="n")
    top = top.sort_values(["user_id", "n", "category_id"], ascending=[True, False, True]).drop_duplicates("user_id")
    out["top_category"] = top.set_index("user_id")["category_id"].astype(str).reindex(out.index).fillna("")
    recent = buys.sort_values("ts", kind="stable").groupby("user_id").tail(3).iloc[::-1]
    # str once for the whole column, then the builtin join per group (a lambda with astype costs 5x).
    last3 = recent["item_id"].astype(str).groupby(recent["user_id"], sort=False).agg(" ".join)
    out["last_items"] = last3.reindex(out.index).fillna("")
    return out.drop(columns=["first_ts", "last_ts"])


def outcomes(events: pd.DataFrame, cutoff: datetime, horizons_days: tuple[int, ...],
             users: pd.Index) -> pd.DataFrame:
    """What each user did in `(cutoff, cutoff + H]`: churned_{H}d, buys_{H}d, spend_{H}d per horizon,
    and, over the longest horizon, days_to_return (days from the cutoff to the first purchase after it,
    one decimal; -1 when none: Chroma metadata has no null) and bought_categories / bought_items (top 3,
    most bought first)."""
    c = pd.Timestamp(cutoff)
    out = pd.DataFrame(index=users)
    longest = max(horizons_days)
    future = events[(events["ts"] > c) & (events["ts"] <= c + longest * DAY) & (events["behavior"] == "buy")]
    future = future[future["user_id"].isin(users)]
    for h in sorted(horizons_days):
        win = future[future["ts"] <= c + h * DAY]
        n = win.groupby("user_id").size().reindex(users).fillna(0).astype(int)
        out[f"buys_{h}d"] = n
        out[f"churned_{h}d"] = n == 0
        spend = win["amount"].fillna(0.0).groupby(win["user_id"]).sum() if "amount" in win else n * 0.0
        out[f"spend_{h}d"] = spend.reindex(users).fillna(0.0).round(2)
    first_buy = future.groupby("user_id")["ts"].min().reindex(users)
    out["days_to_return"] = ((first_buy - c) / DAY).round(1).fillna(-1.0)
    for col, name in (("category_id", "bought_categories"), ("item_id", "bought_items")):
        if col not in future:
            out[name] = ""
            continue
        counts = future.dropna(subset=[col]).groupby(["user_id", col]).size().reset_index(name="n")
        counts = counts.sort_values(["user_id", "n", col], ascending=[True, False, True])
        counts = counts.groupby("user_id").head(3)
        top = counts[col].astype(str).groupby(counts["user_id"]).agg(" ".join)
        out[name] = top.reindex(users).fillna("")
    return out


def review_facts(reviews: pd.DataFrame | None, cutoff: datetime, users) -> pd.DataFrame:
    """Per user, reviews written by `cutoff`: n_reviews, mean_rating, last_rating, last_aspects.

    A customer who wrote "arrived two weeks late" is a different case from a silent one; the
    aspects make text queries like "stopped after a late delivery" find them.
    """
    from tools.aspects import find_aspects  # keyword match only: cheap enough for every review

    cols = ["n_reviews", "mean_rating", "last_rating", "last_aspects"]
    if reviews is None or not len(reviews):
        return pd.DataFrame(columns=cols)
    past = reviews[(reviews["ts"] <= pd.Timestamp(cutoff)) & reviews["user_id"].astype(str).isin(users)]
    if not len(past):
        return pd.DataFrame(columns=cols)
    past = past.sort_values("ts", kind="stable")
    g = past.groupby(past["user_id"].astype(str))
    last = g.tail(1).set_index(past.loc[g.tail(1).index, "user_id"].astype(str))
    text = last.get("title", pd.Series("", index=last.index)).fillna("") + ". " + last["text"].fillna("")
    return pd.DataFrame({"n_reviews": g.size(), "mean_rating": g["rating"].mean(),
                         "last_rating": last["rating"], "last_aspects": text.map(lambda t: " ".join(find_aspects(t)))})


def snapshot_text(user_id: str, cutoff: datetime, row, review=None) -> str:
    """One line describing the situation (never the outcome): what the text collection embeds.

    `row` is a mapping (dict or Series) of `snapshot_features` columns; `review` one of `review_facts`.
    """
    # Words first, numbers after: sentence embeddings match "a lapsed buyer who complained about
    # delivery" to words, hardly to digits.
    lead = _profile(row) + _complaint(review) + ". "
    bought = (f"last purchase {row['days_since_last_buy']} days before" if row["days_since_last_buy"] >= 0
              else "never purchased")
    cat = f", mostly category {row['top_category']}" if row["top_category"] else ""
    return (lead + f"Customer {user_id} as of {pd.Timestamp(cutoff):%Y-%m-%d}: {row['n_orders']} order days, "
            f"{row['n_events']} events over {row['tenure_days']} days, {bought}, "
            f"last activity {row['days_since_last_event']} days before, spend {row['spend']:.2f}{cat}; "
            f"{row['events_30d']} events in the last 30 days, {row['buys_90d']} purchases in the last 90."
            + _review_sentence(review))


def _profile(row) -> str:
    last_buy, orders = row["days_since_last_buy"], row["n_orders"]
    if last_buy < 0:
        return "A browser who never bought"
    if row["tenure_days"] <= 30:
        return "A new customer"
    if last_buy > 60:
        return "A lapsed customer"
    if orders >= 5 and last_buy <= 30:
        return "A loyal, frequent buyer"
    return "An occasional buyer"


def _complaint(review) -> str:
    if review is None or pd.isna(review.get("last_rating")) or review["last_rating"] > 2:
        return ""
    about = f" about {review['last_aspects'].replace(' ', ', ')}" if review.get("last_aspects") else ""
    return f" who complained{about} in a {int(review['last_rating'])}-star review"


def _review_sentence(review) -> str:
    if review is None or pd.isna(review.get("n_reviews")):
        return ""
    about = f" about {review['last_aspects'].replace(' ', ', ')}" if review.get("last_aspects") else ""
    last = "" if pd.isna(review.get("last_rating")) else f"; the last one {int(review['last_rating'])} stars{about}"
    mean = "" if pd.isna(review.get("mean_rating")) else f" (mean {float(review['mean_rating']):.1f} stars)"
    return f" Wrote {int(review['n_reviews'])} review(s){mean}{last}."


@dataclass
class SnapshotBatch:
    """The rows of one cutoff's cases, aligned by position."""

    ids: list[str]
    users: list[str]
    documents: list[str]  # snapshot_text: what a search result shows
    phrases: list[tuple[str, ...]]  # snapshot_phrase_parts: what the text collection embeds
    metadatas: list[dict]


def snapshot_batch(events: pd.DataFrame, cutoff: datetime, horizons_days: tuple[int, ...],
                   users: list[str] | None = None, reviews: pd.DataFrame | None = None) -> SnapshotBatch:
    """Every snapshot at `cutoff` (for `users` if given): features, outcomes and texts in one pass."""
    feats = snapshot_features(events, cutoff, users)
    batch = SnapshotBatch([], [], [], [], [])
    if not len(feats):
        return batch
    outs = outcomes(events, cutoff, horizons_days, feats.index)
    revs = review_facts(reviews, cutoff, set(feats.index.astype(str)))
    rev_rows = {str(k): v for k, v in zip(revs.index, revs.to_dict("records"))}
    cutoff_ts = pd.Timestamp(cutoff)
    stem = case_id("", cutoff)
    common = {"kind": "snapshot", "cutoff": cutoff_ts.isoformat(), "cutoff_s": int(cutoff_ts.timestamp()),
              "horizons_days": " ".join(str(h) for h in sorted(horizons_days))}
    # Plain dicts, not iterrows: building a Series per row costs more than everything else here.
    for uid, f, o in zip(feats.index.astype(str), feats.to_dict("records"), outs.to_dict("records")):
        review = rev_rows.get(uid)
        batch.ids.append(uid + stem)
        batch.users.append(uid)
        batch.documents.append(snapshot_text(uid, cutoff, f, review))
        batch.phrases.append(snapshot_phrase_parts(f, review))
        meta = {**common, "user_id": uid, "n_events": int(f["n_events"]), "n_orders": int(f["n_orders"]),
                "spend": _round(f["spend"]), "tenure_days": int(f["tenure_days"]),
                "days_since_last_buy": int(f["days_since_last_buy"]), "top_category": str(f["top_category"])}
        for h in sorted(horizons_days):
            meta[f"churned_{h}d"] = bool(o[f"churned_{h}d"])
            meta[f"buys_{h}d"] = int(o[f"buys_{h}d"])
            meta[f"spend_{h}d"] = _round(o[f"spend_{h}d"])
        meta["days_to_return"] = float(o["days_to_return"])
        meta["bought_categories"] = str(o["bought_categories"])
        meta["bought_items"] = str(o["bought_items"])
        batch.metadatas.append(meta)
    return batch


def snapshot_rows(events: pd.DataFrame, cutoff: datetime, horizons_days: tuple[int, ...],
                  users: list[str] | None = None, reviews: pd.DataFrame | None = None
                  ) -> tuple[list[str], list[str], list[dict]]:
    """(ids, documents, metadatas) of every snapshot at `cutoff` (for `users` if given)."""
    batch = snapshot_batch(events, cutoff, horizons_days, users, reviews)
    return batch.ids, batch.documents, batch.metadatas


def default_cutoffs(span_end: datetime, horizons_days: tuple[int, ...], n: int = 3, step_days: int | None = None
                    ) -> list[datetime]:
    """`n` cutoffs spaced `step_days` (default: the longest horizon) apart, the last one a full
    horizon before the end of the data, so every outcome is known."""
    longest = max(horizons_days)
    step = step_days or longest
    last = pd.Timestamp(span_end).floor("D") - timedelta(days=longest) - timedelta(seconds=1)
    return [(last - timedelta(days=step * i)).to_pydatetime() for i in range(n)][::-1]


def numeric(value) -> float | int | None:
    """A JSON-able number from a numpy scalar (None for NaN)."""
    if value is None:
        return None
    if isinstance(value, (np.integer, int)):
        return int(value)
    v = float(value)
    return None if np.isnan(v) else v


def _band(value: float, edges: tuple, words: tuple) -> str:
    for edge, word in zip(edges, words):
        if value <= edge:
            return word
    return words[-1]


def snapshot_phrase_parts(row, review=None) -> tuple[str, ...]:
    """The situation in words only, in parts: what the text collection embeds (the document keeps the numbers).

    Sentence embeddings read words, hardly digits, so the exact counts of `snapshot_text` add cost
    (about twice the tokens) and no meaning: counts become bands ("a few orders"). The parts (how the
    customer buys; what they buy; what they wrote) each take few values, so a build embeds each
    distinct part once and a case's vector is the normalised sum of its parts' vectors (mean-pooled
    sentence embeddings add up roughly like the texts they pool).
    """
    orders = _band(row["n_orders"], (0, 1, 4, 9), ("no orders", "one order", "a few orders", "several orders",
                                                  "many orders"))
    last_buy = row["days_since_last_buy"]
    bought = "" if last_buy < 0 else ", " + _band(last_buy, (7, 30, 90), (
        "bought this week", "bought this month", "bought in the last three months", "not bought for months"))
    visits = _band(row["events_30d"], (0, 9), ("no visits last month", "a few visits last month",
                                               "many visits last month"))
    spend = _band(row["spend"], (0, 50, 200), ("no spend", "low spend", "medium spend", "high spend"))
    parts = [f"{_profile(row)}: {orders}{bought}, {visits}, {spend}."]
    if row["top_category"]:
        parts.append(f"Mostly category {row['top_category']}.")
    if review is not None and not pd.isna(review.get("n_reviews")):
        about = f" about {review['last_aspects'].replace(' ', ', ')}" if review.get("last_aspects") else ""
        complaint = _complaint(review)
        wrote = f"Wrote {'one review' if int(review['n_reviews']) == 1 else 'reviews'}{about}."
        parts.append(f"A customer{complaint}. {wrote}" if complaint else wrote)
    return tuple(parts)


def snapshot_phrase(row, review=None) -> str:
    """`snapshot_phrase_parts` as one text (a query that should find cases like this one)."""
    return " ".join(snapshot_phrase_parts(row, review))
