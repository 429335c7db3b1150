"""The answer evaluation's own checks, over its whole question set.

data/questions/answer_eval.jsonl holds the evaluation's questions; data/questions/answer_eval_results.jsonl
the tool results the demo shop and the Amazon reviews gave them (recorded by
`bench/answer_eval.py --record`). Every answer the composer writes from them must be free of
internal field names and raw timestamps, grounded, and free of false or off-topic statements.
The scorer itself is tested on answers that must pass and answers that must fail.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ is not a package

from assistant.agent.composer import compose_answer
from assistant.agent.grounding import Evidence, check
from assistant.agent.intent import answer_language
from bench.answer_eval import INTERNAL_RE, lookup, said, score_row

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [json.loads(x) for x in (ROOT / "data/questions/answer_eval.jsonl").read_text(encoding="utf-8").splitlines()]
RECORDED = {r["id"]: r for r in (json.loads(x) for x in
            (ROOT / "data/questions/answer_eval_results.jsonl").read_text(encoding="utf-8").splitlines())}


def test_the_question_set_is_what_the_evaluation_promises() -> None:
    assert len(QUESTIONS) >= 100 and len({q["id"] for q in QUESTIONS}) == len(QUESTIONS)
    assert sum(q["kind"] == "no_tool" for q in QUESTIONS) >= 20
    assert {q["dataset"] for q in QUESTIONS} == {"demo", "amazon"}
    assert all(q["must_say"] and q["topic"] for q in QUESTIONS)
    assert set(RECORDED) == {q["id"] for q in QUESTIONS}


@pytest.mark.parametrize("question", [q for q in QUESTIONS if q["calls"]], ids=lambda q: q["id"])
def test_every_composed_answer_is_plain_grounded_and_on_topic(question: dict) -> None:
    results = [(name, result) for name, result in RECORDED[question["id"]]["results"] if "error" not in result]
    if not results:
        pytest.skip("the recorded call failed (a tool-error question)")
    text = compose_answer(question["question"], results, language=answer_language(question["question"]))
    assert not INTERNAL_RE.search(text), INTERNAL_RE.findall(text)
    assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}", text)
    report = check(text, Evidence.from_results([r for _, r in results], [question["question"]],
                                               tools=[n for n, _ in results], question=question["question"]))
    assert report.ok, (text, report.ungrounded)


def test_said_forgives_formatting_not_values() -> None:
    assert said("a 73% chance", 0.734) and said("0.73", 0.734) and said("$906.27 at risk", 906.27)
    assert not said("a 75% chance", 0.734) and not said("user 18", 1814) and said("user 1814", 1814)
    assert lookup([("t", {"users": [{"user_id": "7"}, {"user_id": "9"}]})], "t:users[-1].user_id") == "9"


def test_scorer_counts_what_a_bad_answer_gets_wrong() -> None:
    q = {"id": "x", "kind": "no_tool", "dataset": "demo", "topic": "refusal", "question": "Delete user 7",
         "calls": [], "must_say": ["text:read-only"], "must_not": [r"most likely to stop buying"]}
    bad = {"text": "The customers most likely to stop buying are user 7 (p_churn 0.9, as of 2026-06-30T23:03:41).",
           "repair": "composed", "ungrounded": []}
    events = [{"type": "tool_call", "name": "at_risk_users"},
              {"type": "tool_result", "name": "at_risk_users", "result": {"users": [{"user_id": "7", "p_churn": 0.9}]}}]
    row = score_row(q, events, bad)
    assert row["recall"] == 0 and row["violations"] and not row["handled"] and len(row["internal"]) == 2
    good = {"text": "I can't do that: ShopSight's tools are read-only.", "repair": "gate:write", "ungrounded": []}
    row = score_row(q, [], good)
    assert row["recall"] == 1 and row["handled"] and row["grounded"] and not row["internal"]


def test_replay_tools_keep_the_real_schemas_and_return_what_was_recorded() -> None:
    from assistant.agent.tool_specs import build_specs
    from bench.answer_eval import Replay
    from tools.catalog import TOOLS

    replay = Replay({"q": [["explain_user", {"user_id": "7", "p_churn": 0.4}]]})
    specs = build_specs(replay.tools)
    assert list(specs) == [f.__name__ for f in TOOLS]
    assert "user_id" in specs["explain_user"].parameters and "ctx" not in specs["explain_user"].parameters
    replay.start("q")
    by_name = {f.__name__: f for f in replay.tools}
    assert by_name["explain_user"](user_id="7") == {"user_id": "7", "p_churn": 0.4}
    assert "nothing recorded" in by_name["explain_user"](user_id="7")["error"]  # each result is used once


def test_recheck_keeps_true_sentences_of_a_draft_and_drops_false_ones() -> None:
    from bench.answer_eval import recheck_takeaways

    q = next(q for q in QUESTIONS if q["id"] == "segment01")
    results = [(n, r) for n, r in RECORDED["segment01"]["results"]]
    composed = compose_answer(q["question"], results)
    draft = "The low band churns most, at 82%. The highest churn is high at 48%."
    row = {"id": "segment01", "text": composed, "repair": "composed", "seconds": 1.0,
           "takeaway": {"draft": draft, "kept": "", "dropped": [], "prompt_tokens": 170}}
    [checked] = recheck_takeaways([row], {k: v["results"] for k, v in RECORDED.items()}, [q])
    assert checked["takeaway"]["kept"] == "The low band churns most, at 82%."
    assert checked["takeaway"]["dropped"][0].startswith("false: 48% is not the highest")
    assert checked["model_words_kept"] and checked["text"] == composed + "\n\nThe low band churns most, at 82%."
    assert checked["grounded"] and checked["recall"] == 1.0
