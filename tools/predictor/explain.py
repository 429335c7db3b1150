"""Why the predictor scored a user as it did: occlusion over events and features, plus plain facts.

Occlusion (rather than integrated gradients) because the inputs are discrete tokens and the RFM
features are recomputed from the events: removing one event is a real counterfactual history,
and the effect reads directly as "without this event, p_churn would be x lower". Every number
in the result is JSON-able, so the assistant can cite it.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from tools.predictor.data import (DAY, FEATURE_NAMES, PredictorError, cutoff_seconds, examples_at, prepare_events,
                                  to_seconds, validate_events)

# Feature groups occluded together (set to the training mean): names as the assistant says them.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "recency": ("log_days_since_last_event", "log_days_since_last_buy", "recency_over_gap"),
    "frequency": ("log_n_events", "log_n_buys", "log_n_buy_days", "never_bought", "log_n_carts"),
    "recent_activity": ("log_events_7d", "log_events_30d", "log_events_90d", "log_buys_30d", "log_buys_90d"),
    "monetary": ("log_total_amount", "log_mean_amount"),
    "purchase_gap": ("log_mean_buy_gap_days",),
    "tenure": ("log_tenure_days",),
}


# An effect smaller than this (one point of churn probability) is noise to a reader: left out.
MIN_EFFECT = 0.01
# Fewer events than this, or no purchase at all, is too little history to name reasons for.
MIN_EVENTS = 5


def _driver(p_churn: float, effect: float, horizon_days: int) -> dict:
    """The parts every driver shares: the effect, its direction and the counterfactual probability."""
    return {"effect": round(effect, 4), "p_churn_without": round(p_churn - effect, 4),
            "direction": "raises churn risk" if effect > 0 else "lowers churn risk",
            "change": f"{horizon_days}-day churn probability {p_churn - effect:.2f} -> {p_churn:.2f}"}


def _too_little_history(n_events: int, n_buys: int) -> str:
    """Why this user's prediction cannot be explained by their own events, or "" when it can."""
    if n_buys == 0:
        return (f"only {n_events} event{'s' if n_events != 1 else ''} and no purchase yet, so the prediction "
                f"mostly reflects how visitors who never bought usually behave")
    if n_events < MIN_EVENTS:
        return (f"only {n_events} events: too little history for the model to single out reasons; "
                f"the prediction mostly reflects similar short histories")
    return ""


def _event_dict(row: pd.Series) -> dict:
    amount = row.get("amount")
    return {"ts": pd.Timestamp(row["ts"]).isoformat(), "behavior": str(row["behavior"]), "item_id": str(row["item_id"]),
            "category_id": None if pd.isna(row.get("category_id")) else str(row.get("category_id")),
            "amount": None if amount is None or pd.isna(amount) else round(float(amount), 2)}


def _facts(history: pd.DataFrame, cutoff_s: int, reviews: pd.DataFrame | None, user_id: str) -> dict:
    ts = to_seconds(history["ts"])
    buys = np.sort(ts[history["behavior"].to_numpy() == "buy"])
    buy_days = np.unique(buys // DAY)
    gaps = np.diff(buy_days)
    since_buy = round((cutoff_s - int(buys[-1])) / DAY, 1) if len(buys) else None
    usual = float(np.median(gaps)) if len(gaps) else None
    weeks = 8
    week_idx = (cutoff_s - ts) // (7 * DAY)
    per_week = [int(((week_idx == w)).sum()) for w in range(weeks - 1, -1, -1)]  # oldest first
    slope = float(np.polyfit(np.arange(weeks), per_week, 1)[0]) if any(per_week) else 0.0
    facts = {
        "events_total": int(len(ts)), "buys_total": int(len(buys)),
        "first_event": pd.Timestamp(int(ts.min()), unit="s").isoformat(),
        "last_event": pd.Timestamp(int(ts.max()), unit="s").isoformat(),
        "days_since_last_event": round((cutoff_s - int(ts.max())) / DAY, 1),
        "days_since_last_buy": since_buy,
        "usual_days_between_buys": usual,
        "overdue_ratio": round(since_buy / usual, 2) if since_buy is not None and usual else None,
        "events_per_week_last_8": per_week,
        "weekly_trend": round(slope, 3),
        "trend": "rising" if slope > 0.25 else "falling" if slope < -0.25 else "flat",
        "last_review": None,
    }
    if reviews is not None and len(reviews):
        mine = reviews[(reviews["user_id"].astype(str) == user_id)]
        mine = mine[to_seconds(mine["ts"]) <= cutoff_s] if len(mine) else mine
        if len(mine):
            last = mine.sort_values("ts").iloc[-1]
            rating = last.get("rating")
            facts["last_review"] = {"ts": pd.Timestamp(last["ts"]).isoformat(), "item_id": str(last["item_id"]),
                                    "rating": None if rating is None or pd.isna(rating) else int(rating)}
    return facts


def explain_user(predictor, events: pd.DataFrame, user_id: str, cutoff: datetime, horizon_days: int,
                 reviews: pd.DataFrame | None = None, max_events: int = 20, top: int = 5,
                 min_effect: float = MIN_EFFECT) -> dict:
    """Which events and features moved this user's p_churn, and the plain facts behind it.

    Args:
        predictor: a loaded `Predictor`.
        events: canonical events (only `ts <= cutoff` is read).
        user_id: the user to explain.
        cutoff: "now".
        horizon_days: one of `predictor.horizons_days`.
        reviews: optional canonical reviews, for the last review's rating.
        max_events: how many of the most recent events to occlude one by one.
        top: how many event drivers to return (largest absolute effect first).
        min_effect: drivers whose absolute effect is below this are left out (noise to a reader).

    Returns:
        {"user_id", "cutoff", "horizon_days", "p_churn", "p_buy", "p_cart", "model_version",
         "drivers": [{"type": "event"|"feature", "event"|"feature": ..., "effect": float, "direction",
                      "p_churn_without": float, "change": "7-day churn probability 0.42 -> 0.61"}],
         "facts": {...}, "history": {"events_used", "events_total", "truncated", "note", "too_little"},
         "drivers_left_out": str}
        where effect = p_churn with the input minus p_churn without it (positive raises churn risk),
        p_churn_without = p_churn - effect (the event removed, or the feature set to a typical
        user's). Drivers under `min_effect` are dropped; a user with no purchase or under
        MIN_EVENTS events gets no drivers and `history.too_little` says why.
    """
    user_id = str(user_id)
    if horizon_days not in predictor.horizons_days:
        raise PredictorError(f"horizon_days={horizon_days} is not one this model predicts; choose one of "
                             f"{list(predictor.horizons_days)}")
    j = predictor.horizons_days.index(horizon_days)
    arrays, ex, info = predictor.prepare(events, cutoff, users=[user_id])
    cutoff_s = cutoff_seconds(cutoff)
    base = predictor.predict_raw(arrays, ex, top_k=0)
    p_churn = float(1 - base["p_buy"][0, j])

    events = validate_events(events)
    history = events[(events["user_id"].astype(str) == user_id) & (to_seconds(events["ts"]) <= cutoff_s)]
    history = history.iloc[np.argsort(to_seconds(history["ts"]), kind="stable")].reset_index(drop=True)
    n = len(history)
    drivers: list[dict] = []
    k = min(max_events, n - 1)  # a user with one event has nothing to remove while staying a user
    if k > 0:
        # One frame holds every counterfactual history: copy i lacks the i-th most recent event.
        variants = []
        for i in range(k):
            drop = n - 1 - i
            variants.append(history.drop(index=drop).assign(user_id=f"{user_id}\x00{i:04d}"))
        var_arrays = prepare_events(pd.concat(variants, ignore_index=True), predictor.vocab)
        var_ex = examples_at(var_arrays, cutoff_s)
        raw = predictor.predict_raw(var_arrays, var_ex, top_k=0)
        order = np.argsort(var_arrays.user_ids[var_ex.user_rows])  # ids sort as 0000, 0001, ...
        p_without = 1 - raw["p_buy"][order, j]
        for i in range(k):
            effect = p_churn - float(p_without[i])
            drivers.append({"type": "event", "event": _event_dict(history.iloc[n - 1 - i]),
                            "events_ago": i, **_driver(p_churn, effect, horizon_days)})
        drivers.sort(key=lambda d: -abs(d["effect"]))
        drivers = [d for d in drivers if abs(d["effect"]) >= min_effect][:top]

    mean = np.asarray(predictor.config["feature_mean"], dtype=np.float32)
    feature_drivers = []
    for group, names in FEATURE_GROUPS.items():
        cols = [FEATURE_NAMES.index(nm) for nm in names]
        neutral = ex.subset(np.arange(1))
        neutral.features = neutral.features.copy()
        neutral.features[:, cols] = mean[cols]
        p_neutral = float(1 - predictor.predict_raw(arrays, neutral, top_k=0)["p_buy"][0, j])
        effect = p_churn - p_neutral
        feature_drivers.append({"type": "feature", "feature": group, **_driver(p_churn, effect, horizon_days),
                                "compared_to": "a typical training user"})
    feature_drivers.sort(key=lambda d: -abs(d["effect"]))
    feature_drivers = [d for d in feature_drivers if abs(d["effect"]) >= min_effect]
    n_buys = int((history["behavior"] == "buy").sum())
    too_little = _too_little_history(n, n_buys)
    if too_little:  # effects on a history this short are not reasons a person can act on
        feature_drivers, drivers = [], []
    return {
        "user_id": user_id, "cutoff": str(pd.Timestamp(cutoff)), "horizon_days": int(horizon_days),
        "p_churn": round(p_churn, 4), "p_buy": round(float(base["p_buy"][0, j]), 4),
        "p_cart": round(float(base["p_cart"][0, j]), 4), "model_version": predictor.version,
        "drivers": feature_drivers[:3] + drivers,
        "facts": _facts(history, cutoff_s, reviews, user_id),
        "history": {"events_used": int(min(n, predictor.max_len)), "events_total": int(n),
                    "truncated": bool(n > predictor.max_len),
                    "note": (f"the model reads the most recent {predictor.max_len} of {n} events"
                             if n > predictor.max_len else ""),
                    "too_little": too_little},
        "drivers_left_out": ("none of this user's events or features moves the churn probability by "
                             f"{min_effect:.2f} or more" if not too_little and not feature_drivers and not drivers
                             else ""),
    }
