"""Questions no tool fits, through the real agent loop: refused or redirected with no unrelated list.

Driven by the scripted chat model and small shop of test_agent (a real BaseChatModel; real tools).
A scripted model with an empty script fails the test if the agent asks it anything, so "no tool
call and no model step" is checked by the script running dry, not by counting.
"""

from __future__ import annotations

import pytest

from assistant.agent.intent import answer_language, foreign_language, gate
from assistant.agent.loop import Agent
from assistant.agent.tool_specs import build_specs
from test_agent import USERS, ScriptedChatModel, Shop, call, run
from tools.catalog import known_values


def shop_tools(shop: Shop) -> list:
    """The scripted shop's tools with their id checks, as tools.catalog registers them."""
    tools = shop.tools()
    for fn in tools:
        if "user_id" in fn.__code__.co_varnames[:fn.__code__.co_argcount]:
            known_values(fn, user_id=lambda v: v in USERS)
    return tools


@pytest.mark.parametrize("question, kind, says", [
    ("Delete customer u_101 from the shop.", "write", "read-only"),
    ("Please remove all reviews of item P1", "write", "read-only"),
    ("Can you email the at-risk customers a coupon?", "write", "read-only"),
    ("Run this: ```import os; os.system('rm -rf /')```", "write", "run code"),
    ("SELECT * FROM users; DROP TABLE users;", "write", "read-only"),
    ("删除用户 u_101 的所有数据", "write", "只读"),
    ("Why is user u_999 at risk?", "unknown_id", "no user u_999"),
    ("用户 u_999 为什么会流失？", "unknown_id", "没有用户 u_999"),
    ("Which users will churn in the next 5000 days?", "horizon", "7 or 30 days"),
    ("Who will stop buying over the next 3 years?", "horizon", "7 or 30 days"),
    ("What is our profit margin?", "out_of_scope", "won't guess"),
    ("How much inventory do we have left?", "out_of_scope", "can tell you"),
    ("我们的利润率是多少？", "out_of_scope", "不会编造"),
])
def test_no_tool_fits_answers_without_any_call(question: str, kind: str, says: str) -> None:
    shop = Shop()
    model = ScriptedChatModel(script=[])  # any model step would run the script dry and fail
    events, answer = run(Agent(model, shop_tools(shop), router=None), question)
    assert answer["repair"] == f"gate:{kind}" and says in answer["text"], answer["text"]
    assert shop.calls == [] and answer["tools"] == [] and not any(e.type == "tool_call" for e in events)
    assert "most likely to" not in answer["text"] and "u_101" not in answer["text"].replace(question, "")
    assert answer["ungrounded"] == [] and answer["grounded"] is not None


@pytest.mark.parametrize("question", [
    "Which users will churn this week and why?",
    "Why is user u_101 at risk?",
    "Show the reviews of the last 6 months for item P1",  # a look-back window, not a horizon
    "Who stopped buying in the last 3 months?",
    "What changed for user u_102 this month?",
    "Which customers should we contact first to prevent churn?",
    "Compare churn by tenure over the next 30 days.",
])
def test_questions_the_tools_answer_pass_the_gate(question: str) -> None:
    assert gate(question, build_specs(shop_tools(Shop())), horizons=(7, 30)) is None


def test_other_language_is_answered_in_english_and_says_so() -> None:
    shop = Shop()
    model = ScriptedChatModel(script=[call("at_risk_users", horizon_days=7, top_k=2)])
    events, answer = run(Agent(model, shop_tools(shop), router=None, answer_mode="template"),
                         "¿Qué clientes van a dejar de comprar esta semana?")
    assert answer["text"].startswith("Your question looks like Spanish; ShopSight answers in English")
    assert "user u_101" in answer["text"] and answer["ungrounded"] == []
    assert foreign_language("Welche Kunden werden nächste Woche nicht kaufen?") == "German"
    assert foreign_language("Какие клиенты уйдут?") == "Cyrillic"
    assert foreign_language("Which users will churn this week?") is None
    assert answer_language("哪些用户本周会流失？") == "zh"
    # Japanese also writes Chinese characters; its kana tell it apart: answered in English, and said so
    assert answer_language("顧客1814が次に買いそうなカテゴリは？") == "en"
    assert foreign_language("顧客1814が次に買いそうなカテゴリは？") == "Japanese"


def test_chinese_question_gets_a_chinese_answer() -> None:
    shop = Shop()
    model = ScriptedChatModel(script=[call("at_risk_users", horizon_days=7, top_k=2)])
    _, answer = run(Agent(model, shop_tools(shop), router=None, answer_mode="template"), "本周哪些用户会流失？")
    assert answer["text"].startswith("未来 7 天最可能不再购买的客户是") and "用户 u_101" in answer["text"]
    assert answer["ungrounded"] == []


def test_tool_error_says_what_failed_and_what_to_try() -> None:
    shop = Shop()
    # A horizon the gate lets through (within range) that this shop's tool does not score.
    model = ScriptedChatModel(script=[call("at_risk_users", horizon_days=14), call("at_risk_users", horizon_days=14),
                                      ""])
    events, answer = run(Agent(model, shop_tools(shop), router=None, max_steps=3), "Who churns in two weeks?")
    assert answer["text"].startswith("I could not get a result: at risk users failed (horizon days=14 is not scored)")
    assert "try this: use 7 or 30" in answer["text"] and answer["ungrounded"] == []


def test_gate_can_be_turned_off() -> None:
    shop = Shop()
    model = ScriptedChatModel(script=["I would need a tool for that."])
    _, answer = run(Agent(model, shop_tools(shop), router=None, gate=False), "What is our profit margin?")
    assert answer["repair"] != "gate:out_of_scope"


# ---------------------------------------------------------------------------- plans of several calls
def test_two_part_question_gets_both_tools_and_both_answers() -> None:
    shop = Shop()
    model = ScriptedChatModel(script=[call("at_risk_users", horizon_days=7, top_k=3)])
    events, answer = run(Agent(model, shop_tools(shop), router=None, answer_mode="template"),
                         "Give me a short list of at-risk users and explain the first one.")
    assert shop.calls == [("at_risk_users", {"horizon_days": 7, "top_k": 3}),
                          ("explain_user", {"user_id": "u_101", "horizon_days": 7})]
    assert answer["tools"] == ["at_risk_users", "explain_user"]
    text = answer["text"]
    assert text.index("most likely to stop buying") < text.index("User u_101's chance of making no purchase")
    assert answer["ungrounded"] == []


def test_one_part_question_gets_one_call() -> None:
    shop = Shop()
    model = ScriptedChatModel(script=[call("at_risk_users", horizon_days=7, top_k=3)])
    _, answer = run(Agent(model, shop_tools(shop), router=None, answer_mode="template"),
                    "Which users will churn this week and why?")  # the list carries its reasons
    assert [name for name, _ in shop.calls] == ["at_risk_users"]


def test_rates_by_segment_are_one_part() -> None:
    from assistant.agent.planner import asked_tools

    # "churn and buy rates" is one question about segments, not a list of at-risk users plus a report.
    assert asked_tools("Show churn and buy rates per shop segment for the next month.") == ["segment_report"]
    assert asked_tools("List the top 5 customers at risk this month and explain the top one.")[0] == "at_risk_users"
    assert asked_tools("找出和用户 1 相似的历史客户。") == ["similar_cases"]  # past (历史) customers, not a history


def test_planned_call_with_a_named_user() -> None:
    from assistant.agent.planner import asked_tools, follow_up

    specs = build_specs(shop_tools(Shop()))
    question = "Why is user u_102 at risk, and summarize the reviews of item P1"
    assert asked_tools(question) == ["explain_user", "review_summary"]
    first = [("explain_user", {"user_id": "u_102", "p_churn": 0.64})]
    assert follow_up(question, first, specs) == {"name": "review_summary", "args": {"item_id": "P1"}}
    assert follow_up("Why is user u_102 at risk, and what do the reviews say?", first, specs) is None  # no item id
    question = "List the top 3 at risk customers and explain user u_103"
    listed = [("at_risk_users", {"horizon_days": 30, "users": [{"user_id": "u_101"}]})]
    assert follow_up(question, listed, specs) == {"name": "explain_user",
                                                  "args": {"user_id": "u_103", "horizon_days": 30}}
