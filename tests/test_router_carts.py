"""Cart questions reach open_carts: the exemplar prior over the real question bank (prompts/tool_questions.yaml)
with the packaged MiniLM, and the window the question names filled into window_days.

Real parts: the question bank, the packaged sentence encoder, the catalog's own tools and their schemas
(tools.catalog.build_tools over a context without a store: schemas only).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from assistant.agent.tool_prior import ExemplarPrior
from assistant.agent.tool_specs import build_specs, fill_time_span, ground_arguments
from tools.catalog import ToolContext, build_tools

# The ops lead's words (new_user_trial.md Round 8), none of them a train phrasing of the bank.
CART_QUESTIONS = ["What is in carts right now?", "Which carts were abandoned this week?", "What's sitting in carts?",
                  "Who has items in their cart and is likely to check out?", "Most carted items not bought?"]
# Questions that must stay with their tools after the new tool's examples joined the bank.
OTHERS = {"Which customers will churn this week?": "at_risk_users",
          "Summarize the reviews of item P00458.": "review_summary",
          "What will user 1814 buy next?": "predict_next"}


@pytest.fixture(scope="module")
def prior_and_names(tmp_path_factory):
    from tools.embeddings import MiniLMEmbedding

    ctx = ToolContext(store=None, cutoff=datetime(2026, 6, 30), audit_path=tmp_path_factory.mktemp("a") / "a.jsonl")
    names = [f.__name__ for f in build_tools(ctx)]
    return ExemplarPrior(MiniLMEmbedding()), names


@pytest.mark.parametrize("question", CART_QUESTIONS)
def test_cart_questions_lean_to_open_carts(prior_and_names, question):
    prior, names = prior_and_names
    logp = prior.log_prior(question, names)
    assert max(logp, key=logp.get) == "open_carts", sorted(logp.items(), key=lambda kv: -kv[1])[:3]


@pytest.mark.parametrize("question, tool", OTHERS.items())
def test_other_questions_keep_their_tools(prior_and_names, question, tool):
    prior, names = prior_and_names
    logp = prior.log_prior(question, names)
    assert max(logp, key=logp.get) == tool


def test_the_window_the_question_names_becomes_window_days(tmp_path):
    ctx = ToolContext(store=None, cutoff=datetime(2026, 6, 30), audit_path=tmp_path / "a.jsonl")
    spec = build_specs(build_tools(ctx))["open_carts"]
    args, filled = fill_time_span(spec, {}, "Which carts were abandoned over the past month?")
    assert args == {"window_days": 30} and filled == ["window_days"]
    kept, dropped = ground_arguments(spec, {"window_days": 30, "top_k": 100}, ["Which carts were abandoned this month?"])
    assert kept.get("window_days") == 30 and "top_k" not in kept  # 100 is nowhere in the question
