"""Ranking baselines for next_item / next_category (docs/benchmark.md).

Each is `(events, cutoff, field) -> DataFrame[user_id, items]` over P(cutoff), where `items`
is a list of up to 10 ids of `field` (`item_id` or `category_id`), best first, all seen at or
before the cutoff. Only events with `ts <= cutoff` are read. Ties break by id so files are
reproducible; short lists are filled from the popularity ranking (never repeating an id).

- `popularity`: the most frequent ids over the last day before the cutoff (any behavior).
- `repeat_recency`: the user's own ids, most recently touched first.
- `markov`: first-order transitions: ids that most often followed the user's last id.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pandas as pd

K = 10


def _past(events: pd.DataFrame, cutoff: datetime, field: str) -> pd.DataFrame:
    past = events[events["ts"] <= cutoff]
    return past[past[field].notna()]


def _users(events: pd.DataFrame, cutoff: datetime) -> pd.Index:
    return pd.Index(sorted(events.loc[events["ts"] <= cutoff, "user_id"].unique()), name="user_id")


def _top(counts: pd.Series, k: int) -> list[str]:
    """Ids by count descending, then id ascending."""
    frame = counts.rename("n").rename_axis("id").reset_index()
    frame["id"] = frame["id"].astype(str)
    return frame.sort_values(["n", "id"], ascending=[False, True], kind="mergesort")["id"].head(k).tolist()


def popular_ids(events: pd.DataFrame, cutoff: datetime, field: str, k: int = K, days: float = 1.0) -> list[str]:
    """The k most frequent ids in (cutoff - days, cutoff], topped up from all-time counts."""
    past = _past(events, cutoff, field)
    recent = past[past["ts"] > cutoff - timedelta(days=days)]
    ranked = _top(recent[field].value_counts(), k)
    if len(ranked) < k:
        ranked += [i for i in _top(past[field].value_counts(), k + len(ranked)) if i not in ranked][: k - len(ranked)]
    return ranked


def _fill(own: list[str], fallback: list[str], k: int = K) -> list[str]:
    seen = set(own)
    return own[:k] + [i for i in fallback if i not in seen][: max(0, k - len(own))]


def _frame(users: pd.Index, lists: dict[str, list[str]], fallback: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": users.to_numpy(),
                         "items": [_fill(lists.get(u, []), fallback) for u in users]})


def popularity_ranking(events: pd.DataFrame, cutoff: datetime, field: str = "item_id") -> pd.DataFrame:
    """Everyone gets the last day's most popular ids."""
    top = popular_ids(events, cutoff, field)
    users = _users(events, cutoff)
    return pd.DataFrame({"user_id": users.to_numpy(), "items": [list(top) for _ in range(len(users))]})


def _ordered(events: pd.DataFrame, cutoff: datetime, field: str) -> pd.DataFrame:
    past = _past(events, cutoff, field)[["user_id", "ts", field]].copy()
    past[field] = past[field].astype(str)
    # Stable sort by user then time: equal timestamps keep file order, as the protocol's targets do.
    return past.sort_values(["user_id", "ts"], kind="mergesort")


def repeat_recency_ranking(events: pd.DataFrame, cutoff: datetime, field: str = "item_id") -> pd.DataFrame:
    """The user's own ids, most recent first (each once), then popular ids."""
    ordered = _ordered(events, cutoff, field)
    latest = ordered.iloc[::-1].drop_duplicates(["user_id", field], keep="first")  # newest touch of each id
    lists = latest.groupby("user_id", sort=False).head(K).groupby("user_id", sort=False)[field].agg(list).to_dict()
    return _frame(_users(events, cutoff), lists, popular_ids(events, cutoff, field))


def markov_ranking(events: pd.DataFrame, cutoff: datetime, field: str = "item_id") -> pd.DataFrame:
    """Ids that most often followed the user's last id across all users' sequences, then popular ids.

    Transitions are consecutive events of one user (any behavior, self-transitions included:
    they are part of the first-order chain). A user whose last id never had a successor gets
    the popularity list.
    """
    ordered = _ordered(events, cutoff, field)
    prev = ordered.groupby("user_id", sort=False)[field].shift(1)
    pairs = pd.DataFrame({"prev": prev, "next": ordered[field]}).dropna()
    counts = pairs.groupby(["prev", "next"], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values(["prev", "n", "next"], ascending=[True, False, True], kind="mergesort")
    successors = counts.groupby("prev", sort=False).head(K).groupby("prev", sort=False)["next"].agg(list).to_dict()
    last = ordered.groupby("user_id", sort=False)[field].last()
    lists = {user: successors.get(item, []) for user, item in last.items()}
    return _frame(_users(events, cutoff), lists, popular_ids(events, cutoff, field))


RANKING_BASELINES: dict[str, Callable[[pd.DataFrame, datetime, str], pd.DataFrame]] = {
    "popularity": popularity_ranking,
    "repeat_recency": repeat_recency_ranking,
    "markov": markov_ranking,
}
