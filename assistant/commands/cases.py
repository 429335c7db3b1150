"""`shopsight cases ...`: build, inspect and extend the Chroma memory of past cases.

    shopsight cases build [--cutoffs 2024-03-31 2024-04-30 ...] [--horizons 7 30] [--text-only]
    shopsight cases info
    shopsight cases save --text "..." --outcome "..." [--title ...] [--user ID]

`build` is incremental: cases already stored (id `user@cutoff`) are skipped, so a re-run or
a run with one more cutoff adds only what is new.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime

import pandas as pd

from assistant.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cases", help="the memory of past cases (Chroma): build, info, save")
    sub = parser.add_subparsers(dest="cases_command", metavar="ACTION")
    build = sub.add_parser("build", help="add snapshots of users at past cutoffs with what then happened")
    build.add_argument("--cutoffs", nargs="+", metavar="DATE",
                       help="YYYY-MM-DD (end of that day, UTC) or an ISO timestamp; default: 3 cutoffs one "
                            "longest horizon apart, the last a full horizon before the data's end")
    build.add_argument("--horizons", nargs="+", type=int, metavar="DAYS",
                       help="outcome windows stored with each case (default: SHOPSIGHT_HORIZONS_DAYS, 7 30)")
    build.add_argument("--text-only", action="store_true", help="skip the predictor's user vectors")
    build.add_argument("--skip-reviews", action="store_true",
                       help="do not train / refresh the review sentiment model (otherwise done here, once)")
    build.add_argument("--no-progress", action="store_true")
    build.set_defaults(func=_build)
    info = sub.add_parser("info", help="what the case memory holds")
    info.set_defaults(func=_info)
    save = sub.add_parser("save", help="save a resolved case an analyst wrote")
    save.add_argument("--text", required=True, help="the customer and situation")
    save.add_argument("--outcome", required=True, help="what happened, e.g. 'retained after a voucher'")
    save.add_argument("--title", default="")
    save.add_argument("--user", default=None, help="the user id the case is about, if any")
    save.set_defaults(func=_save)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def parse_cutoff(text: str) -> datetime:
    """'2024-03-31' -> 2024-03-31 23:59:59 (the whole day is past); ISO timestamps as given (UTC)."""
    from assistant.commands.cutoffs import parse_cutoff as parse_iso

    try:
        return parse_iso(text, "--cutoffs", end_of_day=True)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def _memory(settings: Settings):
    from tools.cases import CaseMemory

    return CaseMemory(path=settings.chroma_path, url=settings.chroma_url or None)


def _load_predictor(settings: Settings):
    folder = settings.predictor_dir
    if not (folder / "config.yaml").exists():
        return None, f"no predictor at {folder} (train one with `shopsight predictor train`)"
    from tools.predictor.score import Predictor

    return Predictor.load(folder), f"predictor {folder}"


def _build(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    horizons = tuple(sorted(set(args.horizons or settings.horizons_days)))
    if not horizons or min(horizons) <= 0:
        raise SystemExit(f"--horizons {horizons}: give positive whole days, e.g. --horizons 7 30")
    report = build_case_memory(settings, cutoffs=[parse_cutoff(c) for c in args.cutoffs] if args.cutoffs else None,
                               horizons=horizons, text_only=args.text_only, progress=not args.no_progress,
                               prepare_reviews=not args.skip_reviews)
    print(json.dumps(report, indent=2))
    return 0


def build_case_memory(settings: Settings, cutoffs: list[datetime] | None = None, horizons: tuple | None = None,
                      text_only: bool = False, progress: bool = True, prepare_reviews: bool = True,
                      on_progress=None) -> dict:
    """What `shopsight cases build` does (the demo's background job calls it with `on_progress`).

    Raises:
        SystemExit: no store, no events, a bad cutoff or a failed write; the message says the fix.
    """
    from tools.case_snapshots import default_cutoffs
    from tools.cases import CaseMemoryError
    from tools.data.store import EventStore

    horizons = tuple(horizons or settings.horizons_days)
    if not settings.db_path.exists():
        raise SystemExit(f"no event store at {settings.db_path}: run `shopsight demo` or `shopsight data import FILE`")
    store = EventStore(settings.db_path, read_only=True)
    try:
        events = store.events_frame()
        reviews = store.reviews_frame()
        if not len(events) and not len(reviews):
            raise SystemExit(f"{settings.db_path}: the event store has no events and no reviews; import data first")
        if len(events) and not cutoffs:  # the defaults step back from the end: keep those with a history
            first = pd.Timestamp(events["ts"].min())
            cutoffs = [c for c in default_cutoffs(pd.Timestamp(events["ts"].max()).to_pydatetime(), horizons)
                       if pd.Timestamp(c) > first]
    finally:
        store.close()
    if not len(events):  # a review-only shop: no customer cases, but the review desk still needs its analysis
        print("cases: the store has reviews but no events, so there are no customer cases to build; "
              "import an events or orders file for them")
        if prepare_reviews:
            _prepare_reviews(settings)
        return {"cutoffs": [], "text_added": 0, "vectors_added": 0,
                "notes": ["no events: only the review analysis was prepared"]}
    predictor, note = (None, "text only (--text-only)") if text_only else _load_predictor(settings)
    if progress:
        print(f"building cases at {len(cutoffs)} cutoff(s), horizons {list(horizons)} days; vectors: {note}")
    memory = _memory(settings)
    try:
        report = memory.build(events, cutoffs, horizons, predictor=predictor, progress=progress, reviews=reviews,
                              on_progress=on_progress)
    except CaseMemoryError as exc:
        raise SystemExit(str(exc)) from None
    if prepare_reviews:
        _prepare_reviews(settings)
    return report


def _prepare_reviews(settings: Settings) -> None:
    """Train (or reuse) the sentiment model on the shop's ratings and analyse every review now,
    so the first review_summary the agent calls is a lookup, not a training run."""
    import time

    from tools.data.store import EventStore
    from tools.reviews import ReviewAnalyzer

    start = time.perf_counter()
    with EventStore(settings.db_path, read_only=True) as store:
        if not len(store.reviews_frame()):
            print("reviews: none in the store, nothing to analyse")
            return
        analyzer = ReviewAnalyzer.for_store(store)
    trained = analyzer.model.trained_on
    print(f"reviews: {analyzer.n_analyzed} analysed; sentiment model trained on {trained.get('source')}: "
          f"{trained.get('n_positive')} positive / {trained.get('n_negative')} negative texts "
          f"in {time.perf_counter() - start:.1f} s")


def _info(args: argparse.Namespace) -> int:
    print(json.dumps(_memory(Settings.from_env()).info(), indent=2))
    return 0


def _save(args: argparse.Namespace) -> int:
    from tools.cases import CaseMemoryError

    try:
        cid = _memory(Settings.from_env()).save_case(args.text, args.outcome, user_id=args.user, title=args.title)
    except CaseMemoryError as exc:
        raise SystemExit(str(exc)) from None
    print(cid)
    return 0
