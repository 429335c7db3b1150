"""The "brief" answer mode: the composer's grounded answer at once, then a short model takeaway.

Driven by the scripted chat model of test_agent (a real BaseChatModel) over its small shop.
"""

from __future__ import annotations

from typing import Optional

from assistant.agent.loop import Agent
from test_agent import ScriptedChatModel, Shop, call, run


def test_composed_answer_streams_before_the_takeaway_is_asked_for() -> None:
    shop = Shop()
    order: list[str] = []

    def takeaway(messages):
        order.append("takeaway asked")
        return "u_101 stands out with a churn probability of 0.82."

    model = ScriptedChatModel(script=[call("at_risk_users", horizon_days=7, top_k=2), takeaway])
    agent = Agent(model, shop.tools(), answer_mode="brief")
    events = []
    for event in agent.run("Who churns this week, and why?"):
        if event.type == "token" and not order:
            order.append("token before takeaway")
        events.append(event)
    answer = events[-1]
    assert order[0] == "token before takeaway" and "takeaway asked" in order
    assert answer["repair"] == "composed+takeaway" and answer["ungrounded"] == []
    assert answer["text"].endswith("\n\nu_101 stands out with a churn probability of 0.82.")
    assert "u_102" in answer["text"]  # the composed list comes first
    assert "".join(e["text"] for e in events if e.type == "token").split() == answer["text"].split()
    # The takeaway step offers no tools and says what is wanted.
    assert model.tools_offered[-1] == []
    assert "one or two short sentences" in model.seen[-1][-1].content


def test_ungrounded_takeaway_is_dropped_and_reported() -> None:
    shop = Shop()
    model = ScriptedChatModel(script=[call("at_risk_users", horizon_days=7, top_k=2),
                                      "u_101 will churn with 97% certainty."])
    events, answer = run(Agent(model, shop.tools(), answer_mode="brief"), "Who churns this week?")
    assert "97%" not in answer["text"] and answer["repair"] == "composed"
    assert answer["ungrounded"] == ["97%"]
    assert any(e.type == "error" and "takeaway dropped" in e["message"] for e in events)


def test_takeaway_that_is_a_tool_call_is_not_an_answer() -> None:
    shop = Shop()
    model = ScriptedChatModel(script=[call("at_risk_users", horizon_days=7, top_k=2),
                                      call("explain_user", user_id="u_101")])
    events, answer = run(Agent(model, shop.tools(), answer_mode="brief"), "Who churns this week?")
    assert answer["repair"] == "composed" and "explain_user" not in answer["text"]
    assert shop.calls == [("at_risk_users", {"horizon_days": 7, "top_k": 2})]  # the written call never ran


def test_without_tool_results_brief_falls_back_to_the_model_answer() -> None:
    model = ScriptedChatModel(script=["Hello! Ask me about churn or reviews."])
    events, answer = run(Agent(model, Shop().tools(), answer_mode="brief"), "hello")
    assert answer["text"] == "Hello! Ask me about churn or reviews." and answer["repair"] == "none"


def test_routed_call_refused_for_a_free_option_is_retried_without_it() -> None:
    from test_agent import FixedRouter

    calls = []

    def at_risk_users(horizon_days: int = 7, segment: Optional[str] = None) -> dict:
        """Users most likely to churn.

        Args:
            horizon_days: days ahead.
            segment: a customer segment, e.g. gold.
        """
        calls.append(segment)
        if segment not in (None, "gold"):
            return {"error": f"unknown segment {segment!r}", "hint": "use one of ['gold']"}
        return {"horizon_days": horizon_days, "users": [{"user_id": "u_101", "p_churn": 0.82}]}

    router = FixedRouter("at_risk_users", {"horizon_days": 7, "segment": "active"})  # "active customers"
    model = ScriptedChatModel(script=[])
    events, answer = run(Agent(model, [at_risk_users], router=router, answer_mode="template"),
                         "What is the average churn probability of active customers this week?")
    assert calls == ["active", None]
    tool_calls = [e for e in events if e.type == "tool_call"]
    assert [c["arguments"] for c in tool_calls] == [{"horizon_days": 7, "segment": "active"}, {"horizon_days": 7}]
    assert "u_101" in answer["text"] and answer["repair"] == "composed"

    calls.clear()  # a valid option is kept: nothing to retry
    router = FixedRouter("at_risk_users", {"horizon_days": 7, "segment": "gold"})
    run(Agent(ScriptedChatModel(script=[]), [at_risk_users], router=router, answer_mode="template"), "Gold churners?")
    assert calls == ["gold"]


def test_retry_drops_only_the_option_the_error_names() -> None:
    from test_agent import FixedRouter

    calls = []

    def review_summary(item_id: Optional[str] = None, category_id: Optional[str] = None) -> dict:
        """Summarize reviews.

        Args:
            item_id: a product id.
            category_id: a category id.
        """
        calls.append((item_id, category_id))
        if item_id and item_id != "P1":
            return {"error": f"unknown item_id {item_id!r}", "hint": "use an item id"}
        return {"item_id": item_id, "category_id": category_id, "reviews": 3}

    router = FixedRouter("review_summary", {"item_id": "coffee", "category_id": "coffee"})
    run(Agent(ScriptedChatModel(script=[]), [review_summary], router=router, answer_mode="template"),
        "Summarize the coffee reviews.")
    assert calls == [("coffee", "coffee"), (None, "coffee")]  # the category filter stays


def test_takeaway_reads_long_tool_results_cut_to_whole_list_items() -> None:
    import json

    from langchain_core.messages import HumanMessage, ToolMessage

    from assistant.agent.loop import TAKEAWAY_RESULT_CHARS, capped_tool_message

    users = [{"rank": i + 1, "user_id": f"u_{i}", "reasons": ["overdue: 11 days since the last order"] * 3}
             for i in range(40)]
    result = {"horizon_days": 7, "money_at_risk": 123.45, "users": users, "stages": ["new", "active"]}
    long = ToolMessage(content=json.dumps(result), tool_call_id="c1", name="at_risk_users")
    cut = capped_tool_message(long, TAKEAWAY_RESULT_CHARS)
    read = json.loads(cut.content)  # still valid JSON
    assert len(cut.content) <= TAKEAWAY_RESULT_CHARS < len(long.content)
    assert read["money_at_risk"] == 123.45 and read["stages"] == ["new", "active"]
    assert 1 <= len(read["users"]) < 40 and read["users"] == users[:len(read["users"])]  # the first ones, whole
    assert cut.tool_call_id == "c1" and long.content == json.dumps(result)  # the turn's own message is untouched
    short = ToolMessage(content=json.dumps({"users": users[:1]}), tool_call_id="c2")
    assert capped_tool_message(short, TAKEAWAY_RESULT_CHARS) is short
    question = HumanMessage("x" * 5000)
    assert capped_tool_message(question, TAKEAWAY_RESULT_CHARS) is question

