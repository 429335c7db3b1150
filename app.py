"""ShopSight's workspace: a Gradio app over the analyst agent and its tools.

Four tabs, one per job: the chat (streamed answers, each tool call a collapsible step),
the operations view (at-risk table, histogram, drill-down with a churn-over-time chart),
the review desk (sentiment over time, aspects, the summary with review ids) and the
data & models panel (what is loaded, upload an import). The app only renders what the
`Workspace` and the agent's event stream give it; it computes no numbers of its own.

Run it with `shopsight app` (127.0.0.1:7860 by default) or `make run`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from assistant.workspace import PartUnavailable, Workspace  # noqa: E402

MAX_QUESTION_CHARS = 2000
EXAMPLES = {
    "Operations": [
        "Which users will churn this week, and why?",
        "Who are the 20 highest-value customers at risk in the next 30 days?",
        "Show churn rates by tenure segment for 30 days.",
    ],
    "Support": [
        "What do customers complain about most in their reviews?",
        "Summarize the reviews of the most reviewed item.",
    ],
    "Follow-ups": ["And why is the second one at risk?", "What happened to customers like them?"],
}


# ---------------------------------------------------------------------- rendering helpers
def _json_block(value: Any, limit: int = 3000) -> str:
    text = json.dumps(value, indent=1, default=str, ensure_ascii=False)
    if len(text) > limit:
        text = text[:limit] + "\n... (truncated)"
    return f"```json\n{text}\n```"


def _rows_frame(result: dict, key_candidates=("users", "rows", "cases", "segments", "items")) -> pd.DataFrame:
    """The list of records inside a tool result, as a table (tools return compact JSON)."""
    for key in key_candidates:
        if isinstance(result.get(key), list):
            return pd.DataFrame(result[key])
    lists = [v for v in result.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
    return pd.DataFrame(lists[0]) if lists else pd.DataFrame()


def _error_text(result: Any) -> str | None:
    if isinstance(result, dict) and result.get("error"):
        return f"{result['error']}" + (f" — {result['hint']}" if result.get("hint") else "")
    return None


def _citations_markdown(citations: Any) -> str:
    if not citations:
        return ""
    parts = []
    for cite in citations:
        if isinstance(cite, dict):
            parts.append(f"`{cite.get('kind', 'id')}:{cite.get('id', cite)}`")
        else:
            parts.append(f"`{cite}`")
    return "\n\n**Evidence:** " + ", ".join(parts)


def render_events(events: Iterator[Any], chat: list) -> Iterator[tuple[list, Any]]:
    """Turn the agent's event stream into chat messages; yields (chat, last event)."""
    answer_msg: gr.ChatMessage | None = None
    pending: dict[str, gr.ChatMessage] = {}
    for event in events:
        kind = event.type
        if kind == "tool_call":
            msg = gr.ChatMessage(
                role="assistant",
                content=_json_block(event.get("arguments", {})),
                metadata={"title": f"🛠️ Used tool {event.get('name')}", "status": "pending"},
            )
            pending[event.get("name")] = msg
            chat.append(msg)
        elif kind == "tool_result":
            msg = pending.pop(event.get("name", ""), None)
            result = event.get("result", None)
            body = _json_block(result)
            if msg is None:
                chat.append(gr.ChatMessage(role="assistant", content=body,
                                           metadata={"title": f"📄 Result of {event.get('name')}", "status": "done"}))
            else:
                msg.content += "\n**Result**\n" + body
                msg.metadata["status"] = "done"
                if _error_text(result):
                    msg.metadata["title"] += " (error)"
        elif kind == "token":
            if answer_msg is None:
                answer_msg = gr.ChatMessage(role="assistant", content="")
                chat.append(answer_msg)
            answer_msg.content += event.get("text", "")
        elif kind == "answer":
            text = event.get("text", "")
            ungrounded = event.get("ungrounded", None) or []
            footer = _citations_markdown(event.get("citations", None))
            if ungrounded:
                footer += "\n\n⚠️ Not supported by any tool result, left out: " + ", ".join(map(str, ungrounded))
            if answer_msg is None:
                answer_msg = gr.ChatMessage(role="assistant", content="")
                chat.append(answer_msg)
            answer_msg.content = text + footer
        elif kind == "error":
            chat.append(gr.ChatMessage(role="assistant", content=f"⚠️ {event.get('message', '')}"))
        yield chat, event


def _plain_history(chat: list) -> list[dict]:
    out = []
    for msg in chat:
        role = msg["role"] if isinstance(msg, dict) else msg.role
        content = msg["content"] if isinstance(msg, dict) else msg.content
        out.append({"role": role, "content": content})
    return out


# ---------------------------------------------------------------------- the app
def build_app(ws: Workspace) -> gr.Blocks:
    """The whole workspace UI over one Workspace (the tests pass one with a scripted chat model)."""

    def ask(question: str, chat: list, conversation: list | None):
        chat = list(chat or [])
        question = (question or "").strip()
        if not question:
            gr.Warning("Type a question first.")
            yield chat, conversation, ""
            return
        if len(question) > MAX_QUESTION_CHARS:
            chat.append(gr.ChatMessage(role="assistant", content=(
                f"⚠️ That question is {len(question):,} characters; the limit is {MAX_QUESTION_CHARS:,}. "
                "Ask about one thing at a time (for example one user or one item).")))
            yield chat, conversation, question
            return
        chat.append(gr.ChatMessage(role="user", content=question))
        yield chat, conversation, ""
        try:
            events = ws.run_agent(question, history=conversation)
            for chat, event in render_events(events, chat):
                if event.type == "answer":
                    conversation = event.get("messages", None) or conversation
                yield chat, conversation, ""
        except PartUnavailable as exc:
            chat.append(gr.ChatMessage(role="assistant", content=f"⚠️ The assistant is not available: {exc}"))
            yield chat, conversation, ""

    # ---- operations
    def at_risk(horizon: str, rank_by: str, segment: str, top_k: float):
        result = ws.call_tool("at_risk_users", horizon_days=int(horizon), top_k=int(top_k),
                              segment=segment or None, rank_by=rank_by)
        if _error_text(result):
            raise gr.Error(_error_text(result))
        table = _rows_frame(result)
        csv_path = Path(tempfile.mkdtemp(prefix="shopsight-")) / f"at_risk_{horizon}d.csv"
        table.to_csv(csv_path, index=False)
        hist = pd.DataFrame(columns=["p_churn", "users"])
        if "p_churn" in table:
            bins = pd.cut(table["p_churn"], bins=[i / 10 for i in range(11)], include_lowest=True)
            hist = bins.value_counts(sort=False).rename_axis("p_churn").reset_index(name="users")
            hist["p_churn"] = hist["p_churn"].astype(str)
        return table, gr.DownloadButton(value=str(csv_path), visible=True), hist

    def pick_user(table: pd.DataFrame, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return str(table.iloc[row]["user_id"])

    def drill_down(user_id: str, horizon: str):
        user_id = (user_id or "").strip()
        if not user_id:
            raise gr.Error("Pick a user in the table or type a user id.")
        explanation = ws.call_tool("explain_user", user_id=user_id, horizon_days=int(horizon))
        if _error_text(explanation):
            raise gr.Error(_error_text(explanation))
        history = _rows_frame(ws.call_tool("user_history", user_id=user_id, last_n=100), ("events",))
        cases = ws.call_tool("similar_cases", user_id=user_id, k=5)
        try:
            trend = ws.churn_over_cutoffs(user_id, int(horizon))
        except PartUnavailable as exc:
            raise gr.Error(str(exc)) from exc
        drivers = "### Drivers\n" + _json_block({k: v for k, v in explanation.items() if k != "user_id"})
        return history, trend, drivers, _rows_frame(cases, ("cases",))

    def save_case(user_id: str, horizon: str, conclusion: str):
        try:
            saved = ws.save_case((user_id or "").strip(), int(horizon), conclusion or "")
        except PartUnavailable as exc:
            raise gr.Error(str(exc)) from exc
        return f"Saved as case `{saved.get('case_id', saved)}`."

    # ---- review desk
    def find_targets(text: str):
        return gr.Dropdown(choices=ws.search_items(text), value=None)

    def review_desk(target: str):
        if not target:
            raise gr.Error("Pick an item or a category first.")
        kind, _, key = target.partition(":")
        args = {"item_id": key} if kind == "item" else {"category_id": key}
        summary = ws.call_tool("review_summary", **args)
        if _error_text(summary):
            raise gr.Error(_error_text(summary))
        timeline = ws.review_timeline(**args)
        aspects = pd.DataFrame(summary.get("aspects", []))
        return timeline, aspects, _summary_markdown(summary)

    # ---- data & models
    def data_panel():
        return _summary_panel(ws.summary())

    def upload(file):
        if file is None:
            raise gr.Error("Choose a file to import.")
        try:
            report = ws.import_upload(file if isinstance(file, str) else file.name)
        except Exception as exc:  # noqa: BLE001 - the import's own message names file, line and field
            return f"❌ Import refused: {exc}", pd.DataFrame()
        rejected = pd.DataFrame(report.pop("rejected_sample", []) or report.pop("rejected", []) or [])
        return "### Import report\n" + _json_block(report), rejected

    with gr.Blocks(title="ShopSight") as demo:
        gr.Markdown("# ShopSight — analyst workspace")
        conversation = gr.State(None)
        with gr.Tab("Ask"):
            chatbot = gr.Chatbot(label="Assistant", height=520, elem_id="chat")
            with gr.Row():
                question = gr.Textbox(placeholder="Ask about churn, customers, items or reviews…", show_label=False,
                                      scale=8, elem_id="question", max_lines=4)
                send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                stop = gr.Button("Stop", scale=1, elem_id="stop")
            for group, questions in EXAMPLES.items():
                gr.Examples(questions, inputs=question, label=group)
            submit_args = dict(fn=ask, inputs=[question, chatbot, conversation],
                               outputs=[chatbot, conversation, question], concurrency_id="llm",
                               concurrency_limit=1)
            ev1 = question.submit(**submit_args)
            ev2 = send.click(**submit_args)
            stop.click(None, cancels=[ev1, ev2])
        with gr.Tab("Operations"):
            with gr.Row():
                horizon = gr.Radio(["7", "30"], value="7", label="Horizon (days)")
                rank_by = gr.Radio([("Probability", "p_churn"), ("Value at risk", "value_at_risk")],
                                   value="p_churn", label="Rank by")
                segment = gr.Textbox(label="Segment filter", placeholder="e.g. tenure:new, value:high")
                top_k = gr.Slider(5, 200, value=50, step=5, label="Users")
            refresh = gr.Button("Show at-risk users", variant="primary", elem_id="at-risk")
            risk_table = gr.Dataframe(label="At-risk users (click a row to drill down)", interactive=False,
                                      elem_id="risk-table")
            with gr.Row():
                download = gr.DownloadButton("Download CSV", visible=False)
                histogram = gr.BarPlot(x="p_churn", y="users", title="Churn probability of the listed users",
                                       height=220)
            gr.Markdown("### Drill-down")
            with gr.Row():
                user_box = gr.Textbox(label="User id", elem_id="user-id")
                open_user = gr.Button("Open user", elem_id="open-user")
            with gr.Row():
                trend_plot = gr.LinePlot(x="cutoff", y="p_churn", title="Churn probability at past cutoffs",
                                         height=260, elem_id="trend")
                drivers = gr.Markdown(elem_id="drivers")
            timeline = gr.Dataframe(label="Timeline (most recent first)", interactive=False)
            similar = gr.Dataframe(label="Similar past cases and what happened", interactive=False)
            conclusion = gr.Textbox(label="Your conclusion (saved as a case in the memory)", lines=2)
            save = gr.Button("Save as case")
            saved_note = gr.Markdown()
            refresh.click(at_risk, [horizon, rank_by, segment, top_k], [risk_table, download, histogram])
            risk_table.select(pick_user, [risk_table], [user_box]).then(
                drill_down, [user_box, horizon], [timeline, trend_plot, drivers, similar])
            open_user.click(drill_down, [user_box, horizon], [timeline, trend_plot, drivers, similar])
            save.click(save_case, [user_box, horizon, conclusion], [saved_note])
        with gr.Tab("Review desk"):
            with gr.Row():
                search = gr.Textbox(label="Search items or categories by id or name", elem_id="review-search")
                target = gr.Dropdown(label="Item or category", choices=[], elem_id="review-target")
                show_reviews = gr.Button("Show reviews", elem_id="show-reviews")
            with gr.Row():
                sentiment_plot = gr.LinePlot(x="month", y="share", color="sentiment", title="Sentiment over time",
                                             height=260)
                aspect_plot = gr.BarPlot(x="aspect", y="mentions", color="sentiment", title="Aspects", height=260)
            review_md = gr.Markdown(elem_id="review-summary")
            search.submit(find_targets, [search], [target])
            show_reviews.click(review_desk, [target], [sentiment_plot, aspect_plot, review_md])
        with gr.Tab("Data & models"):
            panel = gr.Markdown(elem_id="data-panel")
            upload_file = gr.File(label="Import a file (Taobao, RetailRocket, CDNOW, Amazon reviews, CSV/Parquet)",
                                  elem_id="upload")
            import_btn = gr.Button("Import", elem_id="import")
            import_report = gr.Markdown(elem_id="import-report")
            rejected_table = gr.Dataframe(label="Rejected rows", interactive=False, elem_id="rejected")
            import_btn.click(upload, [upload_file], [import_report, rejected_table]).then(data_panel, None, [panel])
        demo.load(data_panel, None, [panel])
    return demo


def _summary_markdown(summary: dict) -> str:
    lines = [f"### {summary.get('target', 'Reviews')}"]
    if summary.get("summary"):
        lines.append(str(summary["summary"]))
    counts = summary.get("sentiment_counts") or summary.get("sentiment")
    if counts:
        lines.append("**Sentiment:** " + ", ".join(f"{k}: {v}" for k, v in dict(counts).items()))
    for quote in summary.get("quotes", []):
        lines.append(f"> {quote.get('text', '')}  \n> — review `{quote.get('review_id')}`, "
                     f"{quote.get('rating', '?')}★")
    return "\n\n".join(lines)


def _summary_panel(info: dict) -> str:
    problems = info.pop("problems", {})
    lines = ["### What is loaded"]
    for key, value in info.items():
        lines.append(f"- **{key}**: {value if not isinstance(value, (dict, list)) else json.dumps(value, default=str)}")
    for part, message in problems.items():
        lines.append(f"- ⚠️ **{part}**: {message}")
    return "\n".join(lines)


def read_auth(spec: str) -> list[tuple[str, str]] | None:
    """SHOPSIGHT_AUTH: 'user:password', or a file with one 'user:password' a line."""
    if not spec:
        return None
    lines = Path(spec).read_text().splitlines() if Path(spec).is_file() else [spec]
    pairs = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise SystemExit(f"{spec}:{number}: expected 'user:password', got {line!r}")
        pairs.append((user, password))
    return pairs


def launch(ws: Workspace, host: str = "127.0.0.1", port: int = 7860, auth: str = "", block: bool = True):
    """Start the server: local by default, a login when asked, one model run at a time, no share link."""
    demo = build_app(ws)
    demo.queue(default_concurrency_limit=4, max_size=32)
    return demo.launch(server_name=host, server_port=port, auth=read_auth(auth), share=False,
                       prevent_thread_lock=not block, show_error=True, quiet=not block,
                       footer_links=[])


def main(argv: list[str] | None = None) -> int:
    """Open the workspace from the environment's settings and serve it until interrupted."""
    import argparse

    from assistant.config import Settings

    parser = argparse.ArgumentParser(description="ShopSight workspace")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860)")
    parser.add_argument("--auth", default=None, help="'user:password' or a file of such lines (or SHOPSIGHT_AUTH)")
    args = parser.parse_args(argv)
    settings = Settings.from_env(host=args.host, port=args.port, auth=args.auth)
    if not settings.db_path.exists():
        raise SystemExit(f"no event store at {settings.db_path}; run `shopsight demo` (or `make run`) first")
    workspace = Workspace.open(settings)
    for part, message in workspace.problems.items():
        print(f"warning: {part}: {message}")
    print(f"ShopSight workspace on http://{settings.host}:{settings.port}", flush=True)
    launch(workspace, host=settings.host, port=settings.port, auth=settings.auth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
