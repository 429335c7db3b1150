"""Sequences, features and labels as of a cutoff, with no leakage from after it.

The predictor reads canonical event frames (user_id, ts naive UTC, behavior, item_id,
category_id, quantity, amount). `prepare_events` sorts them once into flat per-user arrays
(CSR layout: `offsets[u]:offsets[u+1]` are user u's events in time order); an *example* is then
just (user row, number of events at or before a cutoff, cutoff), so rolling cutoffs cost no copies.

Leakage rule: everything an example's inputs see comes from events with `ts <= cutoff`;
labels for training come from windows `(c_k, c_k + H]` that end at or before the training
cutoff. `collate` never reads past `ends[i]` except for the explicit next-event targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tools.predictor.vocab import N_RESERVED, NONE, PAD, Vocab, build_vocab  # noqa: F401  (re-exported)

BEHAVIORS: tuple[str, ...] = ("view", "cart", "fav", "buy")
N_GAP_BUCKETS = 34  # 0 pad, 1 first event, 2.. log2(seconds) buckets
N_AMOUNT_BUCKETS = 44  # 0 pad, 1 unknown, 2.. half-log2 buckets
DAY = 86_400
REQUIRED_COLUMNS = ("user_id", "ts", "behavior", "item_id")
FEATURE_NAMES: tuple[str, ...] = (
    "log_days_since_last_event",
    "log_days_since_last_buy",
    "log_tenure_days",
    "log_n_events",
    "log_n_buys",
    "log_n_buy_days",
    "log_total_amount",
    "log_mean_amount",
    "log_mean_buy_gap_days",
    "recency_over_gap",
    "log_events_7d",
    "log_events_30d",
    "log_events_90d",
    "log_buys_30d",
    "log_buys_90d",
    "never_bought",
    "log_n_carts",
)


class PredictorError(Exception):
    """Bad input to the predictor (events, users, cutoffs, checkpoints); the message says the fix."""


def normalize_horizon(days: float) -> int | float:
    """A horizon in days: an int when whole (7, 30), else a float rounded to the second (1 h = 1/24)."""
    days = float(days)
    if not np.isfinite(days) or days <= 0:
        raise ValueError(f"horizon {days!r} days: give a positive duration, e.g. 7 (days) or 1/24 (one hour)")
    seconds = round(days * DAY)
    return seconds // DAY if seconds % DAY == 0 else seconds / DAY


def horizon_seconds(horizons_days) -> np.ndarray:
    """Horizons in days (ints or fractions) -> int64 seconds."""
    return np.round(np.asarray(horizons_days, dtype=float) * DAY).astype(np.int64)


def to_seconds(values) -> np.ndarray:
    """Naive-UTC datetimes (Series, array or scalar) -> int64 unix seconds."""
    if isinstance(values, pd.Series):
        values = values.to_numpy()
    return np.asarray(values, dtype="datetime64[s]").astype(np.int64)


def cutoff_seconds(cutoff) -> int:
    """A cutoff (datetime, Timestamp or ISO string; aware ones are converted to UTC) -> unix seconds."""
    try:
        ts = pd.Timestamp(cutoff)
    except (ValueError, TypeError) as exc:
        raise PredictorError(f"cutoff {cutoff!r} is not a date/time; use ISO format like 1997-09-30T23:59:59") from exc
    if ts is pd.NaT:
        raise PredictorError("cutoff is missing (NaT); give a UTC date/time")
    if ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(np.datetime64(ts.to_datetime64(), "s").astype(np.int64))


def validate_events(events: pd.DataFrame, where: str = "events") -> pd.DataFrame:
    """Check the canonical columns and return a frame with naive-UTC `ts`; raise PredictorError."""
    if not isinstance(events, pd.DataFrame):
        raise PredictorError(f"{where}: expected a pandas DataFrame of canonical events, got {type(events).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise PredictorError(f"{where}: missing column(s) {missing}; canonical events need "
                             f"{list(REQUIRED_COLUMNS)} (+ category_id, quantity, amount)")
    ts = events["ts"]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        raise PredictorError(f"{where}: field 'ts' must be datetimes (naive UTC), got {ts.dtype}; "
                             "convert with pd.to_datetime(..., utc=True).dt.tz_localize(None)")
    if getattr(ts.dt, "tz", None) is not None:
        events = events.assign(ts=ts.dt.tz_convert("UTC").dt.tz_localize(None))
    bad = ~events["behavior"].isin(BEHAVIORS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise PredictorError(f"{where}: row {row} field 'behavior' = {events['behavior'].iloc[row]!r}; "
                             f"expected one of {list(BEHAVIORS)}")
    for col in ("user_id", "item_id"):
        missing_ids = events[col].isna().to_numpy()
        if missing_ids.any():
            row = int(np.flatnonzero(missing_ids)[0])
            raise PredictorError(f"{where}: row {row} field '{col}' is empty; every event needs a {col}")
    if events["ts"].isna().any():
        raise PredictorError(f"{where}: field 'ts' has missing values; drop or fix those rows")
    return events


@dataclass
class EventArrays:
    """All events, sorted by (user, ts), as flat arrays; user u owns `offsets[u]:offsets[u+1]`."""

    user_ids: np.ndarray  # (U,) object
    offsets: np.ndarray  # (U+1,) int64
    ts: np.ndarray  # (N,) int64 seconds
    behavior: np.ndarray  # (N,) int64 in 0..3
    item: np.ndarray  # (N,) vocab ids
    category: np.ndarray
    gap: np.ndarray  # time since the user's previous event, bucketed
    hour: np.ndarray  # 1..24 (0 = pad)
    dow: np.ndarray  # 1..7
    amount_bucket: np.ndarray
    amount: np.ndarray  # float, NaN unknown
    cum_buys: np.ndarray  # (N,) buys among the user's events up to and including this one
    cum_carts: np.ndarray
    cum_amount: np.ndarray
    cum_buy_days: np.ndarray  # distinct buy days so far
    last_buy_ts: np.ndarray  # ts of the latest buy at or before this event (-1 if none)
    first_buy_ts: np.ndarray
    # Raw ids, for the rankings only (the network sees vocab ids): per event an index into the names
    # (-1 = missing), so a user's own items outside the vocabulary keep their place (candidates.py).
    item_raw: np.ndarray | None = None
    item_names: np.ndarray | None = None
    category_raw: np.ndarray | None = None
    category_names: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids)}


def _group_cumsum(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    before = np.repeat(np.concatenate([[0], total])[starts], counts)
    return total - before


def prepare_events(events: pd.DataFrame, vocab: Vocab) -> EventArrays:
    """Sort and encode canonical events into `EventArrays` (vectorized; ~1 s per million rows)."""
    events = validate_events(events)
    ts = to_seconds(events["ts"])
    # Encode columns in file order, then permute the small int arrays: no copy of the whole frame.
    ucodes, uniq = pd.factorize(events["user_id"].astype("string"), sort=True)
    order = np.lexsort((np.arange(len(ts)), ts, ucodes))  # stable: file order breaks ties
    ucodes, ts = ucodes[order], ts[order]
    counts = np.bincount(ucodes, minlength=len(uniq)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    starts = offsets[:-1]
    first = np.zeros(len(ts), dtype=bool)
    first[starts[counts > 0]] = True

    beh = pd.Categorical(events["behavior"], categories=list(BEHAVIORS)).codes.astype(np.int64)[order]
    item = vocab.encode_items(events["item_id"])[order]
    cat = (vocab.encode_categories(events["category_id"])[order] if "category_id" in events
           else np.full(len(ts), NONE, dtype=np.int64))
    prev = np.concatenate([[0], ts[:-1]])
    gap_s = np.maximum(ts - prev, 0)
    gap = np.where(first, 1, 2 + np.minimum(np.floor(np.log2(1.0 + gap_s)), N_GAP_BUCKETS - 3)).astype(np.int64)
    hour = (ts // 3600) % 24 + 1
    dow = ((ts // DAY) + 3) % 7 + 1  # 1970-01-01 was a Thursday; Monday = 1
    amount = (events["amount"].to_numpy(dtype=float, na_value=np.nan)[order] if "amount" in events
              else np.full(len(ts), np.nan))
    known = np.isfinite(amount)
    amount_bucket = np.ones(len(ts), dtype=np.int64)
    amount_bucket[known] = 2 + np.clip(np.floor(2 * np.log2(1.0 + np.maximum(amount[known], 0))), 0,
                                       N_AMOUNT_BUCKETS - 3).astype(np.int64)

    is_buy = (beh == BEHAVIORS.index("buy")).astype(np.int64)
    is_cart = (beh == BEHAVIORS.index("cart")).astype(np.int64)
    buy_day = np.where(is_buy == 1, ts // DAY, -1)
    # A new buy day: a buy whose day differs from the user's previous buy day.
    prev_buy_day = _ffill_by_user(np.where(is_buy == 1, buy_day, -1), first, shift=True)
    new_buy_day = ((is_buy == 1) & (buy_day != prev_buy_day)).astype(np.int64)
    buy_amount = np.where((is_buy == 1) & known, amount, 0.0)
    item_raw, item_names = pd.factorize(events["item_id"].astype("string"))
    cat_raw, cat_names = (pd.factorize(events["category_id"].astype("string")) if "category_id" in events
                          else (np.full(len(ts), -1), np.array([], dtype=object)))
    return EventArrays(
        user_ids=np.asarray(uniq, dtype=object), offsets=offsets, ts=ts, behavior=beh, item=item,
        category=np.asarray(cat, dtype=np.int64), gap=gap, hour=hour, dow=dow, amount_bucket=amount_bucket,
        amount=amount, cum_buys=_group_cumsum(is_buy, starts, counts),
        cum_carts=_group_cumsum(is_cart, starts, counts), cum_amount=_group_cumsum(buy_amount, starts, counts),
        cum_buy_days=_group_cumsum(new_buy_day, starts, counts),
        last_buy_ts=_ffill_by_user(np.where(is_buy == 1, ts, -1), first, shift=False),
        first_buy_ts=_first_by_user(np.where(is_buy == 1, ts, -1), starts, counts),
        item_raw=np.asarray(item_raw, dtype=np.int64)[order], item_names=np.asarray(item_names, dtype=object),
        category_raw=np.asarray(cat_raw, dtype=np.int64)[order], category_names=np.asarray(cat_names, dtype=object),
    )


def _ffill_by_user(values: np.ndarray, first: np.ndarray, shift: bool) -> np.ndarray:
    """Forward-fill non-negative values within each user; `shift` = value strictly before each row."""
    idx = np.where(values >= 0, np.arange(len(values)), -1)
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(values)), 0))
    last = np.maximum.accumulate(idx)
    if shift:
        last = np.concatenate([[-1], last[:-1]])
    ok = last >= group_start
    return np.where(ok, values[np.maximum(last, 0)], -1)


def _first_by_user(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Running "first non-negative value so far" within each user (-1 before it exists)."""
    n = len(values)
    user_of = np.repeat(np.arange(len(starts)), counts)
    idx = np.where(values >= 0, np.arange(n), n)
    first_idx = np.full(len(starts), n, dtype=np.int64)
    np.minimum.at(first_idx, user_of, idx)
    fi = first_idx[user_of]
    return np.where(np.arange(n) >= fi, values[np.minimum(fi, n - 1)] if n else values, -1)


@dataclass
class Examples:
    """(user row, end, cutoff) triples with their features and (for training) labels."""

    user_rows: np.ndarray  # (n,) rows into EventArrays
    ends: np.ndarray  # (n,) global index one past the last event at or before the cutoff
    cutoffs: np.ndarray  # (n,) int64 seconds
    features: np.ndarray  # (n, F) float32, raw (standardized inside the model)
    buy: np.ndarray | None = None  # (n, H) 0/1
    cart: np.ndarray | None = None
    mask: np.ndarray | None = None  # (n, H) 1 where the window (c, c+H] lies inside the known past

    def __len__(self) -> int:
        return len(self.user_rows)

    def subset(self, idx: np.ndarray) -> "Examples":
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return Examples(self.user_rows[idx], self.ends[idx], self.cutoffs[idx], self.features[idx],
                        pick(self.buy), pick(self.cart), pick(self.mask))


def examples_at(arrays: EventArrays, cutoff_s: int, user_rows: np.ndarray | None = None) -> Examples:
    """One example per user with at least one event at or before `cutoff_s` (the population P(c))."""
    rows = np.arange(arrays.n_users) if user_rows is None else np.asarray(user_rows, dtype=np.int64)
    ends = _ends_at(arrays, rows, np.full(len(rows), cutoff_s, dtype=np.int64))
    keep = ends > arrays.offsets[rows]
    rows, ends = rows[keep], ends[keep]
    cut = np.full(len(rows), cutoff_s, dtype=np.int64)
    return Examples(rows, ends, cut, rfm_features(arrays, rows, ends, cut))


def _ends_at(arrays: EventArrays, rows: np.ndarray, cutoffs_s: np.ndarray) -> np.ndarray:
    """Global index one past each user's last event with ts <= cutoff (vectorized searchsorted)."""
    # Key = (user, ts) packed so one global searchsorted answers every (user, cutoff) pair.
    span = int(arrays.ts.max() - min(arrays.ts.min(), cutoffs_s.min()) + 2) if len(arrays.ts) else 2
    base = min(int(arrays.ts.min()), int(cutoffs_s.min())) - 1 if len(arrays.ts) else 0
    user_of = np.repeat(np.arange(arrays.n_users), np.diff(arrays.offsets))
    keys = user_of * span + (arrays.ts - base)
    q = rows * span + np.clip(cutoffs_s - base, 0, span - 1)
    return np.searchsorted(keys, q, side="right").astype(np.int64)


def rfm_features(arrays: EventArrays, rows: np.ndarray, ends: np.ndarray, cutoffs_s: np.ndarray) -> np.ndarray:
    """Recency, frequency, monetary, gap and tenure features as of each cutoff; (n, F) float32."""
    last = ends - 1
    start = arrays.offsets[rows]
    n_events = (ends - start).astype(float)
    n_buys = arrays.cum_buys[last].astype(float)
    buy_days = arrays.cum_buy_days[last].astype(float)
    last_buy = arrays.last_buy_ts[last]
    first_buy = arrays.first_buy_ts[last]
    days = lambda s: np.maximum(s, 0) / DAY  # noqa: E731
    since_event = days(cutoffs_s - arrays.ts[last])
    since_buy = np.where(last_buy >= 0, days(cutoffs_s - last_buy), days(cutoffs_s - arrays.ts[start]) + 365)
    tenure = days(cutoffs_s - arrays.ts[start])
    total = arrays.cum_amount[last]
    mean_amount = np.where(n_buys > 0, total / np.maximum(n_buys, 1), 0.0)
    mean_gap = np.where(buy_days > 1, days(last_buy - first_buy) / np.maximum(buy_days - 1, 1), tenure + 30)
    counts = []
    for window in (7, 30, 90):
        lo = _ends_at(arrays, rows, cutoffs_s - window * DAY)
        counts.append(ends - lo)
        if window >= 30:
            counts.append(arrays.cum_buys[last] - np.where(lo > start, arrays.cum_buys[np.maximum(lo - 1, 0)], 0))
    ev7, ev30, buys30, ev90, buys90 = counts
    feats = np.stack([
        np.log1p(since_event), np.log1p(since_buy), np.log1p(tenure), np.log1p(n_events), np.log1p(n_buys),
        np.log1p(buy_days), np.log1p(np.maximum(total, 0)), np.log1p(np.maximum(mean_amount, 0)),
        np.log1p(mean_gap), np.log1p(since_buy / (mean_gap + 1.0)), np.log1p(ev7), np.log1p(ev30),
        np.log1p(ev90), np.log1p(buys30), np.log1p(buys90), (n_buys == 0).astype(float),
        np.log1p(arrays.cum_carts[last].astype(float)),
    ], axis=1)
    return feats.astype(np.float32)


def training_examples(arrays: EventArrays, label_end_s: int, cutoffs_s: list[int],
                      horizons_days: tuple[int, ...]) -> Examples:
    """Examples at rolling cutoffs with labels from windows inside `(c, label_end]` only.

    A horizon H is labelled at cutoff c only when c + H <= label_end, so no label ever needs an
    event after the training cutoff; the mask says which horizons each example carries.
    """
    parts = [examples_at(arrays, int(c)) for c in cutoffs_s]
    ex = Examples(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                    ("user_rows", "ends", "cutoffs", "features")))
    h_s = horizon_seconds(horizons_days)
    start = arrays.offsets[ex.user_rows]
    buy = np.zeros((len(ex), len(h_s)), dtype=np.float32)
    cart = np.zeros_like(buy)
    mask = np.zeros_like(buy)
    buys_at_c = arrays.cum_buys[ex.ends - 1]
    carts_at_c = arrays.cum_carts[ex.ends - 1]
    for j, h in enumerate(h_s):
        end_h = _ends_at(arrays, ex.user_rows, ex.cutoffs + h)
        has_after = end_h > ex.ends
        last_h = np.maximum(end_h - 1, start)
        buy[:, j] = has_after & (arrays.cum_buys[last_h] > buys_at_c)
        cart[:, j] = has_after & (arrays.cum_carts[last_h] > carts_at_c)
        mask[:, j] = ex.cutoffs + h <= label_end_s
    ex.buy, ex.cart, ex.mask = buy, cart, mask
    return ex


def collate(arrays: EventArrays, ex: Examples, idx: np.ndarray, max_len: int,
            label_end: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Pad a batch of examples to its longest window (<= max_len); left-aligned, causal-safe.

    Position 0 is the oldest event in the window. `next_*` targets give, for each position, the
    user's following event (the first event after the cutoff for the last position) when it exists
    and lies at or before `label_end` (seconds per example; None = no next-event targets).
    """
    ends = ex.ends[idx]
    starts = np.maximum(arrays.offsets[ex.user_rows[idx]], ends - max_len)
    lens = ends - starts
    T = int(lens.max()) if len(lens) else 1
    pos = np.arange(T)[None, :]
    valid = pos < lens[:, None]
    g = np.where(valid, starts[:, None] + pos, 0)  # (B, T) global event index
    batch = {
        "behavior": np.where(valid, arrays.behavior[g] + 1, 0),
        "item": np.where(valid, arrays.item[g], PAD),
        "category": np.where(valid, arrays.category[g], PAD),
        "gap": np.where(valid, arrays.gap[g], 0),
        "hour": np.where(valid, arrays.hour[g], 0),
        "dow": np.where(valid, arrays.dow[g], 0),
        "amount": np.where(valid, arrays.amount_bucket[g], 0),
        "lengths": lens,
        "features": ex.features[idx],
    }
    if ex.buy is not None:
        batch.update(buy=ex.buy[idx], cart=ex.cart[idx], mask=ex.mask[idx])
    if label_end is not None:
        user_end = arrays.offsets[ex.user_rows[idx] + 1]
        nxt = g + 1
        has_next = valid & (nxt < user_end[:, None])
        nxt = np.where(has_next, nxt, 0)
        has_next &= arrays.ts[nxt] <= np.asarray(label_end)[:, None] if np.ndim(label_end) else \
            arrays.ts[nxt] <= label_end
        batch.update(next_item=np.where(has_next, arrays.item[nxt], -100),
                     next_category=np.where(has_next, arrays.category[nxt], -100),
                     next_behavior=np.where(has_next, arrays.behavior[nxt], -100))
    return batch


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of similar length (less padding); shuffled within and across buckets when `rng`."""
    order = np.argsort(lengths + (rng.random(len(lengths)) if rng is not None else 0), kind="stable")
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(chunks)
    return chunks
