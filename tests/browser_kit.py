"""What the browser tests share: Debian's headless chromium and its flags.

Importing this skips the importing test module when Playwright or chromium is missing
(`make browser` installs chromium; `make test` does it first).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (make browser)", allow_module_level=True)

# No sandbox (CI runs as root), no GPU, nothing that reaches the network on its own.
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
