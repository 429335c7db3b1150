"""LocalToolChat on a tiny real Qwen2 model: generation, streaming, tool calls, constraint, agent.

The model is random-init and then overfitted on a few replies, so greedy generation says
exactly what each test needs: a `<tool_call>` call, a fenced JSON call, a plain answer, a
malformed call. Everything between prompt and message is the real code path.
"""

from __future__ import annotations

import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from assistant.llm.local_chat import LocalToolChat
from llm_tiny import build_model, build_tokenizer, memorize


def churn_risk(user_id: str, horizon_days: int = 7) -> str:
    """Churn risk of one user.

    Args:
        user_id: The user's id.
        horizon_days: Days ahead.
    """
    return "p_churn=0.31"


def top_items(category_id: str, k: int = 3) -> str:
    """Best-selling items of a category.

    Args:
        category_id: The category id.
        k: How many items.
    """
    return "items: 5, 9, 12"


TOOLS = [churn_risk, top_items]
Q_TAGGED = "What is the churn risk of user 42?"
Q_FENCED = "Which items sell best in category 77?"
Q_PLAIN = "Hello there."
Q_BROKEN = "Risk for user 7?"
TAGGED = '<tool_call>\n{"name": "churn_risk", "arguments": {"user_id": "42", "horizon_days": 7}}\n</tool_call>'
FENCED = 'Let me look.\n```json\n{"name": "top_items", "arguments": {"category_id": "77", "k": 3}}\n```'
PLAIN = "Hello. Ask me about churn risk or best sellers."
BROKEN = '<tool_call>\n{"name": "churn_risk", "arguments": {"user_id": "7"\n</tool_call>'
FINAL = "User 42 has a churn risk of 0.31."


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two shared cores: one thread per test process is several times faster than two.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _prompt(chat: LocalToolChat, messages) -> str:
    tools = chat.bind_tools(TOOLS).kwargs["tools"]
    return chat.render_prompt(messages, tools)[0]


def _second_turn() -> list:
    call = {"name": "churn_risk", "args": {"user_id": "42", "horizon_days": 7}, "id": "c1", "type": "tool_call"}
    return [HumanMessage(Q_TAGGED), AIMessage(content="", tool_calls=[call]),
            ToolMessage(content="p_churn=0.31", tool_call_id="c1", name="churn_risk")]


@pytest.fixture(scope="module")
def chat() -> LocalToolChat:
    draft = LocalToolChat(model=None, tokenizer=build_tokenizer())
    pairs = [(_prompt(draft, [HumanMessage(q)]), a) for q, a in
             [(Q_TAGGED, TAGGED), (Q_FENCED, FENCED), (Q_PLAIN, PLAIN), (Q_BROKEN, BROKEN)]]
    pairs.append((_prompt(draft, _second_turn()), FINAL))
    # Trained on the prompts too, so each is a few dozen tokens and memorizing takes seconds.
    tok = build_tokenizer(extra=[text for pair in pairs for text in pair])
    model = build_model(tok)
    chat = LocalToolChat(model=model, tokenizer=tok, max_new_tokens=48, model_name="tiny")
    loss = memorize(model, tok, pairs)
    assert loss < 0.05, f"the tiny model did not learn its replies (loss {loss:.3f})"
    return chat


def test_tagged_call_is_parsed_into_tool_calls(chat):
    msg = chat.bind_tools(TOOLS).invoke([HumanMessage(Q_TAGGED)])
    assert msg.tool_calls == [{"name": "churn_risk", "args": {"user_id": "42", "horizon_days": 7},
                               "id": msg.tool_calls[0]["id"], "type": "tool_call"}]
    assert msg.content == "" and msg.invalid_tool_calls == []
    assert msg.usage_metadata["output_tokens"] > 10


def test_fenced_json_call_is_parsed_and_text_kept(chat):
    msg = chat.bind_tools(TOOLS).invoke([HumanMessage(Q_FENCED)])
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("top_items", {"category_id": "77", "k": 3})]
    assert msg.content == "Let me look."


def test_plain_answer_has_no_calls(chat):
    msg = chat.bind_tools(TOOLS).invoke([HumanMessage(Q_PLAIN)])
    assert msg.content == PLAIN and msg.tool_calls == [] and msg.invalid_tool_calls == []


def test_malformed_call_becomes_invalid_tool_call(chat):
    msg = chat.bind_tools(TOOLS).invoke([HumanMessage(Q_BROKEN)])
    assert msg.tool_calls == []
    [bad] = msg.invalid_tool_calls
    assert bad["name"] == "churn_risk" and "not valid JSON" in bad["error"]


def test_stream_yields_tokens_and_same_message_as_invoke(chat):
    bound = chat.bind_tools(TOOLS)
    chunks = list(bound.stream([HumanMessage(Q_PLAIN)]))
    assert sum(1 for c in chunks if c.content) > 3  # token by token, not one block
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content == PLAIN and not total.tool_calls

    chunks = list(bound.stream([HumanMessage(Q_TAGGED)]))
    assert not any("<tool_call>" in c.content or "churn_risk" in c.content for c in chunks)
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [("churn_risk", {"user_id": "42", "horizon_days": 7})]


def test_stream_keeps_a_malformed_call_invalid(chat):
    chunks = list(chat.bind_tools(TOOLS).stream([HumanMessage(Q_BROKEN)]))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.tool_calls == []
    [bad] = total.invalid_tool_calls
    assert bad["name"] == "churn_risk"
    assert "not valid JSON" in total.response_metadata["invalid_tool_call_errors"][bad["id"]]


def test_stream_of_fenced_call_shows_text_but_not_the_block(chat):
    chunks = list(chat.bind_tools(TOOLS).stream([HumanMessage(Q_FENCED)]))
    shown = "".join(c.content for c in chunks)
    assert shown.strip() == "Let me look." and "```" not in shown


def test_tool_result_turn_gives_the_answer(chat):
    msg = chat.bind_tools(TOOLS).invoke(_second_turn())
    assert msg.content == FINAL and not msg.tool_calls


def test_forced_tool_choice_constrains_a_random_model():
    tok = build_tokenizer()
    model = build_model(tok, seed=3)  # untrained: without the constraint it writes noise
    chat = LocalToolChat(model=model, tokenizer=tok, max_new_tokens=8)
    msg = chat.bind_tools(TOOLS, tool_choice="top_items").invoke([HumanMessage(Q_TAGGED)])
    raw = msg.response_metadata["raw_text"]
    assert raw.startswith('<tool_call>\n{"name": "top_items"'), raw
    calls = msg.tool_calls + msg.invalid_tool_calls
    assert calls and calls[0]["name"] == "top_items"

    msg = chat.bind_tools(TOOLS, tool_choice="any").invoke([HumanMessage(Q_TAGGED)])
    name = (msg.tool_calls + msg.invalid_tool_calls)[0]["name"]
    assert name in ("churn_risk", "top_items")


def test_tool_choice_none_answers_without_tools(chat):
    msg = chat.bind_tools(TOOLS, tool_choice="none").invoke([HumanMessage(Q_TAGGED)])
    assert msg.tool_calls == [] and msg.invalid_tool_calls == []
    assert "<tools>" not in chat.render_prompt([HumanMessage(Q_TAGGED)], chat.bind_tools(TOOLS).kwargs["tools"],
                                               "none")[0]


def test_bind_tools_rejects_unknown_tool_choice(chat):
    with pytest.raises(ValueError, match="not one of the bound tools"):
        chat.bind_tools(TOOLS, tool_choice="delete_everything")


def test_works_with_langchain_create_agent(chat):
    from langchain.agents import create_agent

    agent = create_agent(model=chat, tools=TOOLS)
    result = agent.invoke({"messages": [HumanMessage(Q_TAGGED)]})
    kinds = [type(m).__name__ for m in result["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert result["messages"][2].content == "p_churn=0.31"
    assert result["messages"][-1].content == FINAL
