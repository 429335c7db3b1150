"""Small text helpers of the agent loop: what counts as a call written out, message text,
provenance-stripped results, and which history a turn keeps."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

FEEDBACK_KEY = "shopsight_feedback"  # marks HumanMessages the agent wrote (not the user's words)


def is_call_payload(text: str) -> bool:
    """True when the text is a tool call written out (bare, fenced or tagged JSON naming a tool)."""
    body = text.strip()
    if "<tool_call>" in body:
        return True
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:  # the first JSON value decides: the model may write several calls, one a line
        value, _ = json.JSONDecoder().raw_decode(body)
    except ValueError:
        return False
    return isinstance(value, dict) and "name" in value and ("arguments" in value or "parameters" in value)


def text_of(message: AIMessage) -> str:
    content = message.content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return content or ""


def strip_untrusted(value: Any) -> Any:
    """A sanitized result without its « » texts, for provenance checks."""
    if isinstance(value, dict):
        return {k: strip_untrusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_untrusted(v) for v in value]
    if isinstance(value, str) and value.startswith("«"):
        return ""
    return value


def drop_feedback(messages: list[BaseMessage]) -> list[BaseMessage]:
    """History to keep: the agent's own feedback notes and the drafts they answered are dropped."""
    kept: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, HumanMessage) and message.additional_kwargs.get(FEEDBACK_KEY):
            if kept and isinstance(kept[-1], AIMessage) and not kept[-1].tool_calls:
                kept.pop()  # the rejected draft
            continue
        kept.append(message)
    return kept
