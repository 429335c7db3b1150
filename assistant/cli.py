"""The `shopsight` command: runtime jobs (data, models, predictor, cases, bench, ask, app).

Each command group lives in its own module under `assistant/commands/` and exposes
`register(subparsers)`; this file only stitches them together, so the groups can grow
independently. Fine-tune scripts are not here: they run as `python -m finetune.<name>`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import tools.paths  # noqa: F401  (sets the offline environment before any heavy import)

# Module names under assistant.commands, in the order `shopsight --help` lists them.
COMMAND_GROUPS = ("demo", "data", "models", "predictor", "bench", "cases", "ask", "app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shopsight",
        description="ShopSight: an analyst assistant for e-commerce teams (offline, on your own data).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_GROUPS:
        try:
            module = importlib.import_module(f"assistant.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"assistant.commands.{name}":
                raise
            continue  # that group is not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
