"""The fallback answer composer: the final answer written from tool results by a template
(prompts/agent_answer.j2) when the model's prose fails grounding, or when asked for
(`answer_mode="template"`).

Values are formatted here (floats to at most three decimals, which the grounding check
forgives as rounding) so the template needs only Jinja's built-in tests, and every figure
it writes is copied from a tool result: its answers are grounded by construction.
"""

from __future__ import annotations

import math
from typing import Any

from assistant import prompts

MAX_ROWS = 10  # rows of a list shown per result; the UI shows the full table


def format_number(value: Any) -> str:
    """A number as the composer writes it: integers as is, floats to at most 3 decimals."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def display(value: Any) -> Any:
    """A tool result with every number turned into its display string (structure kept)."""
    if isinstance(value, dict):
        return {str(k): display(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [display(v) for v in value[:MAX_ROWS]]
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return format_number(value)
    return value


def compose_answer(question: str, results: list[tuple[str, Any]], note: str = "") -> str:
    """The answer written from this turn's tool results by prompts/agent_answer.j2.

    Args:
        question: the user's question (shown for context only).
        results: (tool name, sanitized result) pairs of this turn, in call order.
        note: an optional first line (e.g. why the model's own answer was replaced).
    """
    shown = [{"tool": name, "result": display(result)} for name, result in results if isinstance(result, dict)]
    return prompts.render("agent_answer", question=question, results=shown, note=note)
