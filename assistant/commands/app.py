"""`shopsight app`: start the workspace UI on the store and models of the home folder."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("app", help="start the Gradio workspace (127.0.0.1:7860 by default)")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860)")
    parser.add_argument("--auth", default=None, help="'user:password' or a file of such lines (or SHOPSIGHT_AUTH)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from assistant.config import Settings
    from assistant.workspace import Workspace

    settings = Settings.from_env(host=args.host, port=args.port, auth=args.auth)
    if not settings.db_path.exists():
        raise SystemExit(f"no event store at {settings.db_path}; run `shopsight data generate` or `make run` first")
    workspace = Workspace.open(settings)
    for part, message in workspace.problems.items():
        print(f"warning: {part}: {message}")
    print(f"ShopSight workspace on http://{settings.host}:{settings.port}")
    import app

    app.launch(workspace, host=settings.host, port=settings.port, auth=settings.auth)
    return 0
