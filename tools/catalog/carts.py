"""Tools about carts: what customers added to cart and have not bought yet.

No `from __future__ import annotations` here: the tool signatures must carry real types,
because `transformers.utils.get_json_schema` reads them to build the schema the model sees.
"""

from typing import Optional

import pandas as pd

from tools.catalog.context import ToolContext, ToolError, checks_ids, tool
from tools.catalog.reads import check_user, events_until_cutoff, is_known_user, known_horizons, rounded, scores

MAX_TOP_K = 100
MAX_DAYS = 365
NO_CARTS_NOTE = ("no carts in the data: this shop's events record no add-to-cart (an orders-only export such as "
                 "CDNOW or Instacart), so there are no open carts to list")


def _unit_prices(ctx: ToolContext, events: pd.DataFrame) -> pd.Series:
    """Price of one unit by item_id: the catalog's price, else the median unit price the item sold at."""
    items = ctx.store.items_frame()
    listed = items.dropna(subset=["price"]).set_index("item_id")["price"].astype(float) \
        if len(items) and "price" in items else pd.Series(dtype=float)
    buys = events[(events["behavior"] == "buy") & events["amount"].notna() & (events["amount"] > 0)]
    sold = (buys["amount"] / buys["quantity"].clip(lower=1)).groupby(buys["item_id"]).median()
    return listed.combine_first(sold)


def open_cart_lines(ctx: ToolContext, days: int) -> tuple[pd.DataFrame, int]:
    """(open cart lines, user x item pairs carted in the window), cached per context and window.

    A line is a (user_id, item_id) the user added to cart in the `days` before the cutoff and has not
    bought since the last add (a buy of the same item at or after it closes the line). Columns:
    user_id, item_id, category_id, carted_at, quantity, value (None without a price).
    """
    key = ("open_carts", days)
    if key not in ctx.cache:
        events = events_until_cutoff(ctx)
        since = pd.Timestamp(ctx.cutoff) - pd.Timedelta(days=days)
        carts = events[(events["behavior"] == "cart") & (events["ts"] > since)]
        last = carts.sort_values("ts", kind="stable").groupby(["user_id", "item_id"], sort=False).agg(
            carted_at=("ts", "last"), quantity=("quantity", "last"), category_id=("category_id", "last"))
        buys = events[events["behavior"] == "buy"].groupby(["user_id", "item_id"])["ts"].max()
        bought = buys.reindex(last.index)
        lines = last[~(bought >= last["carted_at"]).to_numpy()].reset_index()
        lines["quantity"] = lines["quantity"].fillna(1).clip(lower=1).astype(int)
        lines["value"] = lines["item_id"].map(_unit_prices(ctx, events)) * lines["quantity"]
        ctx.cache[key] = (lines, len(last))
    return ctx.cache[key]


def _buy_chances(ctx: ToolContext) -> tuple[pd.DataFrame | None, dict]:
    """(p_buy / p_cart by user_id at the shortest horizon, where from), or (None, why not) without scores."""
    horizons = known_horizons(ctx)
    if not horizons:
        return None, {"scores_note": "no purchase predictions are stored: p_buy and p_cart are left out"}
    try:
        frame, source = scores(ctx, horizons[0])
    except ToolError as exc:
        return None, {"scores_note": f"no purchase predictions as of the cutoff ({exc})"}
    cols = [c for c in ("p_buy", "p_cart") if c in frame]
    return frame[cols], {"scores_horizon_days": horizons[0], **source}


@checks_ids(user_id=is_known_user)
@tool
def open_carts(ctx: ToolContext, window_days: int = 7, top_k: int = 10, user_id: Optional[str] = None) -> dict:
    """List what is sitting in carts: items added to cart recently and not bought since (abandoned carts).

    An item is in an open cart when a customer added it to cart within the last `window_days` and has not
    bought it since. Lists the customers with the most open cart value (or the most open items where
    the shop has no prices), each with their predicted chance to buy, and the items most often left in
    carts, plus totals. On a shop whose data records no carts (orders only) it says so.

    Args:
        window_days: How many days back to look at add-to-cart events; 7 means "this week", 30 "this month".
        top_k: How many customers and items to list, at most 100.
        user_id: Only this customer's open cart (a string id); omit for all customers.
    """
    if not 1 <= window_days <= MAX_DAYS:
        raise ToolError(f"window_days={window_days} is out of range",
                        f"use window_days between 1 and {MAX_DAYS}; 7 means this week")
    if not 1 <= top_k <= MAX_TOP_K:
        raise ToolError(f"top_k={top_k} is out of range", f"use top_k between 1 and {MAX_TOP_K}")
    if user_id is not None:
        check_user(ctx, user_id)
    head = {"window_days": window_days, "as_of": ctx.cutoff, "user_id": user_id}
    if not (events_until_cutoff(ctx)["behavior"] == "cart").any():
        return {**head, "carts_recorded": False, "note": NO_CARTS_NOTE, "users": [], "items": [],
                "totals": {"customers_with_open_carts": 0, "open_items": 0}}
    lines, carted = open_cart_lines(ctx, window_days)
    if user_id is not None:
        lines = lines[lines["user_id"] == user_id]
    priced = bool(lines["value"].notna().any())
    per_user = lines.groupby("user_id").agg(open_items=("item_id", "size"), units=("quantity", "sum"),
                                            open_value=("value", lambda v: v.sum(min_count=1)),
                                            last_added=("carted_at", "max"))
    rank = ["open_value", "open_items", "last_added"] if priced else ["open_items", "last_added"]
    per_user = per_user.sort_values(rank, ascending=False, kind="stable")
    chances, source = _buy_chances(ctx)
    cutoff = pd.Timestamp(ctx.cutoff)
    users = []
    for uid, row in per_user.head(top_k).iterrows():
        mine = lines[lines["user_id"] == uid].sort_values("carted_at", ascending=False)
        entry = {"rank": len(users) + 1, "user_id": str(uid), "open_items": int(row.open_items),
                 "units": int(row.units), "open_value": rounded(row.open_value, 2) if priced else None,
                 "last_added_days_ago": int((cutoff - row.last_added) / pd.Timedelta(days=1)),
                 "items": [str(i) for i in mine["item_id"].head(5)]}
        if chances is not None:
            entry["p_buy"] = rounded(chances["p_buy"].get(uid)) if "p_buy" in chances else None
            entry["p_cart"] = rounded(chances["p_cart"].get(uid)) if "p_cart" in chances else None
        users.append(entry)
    per_item = lines.groupby("item_id").agg(customers=("user_id", "nunique"), units=("quantity", "sum"),
                                            open_value=("value", lambda v: v.sum(min_count=1)),
                                            category_id=("category_id", "last"))
    per_item = per_item.sort_values(["customers", "units"], ascending=False, kind="stable")
    items = [{"rank": i + 1, "item_id": str(iid), "category_id": None if pd.isna(r.category_id) else str(r.category_id),
              "customers": int(r.customers), "units": int(r.units),
              "open_value": rounded(r.open_value, 2) if priced else None}
             for i, (iid, r) in enumerate(per_item.head(top_k).iterrows())]
    window = f"the last {window_days} days"
    totals = {"customers_with_open_carts": int(per_user.shape[0]), "open_items": int(len(lines)),
              "units": int(lines["quantity"].sum()), "open_value": rounded(lines["value"].sum(), 2) if priced else None}
    if user_id is None:
        totals.update(carted_items=int(carted), bought_since=int(carted - len(lines)),
                      share_left_open=rounded(len(lines) / carted) if carted else None)
    result = {**head, "carts_recorded": True, "totals": totals, "users": users, "items": items,
              "definition": f"items added to cart in {window} and not bought by that customer since",
              **source}
    if priced:
        result["currency"] = ctx.currency
    elif len(lines):
        result["value_note"] = "no prices in the data: customers are ranked by open items, not money"
    if user_id is not None and not len(lines):
        result["note"] = f"user {user_id} has nothing left in the cart from {window}"
    return result
