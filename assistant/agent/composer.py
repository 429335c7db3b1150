"""The answer writer: the final answer composed from this turn's tool results by a template.

It answers in the question's language (prompts/agent_answer.j2 in English,
prompts/agent_answer_zh.j2 in Chinese): the first sentence answers the question in plain words,
then the evidence, short; the table below the chat shows the full result. Values are made
display-ready in assistant/agent/answer_views.py (percentages, money, dates; never an internal
field name or a raw timestamp), each rounding back to a number a tool returned, so the
composer's answers are grounded by construction.

    text = compose_answer("Which users will churn this week?", [("at_risk_users", result)])
    text = compose_answer("哪些用户本周会流失？", [("at_risk_users", result)], language="zh")

Used when the model's prose fails grounding, and as the answer of `answer_mode="template"` and
`"brief"` (where the model's checked takeaway follows it).
"""

from __future__ import annotations

from typing import Any

from assistant import prompts
from assistant.agent.answer_views import number, view_of
from assistant.agent.cues import review_side

TEMPLATES = {"en": "agent_answer", "zh": "agent_answer_zh"}


def format_number(value: Any) -> str:
    """A number as the composer writes it: integers as is, floats to at most 3 decimals."""
    return number(value)


def compose_answer(question: str, results: list[tuple[str, Any]], note: str = "", language: str = "en",
                   currency: str = "$") -> str:
    """The answer written from this turn's tool results.

    Args:
        question: the user's question (its language picks the template when `language` is "auto").
        results: (tool name, sanitized result) pairs of this turn, in call order.
        note: an optional first line (e.g. why the model's own answer was replaced).
        language: "en", "zh", or "auto" (Chinese when the question is written in Chinese).
        currency: the symbol written before amounts of money.
    """
    if language == "auto":
        from assistant.agent.intent import answer_language

        language = answer_language(question)
    language = language if language in TEMPLATES else "en"
    side = review_side(question)
    views = [view_of(name, result, language, currency, side) for name, result in results if isinstance(result, dict)]
    text = prompts.render(TEMPLATES[language], views=views, note=note)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())
