"""The workspace in a real browser: the real app over a small real stack, driven by headless chromium.

One app server per module (plus short-lived ones for the login and the broken-model cases),
a scripted chat model behind the real agent (tests/app_shop.py), Playwright for Python with
Debian's chromium (never a downloaded browser). Screenshots of each main view go to the
test's output folder; set SHOPSIGHT_SCREENSHOTS=docs/screenshots to refresh the committed set.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from browser_kit import ARGS, CHROMIUM, free_port  # skips this module without Playwright or chromium
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from app_shop import scripted_analyst, stack_in_home  # noqa: E402

pytestmark = pytest.mark.browser
DRIVER_OR_REASON = re.compile(r"churn risk|too little history|moves the churn probability")
WAIT_MS = 30_000  # the machine is shared: generous, but every wait is for a specific element
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with stack_in_home(home) as parts:
        yield parts


def open_workspace(stack, **kwargs):
    from assistant.workspace import Workspace

    return Workspace.open(kwargs.pop("settings", stack["settings"]), store=stack["store"],
                          predictor=stack["predictor"], cases=stack["cases"], reviews=stack["reviews"], **kwargs)


def start(ws, auth: str = ""):
    import app

    port = free_port()
    demo = app.launch(ws, host="127.0.0.1", port=port, auth=auth, block=False)
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def chat_model():
    return scripted_analyst(delay_s=0.4)  # slow enough that two tabs really overlap


@pytest.fixture(scope="module")
def server(stack, chat_model):
    ws = open_workspace(stack, chat_model_factory=lambda: chat_model)
    demo, url = start(ws)
    yield url, ws
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    target = os.environ.get("SHOPSIGHT_SCREENSHOTS")
    if target:  # the committed set: 64-colour PNGs, a third of the size, still sharp text
        from PIL import Image

        Path(target).mkdir(parents=True, exist_ok=True)
        for png in folder.glob("*.png"):
            Image.open(png).convert("RGB").quantize(colors=64).save(Path(target) / png.name, optimize=True)


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    yield pg
    context.close()


def open_app(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#question textarea")


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def ask(page, text: str) -> None:
    box = page.locator("#question textarea")
    box.fill(text)
    expect(box).to_have_value(text)
    page.locator("#send").click()


# ---------------------------------------------------------------------------- the main flows
def test_ask_shows_answer_tool_steps_and_table(page, server, shots, chat_model):
    url, ws = server
    open_app(page, url)
    ask(page, "Which users will churn this week, and why?")
    chat = page.locator("#chat")
    # The model's takeaway (the scripted analyst repeats the first fact of its prompt), kept by the check.
    expect(chat).to_contain_text("customers are listed, for the next 7 days", timeout=WAIT_MS)
    expect(chat).to_contain_text("at_risk_users")  # the tool step, collapsible
    expect(chat).to_contain_text("Evidence:")  # citations of the final answer
    expect(page.locator("#queue-note")).to_contain_text(re.compile(r"Answered in \d+\.\d s\."))  # the end mark
    top = ws.call_tool("at_risk_users", horizon_days=7, top_k=5)["users"][0]
    expect(chat).to_contain_text(f"user {top['user_id']}")
    table = page.locator("#answer-table")
    expect(table).to_contain_text(top["user_id"])
    expect(table).to_contain_text("p_churn")
    page.screenshot(path=shots / "ask.png")

    ask(page, "And who is at risk this month?")  # a follow-up keeps the conversation
    expect(chat).to_contain_text("customers are listed, for the next 30 days", timeout=WAIT_MS)
    prompts = [" ".join(str(m.content) for m in seen) for seen in chat_model.seen]
    routed = [p for p in prompts if "And who is at risk this month?" in p and "The facts behind it:" not in p]
    assert routed and "Which users will churn this week, and why?" in routed[-1]  # the first turn was kept
    tab(page, "Operations")
    page.locator("#at-risk").click()
    expect(page.locator("#risk-table")).to_contain_text(top["user_id"])
    expect(page.locator("#population")).to_contain_text("customers not lost")
    page.wait_for_selector("#histogram canvas, #histogram svg")
    page.screenshot(path=shots / "operations.png")


def test_drill_down_shows_chart_drivers_cases_and_saves_a_case(page, server, shots):
    url, ws = server
    user = ws.call_tool("at_risk_users", horizon_days=7, top_k=1)["users"][0]["user_id"]
    open_app(page, url)
    tab(page, "Operations")  # the at-risk table is filled on page load; clicking a row opens the user
    cell = page.locator('#risk-table [data-testid="cell-0-1"]')  # first row, user_id column
    expect(cell).to_have_text(user)
    cell.click()
    expect(page.locator("#user-id input, #user-id textarea").first).to_have_value(user)
    expect(page.locator("#user-head")).to_contain_text(f"User {user}: p_churn")
    page.wait_for_selector("#trend canvas, #trend svg")
    # A driver's direction, or the stated reason there is none (tools/predictor/explain.py), never blank.
    expect(page.locator("#drivers")).to_contain_text(DRIVER_OR_REASON)
    expect(page.locator("#similar")).to_contain_text(re.compile(r"\d+@2026\d{4}T"))  # snapshot case ids
    expect(page.locator("#timeline")).to_contain_text(re.compile(r"2026-\d\d-\d\dT"))
    page.locator("#drill").screenshot(path=shots / "drill_down.png")

    before = ws.cases.info()["analyst_cases"]
    page.locator("#conclusion textarea").fill("Stopped after two late deliveries; price-sensitive.")
    page.locator("#outcome textarea").fill("retained after a 10% voucher")
    page.locator("#save-case").click()
    expect(page.locator("#saved-note")).to_contain_text("Saved as case")
    assert ws.cases.info()["analyst_cases"] == before + 1


def test_citations_open_the_evidence(page, server, shots):
    url, ws = server
    top = ws.call_tool("at_risk_users", horizon_days=7, top_k=5)["users"][0]["user_id"]
    open_app(page, url)
    ask(page, "Which users will churn this week, and why?")
    link = page.locator("#chat a", has_text=f"user {top}")  # the answer's citation, a link
    link.click()
    expect(page.get_by_role("tab", name="Operations")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#user-id input, #user-id textarea").first).to_have_value(top)
    expect(page.locator("#user-head")).to_contain_text(f"User {top}: p_churn")
    page.wait_for_selector("#trend canvas, #trend svg")
    expect(page.locator("#drivers")).to_contain_text(DRIVER_OR_REASON)
    expect(page.locator("#user-head")).to_be_in_viewport()  # scrolled to the drill-down
    assert page.url.split("#")[0] == url and len(page.context.pages) == 1  # no navigation, no new tab
    page.screenshot(path=shots / "citations.png")

    category = ws.store.query("SELECT i.category_id FROM reviews r JOIN items i USING (item_id) "
                              "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")["category_id"][0]
    tab(page, "Ask")
    expect(page.locator("#chat")).to_contain_text(f"user {top}")  # still there after the jump
    ask(page, f"Summarize the reviews of category {category}.")
    expect(page.locator("#chat").get_by_text("Evidence:")).to_have_count(2)  # the second answer is complete
    review_link = page.locator("#chat a", has_text=re.compile(r"^review R\d+$")).first
    review_id = review_link.inner_text().split()[1]
    item = ws.review(review_id)["item_id"]
    review_link.click()
    expect(page.get_by_role("tab", name="Review desk")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#cited-review")).to_contain_text(f"Cited review {review_id}")
    expect(page.locator("#review-target input")).to_have_value(f"item {item}")
    expect(page.locator("#review-summary")).to_contain_text(f"Reviews of item {item}")
    expect(page.locator("#cited-review")).to_be_in_viewport()  # scrolled to what the link cited
    page.screenshot(path=shots / "citation_review.png")

    # The agent's answers cite users, items and reviews; a case citation is written the same way,
    # so a link in that format is placed in the chat to open one.
    case = ws.call_tool("similar_cases", user_id=top, k=1)["cases"][0]
    tab(page, "Ask")
    click_citation(page, "case", case["case_id"])
    expect(page.get_by_role("tab", name="Operations")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#cited-case")).to_contain_text(f"Cited case {case['case_id']}")
    expect(page.locator("#cited-case")).to_contain_text(f"What happened: cutoff {case['cutoff']}")
    expect(page.locator("#user-head")).to_contain_text(f"User {case['user_id']}: p_churn")  # the case's user

    tab(page, "Ask")  # an id that is not there: a message, and the chat stays where it was
    click_citation(page, "review", "R9999999")
    expect(page.get_by_text("unknown review id 'R9999999'").first).to_be_visible()
    expect(page.get_by_role("tab", name="Ask")).to_have_attribute("aria-selected", "true")


def click_citation(page, kind: str, value: str) -> None:
    """Put a citation link in the format ui_render.citation_link writes into the chat, and click it."""
    page.evaluate("""([kind, value]) => {
        const link = document.createElement('a');
        link.href = '#cite/' + kind + '/' + encodeURIComponent(value);
        link.className = 'placed-citation';
        link.textContent = kind + ' ' + value;
        document.querySelector('#chat').prepend(link);
    }""", [kind, value])
    page.locator("#chat a.placed-citation").first.click()
    page.evaluate("document.querySelectorAll('#chat a.placed-citation').forEach(link => link.remove())")


def test_review_desk(page, server, shots):
    url, ws = server
    open_app(page, url)
    tab(page, "Review desk")
    page.locator("#review-search input, #review-search textarea").first.fill("dog")
    page.locator("#review-search input, #review-search textarea").first.press("Enter")
    expect(page.locator("#review-target input")).not_to_have_value("", timeout=WAIT_MS)
    page.locator("#show-reviews").click()
    expect(page.locator("#review-summary")).to_contain_text("Reviews of")
    expect(page.locator("#review-summary")).to_contain_text("review R")  # quotes carry review ids
    page.wait_for_selector("#sentiment canvas, #sentiment svg")
    page.wait_for_selector("#aspects canvas, #aspects svg")
    page.screenshot(path=shots / "review_desk.png")


def test_upload_malformed_csv_shows_rejected_rows(page, server, shots, tmp_path):
    url, ws = server
    bad = tmp_path / "retailrocket_events.csv"
    bad.write_text("timestamp,visitorid,event,itemid,transactionid\n"
                   "1433221332117,257597,view,355908,\n"
                   "1433221955914,483717,click,253185,\n"
                   "yesterday,111016,view,318965,\n")
    open_app(page, url)
    tab(page, "Data & models")
    expect(page.locator("#data-panel")).to_contain_text("events")
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    expect(page.locator("#upload")).to_contain_text("retailrocket_events")  # uploaded (the name wraps)
    page.locator("#import").click()
    report = page.locator("#import-report")
    expect(report).to_contain_text("rows read 3", timeout=WAIT_MS)
    expect(report).to_contain_text("rejected 2")
    rejected = page.locator("#rejected")
    expect(rejected).to_contain_text("click")  # the reason names the bad value
    expect(rejected).to_contain_text("yesterday")
    expect(page.locator("#data-panel")).to_contain_text("rejected rows by reason")  # the panel refreshed
    page.screenshot(path=shots / "data_upload.png", full_page=True)


# ---------------------------------------------------------------------------- bad input
def test_empty_and_too_long_questions(page, server, chat_model):
    url, _ = server
    open_app(page, url)
    page.locator("#send").click()
    expect(page.get_by_text("Type a question first.")).to_be_visible()
    # That event leaves the box alone (it had cleared it, and on a loaded machine the clearing
    # could end after the next fill and wipe the long question).
    expect(page.locator("#chat")).not_to_contain_text("processing")
    ask(page, "why " * 5000)  # 20,000 characters
    expect(page.locator("#chat")).to_contain_text("20,000 characters long; the limit is 2,000", timeout=2 * WAIT_MS)
    # Neither reached the model. (Counting calls would race with an earlier test's answer,
    # whose takeaway step may still be running on the shared server.)
    prompts = [str(m.content) for seen in list(chat_model.seen) for m in seen]
    assert not any("why why why" in text for text in prompts)


def test_unknown_user_in_drill_down(page, server):
    url, _ = server
    open_app(page, url)
    tab(page, "Operations")
    page.locator("#user-id input, #user-id textarea").first.fill("no-such-user")
    page.locator("#open-user").click()
    expect(page.get_by_text("unknown user_id 'no-such-user'").first).to_be_visible()


def test_unsupported_upload_format(page, server, tmp_path):
    url, _ = server
    sheet = tmp_path / "events.xlsx"
    sheet.write_bytes(b"PK\x03\x04 not really a spreadsheet")
    open_app(page, url)
    tab(page, "Data & models")
    page.locator("#upload input[type=file]").set_input_files(str(sheet))
    expect(page.locator("#upload")).to_contain_text("events")
    page.locator("#import").click()
    expect(page.locator("#import-report")).to_contain_text("'.xlsx' is not a supported format")


def test_two_tabs_ask_at_once_one_model_run_at_a_time(browser, server, chat_model):
    url, _ = server
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    try:
        pages = [context.new_page(), context.new_page()]
        for pg in pages:
            pg.set_default_timeout(WAIT_MS)
            open_app(pg, url)
        for pg in pages:  # both sent before either is answered (each answer takes >= 0.8 s)
            ask(pg, "Which users will churn this month?")
        for pg in pages:
            expect(pg.locator("#chat")).to_contain_text("customers are listed, for the next 30 days", timeout=WAIT_MS)
        assert chat_model.max_running == 1
    finally:
        context.close()


def test_page_answers_while_a_chat_runs(browser, server):
    url, _ = server
    context = browser.new_context()
    try:
        chat_page, data_page = context.new_page(), context.new_page()
        for pg in (chat_page, data_page):
            pg.set_default_timeout(WAIT_MS)
            open_app(pg, url)
        ask(chat_page, "Which users will churn this week?")
        tab(data_page, "Operations")
        data_page.locator("#at-risk").click()  # not in the chat's concurrency group: answers meanwhile
        expect(data_page.locator("#risk-table")).to_contain_text("p_churn")
        expect(chat_page.locator("#chat")).to_contain_text("customers are listed, for the next 7 days", timeout=WAIT_MS)
    finally:
        context.close()


def test_login_right_password_works_wrong_is_refused(browser, stack, chat_model):
    demo, url = start(open_workspace(stack, chat_model_factory=lambda: chat_model), auth="ana:s3cret-pw")
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        pg.goto(url, wait_until="domcontentloaded")
        pg.wait_for_selector("input[type=password]")
        assert pg.locator("#question").count() == 0
        pg.locator("input[type=text]").first.fill("ana")
        pg.locator("input[type=password]").fill("wrong")
        pg.locator("input[type=password]").press("Enter")
        expect(pg.get_by_text("Incorrect Credentials", exact=False)).to_be_visible()
        assert pg.locator("#question").count() == 0
        pg.locator("input[type=text]").first.fill("ana")
        pg.locator("input[type=password]").fill("s3cret-pw")
        pg.locator("input[type=password]").press("Enter")
        pg.wait_for_selector("#question textarea")
    finally:
        context.close()
        demo.close()


def test_model_failing_to_load_ui_starts_and_says_what_to_run(browser, stack, shots):
    from dataclasses import replace

    settings = replace(stack["settings"], model="/no/such/model-folder")
    ws = open_workspace(stack, settings=settings)  # the real loader: fails on the first question
    assert "llm" in ws.problems
    demo, url = start(ws)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        open_app(pg, url)
        expect(pg.locator("#banner")).to_contain_text("fix SHOPSIGHT_MODEL")
        ask(pg, "Which users will churn this week?")
        expect(pg.locator("#chat")).to_contain_text("The assistant is not available")
        expect(pg.locator("#chat")).to_contain_text("shopsight models install")
        tab(pg, "Operations")  # the rest of the workspace still works
        pg.locator("#at-risk").click()
        expect(pg.locator("#risk-table")).to_contain_text("p_churn")
        tab(pg, "Ask")
        pg.screenshot(path=shots / "model_missing.png")
    finally:
        context.close()
        demo.close()


def test_server_binds_localhost_only(server):
    url, _ = server
    assert url.startswith("http://127.0.0.1:")
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex(("127.0.0.1", port)) == 0
