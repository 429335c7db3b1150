"""The small event objects the agent loop yields; the Gradio UI and the CLI only render them.

One class with a `type` and a flat payload, so a consumer can switch on `event.type` and a
JSON line is just `event.to_dict()`:

| type          | payload                                                                  |
|---------------|--------------------------------------------------------------------------|
| `step`        | `step` (1-based), `max_steps`                                            |
| `tool_call`   | `name`, `arguments`, `id`, `routed` (True when the router chose it)      |
| `tool_result` | `name`, `result` (the tool's dict, PII-masked), `id`, `seconds`          |
| `token`       | `text`: a piece of the final answer, in order                            |
| `error`       | `message`: a model-caused problem fed back to the model (loop goes on)   |
| `answer`      | `text`, `citations`, `grounded`, `ungrounded`, `repair`, `steps`, `seconds` |

The `answer` event also carries `messages` (the whole conversation after this turn, as
LangChain messages) for persistence; it is left out of `to_dict()` because it is not JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

EVENT_TYPES = ("step", "tool_call", "tool_result", "token", "error", "answer")
# Payload keys that hold Python objects for in-process consumers, never serialized.
_PRIVATE_KEYS = ("messages",)


@dataclass
class AgentEvent:
    """One thing that happened in the loop: `type` plus a flat payload in `data`."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}; expected one of {EVENT_TYPES}")

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The payload value for `key`, or `default`."""
        return self.data.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: `{"type": ..., **payload}` without in-process objects."""
        out = {"type": self.type}
        out.update({k: v for k, v in self.data.items() if k not in _PRIVATE_KEYS})
        return out

    def to_json(self) -> str:
        """One JSON line (numpy scalars and datetimes are written as plain values)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    # numpy scalars / pandas timestamps reach us through tool results.
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
