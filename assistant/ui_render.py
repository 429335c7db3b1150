"""Rendering for the Gradio workspace (app.py): agent events -> chat messages, tool results -> tables,
review summaries and the Data & models panel -> markdown. Pure functions, tested without a server.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator
from urllib.parse import quote

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


def answer_table(tool: str, result: Any) -> pd.DataFrame:
    """The numbers behind an answer: the at-risk list as the Operations tab shows it (stage words, units in
    the column names), and no column the shop never records (a blank category_id on CDNOW or Instacart)."""
    table = at_risk_table(result) if tool == "at_risk_users" else rows_frame(result)
    return table.dropna(axis=1, how="all") if len(table) else table


def error_text(result: Any) -> str | None:
    if isinstance(result, dict) and result.get("error"):
        return f"{result['error']}" + (f" — {result['hint']}" if result.get("hint") else "")
    return None


def driver_row(driver: dict) -> dict:
    """One driver as a flat row: a feature, or one past event of the user (what, when)."""
    event = driver.get("event")
    if isinstance(event, dict):
        category = event.get("category_id")  # a shop without categories (CDNOW, Instacart): no "(None)"
        what = f"{event.get('behavior')} {event.get('item_id')}" + (f" ({category})" if _given(category) else "") \
            + f" at {event.get('ts')}"
    else:
        what = driver.get("feature") or driver.get("name") or ""
    return {"driver": what, "kind": driver.get("type", ""), "effect": driver.get("effect"),
            "direction": driver.get("direction", "")}


DRIVER_COLUMNS = ["driver", "kind", "effect", "direction"]


def drivers_frame(explanation: dict) -> pd.DataFrame:
    """explain_user's drivers as the drill-down's table; with none, the reason (too little history, or no
    effect of a point or more) as its one row. explain_user names it `too_little_history`: the app read
    `history.too_little`, so a 4-order CDNOW customer showed an empty table headed "1 2 3"."""
    rows = [driver_row(d) for d in explanation.get("drivers") or []]
    why = (explanation.get("too_little_history") or (explanation.get("history") or {}).get("too_little")
           or explanation.get("drivers_left_out"))
    if not rows and why:
        rows = [{"driver": why, "kind": "note", "effect": None, "direction": ""}]
    return pd.DataFrame(rows, columns=DRIVER_COLUMNS)


# A citation in the chat is a link "#cite/<kind>/<id>"; this script (js_on_load of the app's citation
# bridge, a gr.HTML) catches clicks on such links anywhere on the page, so the browser never navigates,
# and fires the bridge's click event with {kind, id}. The listener is installed on the document once
# per page and re-pointed at the newest bridge if Gradio mounts it again.
CITATION_LINK = "#cite/"
CITATION_JS = """
const openCitation = (event) => {
  const link = event.target.closest ? event.target.closest('a[href*="#cite/"]') : null;
  if (!link) return;
  event.preventDefault();
  event.stopPropagation();
  const [kind, ...rest] = link.getAttribute('href').split('#cite/')[1].split('/');
  trigger('click', {kind: decodeURIComponent(kind), id: decodeURIComponent(rest.join('/'))});
};
if (window.shopsightCitation) document.removeEventListener('click', window.shopsightCitation, true);
window.shopsightCitation = openCitation;
document.addEventListener('click', openCitation, true);
"""
OPENABLE_KINDS = ("user", "case", "review", "item", "category")


def citation_link(kind: str, value: str) -> str:
    """A markdown link that opens the evidence (kinds the workspace has no view for stay plain)."""
    label = f"{kind} {value}".replace("[", "(").replace("]", ")")
    if kind not in OPENABLE_KINDS:
        return f"`{label}`"
    return f"[{label}]({CITATION_LINK}{quote(kind, safe='')}/{quote(str(value), safe='')})"


def citations_markdown(citations: Any) -> str:
    if not citations:
        return ""
    parts = [citation_link(str(c.get("kind", "id")), str(c.get("id"))) + (f" ({c['tool']})" if c.get("tool") else "")
             if isinstance(c, dict) else f"`{c}`" for c in citations]
    return "\n\n**Evidence:** " + ", ".join(parts)


def review_markdown(review: dict) -> str:
    """One cited review, shown above the desk (its text is untrusted: quoted, never rendered as HTML)."""
    text = " ".join(re.sub(r"<br\s*/?>", " ", str(review.get("text") or "")).split()).replace("<", "&lt;")
    title = str(review.get("title") or "").replace("<", "&lt;")
    return (f"### Cited review `{review.get('review_id')}`\n\n{review.get('rating', '?')}★ by user "
            f"`{review.get('user_id')}` on item `{review.get('item_id')}`, {review.get('ts')}\n\n"
            + (f"> **{title}**  \n" if title else "") + f"> {text}")


def case_markdown(case: dict) -> str:
    """One cited case: its text and what happened afterwards."""
    meta = case.get("metadata") or {}
    lines = [f"### Cited case `{case.get('case_id')}`", str(case.get("text") or "")]
    keys = [k for k in ("outcome", "cutoff") if k in meta] + sorted(
        k for k in meta if k.startswith(("churned_", "buys_", "spend_")))
    outcome = {k: meta[k] for k in keys}
    if outcome:
        lines.append("**What happened:** " + " · ".join(f"{k.replace('_', ' ')} {v}" for k, v in outcome.items()))
    return "\n\n".join(lines)


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
                table = answer_table(str(event.get("name")), result)
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


DRILL_FACTS = ("orders", "spend", "days_since_last_buy", "days_since_last_event", "tenure_days", "events_30d",
               "top_category", "usual_days_between_buys", "trend", "last_review")


def _given(value: Any) -> bool:
    """A fact the shop recorded: not None, NaN or blank (no prices, categories or reviews in its data)."""
    if value is None or (isinstance(value, float) and value != value):
        return False
    return str(value).strip().lower() not in ("", "none", "nan")


def user_head_markdown(user_id: str, explanation: dict, horizon: str | int, currency: str = "") -> str:
    """The drill-down's heading: the user's churn probability and the facts an analyst reads first.

    A fact the shop does not record is left out ("spend None", "last review None" on a shop without
    prices or reviews); spend carries the shop's currency.
    """
    facts = {k: v for k, v in (explanation.get("facts") or {}).items() if k in DRILL_FACTS and _given(v)}
    if "spend" in facts and currency:
        facts["spend"] = f"{float(facts['spend']):,.2f} {currency}"
    # The table ranks by P(lapse) and says the stage; the head said only p_churn, another number for the user.
    life = explanation.get("lifecycle") or {}
    stage = [f"**stage** {STAGE_LABELS.get(life['stage'], life['stage'])}"] if life.get("stage") else []
    if life.get("p_lapse") is not None:
        stage.append(f"**p_lapse** {life['p_lapse']} (the at-risk table's)")
    return (f"### User {user_id}: p_churn {explanation.get('p_churn')} within {horizon} days\n"
            + " · ".join([*stage, *(f"**{k.replace('_', ' ')}** {v}" for k, v in facts.items())]))


def import_report_markdown(report: dict) -> str:
    """An upload's validation report: read = imported + rejected + dropped, and why rows were rejected."""
    lines = [f"### Import report: {report['file']} ({report['format']} → {report['table']})",
             f"rows read **{report['rows_read']:,}** = imported **{report['rows_imported']:,}** "
             f"+ rejected **{report['rows_rejected']:,}** + dropped **{report['rows_dropped']:,}**"]
    if report["already_imported"]:
        lines.append("This file was imported before (same sha256): nothing added.")
    for reason, n in report["rejected_by_reason"].items():
        lines.append(f"- rejected {n:,}: {reason}")
    return "\n\n".join(lines)


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
    jobs = info.pop("jobs", {}) or {}  # part -> line, background jobs of `shopsight demo` not done (tools/jobs.py)
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
        if part not in jobs:  # a part being built shows its progress below, not a fix
            lines.append(f"- ⚠ **{part}**: {message}")
    if jobs:
        lines += ["", "### Being built in the background", *(f"- **{part}**: {line}" for part, line in jobs.items())]
    return "\n".join(lines)


# ---------------------------------------------------------------------- operations (lifecycle and money)
AT_RISK_COLUMNS = ("rank", "user_id", "stage", "p_lapse", "value_at_risk", "expected_value", "p_alive",
                   "days_overdue", "usual_gap_days", "days_since_last_order", "next_order_expected", "orders",
                   "segment", "reasons")
NO_PRICE_COLUMNS = {"value_at_risk": "orders_at_risk", "expected_value": "expected_orders"}
STAGE_LABELS = {"new": "new", "active": "active", "lapsing": "lapsing", "at_risk": "at risk", "lost": "lost"}


def at_risk_table(result: dict) -> pd.DataFrame:
    """at_risk_users' rows as the Operations table: lifecycle and money first, reasons joined."""
    table = rows_frame(result, ("users",))
    if table.empty:
        return table
    if "reasons" in table:
        table["reasons"] = table["reasons"].map(lambda r: "; ".join(r) if isinstance(r, list) else r)
    if "stage" in table:
        table["stage"] = table["stage"].map(lambda s: STAGE_LABELS.get(s, s))
    table = table[[c for c in AT_RISK_COLUMNS if c in table] + [c for c in table if c not in AT_RISK_COLUMNS]]
    if result.get("value_unit") == "orders":  # no prices: these columns count expected orders; their names say so
        table = table.rename(columns={k: v for k, v in NO_PRICE_COLUMNS.items() if v not in table})
    return table


def as_of_words(as_of) -> str:
    """The day, and the time of day unless it is midnight: a clickstream of two hours is all one day."""
    ts = pd.Timestamp(as_of)
    return f"{ts:%Y-%m-%d}" if ts == ts.normalize() else f"{ts:%Y-%m-%d %H:%M} UTC"


def operations_summary(result: dict) -> str:
    """Stage counts, money at risk with its currency, and how many customers were already lost."""
    unit = result.get("currency") or result.get("value_unit") or ""
    parts = []
    counts = result.get("stage_counts") or {}
    if counts:
        parts.append("**Stages:** " + ", ".join(f"{STAGE_LABELS.get(s, s)} {n:,}" for s, n in counts.items()))
    if result.get("money_at_risk") is not None:
        # Without prices the figure is expected orders: "Money at risk: 0.00 orders" read as money.
        label = "Money at risk" if result.get("currency") else "Expected orders at risk"
        parts.append(f"**{label}** (lapse within {result.get('horizon_days')} days): "
                     f"{result['money_at_risk']:,.2f} {unit}".rstrip())
    for key in ("population", "lost_note", "value_note"):
        if result.get(key):
            parts.append(str(result[key]))
    if result.get("scores_checkpoint_note"):  # the table's numbers are another checkpoint's: said beside them
        parts.append(f"⚠ **Scores:** {result['scores_checkpoint_note']}")
    if result.get("as_of"):
        model = f"; value: {result['value_model']}" if result.get("value_model") else ""
        parts.append(f"as of {as_of_words(result['as_of'])}{model}")
    return "  \n".join(parts)


def lapse_histogram(p_lapse: pd.Series) -> pd.DataFrame:
    """Customers per P(lapse) bin (10 equal-width bins), among the non-lost customers given."""
    edges = [i / 10 for i in range(11)]
    bins = pd.cut(p_lapse.dropna().astype(float), bins=edges, include_lowest=True,
                  labels=[f"{lo:.1f}–{hi:.1f}" for lo, hi in zip(edges, edges[1:])])
    return bins.value_counts(sort=False).rename_axis("p_lapse").reset_index(name="customers")
