"""How the router reads the arguments the model wrote: spans of time, sloppy JSON, stray ids.

Real parts: tool functions with the same read-only `known_values` checks the catalog attaches
(tools.catalog.known_values), their real schemas (assistant.agent.tool_specs.build_specs).
"""

from __future__ import annotations

from typing import Literal, Optional

from assistant.agent.router import _meant_elsewhere
from assistant.llm.kv_decode import parse_object as _parse_object
from assistant.agent.tool_specs import _spans_in_days, build_specs, ground_arguments, worth_decoding
from tools.catalog import known_values

USERS = {"1334", "1526", "3"}
SEGMENTS = {"dog_household", "health_focused"}


def shop_tools() -> list:
    def at_risk_users(horizon_days: int = 7, top_k: int = 10, segment: Optional[str] = None) -> dict:
        """Customers most likely to churn.

        Args:
            horizon_days: days ahead.
            top_k: how many users.
            segment: only this customer segment.
        """
        return {}

    def user_history(user_id: str, last_n: int = 20) -> dict:
        """A user's recent events.

        Args:
            user_id: the user's id.
            last_n: how many events.
        """
        return {}

    def segment_report(segment_by: Literal["tenure", "value_band"] = "tenure", horizon_days: int = 7) -> dict:
        """Churn by customer group.

        Args:
            segment_by: how to group customers.
            horizon_days: days ahead.
        """
        return {}

    return [known_values(at_risk_users, segment=lambda v: v in SEGMENTS),
            known_values(user_history, user_id=lambda v: v in USERS), segment_report]


def test_spans_of_time_count_as_days() -> None:
    assert _spans_in_days(["Who will churn this month?"]) == {30.0}
    assert _spans_in_days(["in the next 7 days", "within a week"]) == {7.0}
    assert _spans_in_days(["over the coming month, or the next two weeks"]) == {30.0, 14.0}
    assert _spans_in_days(["the 7-day churn"]) == {7.0}
    assert _spans_in_days(["3 at-risk customers", "top 5"]) == set()


def test_a_horizon_must_be_a_span_the_user_named() -> None:
    spec = build_specs(shop_tools())["at_risk_users"]
    month = ["Which 3 customers will churn this month?"]
    # "this month" grounds 30; the 3 counts customers, so it is no horizon (the default would apply)
    assert ground_arguments(spec, {"horizon_days": 30, "top_k": 3}, month, user_texts=month) == (
        {"horizon_days": 30, "top_k": 3}, [])
    assert ground_arguments(spec, {"horizon_days": 3}, month, user_texts=month) == ({}, ["horizon_days"])
    # with no span in the question, a plain number is still a horizon the user may mean
    plain = ["Churn risk at horizon 14 for the top users"]
    assert ground_arguments(spec, {"horizon_days": 14}, plain, user_texts=plain)[0] == {"horizon_days": 14}


def test_a_window_like_30d_is_grounded_by_the_past_month() -> None:
    def review_summary(category_id: str, since: Optional[str] = None) -> dict:
        """Reviews of a category.

        Args:
            category_id: the category.
            since: a window such as 30d.
        """
        return {}

    spec = build_specs([review_summary])["review_summary"]
    texts = ["What did people say about coffee over the past month?"]
    assert ground_arguments(spec, {"category_id": "coffee", "since": "30d"}, texts, user_texts=texts)[0] == {
        "category_id": "coffee", "since": "30d"}
    assert ground_arguments(spec, {"category_id": "coffee", "since": "7d"}, texts, user_texts=texts)[1] == ["since"]


def test_argument_objects_with_unquoted_keys_are_read() -> None:
    assert _parse_object('{horizon_days: 7, top_k: 3, segment: "none"') == {
        "horizon_days": 7, "top_k": 3, "segment": "none"}
    assert _parse_object('{"user_id": "1334"') == {"user_id": "1334"}
    assert _parse_object("{not json at all") == {}


def test_an_id_the_chosen_tool_cannot_take_points_to_the_tool_that_can() -> None:
    specs = build_specs(shop_tools())
    ranked = ["at_risk_users", "segment_report", "user_history"]
    # "user_id": "1334" for at_risk_users: a real user named by the question -> user_history
    activity = ["Pull up the activity of user 1334."]
    assert _meant_elsewhere(specs, "at_risk_users", {"user_id": "1334"}, {}, ranked, activity) == "user_history"
    # a segment written as segment_by (not one of its choices) -> the tool whose `segment` takes it
    among = ["Show churn risks among dog_household customers this week."]
    assert _meant_elsewhere(specs, "segment_report", {"segment_by": "dog_household", "horizon_days": 7},
                            {"horizon_days": 7}, ranked, among) == "at_risk_users"


def test_no_evidence_without_a_real_id_from_the_conversation() -> None:
    specs = build_specs(shop_tools())
    ranked = ["at_risk_users", "segment_report", "user_history"]
    question = ["Which customers will churn this week?"]
    assert _meant_elsewhere(specs, "at_risk_users", {"user_id": "1526"}, {}, ranked, question) is None  # not asked
    assert _meant_elsewhere(specs, "at_risk_users", {"user_id": "9999"}, {}, ranked, ["user 9999"]) is None  # no such user
    counted = ["Give me 3 customers who will churn"]
    assert _meant_elsewhere(specs, "at_risk_users", {"top_k": 3}, {"top_k": 3}, ranked, counted) is None  # kept
    assert _meant_elsewhere(specs, "at_risk_users", {"horizon_days": 3}, {}, ranked, counted) is None  # a count


def test_a_tool_needing_an_id_nobody_named_is_not_decoded() -> None:
    """user_history needs a user id: with none in the conversation it is passed over before its arguments
    are decoded (the 0.5B had answered "What happened to customers who stopped buying after a price rise?"
    with explain_user(user_id="12345"))."""
    specs = build_specs(shop_tools())
    ranked = ["user_history", "at_risk_users", "segment_report"]
    no_id = ["What happened to customers who stopped buying after a price rise?"]
    assert worth_decoding(specs, ranked, no_id, limit=2) == ["at_risk_users", "segment_report"]
    unknown_id = ["Pull up the activity of user 9999."]  # an id, but of no user of this shop
    assert worth_decoding(specs, ranked, unknown_id, limit=3) == ["at_risk_users", "segment_report"]
    named = ["Pull up the activity of user 1334."]
    assert worth_decoding(specs, ranked, named, limit=2) == ["user_history", "at_risk_users"]
    only_id_tools = ["user_history"]
    assert worth_decoding(specs, only_id_tools, no_id, limit=1) == ["user_history"]  # nothing qualifies: as before
