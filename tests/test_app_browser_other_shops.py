"""The real workspace in headless chromium on a shop that is not the demo: reviews only, behind a login.

What a new user of the Amazon Fine Food file met (bench/results/new_user_trial.md, Round 9b): "Error"
badges on the at-risk table and the histogram with the reason only in a toast that faded, a banner
saying to run `shopsight predictor train` (which refuses a store without events), "item ... nan" in the
review desk, "unknown user" for a reviewer, and the same banner after orders were uploaded. A real
DuckDB store, the real Workspace and app; no chat model is asked (none loads unless a question is sent).
"""

from __future__ import annotations


import pytest

from browser_kit import ARGS, CHROMIUM, free_port  # skips this module without Playwright or chromium
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from test_app_other_shops import _settings, reviews_only_store  # noqa: E402

pytestmark = pytest.mark.browser
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)


def test_reviews_only_shop_explains_its_empty_operations_tab_and_opens_a_reviewer(tmp_path, monkeypatch):
    import app
    from assistant.workspace import Workspace

    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    store = reviews_only_store(tmp_path)
    reviewer = str(store.query("SELECT user_id FROM reviews ORDER BY review_id LIMIT 1")["user_id"].iloc[0])
    ws = Workspace.open(_settings(tmp_path), store=store, chat_model_factory=lambda: None, lazy=True)
    port = free_port()
    demo = app.launch(ws, host="127.0.0.1", port=port, auth="ops:s3cret-pw", block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            pg = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            pg.set_default_timeout(WAIT_MS)
            pg.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            pg.locator("input[type=text]").first.fill("ops")
            pg.locator("input[type=password]").fill("s3cret-pw")
            pg.locator("input[type=password]").press("Enter")
            pg.wait_for_selector("#question textarea")
            expect(pg.locator("#banner")).to_contain_text("40 reviews and no orders or events")
            assert "predictor train" not in pg.locator("#banner").inner_text()
            pg.get_by_role("tab", name="Operations").click()
            # The view opens with the reason in words, and no error badge on the table or histogram.
            expect(pg.locator("#population")).to_contain_text("No at-risk list")
            expect(pg.locator("#population")).to_contain_text("import an orders or events file")
            expect(pg.locator("#risk-table")).to_contain_text("user_id")
            assert pg.locator("#risk-table .error, #histogram .error").count() == 0
            pg.locator("#user-id textarea").fill(reviewer)
            pg.locator("#open-user").click()
            expect(pg.locator("#user-head")).to_contain_text("reviews and no orders or events")
            expect(pg.locator("#timeline")).to_contain_text("review ")
            pg.get_by_role("tab", name="Review desk").click()
            pg.locator("#review-search textarea").fill("B001E4KFG0")
            pg.locator("#review-search textarea").press("Enter")
            expect(pg.locator("#review-target input")).to_have_value("item B001E4KFG0")  # was "... nan"
            pg.get_by_role("tab", name="Data & models").click()
            expect(pg.locator("#data-panel")).to_contain_text("no events (the Operations tab needs orders or events)")
            # Orders uploaded here: the banner and the panel now give the next step, training.
            orders = tmp_path / "orders.csv"
            orders.write_text("user_id,timestamp,behavior,item_id,amount\n"
                              f"{reviewer},2012-01-05 10:00:00,buy,B001E4KFG0,12.50\n"
                              f"{reviewer},2012-03-05 10:00:00,buy,B001E4KFG0,12.50\n", encoding="utf-8")
            pg.locator("#upload input[type=file]").set_input_files(str(orders))
            expect(pg.locator("#upload")).to_contain_text("orders")
            pg.locator("#import").click()
            expect(pg.locator("#import-report")).to_contain_text("imported 2")
            expect(pg.locator("#data-panel")).to_contain_text("events buy 2")
            expect(pg.locator("#banner")).to_contain_text("shopsight predictor train")
            assert "no orders or events" not in pg.locator("#banner").inner_text()
            browser.close()
    finally:
        demo.close()
        store.close()
