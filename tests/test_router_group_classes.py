"""Questions about groups of customers (bench/results/agent_eval.md, Round 8), one test per failure class.

Ops staff set groups side by side ("home_cook vs snacker", "high and low spenders"), name a group
by its label ("the 365d+ group", "the 0-30d cohort") and ask about a segment they name. Real parts:
tool functions with the read-only checks the catalog attaches (`known_values`, and the grouping
members of `groups_named_by`, bound here as `group_members`), their real schemas (build_specs).
"""

from __future__ import annotations

from typing import Literal, Optional

from assistant.agent.intent import gate
from assistant.agent.mentions import mentions
from assistant.agent.router import RouteTrace, _choices_named, _meant_elsewhere
from assistant.agent.time_spans import spans
from assistant.agent.tool_specs import build_specs, fill_time_span, prefer_compared_groups, prefer_named_entities
from tools.catalog import known_values

USERS = {"1334", "4955"}
SEGMENTS = {"snacker", "home_cook", "dog_household", "cat_household"}
CATEGORIES = {"coffee", "dog_treats"}
TENURE = {"0-30d", "30-90d", "365d+"}
BANDS = {"low", "mid", "high"}


def shop_tools() -> list:
    def at_risk_users(horizon_days: int = 7, top_k: int = 10, segment: Optional[str] = None) -> dict:
        """Customers most likely to lapse.

        Args:
            horizon_days: days ahead.
            top_k: how many users.
            segment: only this customer segment.
        """
        return {}

    def explain_user(user_id: str, horizon_days: int = 7) -> dict:
        """Why one user is at risk.

        Args:
            user_id: the user's id.
            horizon_days: days ahead.
        """
        return {}

    def segment_report(segment_by: Literal["first_category", "tenure", "value_band", "segment"] = "value_band",
                       horizon_days: int = 30) -> dict:
        """Churn compared across groups of customers.

        Args:
            segment_by: how to group customers.
            horizon_days: days ahead.
        """
        return {}

    segment_report.group_members = {"segment_by": {
        "segment": lambda v: v in SEGMENTS, "first_category": lambda v: v in CATEGORIES,
        "tenure": lambda v: v.lower() in TENURE, "value_band": lambda v: v.lower() in BANDS}}
    return [known_values(at_risk_users, segment=lambda v: v in SEGMENTS),
            known_values(explain_user, user_id=lambda v: v in USERS), segment_report]


def test_a_band_label_is_no_span_of_time() -> None:
    assert spans("what is the predicted churn of the 365d+ group this month?") == [("this month", 30)]
    assert spans("how risky is the 0-30d cohort this week?") == [("this week", 7)]
    assert spans("customers of 30-90 days") == []
    assert spans("the next 30 days, 30d, 7-day churn") == [("30 days", 30), ("30d", 30), ("7-day", 7)]  # still spans
    specs = build_specs(shop_tools())
    # the one span left fills the horizon; the gate no longer reads "in the 365d+ group" as 365 days ahead
    assert fill_time_span(specs["segment_report"], {"segment_by": "tenure"}, "churn in the 365d+ group this month?")[0] \
        == {"segment_by": "tenure", "horizon_days": 30}
    assert gate("churn in the 365d+ group?", specs, horizons=(7, 30)) is None
    assert gate("who will churn in the next 365 days?", specs, horizons=(7, 30)).kind == "horizon"


def test_band_labels_are_mentions_and_dates_are_not() -> None:
    found = mentions("the 0-30d cohort vs the 365d+ group, since 2026-06-30")
    assert {"0-30d", "365d+"} <= set(found)
    assert not any(m.startswith("2026-") for m in found)


def test_two_groups_of_one_kind_set_side_by_side_put_the_comparison_first() -> None:
    specs = build_specs(shop_tools())
    ranked = ["at_risk_users", "explain_user", "segment_report"]
    for question in ("home_cook vs snacker: who churns more?", "compare dog_household and cat_household",
                     "high spenders against low spenders", "is the 0-30d cohort riskier than 365d+?"):
        assert prefer_compared_groups(specs, ranked, mentions(question))[0] == "segment_report", question
    # one group (a filtered list), or none, leaves the model's order alone
    for question in ("which snacker customers will churn?", "who churns this week?", "top 5 at risk in coffee"):
        assert prefer_compared_groups(specs, ranked, mentions(question)) == ranked, question
    # a customer named outright still comes first
    named = mentions("user 1334 vs home_cook and snacker")
    assert prefer_named_entities(specs, prefer_compared_groups(specs, ranked, named), named)[0] == "explain_user"


def test_the_groups_a_question_names_settle_the_grouping() -> None:
    spec = build_specs(shop_tools())["segment_report"]
    cases = {"is snacker churning more than health_focused this week?": "segment",
             "how is the 365d+ group doing?": "tenure",
             "churn outlook for the mid band": "value_band",
             "do customers who started with coffee churn more?": "first_category"}
    for question, grouping in cases.items():
        trace = RouteTrace()
        assert _choices_named(spec, {"segment_by": "value_band" if grouping != "value_band" else "tenure"}, question,
                              trace, mentions(question)) == {"segment_by": grouping}, question
        assert trace.settled == ["segment_by"]  # the prior's vote no longer overrides it
    # a grouping named outright wins over its members; members of two groupings settle nothing
    assert _choices_named(spec, {}, "snacker by tenure", RouteTrace(), mentions("snacker by tenure")) == {
        "segment_by": "tenure"}
    trace = RouteTrace()
    assert _choices_named(spec, {"segment_by": "tenure"}, "snacker and coffee", trace,
                          mentions("snacker and coffee")) == {"segment_by": "tenure"} and trace.settled == []


def test_two_segments_named_are_no_sign_that_the_one_segment_filter_was_meant() -> None:
    specs = build_specs(shop_tools())
    ranked = ["segment_report", "at_risk_users", "explain_user"]
    question = "how does churn differ between cat_household and dog_household?"
    # the model wrote a segment into segment_report's grouping slot: with one segment named, the at-risk
    # list filtered to it was meant; with two, the comparison stands
    stray = {"segment_by": "cat_household"}
    assert _meant_elsewhere(specs, "segment_report", stray, {}, ranked, [question], mentions(question)) is None
    single = "which cat_household customers churn?"
    assert _meant_elsewhere(specs, "segment_report", stray, {}, ranked, [single], mentions(single)) == "at_risk_users"


def test_a_look_alike_question_keeps_the_customer_and_drops_its_restated_words() -> None:
    from assistant.agent.router import _without_restated_question

    def similar_cases(user_id: Optional[str] = None, text: Optional[str] = None, k: int = 5) -> dict:
        """Past customers like this one, or like a described situation.

        Args:
            user_id: a user.
            text: a description, used when no user_id is given.
            k: how many cases.
        """
        return {}

    spec = build_specs([known_values(similar_cases, user_id=lambda v: v in USERS)])["similar_cases"]
    question = "find lookalikes of customer 4955 from the past, how did they end up"
    trace = RouteTrace()
    assert _without_restated_question(spec, {"user_id": "4955", "text": "lookalikes of customer 4955 from the past, "
                                                                        "howdid", "k": 5}, question, trace) == {
        "user_id": "4955", "k": 5} and trace.dropped == ["text"]
    # a described situation with no customer named is the search itself
    described = "customers who churned after their order arrived damaged"
    assert _without_restated_question(spec, {"text": described}, f"past cases: {described}", RouteTrace()) == {
        "text": described}


def test_a_plus_after_a_span_in_words_is_no_band() -> None:
    assert spans("usr 2827 churn prob this month + drivers") == [("this month", 30)]
    assert spans("30d+ customers") == []


def test_a_description_copied_from_the_docstring_becomes_the_users_own_words() -> None:
    from assistant.agent.router import _described_in_the_question

    def similar_cases(user_id: Optional[str] = None, text: Optional[str] = None, since: Optional[str] = None) -> dict:
        """Past customers like this one, or like a described situation.

        Args:
            user_id: a user.
            text: The situation as the user described it, used if no user_id is given.
            since: a window.
        """
        return {}

    spec = build_specs([known_values(similar_cases, user_id=lambda v: v in USERS)])["similar_cases"]
    question = "Find past cases of loyal buyers who stopped after a late delivery."
    written = {"user_id": "user_id", "text": "The situation as the user described it, used if", "since": "2026-01-01"}
    trace = RouteTrace()
    assert _described_in_the_question(spec, {}, written, ["text", "since"], question, trace) == {"text": question}
    assert trace.filled == ["text"]  # the short window stays dropped
    # with a customer named, the id is what the call goes on
    assert _described_in_the_question(spec, {"user_id": "4955"}, written, ["text"], question, RouteTrace()) == {
        "user_id": "4955"}


def test_a_description_counts_as_the_users_only_by_whole_words() -> None:
    from assistant.agent.tool_specs import ground_arguments

    def similar_cases(user_id: Optional[str] = None, text: Optional[str] = None) -> dict:
        """Past customers like this one.

        Args:
            user_id: a user.
            text: The situation as the user described it, used if no user_id is given.
        """
        return {}

    spec = build_specs([known_values(similar_cases, user_id=lambda v: v in USERS)])["similar_cases"]
    question = "people similar to user 4955, did they stay?"
    copied = {"user_id": "4955", "text": "The situation as the user described it, used if"}
    assert ground_arguments(spec, copied, [question]) == ({"user_id": "4955"}, ["text"])
    own = {"text": "loyal buyer who stopped after a late delivery"}
    assert ground_arguments(spec, own, ["past cases of loyal buyers who stopped after a late delivery"])[1] == []


def test_an_argument_object_cut_off_by_the_token_limit_keeps_its_whole_pairs() -> None:
    from assistant.agent.router import _read_object

    cut = ('{"horizon_days": 30, "top_k": 3, "rank_by": "value_at_risk", "stage": "active", '
           '"user_id": "user_id1", "category_id": "categ')
    assert _read_object(cut) == {"horizon_days": 30, "top_k": 3, "rank_by": "value_at_risk", "stage": "active",
                                 "user_id": "user_id1"}
    assert _read_object('{"text": "a, \\"b\\" c", "k": 5') == {"text": 'a, "b" c'}
    assert _read_object('{"horizon_days": 3') == {} and _read_object("") == {} and _read_object("[1]") == {}
    assert _read_object('{"k": 5}') == {"k": 5}
