"""The exemplar prior over tools and the router that adds it to the model's name scores.

Real parts only: the question bank in prompts/, a real (hashing) embedding function, and the
tiny random-init Qwen2 chat model of test_agent for the router.
"""

from __future__ import annotations

import math
import re
from typing import Literal

import pytest
import yaml
from langchain_core.messages import HumanMessage, SystemMessage

from assistant.agent.tool_prior import QUESTIONS_FILE, ExemplarPrior, example_questions
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
    from assistant.agent.router import LikelihoodRouter
    from assistant.agent.tool_specs import build_specs

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


BANK = """
horizons:
  7: ["this week"]
  30: ["this month"]
segment_by:
  tenure: ["tenure"]
entries:
  - tool: at_risk_users
    args: {horizon_days: "{h}"}
    train: ["Which customers will churn {h}?"]
    heldout: ["Who leaves {h}?"]
  - tool: at_risk_users
    args: {horizon_days: "{h}", rank_by: value_at_risk}
    train: ["Rank customers by money at stake {h}."]
"""


def test_example_arguments_come_from_slots_and_literals(tmp_path) -> None:
    from assistant.agent.tool_prior import example_calls

    calls = example_calls(yaml.safe_load(BANK))["at_risk_users"]
    assert ("Which customers will churn this month?", {"horizon_days": 30}) in calls
    assert ("Rank customers by money at stake this week.", {"horizon_days": 7, "rank_by": "value_at_risk"}) in calls
    assert not any("leaves" in text for text, _ in calls)


def test_enum_arguments_the_user_did_not_name_follow_the_nearest_example(tmp_path) -> None:
    from assistant.agent.router import RouteTrace, _settle_choices
    from assistant.agent.tool_specs import build_specs

    bank = tmp_path / "bank.yaml"
    bank.write_text(BANK, encoding="utf-8")
    prior = ExemplarPrior(HashingEmbedding(), questions_file=bank)
    assert prior.argument_vote("Rank our customers by the money at stake", "at_risk_users", "rank_by") == (
        True, "value_at_risk")
    assert prior.argument_vote("Which customers will churn soon?", "at_risk_users", "rank_by") == (True, None)
    assert prior.argument_vote("anything", "review_summary", "item_id") == (False, None)

    def at_risk_users(horizon_days: int = 7, rank_by: Literal["p_churn", "value_at_risk"] = "p_churn") -> dict:
        """Users at risk.

        Args:
            horizon_days: days ahead.
            rank_by: the ranking.
        """
        return {}

    spec = build_specs([at_risk_users])["at_risk_users"]
    assert spec.parameters["rank_by"]["enum"] == ["p_churn", "value_at_risk"]
    question = "Which customers will churn soon?"
    trace = RouteTrace()
    settled = _settle_choices(spec, {"horizon_days": 7, "rank_by": "value_at_risk"}, [question], question, prior, trace)
    assert settled == {"horizon_days": 7} and trace.dropped == ["rank_by"]  # the default ranking applies
    named = "Which customers have the most value at risk?"
    assert _settle_choices(spec, {"rank_by": "value_at_risk"}, [named], named, prior, RouteTrace()) == {
        "rank_by": "value_at_risk"}  # the user named it
    money = "Rank customers by the money at stake this week."
    assert _settle_choices(spec, {"horizon_days": 7}, [money], money, prior, RouteTrace()) == {
        "horizon_days": 7, "rank_by": "value_at_risk"}


def test_required_arguments_must_come_from_the_conversation() -> None:
    from assistant.agent.tool_specs import build_specs, required_grounded

    spec = build_specs(Shop().tools())["explain_user"]
    texts = ["Why is user u_101 at risk in the next 7 days?"]
    assert required_grounded(spec, {"user_id": "u_101"}, texts)
    assert not required_grounded(spec, {"user_id": "user_id"}, texts)  # a parameter name copied as a value
    assert not required_grounded(spec, {"user_id": "u_999"}, texts)  # an id nobody mentioned
    assert not required_grounded(spec, {}, texts)
    assert required_grounded(build_specs(Shop().tools())["at_risk_users"], {"horizon_days": 7}, texts)


def test_router_passes_over_a_tool_whose_required_id_nobody_gave(tiny_chat) -> None:  # noqa: F811
    from assistant.agent.router import LikelihoodRouter
    from assistant.agent.tool_specs import build_specs, required_grounded

    specs = build_specs(Shop().tools())
    question = "Which customers will churn this week?"
    # A strong prior puts explain_user first; the question names no user, so it cannot be meant.
    prior = ExemplarPrior(HashingEmbedding(), examples={"explain_user": [question], "at_risk_users": ["zzz"]})
    router = LikelihoodRouter(tiny_chat, max_arg_tokens=8, prior=prior, prior_weight=50.0, max_candidates=7)
    messages = [SystemMessage("You are ShopSight."), HumanMessage(question)]
    choice = router.route(messages, specs, question=question)
    ranked = sorted(router.last.scores, key=router.last.scores.get, reverse=True)
    assert ranked[0] == "explain_user"
    texts = [question]
    if router.last.passed_over:  # every tool passed over lacked a grounded required argument
        assert router.last.passed_over == ranked[: len(router.last.passed_over)]
        assert choice["name"] == ranked[len(router.last.passed_over)]
        assert required_grounded(specs[choice["name"]], choice["args"], texts)
    else:  # the first tool fit, or none did and the first one's call stands
        assert choice["name"] == ranked[0]
    assert "explain_user" in router.last.passed_over or required_grounded(specs["explain_user"], choice["args"], texts) \
        or all(not required_grounded(specs[n], {}, texts) for n in ranked[:7] if specs[n].required)


class CountingEmbedding(HashingEmbedding):
    """Hashing embeddings that count the texts they embed and name themselves for caches."""

    cache_key = "test-hashing-64"

    def __init__(self) -> None:
        super().__init__()
        self.texts_embedded = 0

    def __call__(self, input):  # noqa: A002  (Chroma's parameter name)
        self.texts_embedded += len(input)
        return super().__call__(input)


def test_example_vectors_are_cached_between_priors(tmp_path) -> None:
    question, names = "Which customers will churn this month?", ["at_risk_users", "review_summary"]
    first = CountingEmbedding()
    expected = ExemplarPrior(first, examples=EXAMPLES, cache_dir=tmp_path).log_prior(question, names)
    assert first.texts_embedded == 4 + 1  # the examples, then the question
    assert len(list(tmp_path.glob("*.npy"))) == 1
    second = CountingEmbedding()
    assert ExemplarPrior(second, examples=EXAMPLES, cache_dir=tmp_path).log_prior(question, names) == \
        pytest.approx(expected)
    assert second.texts_embedded == 1  # only the question: the examples came from the cache
    other = CountingEmbedding()
    ExemplarPrior(other, examples={**EXAMPLES, "segment_report": ["Compare segments"]}, cache_dir=tmp_path) \
        .log_prior(question, names)
    assert other.texts_embedded == 5 + 1  # other example texts: another cache file, embedded again
    unnamed = HashingEmbedding()  # no cache_key: nothing is written for it
    ExemplarPrior(unnamed, examples=EXAMPLES, cache_dir=tmp_path / "unnamed").log_prior(question, names)
    assert not (tmp_path / "unnamed").exists()


def test_prior_counts_less_for_a_question_near_no_example() -> None:
    prior = ExemplarPrior(HashingEmbedding(), examples=EXAMPLES)
    names = ["at_risk_users", "review_summary"]
    assert prior.confidence("Which customers will churn this week?", names) == 1.0  # an example itself
    assert prior.confidence("zzz qqq", names) == 0.0  # shares nothing with any example
    prior.unsure_below, prior.sure_from = -1.0, 3.0  # a wide ramp: strictly between for any question
    assert 0.0 < prior.confidence("Which customers will churn this week?", names) < 1.0
