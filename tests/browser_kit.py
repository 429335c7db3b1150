"""What the browser tests share: Debian's headless chromium and its flags.

Importing this skips the importing test module when Playwright or chromium is missing
(`make browser` installs chromium; `make test` does it first).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (make browser)", allow_module_level=True)

# No sandbox (CI runs as root), no GPU, nothing that reaches the network on its own.
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on now (the app under test binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
