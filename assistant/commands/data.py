"""`shopsight data ...`: generate the demo shop, import files, show what the store holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tools.data.formats import FORMATS, format_list
from tools.data.import_source import MAPPING_KEYS
from tools.data.schema import ImportFailed, StoreError


def register(subparsers) -> None:
    """Add the `data` group and its commands."""
    parser = subparsers.add_parser("data", help="the event store: generate, import, info")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    gen = sub.add_parser("generate", help="generate the demo shop and import it (idempotent)")
    gen.add_argument("--users", type=int, default=5000, help="number of users (default 5000)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--db", type=Path, default=None, help="DuckDB file (default: under SHOPSIGHT_HOME)")
    gen.set_defaults(func=cmd_generate)

    imp = sub.add_parser(
        "import",
        help="import a file (format detected from its header)",
        description="Import FILE into the event store, all or nothing (your own CSV: docs/importing.md)."
                    "\n\nFormats:\n" + format_list(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("file", type=Path)
    imp.add_argument("--format", choices=sorted(FORMATS), default=None, help="skip detection")
    imp.add_argument("--mapping", type=Path, default=None,
                     help="YAML: columns: {source: field}, target, ts_unit, behaviors, delimiter, constants")
    imp.add_argument("--map", action="append", default=[], metavar="COL=FIELD",
                     help="map a source column to a canonical field (repeatable)")
    imp.add_argument("--const", action="append", default=[], metavar="FIELD=VALUE",
                     help="one value for every row, e.g. --const behavior=buy for an order export (repeatable)")
    imp.add_argument("--ts-unit", default=None, metavar="UNIT",
                     help="how the time column is written: s, ms, yyyymmdd or a strftime layout like '%%d/%%m/%%Y'"
                          " (default: unix seconds/ms or ISO date-times, read as UTC)")
    imp.add_argument("--pseudonymize", action="store_true",
                     help="replace user ids with a keyed hash (key: SHOPSIGHT_SECRET or the home key file)")
    imp.add_argument("--db", type=Path, default=None)
    imp.add_argument("--no-progress", action="store_true")
    imp.set_defaults(func=cmd_import)

    info = sub.add_parser("info", help="tables, counts, time span, rejected rows by reason")
    info.add_argument("--db", type=Path, default=None)
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(func=cmd_info)


def read_mapping(path: Path | None, pairs: list[str], constants: list[str] = (), ts_unit: str | None = None
                 ) -> dict | None:
    """The mapping from a YAML file and/or COL=FIELD pairs; SystemExit with the fix when malformed."""
    mapping: dict = {}
    if path is not None:
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise SystemExit(f"{path}: cannot read the mapping ({exc}); give a YAML file") from None
        if not isinstance(loaded, dict):
            raise SystemExit(f"{path}: a mapping must be a YAML dictionary, e.g. columns: {{visitor: user_id}}")
        mapping = loaded
        if not (set(MAPPING_KEYS) & set(mapping)):
            mapping = {"columns": mapping}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--map {pair!r}: write it as SOURCE_COLUMN=FIELD, e.g. --map visitorid=user_id")
        col, fld = (part.strip() for part in pair.split("=", 1))
        mapping.setdefault("columns", {})[col] = fld
    for pair in constants:
        if "=" not in pair:
            raise SystemExit(f"--const {pair!r}: write it as FIELD=VALUE, e.g. --const behavior=buy")
        fld, value = (part.strip() for part in pair.split("=", 1))
        mapping.setdefault("constants", {})[fld] = value
    if ts_unit:
        mapping["ts_unit"] = ts_unit
    return mapping or None


def _store(db: Path | None, read_only: bool = False):
    from tools.data.store import EventStore

    try:
        return EventStore(db, read_only=read_only)
    except StoreError as exc:
        raise SystemExit(str(exc)) from None


def cmd_generate(args) -> int:
    try:
        from tools.data.synth import load_demo_shop  # imported lazily: another room writes it
    except ImportError as exc:
        raise SystemExit(f"the demo shop generator is not available ({exc}); reinstall with `make setup`") from None
    with _store(args.db) as store:
        report = load_demo_shop(store, n_users=args.users, seed=args.seed)
        print(report.summary())
        _print_info(store.summary())
    return 0


def cmd_import(args) -> int:
    mapping = read_mapping(args.mapping, args.map, args.const, args.ts_unit)
    with _store(args.db) as store:
        try:
            report = store.import_file(args.file, fmt=args.format, mapping=mapping,
                                       pseudonymize=args.pseudonymize, progress=not args.no_progress)
        except (ImportFailed, StoreError) as exc:
            raise SystemExit(f"import failed, nothing was written: {exc}") from None
    print(report.summary())
    return 0


def cmd_info(args) -> int:
    with _store(args.db, read_only=True) as store:
        summary = store.summary()
        kinds = store.query("SELECT behavior, count(*) AS n, count(amount) AS priced FROM events GROUP BY 1 "
                            "ORDER BY n DESC")
    if args.json:
        print(json.dumps(summary, default=str, indent=2))
    else:
        _print_info(summary)
        _print_what_it_supports(summary, kinds)
    return 0


def _print_what_it_supports(summary: dict, kinds) -> None:
    """What a new user needs before training: which behaviors, whether there are prices, and whether
    the span holds the predictor's horizons (2 hours of clicks cannot hold a 7-day window)."""
    import pandas as pd

    from tools.spans import span_words
    from assistant.config import Settings

    if not len(kinds):
        return
    print("events by behavior: " + ", ".join(f"{row.behavior} {row.n:,}" for row in kinds.itertuples()))
    if not kinds["priced"].sum():
        print("prices: none (no amount column): answers count value in orders, not money")
    lo, hi = (pd.Timestamp(t) for t in summary["span"])
    horizons = Settings.from_env().horizons_days
    if (hi - lo) < pd.Timedelta(days=max(horizons)):
        print(f"note: the events span {span_words((hi - lo).total_seconds())}, less than the predictor's "
              f"{max(horizons)}-day horizon (SHOPSIGHT_HORIZONS_DAYS={','.join(map(str, horizons))}); "
              "`shopsight predictor train` says which horizons fit")


def _print_info(summary: dict) -> None:
    print(f"store: {summary['db_path']}")
    for name, count in summary["tables"].items():
        print(f"  {name:12s} {count:>12,}")
    lo, hi = summary["span"]
    print(f"time span: {lo} .. {hi}")
    if summary["rejected_by_reason"]:
        print("rejected rows by reason:")
        for reason, n in summary["rejected_by_reason"].items():
            print(f"  {n:>10,}  {reason}")
    if summary["imports"]:
        print("recent imports:")
        for row in summary["imports"]:
            print(f"  #{row['import_id']} {row['format']:>15s} {row['rows_imported']:>10,} imported "
                  f"{row['rows_rejected']:>8,} rejected {row['rows_dropped']:>8,} dropped  {row['source_file']}")
