"""Chat examples in JSON lines -> token ids and labels masked to the assistant's turns.

File format (one example per line), the same as `finetune.sft_data` writes:
    {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": "...",
                   "tool_calls": [{"type": "function", "function": {"name": ..., "arguments": {...}}}]}],
     "tools": [<JSON schema of a tool>, ...],          # optional
     "meta": {...}}                                     # optional, ignored by training

Masking is done on characters, not on token counts: the conversation is rendered once with the
tokenizer's chat template, each assistant turn's character span is found by rendering the
prefix before it (with the generation prompt) and the prefix that includes it, and a token is
trained on when its characters lie inside such a span. This stays right when a BPE merge
crosses a turn boundary, which breaks the usual "tokenize the prefix and count" approach.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant", "tool")


class SFTFormatError(ValueError):
    """A line of an SFT file is not a valid chat example; the message names file and line."""


def _check_example(obj, where: str) -> dict:
    """Validate one parsed line; raise SFTFormatError naming the field and the fix."""
    if not isinstance(obj, dict):
        raise SFTFormatError(f"{where}: expected a JSON object with a 'messages' list, got {type(obj).__name__}")
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SFTFormatError(f"{where}: field 'messages' must be a non-empty list of "
                             "{'role': ..., 'content': ...} objects")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise SFTFormatError(f"{where}: messages[{i}].role must be one of {ROLES}, "
                                 f"got {message.get('role') if isinstance(message, dict) else message!r}")
        content, calls = message.get("content"), message.get("tool_calls")
        if content is not None and not isinstance(content, str):
            raise SFTFormatError(f"{where}: messages[{i}].content must be a string")
        if calls is not None:
            if message["role"] != "assistant" or not isinstance(calls, list):
                raise SFTFormatError(f"{where}: messages[{i}].tool_calls must be a list on an assistant message")
            for j, call in enumerate(calls):
                fn = call.get("function", call) if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) \
                        or not isinstance(fn.get("arguments", {}), dict):
                    raise SFTFormatError(f"{where}: messages[{i}].tool_calls[{j}] must look like "
                                         "{'type': 'function', 'function': {'name': str, 'arguments': {...}}}")
        if not content and not calls:
            raise SFTFormatError(f"{where}: messages[{i}] has neither 'content' nor 'tool_calls'")
    if not any(m["role"] == "assistant" for m in messages):
        raise SFTFormatError(f"{where}: no assistant message: there is nothing to train on; "
                             "add the answer as {'role': 'assistant', 'content': ...}")
    tools = obj.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise SFTFormatError(f"{where}: field 'tools' must be a list of JSON tool schemas")
    return obj


def read_sft_file(path: str | Path) -> list[dict]:
    """Read and validate a JSON-lines SFT file.

    Args:
        path: the file; blank lines are skipped.

    Returns:
        The examples, in file order.

    Raises:
        SFTFormatError: on the first malformed line, naming the file, the line number and the fix.
        FileNotFoundError: when the file does not exist (with the command that builds it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such SFT file; build one with "
                                "`python -m finetune.sft_data --out DIR` or fix the path in the config")
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise SFTFormatError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); "
                                     "each line must be one complete JSON object") from None
            examples.append(_check_example(obj, where))
    if not examples:
        raise SFTFormatError(f"{path}: the file has no examples")
    return examples


def render(tokenizer, messages: list[dict], tools: list[dict] | None, generation_prompt: bool = False) -> str:
    """Render messages with the tokenizer's chat template as text."""
    return tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer, example: dict) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns.

    Each span runs from the end of the generation prompt to the end of the turn, so it
    includes the end-of-turn token: the model learns to stop.
    """
    messages, tools = example["messages"], example.get("tools")
    full = render(tokenizer, messages, tools)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], tools, generation_prompt=True) if i else ""
        through = render(tokenizer, messages[: i + 1], tools)
        if not full.startswith(before) or not full.startswith(through) or len(through) < len(before):
            raise SFTFormatError(
                f"the chat template does not render conversations prefix-consistently at message {i}; "
                "use a tokenizer whose template does (Qwen2.5, Llama 3) or pass a fixed template")
        spans.append((len(before), len(through)))
    return full, spans


@dataclass
class TokenizedExample:
    """One training example: token ids and labels (IGNORE_INDEX outside assistant turns)."""

    input_ids: list[int]
    labels: list[int]


def tokenize_example(tokenizer, example: dict) -> TokenizedExample:
    """Tokenize one chat example with labels only on assistant tokens."""
    text, spans = assistant_spans(tokenizer, example)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for token_id, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
        # a token counts when it ends inside a span and starts at or after the span start
        inside = any(s <= start and end <= e and end > start for s, e in spans)
        labels.append(token_id if inside else IGNORE_INDEX)
    return TokenizedExample(list(enc["input_ids"]), labels)


def tokenize_file(tokenizer, path: str | Path,
                  max_seq_len: int) -> tuple[list[TokenizedExample], list[tuple[str, int]]]:
    """Read, validate and tokenize an SFT file.

    Examples longer than `max_seq_len` are dropped, not cut: cutting the end would drop the
    answer, cutting the start would drop the instructions.

    Returns:
        (examples that fit, (kind, tokens) of each example dropped as too long; kind is
        meta.kind, e.g. "churn" or "tool").
    """
    if not getattr(tokenizer, "is_fast", False):
        raise SFTFormatError("masking needs a fast tokenizer (offset mapping); load it with use_fast=True")
    kept, too_long = [], []
    for number, example in enumerate(read_sft_file(path), start=1):
        try:
            item = tokenize_example(tokenizer, example)
        except SFTFormatError as err:
            raise SFTFormatError(f"{path}: example {number}: {err}") from None
        if len(item.input_ids) > max_seq_len:
            too_long.append((str((example.get("meta") or {}).get("kind", "example")), len(item.input_ids)))
            continue
        if not any(label != IGNORE_INDEX for label in item.labels):
            raise SFTFormatError(f"{path}: example {number}: no assistant token survived masking")
        kept.append(item)
    if not kept:
        raise SFTFormatError(f"{path}: {describe_too_long(too_long, max_seq_len, read=len(too_long))}")
    return kept, too_long


def describe_too_long(too_long: list[tuple[str, int]], max_seq_len: int, read: int) -> str:
    """"dropped 8 of 20 examples longer than 768 tokens (8 tool: longest 1,093); ..." and the fix.

    A recipe sized for one shop can drop a whole kind of example on another (long tool results),
    which the total alone hides.
    """
    if not too_long:
        return f"dropped 0 of {read} examples longer than {max_seq_len} tokens"
    kinds: dict[str, list[int]] = {}
    for kind, length in too_long:
        kinds.setdefault(kind, []).append(length)
    parts = ", ".join(f"{len(lengths)} {kind}: longest {max(lengths):,}" for kind, lengths in sorted(kinds.items()))
    return (f"dropped {len(too_long)} of {read} examples longer than max_seq_len={max_seq_len} tokens ({parts}); "
            f"--max_seq_len {max(length for _, length in too_long)} keeps them (more memory and time per step), "
            "or build shorter examples")
