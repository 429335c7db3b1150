"""Rendering for the Gradio workspace (app.py): agent events -> chat messages, tool results -> tables,
review summaries and the Data & models panel -> markdown. Pure functions, tested without a server.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import gradio as gr
import pandas as pd

TABLE_KEYS = ("users", "segments", "cases", "events", "rows", "items", "next_categories", "quotes")


# ---------------------------------------------------------------------- rendering helpers
def json_block(value: Any, limit: int = 3000) -> str:
    text = json.dumps(value, indent=1, default=str, ensure_ascii=False)
    if len(text) > limit:
        text = text[:limit] + "\n... (truncated)"
    return f"```json\n{text}\n```"


def rows_frame(result: Any, keys: tuple[str, ...] = TABLE_KEYS) -> pd.DataFrame:
    """The list of records inside a tool result, as a table (tools return compact JSON)."""
    if not isinstance(result, dict):
        return pd.DataFrame()
    for key in keys:
        value = result.get(key)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return pd.DataFrame(value)
    return pd.DataFrame()


def error_text(result: Any) -> str | None:
    if isinstance(result, dict) and result.get("error"):
        return f"{result['error']}" + (f" — {result['hint']}" if result.get("hint") else "")
    return None


def driver_row(driver: dict) -> dict:
    """One driver as a flat row: a feature, or one past event of the user (what, when)."""
    event = driver.get("event")
    if isinstance(event, dict):
        what = f"{event.get('behavior')} {event.get('item_id')} ({event.get('category_id')}) at {event.get('ts')}"
    else:
        what = driver.get("feature") or driver.get("name") or ""
    return {"driver": what, "kind": driver.get("type", ""), "effect": driver.get("effect"),
            "direction": driver.get("direction", "")}


def citations_markdown(citations: Any) -> str:
    if not citations:
        return ""
    parts = [f"`{c.get('kind', 'id')} {c.get('id')}`" + (f" ({c['tool']})" if c.get("tool") else "")
             if isinstance(c, dict) else f"`{c}`" for c in citations]
    return "\n\n**Evidence:** " + ", ".join(parts)


def render_events(events: Iterator[Any], chat: list) -> Iterator[tuple[list, Any, pd.DataFrame | None]]:
    """Turn the agent's event stream into chat messages; yields (chat, event, table of the last result)."""
    answer_msg: gr.ChatMessage | None = None
    pending: dict[str, gr.ChatMessage] = {}
    called: set[str] = set()
    for event in events:
        kind, table = event.type, None
        if kind == "tool_call":
            args = ", ".join(f"{k}={v!r}" for k, v in (event.get("arguments") or {}).items())
            how = " (chosen by the router)" if event.get("routed") else ""
            msg = gr.ChatMessage(role="assistant", content="**Arguments**\n" + json_block(event.get("arguments", {})),
                                 metadata={"title": f"⚙ Tool {event.get('name')}({args}){how}", "status": "pending"})
            pending[str(event.get("id") or event.get("name"))] = msg
            called.add(str(event.get("name")))
            chat.append(msg)
        elif kind == "tool_result":
            result = event.get("result")
            msg = pending.pop(str(event.get("id") or event.get("name")), None)
            if msg is None:
                msg = gr.ChatMessage(role="assistant", content="",
                                     metadata={"title": f"⚙ Tool {event.get('name')}", "status": "done"})
                chat.append(msg)
            msg.content += "\n**Result**\n" + json_block(result)
            msg.metadata["status"] = "done"
            if error_text(result):
                msg.metadata["title"] += " — error"
            else:
                table = rows_frame(result)
        elif kind == "token":
            if answer_msg is None:
                answer_msg = gr.ChatMessage(role="assistant", content="")
                chat.append(answer_msg)
            answer_msg.content += event.get("text", "")
        elif kind == "answer":
            footer = citations_markdown(event.get("citations"))
            ungrounded = event.get("ungrounded") or []
            if ungrounded:
                footer += "\n\n⚠ Left out, not backed by any tool result: " + ", ".join(map(str, ungrounded))
            if answer_msg is None:
                answer_msg = gr.ChatMessage(role="assistant", content="")
                chat.append(answer_msg)
            answer_msg.content = event.get("text", "") + footer
        elif kind == "error" and str(event.get("message", "")).split(":")[0] not in called:
            # a tool's own error is shown inside its step; the rest are model mistakes fed back
            chat.append(gr.ChatMessage(role="assistant", content=event.get("hint") or "fed back to the model",
                                       metadata={"title": f"⚠ {event.get('message', '')}", "status": "done"}))
        yield chat, event, table


def summary_markdown(summary: dict, target: str) -> str:
    """Counts, one quote per aspect and the strongest quotes, each with its review id (text is untrusted)."""
    lines = [f"### Reviews of {target.replace(':', ' ')}"]
    counts = {k: summary[k] for k in ("n_reviews", "mean_rating") if k in summary}
    if isinstance(summary.get("sentiment"), dict):
        counts.update(summary["sentiment"])
    lines.append(" · ".join(f"**{k}** {v}" for k, v in counts.items()) or "No reviews in this scope.")
    for aspect in summary.get("aspects") or []:
        q = aspect.get("quote") or {}
        lines.append(f"- **{aspect.get('aspect')}**: {aspect.get('reviews')} reviews "
                     f"({aspect.get('positive')} positive, {aspect.get('negative')} negative) — "
                     f"{q.get('text', '')} (review `{q.get('review_id')}`)")
    quotes = summary.get("quotes") or {}
    for side, rows in (quotes.items() if isinstance(quotes, dict) else [("", quotes)]):
        for quote in rows:
            lines.append(f"> {quote.get('text', '')}  \n> — {side} review `{quote.get('review_id')}`, "
                         f"{quote.get('rating', '?')}★")
    return "\n\n".join(lines)


def summary_panel(info: dict) -> str:
    """The Data & models panel: one line per part, problems last with what to run."""
    problems = info.pop("problems", {})
    tables = info.pop("tables", {}) or {}
    span = info.pop("span", None) or (None, None)
    lines = ["### What is loaded",
             "- **store**: " + " · ".join(f"{n:,} {t}" for t, n in tables.items()) + f" ({info.pop('db_path', '')})",
             f"- **events span**: {span[0]} → {span[1]}; answers are as of **{info.pop('as_of', '')}**"]
    rejected = info.pop("rejected_by_reason", {}) or {}
    if rejected:
        lines.append("- **rejected rows by reason**: " + "; ".join(f"{r} ({n})" for r, n in rejected.items()))
    for key, value in info.items():
        if isinstance(value, dict):
            value = " · ".join(f"{k} {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}"
                               for k, v in value.items())
        lines.append(f"- **{key.replace('_', ' ')}**: {value}")
    for part, message in problems.items():
        lines.append(f"- ⚠ **{part}**: {message}")
    return "\n".join(lines)
