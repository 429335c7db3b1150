"""Command groups of `shopsight`: each module has `register(subparsers)` and sets `func` on its parsers.

Errors the user can fix are raised as `SystemExit(message)` so the message is all they see.
"""
