"""Tool-call parsing and tool schemas: both call forms, malformed calls, ordinary code blocks."""

from __future__ import annotations

import pytest

from assistant.llm.tool_calls import (
    normalize_tool_choice,
    parse_tool_calls,
    possible_call_start,
    tool_schema,
)

NAMES = ["churn_risk", "top_items"]


def churn_risk(user_id: str, horizon_days: int = 7) -> dict:
    """Churn risk of one user.

    Args:
        user_id: The user's id.
        horizon_days: Days ahead to predict.
    """
    return {}


def test_tagged_and_fenced_calls_in_order():
    text = ('First.\n<tool_call>\n{"name": "churn_risk", "arguments": {"user_id": "1"}}\n</tool_call>\n'
            'Then:\n```json\n{"name": "top_items", "arguments": {"category_id": "7", "k": 2}}\n```\nDone.')
    out = parse_tool_calls(text, NAMES)
    assert [(c["name"], c["args"]) for c in out.tool_calls] == [
        ("churn_risk", {"user_id": "1"}), ("top_items", {"category_id": "7", "k": 2})]
    assert out.content == "First.\n\nThen:\n\nDone."
    assert out.invalid_tool_calls == []
    assert len({c["id"] for c in out.tool_calls}) == 2
    assert parse_tool_calls(text, NAMES).tool_calls == out.tool_calls  # deterministic ids


@pytest.mark.parametrize("body", [
    '{"name": "churn_risk", "parameters": {"user_id": "1"}}',
    '{"function": {"name": "churn_risk", "arguments": "{\\"user_id\\": \\"1\\"}"}}',
    '[{"name": "churn_risk", "arguments": {"user_id": "1"}}]',
    '{"name": "churn_risk"， "arguments": {"user_id": "1"}}',  # full-width comma from Qwen 0.5B
    '{"name": "churn_risk", "arguments": {"user_id": "1"}} trailing words',
])
def test_call_shapes_models_write(body):
    out = parse_tool_calls(f"<tool_call>{body}</tool_call>", NAMES)
    assert [(c["name"], c["args"]) for c in out.tool_calls] == [("churn_risk", {"user_id": "1"})]


def test_a_reply_that_is_only_a_json_call_is_a_call():
    # A LoRA-tuned 0.5B emits <|im_start|> where it means <tool_call>; decoding drops the
    # special token and leaves the bare object (measured on finetune/configs/lora_qwen05_shop_cpu.yaml).
    bare = '\n{"name": "churn_risk", "arguments": {"user_id": "7"}}\n'
    out = parse_tool_calls(bare, NAMES, bare_json=True)
    assert [(c["name"], c["args"]) for c in out.tool_calls] == [("churn_risk", {"user_id": "7"})]
    assert out.content == ""
    # off by default (the agent treats such a reply as an echoed call); JSON that is no call,
    # or JSON inside prose, stays an answer
    assert parse_tool_calls(bare, NAMES).tool_calls == []
    assert parse_tool_calls('{"p_churn": 0.4}', NAMES, bare_json=True).tool_calls == []
    assert parse_tool_calls('{"p_churn": 0.4}', NAMES, bare_json=True).content == '{"p_churn": 0.4}'
    assert parse_tool_calls('User 7: {"name": "churn_risk"}', NAMES, bare_json=True).tool_calls == []


def test_unterminated_tag_is_still_read():
    out = parse_tool_calls('<tool_call>\n{"name": "top_items", "arguments": {"category_id": "3"}}', NAMES)
    assert out.tool_calls[0]["args"] == {"category_id": "3"}


@pytest.mark.parametrize("text, error", [
    ('<tool_call>{"name": "churn_risk", "arguments": {"user_id": "1"</tool_call>', "not valid JSON"),
    ('<tool_call>{"arguments": {"user_id": "1"}}</tool_call>', 'no "name"'),
    ('<tool_call>{"name": "drop_tables", "arguments": {}}</tool_call>', "unknown tool 'drop_tables'"),
    ('<tool_call>{"name": "churn_risk", "arguments": [1, 2]}</tool_call>', "must be a JSON object"),
    ('```json\n{"name": "churn_risk", "arguments": {"user_id": }\n```', "not valid JSON"),
])
def test_malformed_calls_are_invalid_never_raise(text, error):
    out = parse_tool_calls(text, NAMES)
    assert out.tool_calls == []
    [bad] = out.invalid_tool_calls
    assert error in bad["error"] and bad["id"].startswith("call_")


def test_plain_code_blocks_stay_in_the_answer():
    text = "Use this:\n```python\nprint('hi')\n```\nand ```json\n{\"rows\": 3}\n```"
    out = parse_tool_calls(text, NAMES)
    assert out.tool_calls == [] and out.invalid_tool_calls == []
    assert out.content == text


def test_possible_call_start_holds_back_partial_markers():
    assert possible_call_start("Hello <tool_") == len("Hello ")
    assert possible_call_start("Hello `") == len("Hello ")
    assert possible_call_start("Hello <tool_call>{") == len("Hello ")
    assert possible_call_start("Hello world") == len("Hello world")


def test_tool_schema_from_function_tool_and_dict():
    from langchain_core.tools import StructuredTool

    schema = tool_schema(churn_risk)
    assert schema["function"]["name"] == "churn_risk"
    assert schema["function"]["parameters"]["required"] == ["user_id"]
    assert tool_schema(StructuredTool.from_function(churn_risk)) == schema  # same prompt either way
    assert tool_schema(schema) is schema
    assert tool_schema(schema["function"]) == {"type": "function", "function": schema["function"]}


def test_normalize_tool_choice():
    assert normalize_tool_choice(None, NAMES) is None
    assert normalize_tool_choice("auto", NAMES) is None
    assert normalize_tool_choice("none", NAMES) == "none"
    assert normalize_tool_choice("any", NAMES) == NAMES
    assert normalize_tool_choice({"type": "function", "function": {"name": "top_items"}}, NAMES) == ["top_items"]
    with pytest.raises(ValueError, match="not one of the bound tools"):
        normalize_tool_choice("nope", NAMES)


def test_arguments_are_checked_against_the_schema():
    from assistant.llm.tool_calls import check_arguments

    schema = tool_schema(churn_risk)
    text = ('<tool_call>{"name": "churn_risk", "arguments": {"user_id": "1"}}</tool_call>'
            '<tool_call>{"name": "churn_risk", "arguments": {"<argument>": "x"}}</tool_call>')
    out = check_arguments(parse_tool_calls(text, NAMES), [schema])
    assert [c["args"] for c in out.tool_calls] == [{"user_id": "1"}]
    [bad] = out.invalid_tool_calls
    assert "unknown argument(s) <argument>" in bad["error"] and "missing required user_id" in bad["error"]
    assert "horizon_days (optional)" in bad["error"]
