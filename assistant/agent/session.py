"""Conversation memory: persist messages to a file, and remember the entities a follow-up refers to.

A follow-up like "and why is the second one at risk?" needs two things: the earlier tool
results in the history (kept as LangChain messages), and a way for a 0.5B model to turn
"the second one" into an id. `known_entities` lists, per kind, the ids of the most recent
tool result that returned them, in order; `resolve_references` appends to the question a
short note saying which id an ordinal or "that user" points to. Both are deterministic.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage, messages_from_dict, messages_to_dict

from assistant.agent.time_spans import gives_days, spans
from assistant.agent.untrusted import clean_history

SESSION_VERSION = 1
ENTITY_KEYS = {"user_id": "user", "item_id": "item", "case_id": "case", "review_id": "review",
               "category_id": "category"}
MAX_ENTITIES = 10
# What the model re-reads of an earlier turn (`shorten_earlier_turns`): the call, the result's top-level figures
# and every row's ids, the answer's opening. A follow-up's prompt had carried the whole earlier result (~1,000
# tokens even compact, ~30 s of prefill on 2 cores); the ids a follow-up points to stay, and the reference
# note names them anyway.
EARLIER_TEXT_CHARS = 40
EARLIER_ANSWER_CHARS = 240
_ORDINALS = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
    "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8,
    "ninth": 9, "9th": 9, "tenth": 10, "10th": 10, "last": -1,
}
_KIND_WORDS = {"user": "user", "customer": "user", "one": None, "item": "item", "product": "item",
               "case": "case", "review": "review", "category": "category"}
_ORDINAL_RE = re.compile(
    r"\b(?:the\s+)?(" + "|".join(sorted(_ORDINALS, key=len, reverse=True)) + r")\s+(" + "|".join(_KIND_WORDS) + r")s?\b",
    re.I,
)
_NUMBER_REF_RE = re.compile(r"(?:#|number\s+|no\.\s*)(\d{1,2})\b", re.I)
_PRONOUN_RE = re.compile(r"\b(that|this|the same)\s+(user|customer|item|product)\b|\b(him|her|them)\b", re.I)


@dataclass
class Session:
    """A conversation kept in a JSON file so a second `shopsight ask --session FILE` continues it."""

    path: Path
    messages: list[BaseMessage] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> "Session":
        """Open the session file, or start an empty session if it does not exist yet."""
        path = Path(path)
        if not path.exists():
            return cls(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if payload.get("version") != SESSION_VERSION:
                raise ValueError(f"version {payload.get('version')!r}, expected {SESSION_VERSION}")
            # A session file is plain JSON anyone can edit: read it back as untrusted.
            messages = clean_history(messages_from_dict(payload["messages"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(
                f"{path}: not a ShopSight session file ({exc}); pass a new --session path or delete this file"
            ) from exc
        return cls(path, messages)

    def save(self) -> None:
        """Write atomically: a crash mid-write leaves the previous session intact."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"version": SESSION_VERSION, "messages": messages_to_dict(self.messages)}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, ensure_ascii=False, default=str)
        os.replace(tmp, self.path)


def tool_results(messages: list[BaseMessage]) -> list[tuple[str, Any]]:
    """(tool name, parsed result) of every ToolMessage, oldest first."""
    out = []
    for message in messages:
        if isinstance(message, ToolMessage):
            try:
                out.append((message.name or "", json.loads(message.content)))
            except (TypeError, ValueError):
                out.append((message.name or "", message.content))
    return out


def known_entities(messages: list[BaseMessage]) -> dict[str, list[str]]:
    """Per kind, the ids of the most recent tool result holding that kind, in result order."""
    entities: dict[str, list[str]] = {}
    for _, result in tool_results(messages):
        for kind, ids in ids_by_kind(result).items():
            if len(ids) > 0:
                entities[kind] = ids[:MAX_ENTITIES]
    return entities


def ids_by_kind(value: Any) -> dict[str, list[str]]:
    """Per kind ("user", "item", ...), the ids a tool result (or a list of them) holds anywhere, in order."""
    found: dict[str, list[str]] = {}
    _collect(value, found)
    return found


def _collect(value: Any, found: dict[str, list[str]], key: str | None = None) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _collect(v, found, k)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found, key)
    elif key in ENTITY_KEYS and value is not None:
        ids = found.setdefault(ENTITY_KEYS[key], [])
        text = str(value)
        if text not in ids:
            ids.append(text)


def resolve_references(question: str, entities: dict[str, list[str]], last_kind: str | None = None) -> str:
    """A note naming the id each ordinal or pronoun of `question` refers to ('' when none).

    Args:
        question: the user's follow-up.
        entities: `known_entities` of the conversation so far.
        last_kind: the kind "one"/"them" defaults to (the first list shown, else users).
    """
    if not entities:
        return ""
    default_kind = last_kind or ("user" if "user" in entities else next(iter(entities)))
    notes: list[str] = []
    for match in _ORDINAL_RE.finditer(question):
        word, noun = match.group(1).lower(), match.group(2).lower()
        kind = _KIND_WORDS.get(noun) or default_kind
        ids = entities.get(kind) or []
        position = _ORDINALS[word]
        if ids and (position == -1 or position <= len(ids)):
            chosen = ids[position - 1] if position > 0 else ids[-1]
            notes.append(f'"{match.group(0).strip()}" = {kind} {chosen}')
    for match in _NUMBER_REF_RE.finditer(question):
        ids = entities.get(default_kind) or []
        position = int(match.group(1))
        if 0 < position <= len(ids):
            notes.append(f'"{match.group(0)}" = {default_kind} {ids[position - 1]}')
    if not notes:
        for match in _PRONOUN_RE.finditer(question):
            noun = (match.group(2) or "").lower()
            kind = _KIND_WORDS.get(noun) or default_kind
            ids = entities.get(kind) or []
            if ids:
                notes.append(f'"{match.group(0)}" = {kind} {ids[0]}')
                break
    return "; ".join(notes)


# The notes `resolve_references` writes, read back by the router: '"the second one" = user 1084'.
_REFERENCE_NOTE_RE = re.compile(r'"([^"]+)" = (' + "|".join(sorted(set(ENTITY_KEYS.values()))) + r") ([\w@-]+)")


def reference_notes(text: str) -> list[tuple[str, str, str]]:
    """(phrase, kind, id) of every reference note in `text` (a question with its notes appended)."""
    return _REFERENCE_NOTE_RE.findall(text)


def time_notes(question: str) -> list[str]:
    """Notes turning "this week" / "the coming month" into days, unless the question already gives days."""
    if gives_days(question):
        return []
    return [f'"{phrase}" = {days} days' for phrase, days in spans(question)]


def shorten_earlier_turns(messages: list[BaseMessage], current: int) -> list[BaseMessage]:
    """`messages` as the model reads them: turns before index `current` shortened, the rest as they are.

    Earlier tool results keep their top-level figures and the ids of their rows; an earlier answer keeps
    its opening. The full messages stay in the conversation (grounding reads them); only the prompt is
    shorter.
    """
    shortened = []
    for message in messages[:current]:
        if isinstance(message, ToolMessage) and isinstance(message.content, str):
            try:
                brief = json.dumps(_brief(json.loads(message.content)), ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError):
                brief = message.content[:EARLIER_ANSWER_CHARS]
            message = ToolMessage(content=brief, tool_call_id=message.tool_call_id, name=message.name)
        elif isinstance(message, AIMessage) and not message.tool_calls and isinstance(message.content, str):
            message = AIMessage(content=_opening(message.content))
        shortened.append(message)
    return shortened + list(messages[current:])


def _brief(value: Any) -> Any:
    """A result's top-level figures and, for each list of rows, the rows' ids."""
    if not isinstance(value, dict):
        return value if not _long_text(value) else value[:EARLIER_TEXT_CHARS] + "..."
    brief: dict[str, Any] = {}
    for key, field_value in value.items():
        if isinstance(field_value, list):
            ids = [{k: v for k, v in row.items() if k in ENTITY_KEYS} for row in field_value if isinstance(row, dict)]
            ids = [i for i in ids if i]
            if ids:  # one id per row reads as a plain list: "users": ["3810", "3736"]
                brief[key] = [next(iter(i.values())) for i in ids] if all(len(i) == 1 for i in ids) else ids
        elif not isinstance(field_value, dict) and not _long_text(field_value):
            brief[key] = field_value
    return brief


def _long_text(value: Any) -> bool:
    """Sentences (notes, model descriptions) are left out of an earlier result: its figures and ids stay."""
    return isinstance(value, str) and len(value) > EARLIER_TEXT_CHARS


def _opening(text: str) -> str:
    first = text.strip().split("\n")[0]
    return first if len(first) <= EARLIER_ANSWER_CHARS else first[:EARLIER_ANSWER_CHARS].rstrip() + "..."
