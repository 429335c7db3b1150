"""The scores note in headless chromium: the banner and the Operations tab of the real app say that the churn
scores served were written by a replaced checkpoint, with the command that fixes it (test_app_scores_note.py
checks the same views without a browser, and that nothing is said when the scores are current)."""

from __future__ import annotations

import pytest

from browser_kit import ARGS, CHROMIUM, free_port  # skips this module without Playwright or chromium
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from retrained_shop import make_home, train  # noqa: E402

pytestmark = pytest.mark.browser
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)


def test_banner_and_operations_tab_in_the_browser_name_the_replaced_checkpoint(tmp_path, monkeypatch):
    import app
    from assistant.config import Settings
    from assistant.workspace import Workspace
    from tools.data.store import EventStore

    home = make_home(tmp_path, monkeypatch)
    first = train(home, "tiny", score=True)
    train(home, "tiny2", score=False)
    store = EventStore(home / "shop.duckdb", read_only=True)
    ws = Workspace.open(Settings.from_env(), store=store, chat_model_factory=lambda: None, lazy=True)
    port = free_port()
    demo = app.launch(ws, host="127.0.0.1", port=port, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            pg = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            pg.set_default_timeout(WAIT_MS)
            pg.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            pg.wait_for_selector("#question textarea")
            expect(pg.locator("#banner")).to_contain_text(f"written by checkpoint {first}, not the current one")
            expect(pg.locator("#banner")).to_contain_text("shopsight predictor score")
            pg.get_by_role("tab", name="Operations").click()
            expect(pg.locator("#population")).to_contain_text(f"written by checkpoint {first}")
            expect(pg.locator("#risk-table")).to_contain_text("user_id")
            browser.close()
    finally:
        demo.close()
        store.close()
