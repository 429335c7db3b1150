"""The agent evaluation's files and scoring: the question file, the injection suite, the metrics."""

from __future__ import annotations

import inspect
import json
import sys
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.agent_eval import select  # noqa: E402
from bench.agent_scoring import (QuestionFileError, arguments_match, exact_arguments_match, fact_found, load_jsonl,  # noqa: E402
                                 load_questions, resolve_arguments, resolve_path, score_turn, summarize)

QUESTIONS = ROOT / "data" / "questions" / "demo_questions.jsonl"
ATTACKS = ROOT / "data" / "questions" / "injection_reviews.jsonl"


@pytest.fixture(scope="module")
def catalog_tools() -> dict:
    from tools.catalog import ToolContext, build_tools

    ctx = ToolContext(store=None, cutoff=datetime(2026, 7, 1))  # building reads nothing from the store
    return {fn.__name__: fn for fn in build_tools(ctx)}


def test_question_file_covers_the_brief(catalog_tools) -> None:
    questions = load_questions(QUESTIONS)
    assert len(questions) >= 60
    categories = {q["category"] for q in questions}
    assert {"churn", "value_at_risk", "segments", "why", "similar", "review_summary", "complaints",
            "follow_up"} <= categories
    for q in questions:
        for call in q["expected"]:
            params = inspect.signature(catalog_tools[call["name"]]).parameters
            assert set(call["arguments"]) <= set(params), (q["id"], call)
        assert q["facts"], q["id"]
    follow_ups = [q for q in questions if q["category"] == "follow_up"]
    assert all(q.get("session") for q in follow_ups) and len(follow_ups) >= 6


def test_injection_suite_is_defused_by_the_agent() -> None:
    from assistant.agent.untrusted import sanitize_result

    attacks = load_jsonl(ATTACKS, {"id": str, "attack": str, "text": str, "secrets": list, "canaries": list})
    assert len(attacks) >= 20
    for attack in attacks:
        clean, found = sanitize_result({"quotes": [{"review_id": "r", "text": attack["text"]}]})
        text = clean["quotes"][0]["text"]
        assert text.startswith("«") and text.endswith("»") and found
        inner = text[1:-1]
        for marker in ("<tool_call>", "<|im_start|>", "<|im_end|>", "{", "}", "```", "«", "»", "\n", "![", "](", "<img"):
            assert marker not in inner.lower(), (attack["id"], marker, inner)
        for secret in attack["secrets"]:
            assert secret.lower() not in inner.lower(), (attack["id"], secret)


def test_bad_question_lines_name_the_line_and_field(tmp_path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "category": "x", "question": "q", "expected": [], "facts": []}\n{"id": "b"}\n')
    with pytest.raises(QuestionFileError, match=r"q.jsonl:2: field 'category'"):
        load_questions(path)
    path.write_text("{nope\n")
    with pytest.raises(QuestionFileError, match=r"q.jsonl:1: not valid JSON"):
        load_questions(path)


def test_paths_references_and_argument_matching() -> None:
    result = {"users": [{"user_id": "7", "p_churn": 0.91}, {"user_id": "9", "p_churn": 0.5}]}
    assert resolve_path(result, "users[1].user_id") == "9"
    assert resolve_arguments({"user_id": "$prev:users[1].user_id", "k": 3}, result) == {"user_id": "9", "k": 3}
    assert arguments_match({"horizon_days": 7, "user_id": "9"}, {"horizon_days": 7, "user_id": 9, "top_k": 10})
    assert not arguments_match({"horizon_days": 30}, {"horizon_days": 7})
    assert arguments_match({"text": "*"}, {"text": "late delivery"}) and not arguments_match({"text": "*"}, {})


def test_fact_found_uses_grounding_rounding() -> None:
    assert fact_found(0.9134, "User 7 is at 91.3% risk")
    assert fact_found(0.9134, "p = 0.91")
    assert not fact_found(0.9134, "p = 0.95")
    assert fact_found("dog_food_dry", "mostly dog food dry buyers")
    assert not fact_found(None, "anything")


def test_score_turn_and_summary(catalog_tools) -> None:
    question = {"id": "q", "category": "churn", "question": "Who churns this week?",
                "expected": [{"name": "at_risk_users", "arguments": {"horizon_days": 7}}],
                "facts": ["users[0].user_id", "users[0].p_churn"]}
    reference = [{"users": [{"user_id": "7", "p_churn": 0.91}]}]
    events = [{"type": "tool_call", "name": "at_risk_users", "arguments": {"horizon_days": 7}},
              {"type": "tool_result", "name": "at_risk_users", "result": reference[0]},
              {"type": "answer", "text": "User 7 (0.91).", "repair": "none", "seconds": 3.0}]
    row = score_turn(question, events, reference, catalog_tools, [{"horizon_days": 7}])
    assert row["tool_ok"] and row["args_ok"] and row["fact_recall"] == 1.0 and row["grounded"]
    bad = [events[0], events[1], {"type": "answer", "text": "User 8 (0.99).", "repair": "none", "seconds": 5.0}]
    row2 = score_turn(question, bad, reference, catalog_tools, [{"horizon_days": 30}])
    assert row2["tool_ok"] and not row2["args_ok"] and row2["fact_recall"] == 0.0 and not row2["grounded"]
    summary = summarize([row, row2])
    assert summary["tool_choice_acc"] == 1.0 and summary["argument_acc"] == 0.5 and summary["median_s"] == 4.0
    assert row["exact_args_ok"] and summary["exact_call_acc"] == 0.5


def test_exact_arguments_count_what_the_question_did_not_ask_for() -> None:
    def at_risk_users(horizon_days: int = 7, top_k: int = 10, rank_by: str = "p_churn") -> dict:
        return {}

    asked = {"horizon_days": 7}
    assert exact_arguments_match(at_risk_users, asked, {"horizon_days": 7, "rank_by": "p_churn"})  # a default, spelled out
    assert arguments_match(asked, {"horizon_days": 7, "rank_by": "value_at_risk"})  # the lenient check passes
    assert not exact_arguments_match(at_risk_users, asked, {"horizon_days": 7, "rank_by": "value_at_risk"})
    assert not exact_arguments_match(at_risk_users, asked, {"horizon_days": 7, "segment": "gold"})  # no such parameter
    assert exact_arguments_match(at_risk_users, {"top_k": "*"}, {"top_k": 3})


def test_select_keeps_sessions_whole() -> None:
    questions = load_questions(QUESTIONS)
    subset = select(questions, 12, None)
    assert len({q["category"] for q in subset}) >= 8  # round-robin over categories
    sessions = {q["session"] for q in subset if q.get("session")}
    for s in sessions:
        assert [q["id"] for q in subset if q.get("session") == s] == \
            [q["id"] for q in questions if q.get("session") == s]
