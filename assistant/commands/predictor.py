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

    stored = sub.add_parser("scores", help="which checkpoint wrote the stored scores the tools serve; --clear "
                                           "deletes them")
    stored.add_argument("--clear", action="store_true",
                        help="delete every stored score (one transaction); `shopsight predictor score` writes new ones")
    stored.add_argument("--name", default=None, help="checkpoint to compare with (default SHOPSIGHT_PREDICTOR)")
    stored.set_defaults(func=run_scores)

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
        # A recipe without horizons_days takes SHOPSIGHT_HORIZONS_DAYS, as every other command of the home does.
        recipe = load_config_yaml(args.config) if args.config else {}
        raw = {"horizons_days": list(settings.horizons_days), **recipe}
        try:
            config = TrainConfig.from_dict(raw)
        except ValueError as exc:
            raise SystemExit(f"{args.config or 'defaults'}: {exc}") from exc
        config.name = settings.predictor
        events = store.events_frame(until=cutoff)
        if len(events):
            check_horizons_fit(events["ts"].min(), cutoff, events["ts"].max(), config, args.config,
                               settings.db_path, from_settings="horizons_days" not in recipe)
        predictor = train_predictor(events, cutoff, config, settings.predictor_dir, progress=not args.quiet,
                                    resume=not args.no_resume)
    except PredictorError as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        store.close()
    info = predictor.config["training"]
    print(f"trained {predictor.version} in {info['seconds']} s ({info['examples_per_s']} sequences/s), "
          f"saved to {settings.predictor_dir}")
    _legacy_name_note(settings, args.name)
    for row in predictor.calibration["validation"]:
        if row and row.get("churn_auc") is None:  # a tiny shop: "churn AUC None" read like a failure
            print(f"  validation at {row['cutoff']}: churn AUC not measurable on {row['n']} held-out users (it needs "
                  "both users who bought and users who did not)")
        elif row:
            print(f"  validation at {row['cutoff']}: churn AUC {row.get('churn_auc')}, n={row['n']}")
    return 0


def _legacy_name_note(settings, name: str | None) -> None:
    """A home set up before checkpoints were named `shop` keeps `demo` (assistant/config.py); say how to move."""
    import os

    from assistant.config import LEGACY_PREDICTOR_NAME, PREDICTOR_NAME

    if settings.predictor == LEGACY_PREDICTOR_NAME and not name and not os.environ.get("SHOPSIGHT_PREDICTOR"):
        print(f"  note: this home's checkpoint is still named {LEGACY_PREDICTOR_NAME!r} (every home's name before "
              f"2026-12, whatever its shop); `shopsight predictor train --name {PREDICTOR_NAME}` then `shopsight "
              f"predictor score` moves it to {PREDICTOR_NAME!r}, keeping this one (docs/models.md)")


def _days_words(horizons) -> str:
    return " and ".join(f"{h:g}" for h in horizons) + " days"


def check_horizons_fit(first, cutoff, label_end, config, config_path=None, db_path=None, warn=True,
                       from_settings: bool = False) -> None:
    """Refuse horizons longer than the store's span, naming the span and settings that fit.

    A 7-day horizon on 2 hours of clicks would train (the next-item heads need no window) and score
    every user near 0.5: numbers that look like predictions and are not. A horizon the data could
    label but the rolling cutoffs do not reach (a recipe's few `n_cutoffs`) gets a warning.

    Raises:
        SystemExit: a horizon is longer than the events' span, or is not whole days.
    """
    import sys

    import pandas as pd

    from tools.predictor.train import TrainConfig, unlabelled_horizons
    from tools.spans import MIN_SPAN_DAYS_FOR_HORIZONS, span_words

    if config.horizons_days != tuple(int(h) for h in config.horizons_days):
        raise SystemExit(
            f"{config_path or 'SHOPSIGHT_HORIZONS_DAYS'}: horizons {list(config.horizons_days)} days: the assistant's "
            "horizons (its scores, at-risk lists and answers) are whole days; measure minute or hour horizons with "
            "`shopsight bench run --format store --horizon 15m 30m ...` (docs/benchmark.md)")
    missing = unlabelled_horizons(first, cutoff, label_end, config)
    span = (pd.Timestamp(label_end) - pd.Timestamp(first)).total_seconds()
    too_long = [h for h in missing if h * 86_400 > span]
    if missing and not too_long and warn:
        print(f"warning: with {config.n_cutoffs} training cutoffs {config.cutoff_stride_days:g} days apart, none has a "
              f"full {' or '.join(f'{h:g}-day' for h in missing)} window after it: that horizon's churn is not "
              f"learned; raise n_cutoffs or cutoff_stride_days in {config_path or 'a --config YAML'}", file=sys.stderr)
    if not too_long:
        return
    source = "SHOPSIGHT_HORIZONS_DAYS" if from_settings or not config_path else f"horizons_days in {config_path}"
    head = (f"the events span {span_words(span)} ({pd.Timestamp(first)} .. {pd.Timestamp(label_end)}), and the "
            f"predictor's horizons are {_days_words(config.horizons_days)} ({source}): no training cutoff has a full "
            f"{' or '.join(f'{h:g}-day' for h in too_long)} window after it, so who churns or buys within "
            f"{'it' if len(too_long) == 1 else 'them'} cannot be learned and every such score would be a made-up "
            "prior (about 50 %), not a prediction. ")
    fits = [h for h in range(1, int(span // 86_400) + 1)
            if not unlabelled_horizons(first, cutoff, label_end, TrainConfig.from_dict({**config.to_dict(),
                                                                                    "horizons_days": [h]}))]
    if fits:
        pick = sorted({fits[0], fits[-1]})
        fix = (f"Use horizons that fit, e.g. SHOPSIGHT_HORIZONS_DAYS={','.join(map(str, pick))} (set it for every "
               "`shopsight` command of this home), or import a longer history.")
    elif span >= MIN_SPAN_DAYS_FOR_HORIZONS * 86_400:
        fix = ("The rolling training cutoffs are every "
               f"{config.cutoff_stride_days:g} days: write a --config YAML with `cutoff_stride_days: 1` and "
               "`horizons_days: [1]`, or import a longer history.")
    else:
        fix = ("The assistant's horizons are whole days, so churn and purchase predictions need at least "
               f"{MIN_SPAN_DAYS_FOR_HORIZONS} days of events: import a longer history. On this span, measure minute "
               f"horizons with `shopsight bench run --format store --data {db_path or 'SHOP.duckdb'} --cutoff ISO --horizon 15m 30m --out DIR` "
               "(docs/benchmark.md).")
    raise SystemExit(head + fix)


def run_score(args: argparse.Namespace) -> int:
    from tools.predictor.data import PredictorError
    from tools.predictor.score import score_store

    settings, store, cutoff = _open(args, read_only=False)
    try:
        predictor = _load(settings)
        _check_trained_horizons(store, predictor, settings)
        start = time.perf_counter()
        replaced = stored_versions(store)
        scores = score_store(store, predictor, cutoff, progress=not args.quiet)
        seconds = time.perf_counter() - start
        _save_customer_values(store, cutoff, quiet=args.quiet)
    except PredictorError as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        store.close()
    users = scores["user_id"].nunique()
    print(f"scored {users} users x {len(predictor.horizons_days)} horizons as of {cutoff} with {predictor.version} "
          f"in {seconds:.1f} s ({users / max(seconds, 1e-9):.0f} users/s)")
    replaced = replaced[replaced["model_version"] != predictor.version]
    if len(replaced):
        print("  deleted the scores of earlier checkpoints, no longer served: " + ", ".join(
            f"{r.model_version} ({r.rows:,} rows)" for r in replaced.itertuples()))
    if predictor.last_info.get("truncated_users"):
        print(f"  note: {predictor.last_info['truncated_users']} users have more than {predictor.max_len} events; "
              "the model read their most recent ones")
    return 0


def stored_versions(store):
    """One row per checkpoint with stored scores: model_version, rows, cutoffs, first/last cutoff, horizons."""
    return store.query("""SELECT model_version, count(*) AS rows, count(DISTINCT cutoff) AS cutoffs,
        min(cutoff) AS first_cutoff, max(cutoff) AS last_cutoff, list_sort(list(DISTINCT horizon_days)) AS horizons
        FROM scores GROUP BY model_version ORDER BY last_cutoff DESC, model_version""")


def run_scores(args: argparse.Namespace) -> int:
    """List the stored scores by checkpoint, say which are served and whether the current checkpoint wrote them."""
    import yaml

    from assistant.config import Settings
    from tools.catalog.reads import scores_version_note, served_scores
    from tools.data.store import EventStore

    settings = Settings.from_env(predictor=args.name)
    if not settings.db_path.exists():
        raise SystemExit(f"no event store at {settings.db_path}; import data with `shopsight data import` "
                         "or create the demo shop with `shopsight demo`")
    config_path = settings.predictor_dir / "config.yaml"
    try:
        config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        config = {}
    current = config.get("version")
    with EventStore(settings.db_path, read_only=not args.clear) as store:
        if args.clear:
            print(f"deleted {store.clear_scores():,} stored scores from {settings.db_path}; the tools now score with "
                  "the current checkpoint when asked, or say how to train one; `shopsight predictor score` "
                  "stores new ones")
            return 0
        versions = stored_versions(store)
        served = served_scores(store, store.time_span()[1], prefer_version=current) if len(versions) else versions
        refused = _refusal(store, config, settings) if current else None
    print(f"current checkpoint: {current or 'none'} ({settings.predictor_dir}"
          f"{'' if current else ': no readable config.yaml'})")
    if not len(versions):
        print(f"no stored scores in {settings.db_path}; `shopsight predictor score` writes them")
        return 0
    served_version = str(served["model_version"].iloc[0]) if len(served) else None
    print(f"stored scores in {settings.db_path}:")
    for row in versions.itertuples():
        tag = "  <- served" if row.model_version == served_version else ""
        print(f"  {row.model_version}: {row.rows:,} rows, {row.cutoffs} cutoff(s) {row.first_cutoff} .. "
              f"{row.last_cutoff}, horizons {', '.join(map(str, row.horizons))} days{tag}")
    note = scores_version_note(served_version, current) if served_version else None
    if note:
        print(f"note: {note}")
    if refused and served_version == current:
        print(f"note: the served scores come from a checkpoint `predictor score` now refuses: {refused}")
    return 0


def _refusal(store, config: dict, settings) -> str | None:
    """Why `predictor score` would refuse the checkpoint of this config.yaml (its horizons), else None."""
    from types import SimpleNamespace

    try:
        _check_trained_horizons(store, SimpleNamespace(config=config, version=config.get("version")), settings)
    except SystemExit as exc:
        return str(exc)
    return None


def _save_customer_values(store, cutoff, quiet: bool) -> None:
    """Fit the customer values the tools read (money at risk) once here, not in every process that asks.

    A shop the value model cannot fit (too short, no purchases) is left to the tools, which say why.
    """
    from tools.catalog.reads import VALUE_HORIZON_DAYS
    from tools.predictor.clv import customer_value
    from tools.predictor.value_cache import save_values

    start = time.perf_counter()
    try:
        frame, notes = customer_value(store.events_frame(until=cutoff), cutoff, VALUE_HORIZON_DAYS)
    except ValueError as exc:
        if not quiet:
            print(f"  customer values not saved ({exc}); the tools will say why when asked")
        return
    path = save_values(store, cutoff, VALUE_HORIZON_DAYS, frame, notes)
    if path is not None and not quiet:
        print(f"  customer values over {VALUE_HORIZON_DAYS} days saved for the tools ({notes['model']}) "
              f"in {time.perf_counter() - start:.1f} s")


def _check_trained_horizons(store, predictor, settings) -> None:
    """A checkpoint trained before `check_horizons_fit` existed may hold horizons it never saw labelled."""
    from tools.predictor.train import TrainConfig

    config = predictor.config
    first = store.time_span()[0]
    try:
        train = TrainConfig.from_dict(config["train"])
        cutoff, label_end = config["cutoff"], config["label_end"]
    except (KeyError, TypeError, ValueError):  # a checkpoint older than these fields: nothing to check against
        return
    try:
        check_horizons_fit(first, cutoff, label_end, train, db_path=settings.db_path, warn=False)
    except SystemExit as exc:
        raise SystemExit(f"{settings.predictor_dir} ({predictor.version}) was trained where {exc} Then run "
                         "`shopsight predictor train --no-resume` before scoring or explaining. Scores it stored "
                         "earlier are such priors too, and the tools serve them until `shopsight predictor scores "
                         "--clear` deletes them.") from None


def run_explain(args: argparse.Namespace) -> int:
    from tools.predictor.data import PredictorError
    from tools.predictor.explain import explain_user

    settings, store, cutoff = _open(args)
    try:
        predictor = _load(settings)
        _check_trained_horizons(store, predictor, settings)
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
