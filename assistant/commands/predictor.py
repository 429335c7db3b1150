"""`shopsight predictor train|score|explain`: the numeric behavior Transformer on the store's events."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("predictor", help="train the behavior Transformer, score users, explain a score")
    sub = parser.add_subparsers(dest="predictor_command", metavar="ACTION")

    train = sub.add_parser("train", help="train on the store's events up to a cutoff (labels only from the past)")
    train.add_argument("--cutoff", default=None, help="UTC 'now' for training (default: the store's last event)")
    train.add_argument("--config", type=Path, default=None,
                       help="YAML of TrainConfig fields, e.g. finetune/configs/predictor_demo.yaml")
    train.add_argument("--name", default=None, help="checkpoint name under models/predictor/ (default SHOPSIGHT_PREDICTOR)")
    train.add_argument("--no-resume", action="store_true", help="start over instead of continuing the last run")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=run_train)

    score = sub.add_parser("score", help="score every user as of a cutoff into the store's `scores` table")
    score.add_argument("--cutoff", default=None, help="UTC cutoff (default: the store's last event)")
    score.add_argument("--name", default=None, help="checkpoint name (default SHOPSIGHT_PREDICTOR)")
    score.add_argument("--quiet", action="store_true")
    score.set_defaults(func=run_score)

    explain = sub.add_parser("explain", help="which events and features drove one user's churn probability")
    explain.add_argument("--user", required=True, help="user id (list ids with `shopsight data info`)")
    explain.add_argument("--cutoff", default=None, help="UTC cutoff (default: the store's last event)")
    explain.add_argument("--horizon", type=int, default=None, help="horizon in days (default: the model's first)")
    explain.add_argument("--name", default=None, help="checkpoint name (default SHOPSIGHT_PREDICTOR)")
    explain.set_defaults(func=run_explain)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _open(args, read_only: bool = True):
    from assistant.config import Settings
    from tools.data.store import EventStore

    settings = Settings.from_env(predictor=getattr(args, "name", None))
    if not settings.db_path.exists():
        raise SystemExit(f"no event store at {settings.db_path}; import data with `shopsight data import` "
                         "or create the demo shop with `shopsight demo`")
    store = EventStore(settings.db_path, read_only=read_only)
    tables = store.summary()["tables"]
    if not tables["events"]:  # time_span() falls back to reviews: a cutoff there would blame the date
        store.close()
        reviews = f" (it holds {tables['reviews']:,} reviews)" if tables["reviews"] else ""
        raise SystemExit(
            f"{settings.db_path}: the store has no events{reviews}; the predictor learns from events (views, "
            "carts, purchases): import an events or orders file with `shopsight data import FILE`.")
    cutoff = args.cutoff
    if cutoff is None:
        cutoff = store.time_span()[1]
    else:
        from assistant.commands.cutoffs import parse_cutoff

        try:
            cutoff = parse_cutoff(cutoff)
        except ValueError as exc:
            store.close()
            raise SystemExit(str(exc)) from None
    return settings, store, cutoff


def _load(settings):
    from tools.predictor.data import PredictorError
    from tools.predictor.score import Predictor

    try:
        return Predictor.load(settings.predictor_dir)
    except PredictorError as exc:
        raise SystemExit(str(exc)) from exc


def run_train(args: argparse.Namespace) -> int:
    from tools.predictor.data import PredictorError
    from tools.predictor.train import TrainConfig, load_config_yaml, train_predictor

    settings, store, cutoff = _open(args)
    try:
        raw = load_config_yaml(args.config) if args.config else {"horizons_days": list(settings.horizons_days)}
        try:
            config = TrainConfig.from_dict(raw)
        except ValueError as exc:
            raise SystemExit(f"{args.config or 'defaults'}: {exc}") from exc
        config.name = settings.predictor
        events = store.events_frame(until=cutoff)
        predictor = train_predictor(events, cutoff, config, settings.predictor_dir, progress=not args.quiet,
                                    resume=not args.no_resume)
    except PredictorError as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        store.close()
    info = predictor.config["training"]
    print(f"trained {predictor.version} in {info['seconds']} s ({info['examples_per_s']} sequences/s), "
          f"saved to {settings.predictor_dir}")
    for row in predictor.calibration["validation"]:
        if row:
            print(f"  validation at {row['cutoff']}: churn AUC {row.get('churn_auc')}, n={row['n']}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    from tools.predictor.data import PredictorError
    from tools.predictor.score import score_store

    settings, store, cutoff = _open(args, read_only=False)
    try:
        predictor = _load(settings)
        start = time.perf_counter()
        scores = score_store(store, predictor, cutoff, progress=not args.quiet)
    except PredictorError as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        store.close()
    seconds = time.perf_counter() - start
    users = scores["user_id"].nunique()
    print(f"scored {users} users x {len(predictor.horizons_days)} horizons as of {cutoff} with {predictor.version} "
          f"in {seconds:.1f} s ({users / max(seconds, 1e-9):.0f} users/s)")
    if predictor.last_info.get("truncated_users"):
        print(f"  note: {predictor.last_info['truncated_users']} users have more than {predictor.max_len} events; "
              "the model read their most recent ones")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from tools.predictor.data import PredictorError
    from tools.predictor.explain import explain_user

    settings, store, cutoff = _open(args)
    try:
        predictor = _load(settings)
        horizon = args.horizon or predictor.horizons_days[0]
        events = store.events_frame(until=cutoff, users=[args.user])
        if events.empty:
            raise SystemExit(f"unknown user id {args.user!r}: no events at or before {cutoff}; "
                             f"{_user_id_hint(store, args.user)}")
        reviews = store.reviews_frame(user_id=args.user, until=cutoff)
        result = explain_user(predictor, events, args.user, cutoff, horizon, reviews=reviews)
    except PredictorError as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        store.close()
    print(json.dumps(result, indent=1))
    return 0


def _user_id_hint(store, user_id: str) -> str:
    """Ids the user may have meant ('1' for CDNOW's '00001'), else a few real ids: `data info` lists none."""
    similar = store.query(
        "SELECT user_id FROM users WHERE ltrim(user_id, '0') = ltrim(?, '0') OR lower(user_id) = lower(?) "
        "ORDER BY user_id LIMIT 3", [str(user_id), str(user_id)])["user_id"].tolist()
    if similar:
        return "did you mean " + " or ".join(repr(u) for u in similar) + "?"
    examples = store.query("SELECT DISTINCT user_id FROM events ORDER BY user_id LIMIT 3")["user_id"].tolist()
    return "ids in this store look like " + ", ".join(repr(u) for u in examples)
