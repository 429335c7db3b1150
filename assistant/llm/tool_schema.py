"""A tool function's JSON schema from its signature and Google-style docstring, without importing transformers.

    schema = function_schema(at_risk_users)   # {"type": "function", "function": {"name", "description", "parameters"}}

The schema is the one `transformers.utils.get_json_schema` makes (the parser `apply_chat_template`
uses, so prompts stay token for token what the model was fine-tuned on); tests/test_tool_schema.py
checks that on every catalog tool. Importing transformers for it cost a cold `shopsight ask` ~1 s
of CPU and ~200 MB, and its type mapping imports torch (bench/cold_ask.py). Hints handled here:
int, float, str, bool, None, Any, list/dict (bare or typed), Optional and unions of those, and
Literal; anything else (Enum classes, tuples, custom classes) is handed to transformers.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from typing import Any, Callable, Literal, Union

_BASIC = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
_SECTION = re.compile(r"^\s*(Args|Returns|Raises):\s*$")
_ARG_LINE = re.compile(r"^(\w+)(?:[ \t]*\([^()\n]*\))?:\s*(.*)$")
_CHOICES = re.compile(r"\(choices:\s*(.*?)\)\s*$", re.IGNORECASE)


class _Unsupported(Exception):
    """A hint or docstring this module does not read; transformers' parser gets the function."""


def function_schema(fn: Callable) -> dict:
    """`{"type": "function", "function": {...}}` for `fn`, as transformers' get_json_schema writes it."""
    try:
        return _schema(fn)
    except _Unsupported:
        from transformers.utils import get_json_schema

        return get_json_schema(fn)


def _schema(fn: Callable) -> dict:
    doc = inspect.getdoc(fn)
    if not doc:
        raise _Unsupported("no docstring")  # transformers raises its own DocstringParsingException
    description, arg_docs, returns = _read_docstring(doc.strip())
    hints = typing.get_type_hints(fn)
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    if params and params[0].name in ("self", "cls") and params[0].annotation is inspect.Parameter.empty:
        params = params[1:]
    if any(p.annotation is inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        raise _Unsupported("a parameter without a type hint")
    properties: dict[str, dict] = {}
    for name, hint in hints.items():  # in hint order, as transformers
        if name != "return":
            properties[name] = _json_type(hint)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    if required:
        schema["required"] = required
    for name, prop in properties.items():
        if name not in arg_docs:
            raise _Unsupported(f"no description for {name}")
        text = arg_docs[name]
        choices = _CHOICES.search(text)
        if choices:
            prop["enum"] = [c.strip() if isinstance(c, str) else c for c in json.loads(choices.group(1))]
            text = text[: choices.start()].strip()
        prop["description"] = text
    function: dict[str, Any] = {"name": getattr(fn, "__name__", "operation"), "description": description,
                                "parameters": schema}
    if "return" in hints:
        try:
            returned = _json_type(hints["return"])
        except _Unsupported:
            returned = None
        if returned is not None:
            if returns is not None:
                returned["description"] = returns
            function["return"] = returned
    return {"type": "function", "function": function}


def _json_type(hint: Any) -> dict:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None:
        if hint in _BASIC:
            return {"type": _BASIC[hint]}
        if hint is Any:
            return {}
        if hint in (list, dict):
            return {"type": "array" if hint is list else "object"}
        raise _Unsupported(hint)
    if origin is Union or origin is types.UnionType:
        parts = [_json_type(a) for a in args if a is not type(None)]
        if len(parts) == 1:
            out = parts[0]
        elif all(set(p) == {"type"} and isinstance(p["type"], str) for p in parts):
            names = sorted({p["type"] for p in parts})
            out = {"type": names[0] if len(names) == 1 else names}
        else:
            out = {"anyOf": parts}
        if type(None) in args:
            out["nullable"] = True
        return out
    if origin is Literal and args:
        if any(type(a) not in _BASIC for a in args):
            raise _Unsupported(hint)
        kinds = list(dict.fromkeys(_BASIC[type(a)] for a in args))
        return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _json_type(args[0])} if args else {"type": "array"}
    if origin is dict:
        return {"type": "object", "additionalProperties": _json_type(args[1])} if len(args) == 2 else {"type": "object"}
    raise _Unsupported(hint)


def _read_docstring(doc: str) -> tuple[str, dict[str, str], str | None]:
    """(description, {argument: description on one line}, returns) of a Google-style docstring."""
    lines = doc.split("\n")
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in lines:
        head = _SECTION.match(line)
        if head and head.group(1) not in sections:
            current = head.group(1)
            sections[current] = []
        else:
            sections[current].append(line)
    if any(line.strip().startswith(("Args:", "Returns:", "Raises:")) for part in sections.values() for line in part):
        raise _Unsupported("a section header this reader does not split")
    description = "\n".join(sections[""]).strip()
    args: dict[str, list[str]] = {}
    body = [line for line in sections.get("Args", []) if line.strip()]
    indent = min((len(line) - len(line.lstrip()) for line in body), default=0)
    name = None
    for line in body:
        found = _ARG_LINE.match(line[indent:]) if len(line) - len(line.lstrip()) == indent else None
        if found:
            name = found.group(1)
            args[name] = [found.group(2)]
        elif name is None:
            raise _Unsupported("text before the first argument")
        else:
            args[name].append(line)
    arg_docs = {key: re.sub(r"\s*\n+\s*", " ", "\n".join(parts).strip()) for key, parts in args.items()}
    returns = "\n".join(sections["Returns"]).strip() if "Returns" in sections else None
    return description, arg_docs, returns
