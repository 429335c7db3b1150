"""Reads shared by the tools: events as of the cutoff, churn scores, the active population, spend.

Scores come from the store's `scores` table (written by `shopsight predictor score`) when it
has rows for the horizon at or before the cutoff, else from `ctx.predictor` directly (cached
per context). Without either, tools return an error saying which command trains one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from tools.case_snapshots import snapshot_features
from tools.catalog.context import ToolContext, ToolError
from tools.spans import span_words, too_short_for_churn

ACTIVE_DAYS = 90  # the population the tools rank: users with a purchase in these days before the cutoff
SPEND_WINDOW_DAYS = 180  # expected spend = run rate over this window (or the tenure, if shorter)
MIN_RUN_RATE_DAYS = 30  # a 3-day-old customer's spend is not extrapolated from 3 days
TRAIN_HINT = ("train the predictor with `shopsight predictor train`, then write scores with "
              "`shopsight predictor score` (or run `shopsight demo`)")


def rounded(x, nd: int = 3) -> float | None:
    """A number as the tools report it: rounded, or None where it is missing (JSON has no NaN)."""
    return None if x is None or pd.isna(x) else round(float(x), nd)


NO_EVENTS_HINT = ("this shop has no events (orders, visits) on or before {cutoff:%Y-%m-%d}, only reviews: churn and "
                  "purchase predictions learn from events, so there is no predictor to train; import an order or event "
                  "file for them (docs/importing.md). Reviews answer without it (review_summary)")


def train_hint(ctx: ToolContext) -> str:
    """What to do without a churn model: train one, unless the shop has no events or too short a history."""
    if "span_note" not in ctx.cache:
        # A reviews-only shop: its time span is the reviews' (store.time_span), long enough, and training
        # would still have nothing to learn from (Round 9: "train the predictor" on a reviews-only home).
        ctx.cache["span_note"] = NO_EVENTS_HINT.format(cutoff=ctx.cutoff) if events_until_cutoff(ctx).empty \
            else too_short_for_churn(*ctx.store.time_span())
    return ctx.cache["span_note"] or TRAIN_HINT


def events_until_cutoff(ctx: ToolContext) -> pd.DataFrame:
    """All events with ts <= cutoff (cached)."""
    if "events" not in ctx.cache:
        ctx.cache["events"] = ctx.store.events_frame(until=ctx.cutoff)
    return ctx.cache["events"]


def records_browsing(ctx: ToolContext) -> bool:
    """Whether the shop's data holds anything but purchases (visits, carts, favourites): an orders-only
    export (CDNOW, most order tables) cannot say a customer stopped visiting."""
    if "records_browsing" not in ctx.cache:
        ctx.cache["records_browsing"] = bool((events_until_cutoff(ctx)["behavior"] != "buy").any())
    return ctx.cache["records_browsing"]


def records_prices(ctx: ToolContext) -> bool:
    """Whether any purchase has an amount: without prices (Taobao, most order-line exports) spend is
    unknown, not zero, and the tools say None instead of "$0.00"."""
    if "records_prices" not in ctx.cache:
        from tools.predictor.clv import has_prices  # the rule the value model uses for its unit

        ctx.cache["records_prices"] = has_prices(events_until_cutoff(ctx))
    return ctx.cache["records_prices"]


def known_horizons(ctx: ToolContext) -> list[int]:
    """Horizons the predictor or the scores table can answer for."""
    if ctx.predictor is not None:
        return sorted(int(h) for h in ctx.predictor.horizons_days)
    if "horizons" not in ctx.cache:
        frame = ctx.store.scores_frame()
        ctx.cache["horizons"] = sorted(int(h) for h in frame["horizon_days"].unique()) if len(frame) else []
    return ctx.cache["horizons"]


def check_horizon(ctx: ToolContext, horizon_days: int) -> int:
    """The horizon if the model knows it, else a ToolError listing the ones it does."""
    horizons = known_horizons(ctx)
    if not horizons:
        raise ToolError("no churn model is available: the predictor is not trained and no scores are stored",
                        train_hint(ctx))
    if horizon_days not in horizons:
        raise ToolError(f"horizon_days={horizon_days} is out of range: the predictor answers for {horizons} days",
                        f"use horizon_days={min(horizons, key=lambda h: abs(h - horizon_days))} "
                        f"(choices: {horizons}; 'this week' = 7)")
    never_seen = never_labelled(ctx)
    if horizon_days in never_seen:
        raise ToolError(f"the predictor checkpoint {ctx.predictor.version} was trained on events spanning "
                        f"{never_seen[horizon_days]}, shorter than {horizon_days} days: its {horizon_days}-day "
                        "probabilities (stored or computed) are a made-up prior of about 50 %, not predictions",
                        f"{train_hint(ctx)}; `shopsight predictor scores --clear` removes the stored ones")
    return horizon_days


def never_labelled(ctx: ToolContext) -> dict[int, str]:
    """{horizon: the span it was trained on} for the loaded checkpoint's horizons longer than its training span.

    Such a checkpoint (trained before `predictor train` refused it; Round 8's 2-hour Taobao home) scores every
    user near 0.5 and `predictor score` refuses it, but its stored scores were served as predictions. Read
    from its config.yaml (no weights, no torch), once per context.
    """
    if "never_labelled" not in ctx.cache:
        ctx.cache["never_labelled"] = {}
        folder = getattr(ctx.predictor, "folder", None) if ctx.predictor is not None else None
        config_path = Path(folder) / "config.yaml" if folder is not None else None
        first = ctx.store.time_span()[0] if config_path is not None and config_path.is_file() else None
        if first is not None:
            try:
                config = yaml.safe_load(config_path.read_text()) or {}
                span = (pd.Timestamp(config["label_end"]) - pd.Timestamp(first)).total_seconds()
                horizons = [int(h) for h in config["train"]["horizons_days"]]
            except (yaml.YAMLError, OSError, KeyError, TypeError, ValueError):  # older checkpoints: nothing to check
                horizons, span = [], 0.0
            if span < 0:  # trained on data that ends before this store's starts: another shop, refused elsewhere
                horizons = []
            ctx.cache["never_labelled"] = {h: span_words(span) for h in horizons if h * 86_400 > span}
    return ctx.cache["never_labelled"]


def scores(ctx: ToolContext, horizon_days: int) -> tuple[pd.DataFrame, dict]:
    """(scores for the horizon, provenance) with columns user_id, p_churn, p_buy, top_items, top_categories."""
    check_horizon(ctx, horizon_days)
    key = ("scores", horizon_days)
    if key in ctx.cache:
        return ctx.cache[key]
    current = str(ctx.predictor.version) if ctx.predictor is not None else None
    frame = served_scores(ctx.store, ctx.cutoff, horizon_days, prefer_version=current)
    if len(frame):
        version = str(frame["model_version"].iloc[0])
        source = {"source": "scores table", "scored_as_of": pd.to_datetime(frame["cutoff"]).max().isoformat(),
                  "model_version": version}
        note = scores_version_note(version, current)
        if note:
            source["scores_checkpoint_note"] = note
    elif ctx.predictor is not None:
        all_scores = ctx.predictor.score_users(events_until_cutoff(ctx), ctx.cutoff)
        frame = all_scores[all_scores["horizon_days"] == horizon_days]
        source = {"source": "predictor", "scored_as_of": pd.Timestamp(ctx.cutoff).isoformat(),
                  "model_version": str(ctx.predictor.version)}
    else:
        raise ToolError(f"no scores for horizon {horizon_days} days at or before {ctx.cutoff:%Y-%m-%d}",
                        train_hint(ctx))
    frame = frame.drop_duplicates("user_id", keep="last").set_index("user_id")
    ctx.cache[key] = (frame, source)
    return frame, source


def served_scores(store, cutoff, horizon_days: int | None = None, prefer_version: str | None = None) -> pd.DataFrame:
    """The stored rows the tools serve: the latest cutoff at or before `cutoff`, written by one checkpoint.

    Rows of several checkpoints at that cutoff (a store scored by a replaced checkpoint, before
    `shopsight predictor score` deleted such rows) are never mixed: the current checkpoint's
    (`prefer_version`) are served where it wrote any, else those of the checkpoint with the most rows.
    """
    frame = store.scores_frame(horizon_days=horizon_days)
    if len(frame):
        frame = frame[pd.to_datetime(frame["cutoff"]) <= pd.Timestamp(cutoff)]
    if not len(frame):
        return frame
    frame = frame[pd.to_datetime(frame["cutoff"]) == pd.to_datetime(frame["cutoff"]).max()]
    versions = frame["model_version"].astype(str)
    if versions.nunique() > 1:
        frame = frame[versions == served_version(versions.value_counts(), prefer_version)]
    return frame


def served_version(rows_by_version: pd.Series, prefer_version: str | None = None) -> str:
    """Which checkpoint's rows of one cutoff are served (`rows_by_version`: row count per model_version):
    the current checkpoint's where it wrote any, else the one with the most rows (ties: the first name)."""
    counts = pd.Series(rows_by_version.to_numpy(), index=rows_by_version.index.astype(str))
    if prefer_version is not None and prefer_version in counts.index:
        return prefer_version
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked[0][0]


def scores_version_note(served_version: str, current_version: str | None) -> str | None:
    """Why stored scores may not be the current model's: another checkpoint wrote them, or none is loaded."""
    if current_version is not None and served_version == current_version:
        return None
    if current_version is None:
        return (f"these stored scores were written by checkpoint {served_version}, and no predictor checkpoint is "
                "loaded now (removed, or it cannot be loaded): `shopsight predictor scores --clear` stops serving "
                "them; `shopsight predictor train` then `shopsight predictor score` replaces them")
    return (f"these stored scores were written by checkpoint {served_version}, not the current one "
            f"({current_version}): run `shopsight predictor score` to rewrite them with it, or `shopsight predictor "
            "scores --clear` to stop serving them")


def user_facts(ctx: ToolContext) -> pd.DataFrame:
    """snapshot_features of every user as of the cutoff, plus expected daily spend (cached)."""
    if "facts" not in ctx.cache:
        events = events_until_cutoff(ctx)
        facts = snapshot_features(events, ctx.cutoff)
        c = pd.Timestamp(ctx.cutoff)
        recent = events[(events["behavior"] == "buy") & (events["ts"] > c - pd.Timedelta(days=SPEND_WINDOW_DAYS))]
        spend = recent["amount"].fillna(0.0).groupby(recent["user_id"]).sum().reindex(facts.index).fillna(0.0)
        days = facts["tenure_days"].clip(lower=MIN_RUN_RATE_DAYS, upper=SPEND_WINDOW_DAYS)
        facts["daily_spend"] = spend / days
        last_buy = facts["days_since_last_buy"]
        facts["active"] = (last_buy >= 0) & (last_buy < ACTIVE_DAYS)
        facts["usual_gap_days"] = _usual_gap_days(events, facts)
        ctx.cache["facts"] = facts
    return ctx.cache["facts"]


def reviews_by_cutoff(ctx: ToolContext) -> pd.DataFrame:
    """All reviews with ts <= cutoff (cached)."""
    if "reviews" not in ctx.cache:
        ctx.cache["reviews"] = ctx.store.reviews_frame(until=ctx.cutoff)
    return ctx.cache["reviews"]


def is_known_user(ctx: ToolContext, user_id: str) -> bool:
    """Whether the user has events or wrote a review by the cutoff (a read-only lookup; no error raised).

    A reviewer is a user: a reviews-only shop has no events, and its reviewers were answered "no user".
    """
    return user_id in user_facts(ctx).index or bool((reviews_by_cutoff(ctx)["user_id"].astype(str) == user_id).any())


def check_user(ctx: ToolContext, user_id: str) -> str:
    """The id if the user has events by the cutoff, else a ToolError the model can act on: for a user
    who only wrote reviews, which reviews (ids, items, stars; their text goes through review_summary,
    which quotes it as untrusted) and how to read them."""
    if user_id in user_facts(ctx).index:
        return user_id
    written = reviews_by_cutoff(ctx)
    written = written[written["user_id"].astype(str) == user_id]
    if len(written):
        listed = "; ".join(f"{r.review_id} of item {r.item_id}, {r.ts:%Y-%m-%d}"
                           + ("" if pd.isna(r.rating) else f", {int(r.rating)} star{'' if int(r.rating) == 1 else 's'}")
                           for r in written.tail(10).itertuples())
        raise ToolError(f"user {user_id!r} has no events on or before {ctx.cutoff:%Y-%m-%d}: the shop records only "
                        f"their {len(written)} review{'s' if len(written) > 1 else ''} ({listed})",
                        f"read the reviews of that item with review_summary(item_id={str(written['item_id'].iloc[-1])!r})")
    raise ToolError(f"unknown user_id {user_id!r}: no events or reviews on or before {ctx.cutoff:%Y-%m-%d}",
                    "use an id returned by at_risk_users or similar_cases (ids are strings, e.g. '00042')")


def user_segments(ctx: ToolContext) -> pd.Series:
    """users.segment by user_id (empty when the store has no users table rows)."""
    if "segments" not in ctx.cache:
        users = ctx.store.users_frame()
        seg = users.set_index("user_id")["segment"] if len(users) and "segment" in users else pd.Series(dtype=object)
        ctx.cache["segments"] = seg.dropna().astype(str)
    return ctx.cache["segments"]


def segment_names(ctx: ToolContext) -> list[str]:
    """The shop's customer segments, sorted (empty when the users table has none)."""
    if "segment_names" not in ctx.cache:
        ctx.cache["segment_names"] = sorted(user_segments(ctx).unique())
    return ctx.cache["segment_names"]


def _known_id(ctx: ToolContext, column: str, value: str) -> bool:
    """Whether `value` is an id of `column` in the items table (or, for items, in the reviews)."""
    key = ("known", column)
    if key not in ctx.cache:
        items = ctx.store.items_frame()
        ids = set(items[column].dropna().astype(str)) if column in items else set()
        ids |= set(ctx.store.reviews_frame()["item_id"].astype(str)) if column == "item_id" else set()
        ctx.cache[key] = ids
    return str(value) in ctx.cache[key]


def is_known_item(ctx: ToolContext, item_id: str) -> bool:
    """Whether the id names an item of the catalog or of a review (a read-only lookup)."""
    return _known_id(ctx, "item_id", item_id)


def is_known_category(ctx: ToolContext, category_id: str) -> bool:
    """Whether the id names a category of the catalog (a read-only lookup)."""
    return _known_id(ctx, "category_id", category_id)


def is_known_segment(ctx: ToolContext, segment: str) -> bool:
    """Whether the name is one of the shop's customer segments (a read-only lookup)."""
    return segment in segment_names(ctx)


def parse_since(ctx: ToolContext, since: str | None) -> pd.Timestamp | None:
    """`since` as a date: "YYYY-MM-DD", or "30d" / "4w" counted back from the cutoff."""
    if since is None or str(since).strip() == "":
        return None
    text = str(since).strip().lower()
    units = {"d": 1, "w": 7, "m": 30}
    if text[-1:] in units and text[:-1].isdigit():
        return pd.Timestamp(ctx.cutoff) - pd.Timedelta(days=int(text[:-1]) * units[text[-1]])
    try:
        return pd.Timestamp(text).tz_localize(None) if pd.Timestamp(text).tzinfo else pd.Timestamp(text)
    except ValueError:
        raise ToolError(f"since={since!r} is not a date", "use YYYY-MM-DD, or 7d / 30d / 4w back from today") from None


def _usual_gap_days(events: pd.DataFrame, facts: pd.DataFrame) -> pd.Series:
    """Mean days between a user's order days (first to last order); NaN with fewer than 2 orders."""
    buys = events[events["behavior"] == "buy"]
    days = buys["ts"].dt.normalize().groupby(buys["user_id"]).agg(["min", "max"])
    span = ((days["max"] - days["min"]) / pd.Timedelta(days=1)).reindex(facts.index)
    orders = facts["n_orders"].where(facts["n_orders"] >= 2)
    return span / (orders - 1)


VALUE_HORIZON_DAYS = 90  # a customer's value = predicted spend over the next 90 days (what a lapse puts at risk)


def customer_value(ctx: ToolContext) -> tuple[pd.DataFrame, dict]:
    """(tools.predictor.clv.customer_value per user over VALUE_HORIZON_DAYS, fit notes), cached; by user_id.

    Columns: p_alive, expected_orders, spend_per_order, expected_value (money in ctx.currency, or
    expected orders when the shop has no prices: notes["unit"] says which).
    """
    if "value" not in ctx.cache:
        from tools.predictor.clv import customer_value as value_model
        from tools.predictor.value_cache import load_values

        # `predictor score` saves the fit for exactly these events and this code; else fit it here
        saved = load_values(ctx.store, ctx.cutoff, VALUE_HORIZON_DAYS)
        frame, notes = saved or value_model(events_until_cutoff(ctx), ctx.cutoff, VALUE_HORIZON_DAYS)
        ctx.cache["value"] = (frame.set_index("user_id"), notes)
    return ctx.cache["value"]


def lifecycle(ctx: ToolContext, horizon_days: int) -> pd.DataFrame:
    """tools.predictor.lifecycle.lifecycle_frame at the cutoff for this horizon (cached)."""
    key = ("lifecycle", horizon_days)
    if key not in ctx.cache:
        from tools.predictor.lifecycle import lifecycle_frame

        ctx.cache[key] = lifecycle_frame(events_until_cutoff(ctx), ctx.cutoff, horizon_days,
                                         ctx.store.reviews_frame(until=ctx.cutoff))  # bad experiences: lost
    return ctx.cache[key]


def value_terms(ctx: ToolContext) -> dict:
    """What the money fields mean, for a tool result: currency or unit, and the model behind them."""
    _, notes = customer_value(ctx)
    terms = {"value_model": f"{notes['model']}, predicted over the next {VALUE_HORIZON_DAYS} days"}
    if notes["unit"] == "money":
        terms["currency"] = ctx.currency
        if notes.get("excluded_orders"):
            terms["value_note"] = notes["note"]
    else:
        terms.update(value_unit="orders", value_note="no prices in the data: value is in expected orders, not money")
    return terms
