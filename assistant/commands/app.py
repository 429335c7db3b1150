"""`shopsight app`: start the workspace UI on the store and models of the home folder.

The UI lives in the top-level `app.py`, which nothing imports: this command runs it as a
program (`runpy`), passing its options through.
"""

from __future__ import annotations

import argparse
import runpy
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("app", help="start the Gradio workspace (127.0.0.1:7860 by default)")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860)")
    parser.add_argument("--auth", default=None, help="'user:password' or a file of such lines (or SHOPSIGHT_AUTH)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    argv = ["app.py"]
    for flag in ("host", "port", "auth"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    sys.argv = argv
    runpy.run_module("app", run_name="__main__", alter_sys=True)
    return 0
