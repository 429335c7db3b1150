"""Tool schemas in, tool calls out: the text side of tool calling, shared by every chat backend.

Small models write a call either the way their chat template asks (`<tool_call>{...}</tool_call>`,
Qwen's format), or as a fenced ```json block (what Qwen 0.5B does most of the time), so `parse_tool_calls` accepts both; with `bare_json=True` also a reply that is
nothing but the JSON object (what the LoRA-tuned 0.5B writes; it counts only with a "name").
A call that cannot be used (bad JSON, no name, an unknown tool, arguments that are not an
object) is returned as an *invalid* call with an error the agent can show the model; parsing
never raises.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
# What a forced call starts with: the prompt ends here, so the model can only continue a call.
FORCED_CALL_PREFIX = TOOL_CALL_OPEN + '\n{"name": "'

_TAGGED = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCED = re.compile(r"```(?:json|JSON|tool_call)?[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_NAME_GUESS = re.compile(r'"name"\s*:\s*"([^"]*)"')
_FULL_WIDTH = str.maketrans({"，": ",", "：": ":", "“": '"', "”": '"', "｛": "{", "｝": "}"})


def tool_schema(tool: Any) -> dict:
    """The OpenAI-style JSON schema of a tool.

    Args:
        tool: A typed Python function with a Google-style docstring (its schema comes from
            `transformers.utils.get_json_schema`, the parser `apply_chat_template` uses), a
            LangChain `BaseTool`, a pydantic model, or an already formed schema dict.

    Returns:
        `{"type": "function", "function": {"name", "description", "parameters"}}`.
    """
    if isinstance(tool, dict):
        if "function" in tool:
            return tool
        if "name" in tool and "parameters" in tool:
            return {"type": "function", "function": tool}
    from assistant.llm.tool_schema import function_schema as get_json_schema  # the same schema, no transformers import

    if inspect.isfunction(tool) or inspect.ismethod(tool):
        return get_json_schema(tool)
    func = getattr(tool, "func", None)  # a LangChain StructuredTool made from one of our functions
    if (inspect.isfunction(func) or inspect.ismethod(func)) and getattr(tool, "name", None) == func.__name__:
        return get_json_schema(func)  # the same schema whether the agent binds the function or the tool
    from langchain_core.utils.function_calling import convert_to_openai_tool

    return convert_to_openai_tool(tool)


def tool_names(schemas: Sequence[dict]) -> list[str]:
    """Names of the tools in a list of schemas, in order."""
    return [s["function"]["name"] for s in schemas]


def normalize_tool_choice(tool_choice: Any, names: Sequence[str]) -> str | list[str] | None:
    """Reduce the many spellings of tool_choice to None (free), "none", or the allowed names.

    Returns:
        None for "auto"/None; "none" to answer without tools; otherwise the list of tool
        names one of which must be called.

    Raises:
        ValueError: for a tool name that is not bound (a programming error, not the model's).
    """
    if tool_choice in (None, "auto", False):
        return None
    if tool_choice == "none":
        return "none"
    if tool_choice in ("any", "required", True):
        return list(names)
    if isinstance(tool_choice, dict):
        tool_choice = tool_choice.get("function", {}).get("name") or tool_choice.get("name")
    if isinstance(tool_choice, str):
        if tool_choice not in names:
            raise ValueError(f"tool_choice '{tool_choice}' is not one of the bound tools: {', '.join(names)}")
        return [tool_choice]
    raise ValueError(f"unsupported tool_choice {tool_choice!r}; use 'auto', 'none', 'any' or a tool name")


@dataclass
class ParsedOutput:
    """A model's text split into the answer and its tool calls (LangChain dict shapes)."""

    content: str
    tool_calls: list[dict] = field(default_factory=list)
    invalid_tool_calls: list[dict] = field(default_factory=list)


def _call_id(text: str, index: int) -> str:
    # Deterministic ids: the same output gives the same ids (tests, replay), unique per call.
    return "call_" + hashlib.sha1(f"{index}:{text}".encode()).hexdigest()[:16]


def _as_call(payload: Any) -> tuple[str | None, Any]:
    """(name, arguments) from the JSON shapes models use for a call, else (None, None)."""
    if not isinstance(payload, dict):
        return None, None
    if isinstance(payload.get("function"), dict):
        payload = payload["function"]
    name = payload.get("name")
    if "arguments" in payload:
        args = payload["arguments"]
    elif "parameters" in payload:
        args = payload["parameters"]
    elif "args" in payload:
        args = payload["args"]
    else:
        args = {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            pass  # left a string: reported as invalid below
    return name, args


def _loads_lenient(body: str) -> Any:
    """json.loads, then one retry that drops trailing junk after the first complete value."""
    body = body.strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as first:
        # Small models slip into full-width punctuation (Qwen writes "，" after a name) or add
        # text after the object; one lenient retry, else the first error is reported.
        fixed = body.translate(_FULL_WIDTH)
        for candidate in (fixed, body):
            try:
                value, _ = json.JSONDecoder().raw_decode(candidate)
                return value
            except json.JSONDecodeError:
                continue
        raise first


def parse_tool_calls(text: str, allowed: Sequence[str] | None = None, bare_json: bool = False) -> ParsedOutput:
    """Find tool calls in a model's text, in order; the rest is the answer.

    Args:
        text: The generated text.
        allowed: Names of the bound tools; a call to any other name is invalid. None accepts
            any name (and fenced JSON then counts as a call only if it has a "name").
        bare_json: Also read a reply that is nothing but a JSON call as a call. Off in the
            agent: there such a reply after a tool result is the model echoing its last call
            instead of answering, and the agent composes the answer from the results.

    Returns:
        The content without the call blocks, valid calls (`{"name","args","id","type"}`) and
        invalid ones (`{"name","args","id","error","type"}`).
    """
    spans: list[tuple[int, int, str, bool]] = []  # start, end, body, tagged
    for m in _TAGGED.finditer(text):
        spans.append((m.start(), m.end(), m.group(1), True))
    for m in _FENCED.finditer(text):
        if any(s <= m.start() < e for s, e, _, _ in spans):
            continue  # a fence inside a tagged call: that call already covers it
        spans.append((m.start(), m.end(), m.group(1), False))
    if bare_json and not spans and text.strip()[:1] in ("{", "["):
        # The whole reply is one bare JSON call: what a LoRA-tuned 0.5B writes when it means
        # `<tool_call>` but emits another special token first (they share nearly one embedding)
        spans.append((0, len(text), text, False))
    spans.sort()
    out = ParsedOutput(content="")
    keep: list[str] = []
    cursor = 0
    for start, end, body, tagged in spans:
        calls, is_call = _parse_block(body, tagged, allowed, len(out.tool_calls) + len(out.invalid_tool_calls))
        if not is_call:
            continue  # an ordinary code block in the answer: leave it in the content
        keep.append(text[cursor:start])
        cursor = end
        for kind, call in calls:
            (out.tool_calls if kind == "valid" else out.invalid_tool_calls).append(call)
    keep.append(text[cursor:])
    out.content = "".join(keep).strip()
    return out


def _parse_block(body: str, tagged: bool, allowed: Sequence[str] | None, offset: int):
    """Parse one block; returns ([(kind, call)], is_call)."""
    raw = body.strip()
    if tagged and raw.startswith("```"):
        raw = _FENCED.sub(lambda m: m.group(1), raw).strip()
    try:
        payload = _loads_lenient(raw)
    except json.JSONDecodeError as exc:
        # Untagged fenced text that is not JSON is just code in the answer, not a failed call.
        if not tagged and '"name"' not in raw:
            return [], False
        guess = _NAME_GUESS.search(raw)
        return [("invalid", {
            "type": "invalid_tool_call", "name": guess.group(1) if guess else None, "args": raw,
            "id": _call_id(raw, offset), "error": f"tool call is not valid JSON ({exc.msg} at char {exc.pos}); "
            'write it as {"name": "<tool>", "arguments": {...}}',
        })], True
    items = payload if isinstance(payload, list) else [payload]
    if not tagged and not all(isinstance(i, dict) and ("name" in i or "function" in i) for i in items):
        return [], False
    calls = []
    for i, item in enumerate(items):
        name, args = _as_call(item)
        cid = _call_id(json.dumps(item, sort_keys=True, default=str), offset + i)
        error = None
        if not name or not isinstance(name, str):
            error = 'tool call has no "name"; write {"name": "<tool>", "arguments": {...}}'
        elif allowed is not None and name not in allowed:
            error = f"unknown tool '{name}'; available tools: {', '.join(allowed) or '(none)'}"
        elif not isinstance(args, dict):
            error = f"arguments of '{name}' must be a JSON object, got {type(args).__name__}"
        if error:
            calls.append(("invalid", {
                "type": "invalid_tool_call", "name": name if isinstance(name, str) else None,
                "args": args if isinstance(args, str) else json.dumps(args, default=str),
                "id": cid, "error": error,
            }))
        else:
            calls.append(("valid", {"type": "tool_call", "name": name, "args": args, "id": cid}))
    return calls, True


def possible_call_start(text: str) -> int:
    """Index where a tool call may begin in streamed text (len(text) when none can).

    Streaming holds back everything from this index on, so the UI never shows call markup;
    a partial marker at the very end (`<tool_` or a lone backtick) also counts.
    """
    best = len(text)
    for marker in (TOOL_CALL_OPEN, "```"):
        idx = text.find(marker)
        if idx >= 0:
            best = min(best, idx)
            continue
        for k in range(len(marker) - 1, 0, -1):
            if text.endswith(marker[:k]):
                best = min(best, len(text) - k)
                break
    return best


def check_arguments(parsed: ParsedOutput, schemas: Sequence[dict]) -> ParsedOutput:
    """Move calls whose arguments do not fit the tool's schema to the invalid calls.

    Unknown argument names and missing required ones are errors the model can fix, so they go
    back to it as text (with the argument list) rather than reaching the tool.
    """
    by_name = {s["function"]["name"]: s["function"].get("parameters") or {} for s in schemas}
    keep = []
    for call in parsed.tool_calls:
        params = by_name.get(call["name"])
        if params is None:
            keep.append(call)
            continue
        props = params.get("properties") or {}
        unknown = sorted(set(call["args"]) - set(props))
        missing = [r for r in params.get("required") or [] if r not in call["args"]]
        if not unknown and not missing:
            keep.append(call)
            continue
        allowed = ", ".join(f"{k}{'' if k in (params.get('required') or []) else ' (optional)'}" for k in props)
        problem = (f"unknown argument(s) {', '.join(unknown)}" if unknown else "") + \
            ("; " if unknown and missing else "") + (f"missing required {', '.join(missing)}" if missing else "")
        parsed.invalid_tool_calls.append({
            "type": "invalid_tool_call", "name": call["name"], "args": json.dumps(call["args"], default=str),
            "id": call["id"], "error": f"{call['name']}: {problem}; its arguments are: {allowed or '(none)'}",
        })
    parsed.tool_calls = keep
    return parsed
