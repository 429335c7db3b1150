"""The failure classes the held-out questions showed (bench/results/agent_eval.md, Round 7), one test each.

Ops staff drop the noun before an id ("why is 4955 at risk?"), write spans as shorthand or in their
own language ("7d", "este mes", "本月"), name a segment or category the model then leaves out, and
ask for a ranking by name ("by lapse probability"). Real parts: tool functions with the same
read-only `known_values` checks the catalog attaches, their real schemas (build_specs).
"""

from __future__ import annotations

from typing import Literal, Optional

from assistant.agent.intent import gate
from assistant.agent.mentions import bare_numbers, mentions, referenced_ids
from assistant.agent.router import RouteTrace, _choices_named, names_choice
from assistant.agent.session import time_notes
from assistant.agent.time_spans import spans
from assistant.agent.tool_specs import build_specs, fill_named_ids, fill_time_span, prefer_named_entities
from tools.catalog import known_values

USERS = {"1334", "4955", "15", "2026"}
ITEMS = {"P00458"}
SEGMENTS = {"snacker", "home_cook"}
CATEGORIES = {"pasta", "pasta_sauce", "cat_treats"}


def shop_tools() -> list:
    def at_risk_users(horizon_days: int = 7, top_k: int = 10, segment: Optional[str] = None,
                      rank_by: Literal["value_at_risk", "p_lapse", "p_churn"] = "value_at_risk") -> dict:
        """Customers most likely to lapse.

        Args:
            horizon_days: days ahead.
            top_k: how many users.
            segment: only this customer segment.
            rank_by: the ranking.
        """
        return {}

    def explain_user(user_id: str, horizon_days: int = 7) -> dict:
        """Why one user is at risk.

        Args:
            user_id: the user's id.
            horizon_days: days ahead.
        """
        return {}

    def segment_report(segment_by: Literal["tenure", "value_band", "segment"] = "value_band",
                       horizon_days: int = 30) -> dict:
        """Churn by customer group.

        Args:
            segment_by: how to group customers.
            horizon_days: days ahead.
        """
        return {}

    def review_summary(item_id: Optional[str] = None, category_id: Optional[str] = None,
                       since: Optional[str] = None) -> dict:
        """Reviews of an item or a category.

        Args:
            item_id: the item.
            category_id: the category.
            since: a window such as 30d.
        """
        return {}

    return [known_values(at_risk_users, segment=lambda v: v in SEGMENTS),
            known_values(explain_user, user_id=lambda v: v in USERS), segment_report,
            known_values(review_summary, item_id=lambda v: v in ITEMS, category_id=lambda v: v in CATEGORIES)]


def test_shorthand_and_other_languages_name_spans_of_time() -> None:
    assert spans("churn risk 7d?") == [("7d", 7)]
    assert spans("top 15 custs likely to churn this wk") == [("this wk", 7)]
    assert spans("who's about to churn? (30d)") == [("30d", 30)]
    assert spans("¿Qué clientes tienen más valor en riesgo este mes?") == [("este mes", 30)]
    assert spans("Quels clients risquent de partir cette semaine ?") == [("cette semaine", 7)]
    assert spans("Taux de churn ce mois-ci ?") == [("ce mois-ci", 30)]
    assert spans("本月最可能流失的客户有哪些？") == [("本月", 30)]
    assert spans("未来30天") == [("30天", 30)]
    assert spans("in the next 30 días") == [("30 días", 30)]  # one reading per stretch of text
    assert spans("top 15 customers, item P00458, since 2026-06-15") == []  # counts, ids and dates are no spans
    assert time_notes("¿Quiénes se van este mes?") == ['"este mes" = 30 days']


def test_bare_numbers_are_ids_unless_they_count_or_date_something() -> None:
    assert bare_numbers("why is 4955 at risk?") == ["4955"]
    assert bare_numbers("wat will 2895 order next") == ["2895"]  # a singular noun: no count
    assert bare_numbers("top 100 customers, 250 USD, 120 orders") == []
    assert bare_numbers("reviews since 2026-06-15 at 12:30, 123.45") == []
    assert bare_numbers("why is 15 at risk?") == []  # too short to tell from a count: name it "user 15"
    assert referenced_ids("usr 2827, cust #15, cliente 3607, 用户 3710, sku P00458") == [
        ("user", "2827"), ("user", "15"), ("user", "3607"), ("user", "3710"), ("item", "P00458")]
    assert {"home_cook", "snacker", "cat_treats"} <= set(mentions("home cook snackers buying cat_treats"))


def test_a_named_customer_puts_the_tools_that_take_one_first() -> None:
    specs = build_specs(shop_tools())
    ranked = ["at_risk_users", "segment_report", "explain_user", "review_summary"]
    assert prefer_named_entities(specs, ranked, mentions("why is 4955 at risk?"))[0] == "explain_user"
    assert prefer_named_entities(specs, ranked, mentions("reviews of P00458?"))[0] == "review_summary"
    # counts, unknown ids, and group names (segments, categories) leave the model's order alone
    for question in ("top 100 customers at risk", "why is 9999 at risk?", "which snacker customers will churn?",
                     "churn in 2026?"):
        assert prefer_named_entities(specs, ranked, mentions(question)) == ranked, question


def test_an_empty_id_slot_takes_the_one_id_of_its_kind_the_question_names() -> None:
    specs = build_specs(shop_tools())
    risk, reviews = specs["at_risk_users"], specs["review_summary"]
    assert fill_named_ids(risk, {"horizon_days": 30}, mentions("which snacker customers r likely to stop")) == (
        {"horizon_days": 30, "segment": "snacker"}, ["segment"])
    assert fill_named_ids(reviews, {}, mentions("main gripes about cat_treats?")) == (
        {"category_id": "cat_treats"}, ["category_id"])
    # the longer name wins over the one inside it; the item the model gave keeps the category out
    assert fill_named_ids(reviews, {}, mentions("pasta sauce reviews"))[0] == {"category_id": "pasta_sauce"}
    assert fill_named_ids(reviews, {"item_id": "P00458"}, mentions("P00458 in pasta"))[1] == []
    # two candidates of one kind, or none: nothing is guessed; a value the model wrote stays
    assert fill_named_ids(risk, {}, mentions("snacker and home cook customers"))[1] == []
    assert fill_named_ids(risk, {}, mentions("which customers will churn?"))[1] == []
    assert fill_named_ids(risk, {"segment": "home_cook"}, mentions("snacker"))[0] == {"segment": "home_cook"}


def test_a_span_the_question_names_fills_the_horizon_or_window_left_out() -> None:
    specs = build_specs(shop_tools())
    assert fill_time_span(specs["at_risk_users"], {"segment": "snacker"}, "¿Qué clientes de snacker este mes?") == (
        {"segment": "snacker", "horizon_days": 30}, ["horizon_days"])
    assert fill_time_span(specs["review_summary"], {"category_id": "pasta"}, "pasta reviews over the past week")[0] == {
        "category_id": "pasta", "since": "7d"}
    assert fill_time_span(specs["at_risk_users"], {"horizon_days": 7}, "this month")[1] == []  # the model's stands
    assert fill_time_span(specs["at_risk_users"], {}, "lost last month, at risk this week?")[1] == []  # two spans
    assert fill_time_span(specs["explain_user"], {"user_id": "4955"}, "why is 4955 at risk?")[1] == []  # none


def test_a_choice_named_outright_is_the_choice() -> None:
    assert names_choice("p_lapse", "rank the at-risk customers by lapse probability instead of money")
    assert names_choice("p_lapse", "sort by the probability of lapsing")
    assert names_choice("p_lapse", "churn list 7d, sort by p_lapse pls")
    assert names_choice("segment", "break down churn per customer segment")
    assert not names_choice("p_churn", "the 10 users with the highest churn probability")  # no ranking asked
    assert not names_choice("segment", "which segments_x")
    specs = build_specs(shop_tools())
    trace = RouteTrace()
    args = _choices_named(specs["at_risk_users"], {"rank_by": "value_at_risk", "top_k": 5},
                          "top 5 at risk, by lapse probability", trace)
    assert args == {"rank_by": "p_lapse", "top_k": 5} and trace.filled == ["rank_by"]
    # two choices named: the model's value stands
    assert _choices_named(specs["segment_report"], {"segment_by": "tenure"}, "by tenure or by segment",
                          RouteTrace()) == {"segment_by": "tenure"}


def test_the_gate_reads_abbreviated_user_nouns() -> None:
    specs = build_specs(shop_tools())
    assert gate("explain cust 99999 risk", specs).kind == "unknown_id"
    assert gate("explain cust 1334 risk", specs) is None


def test_a_reference_phrase_is_no_free_text_argument() -> None:
    from assistant.agent.router import _without_reference_phrases

    def similar_cases(user_id: Optional[str] = None, text: Optional[str] = None) -> dict:
        """Past customers like this one.

        Args:
            user_id: a user.
            text: a description.
        """
        return {}

    spec = build_specs([known_values(similar_cases, user_id=lambda v: v in USERS)])["similar_cases"]
    trace = RouteTrace()
    assert _without_reference_phrases(spec, {"user_id": "1334", "text": "The first one "}, ["the first one"],
                                      trace) == {"user_id": "1334"} and trace.dropped == ["text"]
    described = {"text": "loyal buyer who stopped after a late delivery"}
    assert _without_reference_phrases(spec, described, ["the first one"], RouteTrace()) == described
