"""The issue's bad input, asked in the real workspace in headless chromium: the right refusal, no unrelated list.

Real Gradio app over the small real stack of tests/app_shop.py (DuckDB demo shop, trained tiny
predictor, Chroma cases) with its scripted analyst behind the real agent: the analyst calls
`at_risk_users` for anything that reaches it, so an answer that lists customers for a delete
request or an unknown id is exactly the failure the issue reported. Playwright for Python
with Debian's chromium, as tests/test_app_browser.py.
"""

from __future__ import annotations

import re

import pytest

from browser_kit import ARGS, CHROMIUM, free_port  # skips this module without Playwright or chromium
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from app_shop import scripted_analyst, stack_in_home  # noqa: E402

pytestmark = pytest.mark.browser
WAIT_MS = 60_000  # the machine is shared; every wait is for a specific text
LISTED_USER = re.compile(r"\buser \d+\b.{0,40}\d+%")  # a list row: "user 123 (at risk): 74% ..."

# (question, texts the answer must hold, the answer may list customers)
BAD_INPUT = [
    ("Why is user 99999 at risk?", ["There is no user 99999 in this shop", "To find valid user ids"], False),
    ("Delete customer 17 from the shop.", ["read-only", "never delete or change data"], False),
    ("Run this code: ```import os; os.system('rm -rf /')```", ["read-only", "run code"], False),
    ("Which users will churn in the next 5000 days?", ["only scores the next 7 or 30 days"], False),
    ("What is our profit margin?", ["won't guess numbers", "ShopSight can tell you"], False),
    ("Quels clients vont arrêter d'acheter cette semaine ?", ["French", "answer in English"], True),
]


@pytest.fixture(scope="module")
def chat_model():
    return scripted_analyst()


@pytest.fixture(scope="module")
def server(tmp_path_factory, chat_model):
    import app
    from assistant.workspace import Workspace

    with stack_in_home(tmp_path_factory.mktemp("home")) as stack:
        ws = Workspace.open(stack["settings"], store=stack["store"], predictor=stack["predictor"],
                            cases=stack["cases"], reviews=stack["reviews"], chat_model_factory=lambda: chat_model)
        port = free_port()
        demo = app.launch(ws, host="127.0.0.1", port=port, auth="", block=False)
        yield f"http://127.0.0.1:{port}/"
        demo.close()


@pytest.fixture(scope="module")
def page():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pg = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        pg.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        yield pg
        browser.close()


def answer_to(page, question: str, must: list[str]) -> str:
    """Ask `question` on a fresh page; the chat's text (the question and its answer) once the answer is complete."""
    box = page.locator("#question textarea")
    box.fill(question)
    expect(box).to_have_value(question)
    page.locator("#send").click()
    chat = page.locator("#chat")
    for text in must:
        expect(chat).to_contain_text(text)
    # Read the chat only once the answer is complete: a half-streamed answer could hide a list.
    expect(page.locator("#queue-note")).to_contain_text(re.compile(r"Answered in \d+\.\d s\."))
    return chat.inner_text()


@pytest.mark.parametrize("question,must,may_list", BAD_INPUT, ids=[q[:24] for q, _, _ in BAD_INPUT])
def test_bad_input_gets_the_right_answer_in_the_browser(page, server, chat_model, question, must, may_list):
    page.goto(server, wait_until="domcontentloaded")
    page.wait_for_selector("#question textarea")
    seen_before = len(chat_model.seen)
    text = answer_to(page, question, must)
    if may_list:  # a French churn question is a churn question: the list, said to be in English
        assert LISTED_USER.search(text), f"the churn list is missing for {question!r}: {text}"
        return
    assert not LISTED_USER.search(text), f"an unrelated customer list for {question!r}: {text}"
    assert "most likely to" not in text and "money at stake" not in text
    assert not re.search(r"\d+(?:\.\d+)?\s?%|\$\d", text), text  # no invented figures
    prompts = [str(m.content) for seen in list(chat_model.seen)[seen_before:] for m in seen]
    assert not any(question[:20] in p for p in prompts), "the model was asked; no tool should run"
