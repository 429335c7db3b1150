"""Where finetune.sft_data reads from: an event store or the demo shop, plus the agent's tools.

Kept apart from the example builders so those stay testable on plain frames and local
functions. Tools run for real (results and grounded answers) only when an event store is
available; otherwise the tool examples stop at the call, which is what tool-call accuracy
measures, and the manifest says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import pandas as pd


@dataclass
class Source:
    """Frames, slot values and tools for building examples."""

    events: pd.DataFrame
    reviews: pd.DataFrame | None
    values: dict[str, list[str]]
    tools: list[Callable]
    run_tool_at: Callable[[datetime], Callable] | None
    explain: Callable | None
    description: str


def slot_values(events: pd.DataFrame, users: pd.DataFrame | None,
                reviews: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """Ids the question slots are filled with: segments, categories, and items for the review questions.

    The items ({item} is only asked about in review questions) are the reviewed ones when the shop
    has reviews. The first 300 bought items were taken: on the 2,000-user demo shop 181 of them have
    no review, so most review questions had nothing to summarize, and a review-only shop got none.
    """
    segments = sorted(users["segment"].dropna().astype(str).unique()) \
        if users is not None and "segment" in users else []
    has_reviews = reviews is not None and not reviews.empty
    items = reviews["item_id"] if has_reviews else events.loc[events["behavior"] == "buy", "item_id"]
    return {"items": sorted(items.astype(str).unique())[:300],
            "categories": sorted(events["category_id"].dropna().astype(str).unique()),
            "segments": segments}


def _open_store(path: str):
    try:
        from tools.data.schema import StoreError
        from tools.data.store import EventStore
    except ImportError as err:
        raise SystemExit(f"--db {path}: the event store module is unavailable ({err}).") from None
    if not Path(path).expanduser().is_file():
        raise SystemExit(f"--db {path}: no such store; create one with `shopsight demo` or `shopsight data import`.")
    try:
        return EventStore(Path(path).expanduser(), read_only=True)
    except StoreError as err:  # e.g. a running `shopsight app` holds it: the message says what to do
        raise SystemExit(f"--db {path}: {err}") from None


def _runner_factory(store, predictor) -> Callable[[datetime], Callable]:
    from tools.catalog import ToolContext, build_tools

    def at(cutoff: datetime) -> Callable:
        tools = {fn.__name__: fn for fn in build_tools(ToolContext(store=store, predictor=predictor, cutoff=cutoff))}
        return lambda name, arguments: tools[name](**arguments)

    return at


def _schema_tools() -> list[Callable]:
    """The agent's tool functions, built over no store: enough for their schemas."""
    from tools.catalog import ToolContext, build_tools

    return build_tools(ToolContext(store=None, cutoff=datetime(2000, 1, 1)))


def load_source(args) -> Source:
    """The data and tools named by `args.db` or `args.demo_users` (see finetune.sft_data.SFTArgs)."""
    if args.db:
        store = _open_store(args.db)
        events, reviews, users = store.events_frame(), store.reviews_frame(), store.users_frame()
        description = f"event store {args.db}"
    else:
        from tools.data.synth import generate_shop

        shop = generate_shop(n_users=args.demo_users, seed=args.seed, progress=False)
        events, reviews, users, store = shop.events, shop.reviews, shop.users, None
        description = f"demo shop, {args.demo_users} users, seed {args.seed} (in memory)"
    predictor = explain = None
    if getattr(args, "predictor", None):
        from tools.predictor.data import PredictorError
        from tools.predictor.score import Predictor

        try:
            predictor = Predictor.load(Path(args.predictor).expanduser())
        except PredictorError as err:  # a wrong folder was a traceback
            raise SystemExit(f"--predictor: {err}") from None
        try:
            from tools.predictor.explain import explain_user

            def explain(user, cutoff, horizon):
                mine = events[(events["user_id"] == user) & (events["ts"] <= pd.Timestamp(cutoff))]
                return explain_user(predictor, mine, user, cutoff, horizon)
        except ImportError:
            explain = None
    runner = _runner_factory(store, predictor) if store is not None else None
    return Source(events=events, reviews=reviews, values=slot_values(events, users, reviews), tools=_schema_tools(),
                  run_tool_at=runner, explain=explain, description=description)


def shop_tools(data_dir: str | Path) -> list[Callable] | None:
    """The agent's tools over the shop an SFT folder was built from, as of its evaluation cutoff.

    Their read-only id checks (`known_values`: is this a user, a segment, a category of the
    shop?) are part of how the agent's router fills a call, so the routed tool-call accuracy
    is measured with them. The shop is the folder's `--db` store, or the same demo shop
    regenerated in memory (seeded: the same ids). None when the folder has no manifest.
    """
    import yaml

    manifest = Path(data_dir) / "manifest.yaml"
    if not manifest.is_file():
        return None
    args = (yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}).get("args") or {}
    from tools.catalog import ToolContext, build_tools

    if args.get("db"):
        store = _open_store(args["db"])
    else:
        from tools.data.store import EventStore
        from tools.data.synth import generate_shop

        shop = generate_shop(n_users=int(args["demo_users"]), seed=int(args.get("seed", 0)), progress=False)
        store = EventStore(":memory:")
        store.import_frames("demo", events=shop.events, reviews=shop.reviews, items=shop.items, users=shop.users)
    return build_tools(ToolContext(store=store, cutoff=datetime.fromisoformat(str(args["eval_cutoff"]))))
