"""The exemplar prior over tools and the router that adds it to the model's name scores.

Real parts only: the question bank in prompts/, a real (hashing) embedding function, and the
tiny random-init Qwen2 chat model of test_agent for the router.
"""

from __future__ import annotations

import math
import re

import pytest
import yaml
from langchain_core.messages import HumanMessage, SystemMessage

from assistant.tool_prior import QUESTIONS_FILE, ExemplarPrior, example_questions
from test_agent import Shop, tiny_chat  # noqa: F401  (tiny_chat is a fixture)
from test_cases import HashingEmbedding

EXAMPLES = {"at_risk_users": ["Which customers will churn this week?", "Who is most likely to stop buying?"],
            "review_summary": ["Summarize the reviews of item P00123.", "What do customers say about the product?"]}


def test_examples_are_the_train_phrasings_with_slots_filled() -> None:
    bank = yaml.safe_load(QUESTIONS_FILE.read_text(encoding="utf-8"))
    examples = example_questions(bank)
    assert set(examples) == {e["tool"] for e in bank["entries"]}
    texts = [t for ts in examples.values() for t in ts]
    assert texts and not any("{" in t for t in texts)
    # Held-out phrasings never leak in: none of them, with any filling, matches an example.
    for entry in bank["entries"]:
        for phrasing in entry.get("heldout", []):
            pattern = re.compile("^" + re.sub(r"\\\{\w+\\\}", ".+", re.escape(phrasing)) + "$")
            assert not any(pattern.match(t) for t in texts), phrasing


def test_prior_prefers_the_tool_whose_examples_are_closest() -> None:
    prior = ExemplarPrior(HashingEmbedding(), examples=EXAMPLES)
    names = ["at_risk_users", "review_summary", "segment_report"]
    logp = prior.log_prior("Which customers will churn this month?", names)
    assert max(logp, key=logp.get) == "at_risk_users"
    assert math.isclose(sum(math.exp(v) for v in logp.values()), 1.0, rel_tol=1e-6)
    assert logp["segment_report"] == min(logp.values())  # no examples: counted as the least similar
    logp = prior.log_prior("Summarize what customers say about item P00999", names)
    assert max(logp, key=logp.get) == "review_summary"


def test_prior_is_neutral_when_no_tool_has_examples() -> None:
    prior = ExemplarPrior(HashingEmbedding(), examples={"other_tool": ["anything"]})
    assert prior.log_prior("Which customers will churn?", ["at_risk_users", "review_summary"]) == {
        "at_risk_users": 0.0, "review_summary": 0.0}


def test_router_adds_the_weighted_prior_to_the_model_scores(tiny_chat) -> None:  # noqa: F811
    from assistant.router import LikelihoodRouter
    from assistant.tool_specs import build_specs

    specs = build_specs(Shop().tools())
    prior = ExemplarPrior(HashingEmbedding(), examples=EXAMPLES)
    messages = [SystemMessage("You are ShopSight."), HumanMessage("Summarize the reviews of item P00123.")]
    router = LikelihoodRouter(tiny_chat, max_arg_tokens=8, prior=prior, prior_weight=50.0)
    choice = router.route(messages, specs, question="Summarize the reviews of item P00123.")
    logp = prior.log_prior("Summarize the reviews of item P00123.", list(specs))
    for name in specs:
        assert router.last.scores[name] == pytest.approx(router.last.model_scores[name] + 50.0 * logp[name])
    assert choice["name"] == "review_summary"  # a random model's preference cannot outweigh a strong prior
    plain = LikelihoodRouter(tiny_chat, max_arg_tokens=8)
    plain.route(messages, specs)
    assert plain.last.scores == pytest.approx(router.last.model_scores)
