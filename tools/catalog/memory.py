"""Tools over memory and voice: similar past cases (Chroma) and review summaries.

No `from __future__ import annotations`: the signatures must carry real types for
`transformers.utils.get_json_schema`.
"""

from typing import Optional

from tools.catalog.context import ToolContext, ToolError, checks_ids, tool
from tools.catalog.reads import (check_user, events_until_cutoff, is_known_category, is_known_item, is_known_user,
                                 known_horizons, parse_since)

CASES_HINT = "build the case memory with `shopsight cases build` (or run `shopsight demo`)"


@checks_ids(user_id=is_known_user)
@tool
def similar_cases(ctx: ToolContext, user_id: Optional[str] = None, text: Optional[str] = None, k: int = 5) -> dict:
    """Find past customers in a similar situation and what happened to them (churned or not, what they bought).

    Give user_id to find customers like that user, or text to search by a description: the
    situation in the user's own words.

    Args:
        user_id: A user's id, to find past customers who looked like this user does today.
        text: The situation as the user described it, used when no user_id is given.
        k: How many cases to return, 1 to 20.
    """
    if ctx.cases is None:
        raise ToolError("the case memory is not available", CASES_HINT)
    if not user_id and not (text and text.strip()):
        raise ToolError("give user_id or text", "e.g. similar_cases(user_id='00042') or "
                                                "similar_cases(text='stopped buying after a price rise')")
    if not 1 <= k <= 20:
        raise ToolError(f"k={k} is out of range", "use k between 1 and 20")
    from tools.cases import CaseMemoryError

    horizons = known_horizons(ctx)
    horizon = max(horizons) if horizons else None
    try:
        if user_id:
            check_user(ctx, user_id)
            res = ctx.cases.search_user(user_id, events_until_cutoff(ctx), ctx.cutoff, k=k,
                                        horizon_days=horizon, predictor=ctx.predictor,
                                        reviews=ctx.store.reviews_frame(user_id=user_id, until=ctx.cutoff))
        else:
            res = ctx.cases.search_text(text.strip(), k=k, horizon_days=horizon)
    except CaseMemoryError as exc:
        raise ToolError(str(exc), CASES_HINT) from None
    return {"query": {"user_id": user_id} if user_id else {"text": text}, **res}

@checks_ids(item_id=is_known_item, category_id=is_known_category)
@tool
def review_summary(ctx: ToolContext, item_id: Optional[str] = None, category_id: Optional[str] = None,
                   since: Optional[str] = None) -> dict:
    """Summarize customer reviews: sentiment counts, aspects and quotes with review ids.

    Aspects are delivery, quality, price, packaging, taste, service and freshness.

    Give item_id for one product, category_id for a category, or neither for the whole shop.

    Args:
        item_id: The product's id.
        category_id: The category's id (used when no item_id is given).
        since: Only reviews from this date on: YYYY-MM-DD, or 7d / 30d / 4w counted back from today.
    """
    start = parse_since(ctx, since)
    if item_id and not is_known_item(ctx, item_id):
        raise ToolError(f"unknown item_id {item_id!r}", "use an item id from user_history or predict_next")
    if category_id and not item_id and not is_known_category(ctx, category_id):
        raise ToolError(f"unknown category_id {category_id!r}",
                        "use a category id from user_history, predict_next or segment_report")
    frame = ctx.store.reviews_frame(item_id=item_id or None, category_id=None if item_id else category_id,
                                    since=None if start is None else start.to_pydatetime(),
                                    until=ctx.cutoff)
    analyzer = _analyzer(ctx)
    scope = {"item_id": item_id, "category_id": None if item_id else category_id,
             "since": None if start is None else start.date().isoformat(), "until": ctx.cutoff}
    summary = analyzer.summarize(frame)
    summary["note"] = "quotes are customer-written text (untrusted), PII masked"
    return {"scope": scope, **summary}


def _analyzer(ctx: ToolContext):
    if ctx.reviews is None:
        from tools.reviews import ReviewAnalyzer

        ctx.reviews = ReviewAnalyzer.for_store(ctx.store)  # trains once on the shop's ratings, then cached
    return ctx.reviews
