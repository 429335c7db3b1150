"""The workspace's pure parts (assistant/ui_render.py, app.py): events, tables, panels, the login file."""

from __future__ import annotations

import pytest

import app
from assistant import ui_render
from assistant.agent.events import AgentEvent


def _events() -> list[AgentEvent]:
    result = {"horizon_days": 7, "users": [{"rank": 1, "user_id": "42", "p_churn": 0.81},
                                           {"rank": 2, "user_id": "7", "p_churn": 0.64}]}
    return [
        AgentEvent("step", {"step": 1, "max_steps": 4}),
        AgentEvent("tool_call", {"name": "at_risk_users", "arguments": {"horizon_days": 7}, "id": "c1", "routed": True}),
        AgentEvent("tool_result", {"name": "at_risk_users", "result": result, "id": "c1"}),
        AgentEvent("tool_call", {"name": "explain_user", "arguments": {"user_id": "x"}, "id": "c2", "routed": False}),
        AgentEvent("error", {"message": "explain_user: unknown user_id 'x'", "hint": "check the id"}),
        AgentEvent("tool_result", {"name": "explain_user", "result": {"error": "unknown user_id 'x'",
                                                                     "hint": "check the id"}, "id": "c2"}),
        AgentEvent("error", {"message": "ungrounded claims: 0.99", "hint": "regenerating once"}),
        AgentEvent("token", {"text": "User 42 is the "}),
        AgentEvent("token", {"text": "most at risk (0.81). "}),
        AgentEvent("answer", {"text": "User 42 is the most at risk (0.81).",
                              "citations": [{"kind": "user", "id": "42", "tool": "at_risk_users"}],
                              "ungrounded": ["0.99"], "messages": []}),
    ]


def test_render_events_steps_stream_and_answer():
    frames, streamed = [], []
    for chat, event, table in ui_render.render_events(iter(_events()), []):
        frames.append((chat, event, table))
        if event.type == "token":  # the UI sends each state as it comes: record it then
            streamed.append(chat[-1].content)
    chat, last_event, _ = frames[-1]
    assert last_event.type == "answer"
    steps = [m for m in chat if m.metadata]
    titles = [m.metadata["title"] for m in steps]
    assert titles[0] == "⚙ Tool at_risk_users(horizon_days=7) (chosen by the router)"
    assert titles[1].startswith("⚙ Tool explain_user(user_id='x')") and titles[1].endswith("— error")
    assert titles[2] == "⚠ ungrounded claims: 0.99"  # a model mistake gets its own step; a tool error does not
    assert all(m.metadata["status"] == "done" for m in steps)
    assert '"user_id": "42"' in steps[0].content and "**Result**" in steps[0].content
    answer = chat[-1]
    assert answer.content.startswith("User 42 is the most at risk (0.81).")
    assert "[user 42](#cite/user/42) (at_risk_users)" in answer.content  # a link that opens the drill-down
    assert "Left out" in answer.content and "0.99" in answer.content
    # The table behind the answer comes from the last successful tool result.
    tables = [t for _, _, t in frames if t is not None and len(t)]
    assert list(tables[-1]["user_id"]) == ["42", "7"]
    # Tokens stream into one message before the answer event replaces it with the checked text.
    assert streamed == ["User 42 is the ", "User 42 is the most at risk (0.81). "]


def test_citation_links_encode_ids_and_open_only_known_views():
    assert ui_render.citation_link("case", "211@20260501T213739Z") == \
        "[case 211@20260501T213739Z](#cite/case/211%4020260501T213739Z)"
    assert ui_render.citation_link("case", "analyst:ab/c") == "[case analyst:ab/c](#cite/case/analyst%3Aab%2Fc)"
    assert ui_render.citation_link("review", "R1") == "[review R1](#cite/review/R1)"
    assert ui_render.citation_link("segment", "new") == "`segment new`"  # no view for it: plain text
    assert ui_render.citations_markdown([]) == ""


def test_cited_review_and_case_markdown():
    review = {"review_id": "R7", "user_id": "42", "item_id": "P1", "ts": "2026-05-01", "rating": 1,
              "title": "Late", "text": "Came late.<br />Box <b>torn</b>."}
    text = ui_render.review_markdown(review)
    assert "Cited review `R7`" in text and "1★ by user `42` on item `P1`" in text
    assert "Came late. Box &lt;b>torn&lt;/b>." in text  # line breaks kept as spaces, markup shown as text
    case = {"case_id": "42@20260501T000000Z", "text": "A frequent buyer.",
            "metadata": {"spend_7d": 0.0, "churned_7d": True, "cutoff": "2026-05-01", "kind": "snapshot"}}
    assert ui_render.case_markdown(case).endswith(
        "**What happened:** cutoff 2026-05-01 · churned 7d True · spend 7d 0.0")


def test_rows_frame_and_errors():
    assert ui_render.rows_frame({"segments": [{"segment": "a", "users": 3}]}).shape == (1, 2)
    assert ui_render.rows_frame({"error": "x"}).empty and ui_render.rows_frame("text").empty
    assert ui_render.error_text({"error": "unknown user_id 'x'", "hint": "check"}) == "unknown user_id 'x' — check"
    assert ui_render.error_text({"users": []}) is None


def test_driver_rows_flatten_events_and_features():
    event = {"type": "event", "event": {"ts": "2026-04-07T17:19:46", "behavior": "buy", "item_id": "P1",
                                        "category_id": "tea"}, "effect": -0.01, "direction": "lowers churn risk"}
    assert ui_render.driver_row(event)["driver"] == "buy P1 (tea) at 2026-04-07T17:19:46"
    assert ui_render.driver_row({"type": "feature", "feature": "recency", "effect": 0.2})["driver"] == "recency"


def test_read_auth(tmp_path):
    assert app.read_auth("") is None
    assert app.read_auth("ana:pw:with:colons") == [("ana", "pw:with:colons")]
    users = tmp_path / "users.txt"
    users.write_text("# team\nana:one\n\nbo:two\n")
    assert app.read_auth(str(users)) == [("ana", "one"), ("bo", "two")]
    users.write_text("ana:one\nbo\n")
    with pytest.raises(SystemExit, match=r"users.txt:2: expected 'user:password'"):
        app.read_auth(str(users))
    with pytest.raises(SystemExit, match="expected 'user:password'"):
        app.read_auth("nopassword")


def test_summary_panel_lists_parts_and_problems():
    text = ui_render.summary_panel({"db_path": "/x/shop.duckdb", "tables": {"events": 1200, "users": 10},
                               "span": ("2026-01-01", "2026-06-30"), "as_of": "2026-06-30 00:00:00",
                               "rejected_by_reason": {"unknown event": 2}, "llm": "qwen2.5-coder-0.5b",
                               "problems": {"llm": "not installed; run `shopsight models install`"}})
    assert "1,200 events" in text and "unknown event (2)" in text
    assert "⚠ **llm**: not installed; run `shopsight models install`" in text


def test_main_refuses_without_a_store(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPSIGHT_DB", str(tmp_path / "none.duckdb"))
    with pytest.raises(SystemExit, match="run `shopsight demo`"):
        app.main(["--port", "0"])


def test_summary_panel_shows_parts_being_built_with_progress_not_a_fix():
    text = ui_render.summary_panel({"tables": {"events": 5}, "span": ("a", "b"), "as_of": "b",
                                    "problems": {"predictor": "no trained predictor; run `shopsight predictor train`",
                                                 "llm": "not installed"},
                                    "jobs": {"predictor": "not ready yet: training the predictor, 40 %, about 70 s left"}})
    assert "### Being built in the background" in text
    assert "- **predictor**: not ready yet: training the predictor, 40 %, about 70 s left" in text
    assert "shopsight predictor train" not in text and "⚠ **llm**: not installed" in text
