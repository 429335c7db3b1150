"""ShopSight's workspace: a Gradio app over the analyst agent and its tools.

Four tabs, one per job: the chat (streamed answers, each tool call a collapsible step, the
numbers behind the answer as a table), the operations view (at-risk table, histogram,
drill-down with a churn-over-time chart, save a case), the review desk (sentiment over time,
aspects, the summary with review ids) and the data & models panel (what is loaded, upload
an import). The app only renders what the `Workspace` and the agent's event stream give it.

Run it with `shopsight app` (127.0.0.1:7860 by default) or `make run`; nothing imports it
but the tests, which call `build_app(workspace)` / `launch(..., block=False)`.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from assistant.ui_render import (  # noqa: E402
    AT_RISK_COLUMNS, CITATION_JS, DRIVER_COLUMNS, STAGE_LABELS, at_risk_table, case_markdown, drivers_frame, error_text,
    import_report_markdown, lapse_histogram, operations_summary, render_events, review_markdown, rows_frame,
    summary_markdown, summary_panel, user_head_markdown,
)
from assistant.config import read_auth  # noqa: E402,F401 - app.read_auth stays importable
from assistant.ui_queue import AnswerLine  # noqa: E402
from assistant.workspace import PartUnavailable, Workspace  # noqa: E402

MAX_QUESTION_CHARS = 2000
MAX_AT_RISK = 100  # at_risk_users' own limit
EXAMPLES = {
    "Operations": [
        "Which users will churn this week, and why?",
        "Who are the 20 highest-value customers at risk in the next 30 days?",
        "Show churn rates by tenure segment for 30 days.",
    ],
    "Support": ["What do customers complain about most in their reviews?"],
    "Follow-ups": ["And why is the second one at risk?", "What happened to customers like them?"],
}


def examples_for(ws: Workspace) -> dict[str, list[str]]:
    """The example questions this shop can answer: churn ones need events, review ones need reviews, and
    the review example names this shop's most reviewed category or item (a fixed demo category such as
    dog_food_dry was an "unknown category" on every other shop)."""
    has_events = bool(ws.store.query("SELECT EXISTS (SELECT 1 FROM events) AS e").iloc[0]["e"])
    examples = {group: questions for group, questions in EXAMPLES.items() if has_events or group == "Support"}
    if not ws.review_count():
        examples.pop("Support", None)
        return examples
    top = ws.store.query("""SELECT 'category' AS kind, i.category_id AS id, count(*) AS n FROM reviews r
        JOIN items i USING (item_id) WHERE i.category_id IS NOT NULL GROUP BY 2 ORDER BY 3 DESC, 2 LIMIT 1""")
    if top.empty:
        top = ws.store.query("SELECT 'item' AS kind, item_id AS id, count(*) AS n FROM reviews "
                             "GROUP BY 2 ORDER BY 3 DESC, 2 LIMIT 1")
    examples["Support"] = [*EXAMPLES["Support"], f"Summarize the reviews of {top.iloc[0]['kind']} {top.iloc[0]['id']}."]
    return examples


# After a citation opened its view: bring the drill-down or the cited review into sight. Hidden tabs have
# no offsetParent, so the first visible one is the view just opened; the tab switch renders a moment
# after the event's outputs arrive, hence the short retries.
SHOW_CITED_JS = """() => {
  let tries = 0;
  const show = () => {
    const shown = [...document.querySelectorAll('#drill, #cited-review')].find(el => el.offsetParent !== null);
    if (shown) shown.scrollIntoView({block: 'start'}); else if (tries++ < 20) setTimeout(show, 100);
  };
  show();
}"""

# ---------------------------------------------------------------------- the app
def drill_down_view(ws: Workspace, user_id: str, horizon: str) -> tuple:
    """The drill-down of one user: heading, drivers, churn trend, timeline, similar cases (gr.Error if unknown)."""
    user_id = (user_id or "").strip()
    if not user_id:
        raise gr.Error("Pick a user in the table or type a user id.")
    explanation = ws.call_tool("explain_user", user_id=user_id, horizon_days=int(horizon))
    timeline_result = ws.call_tool("user_history", user_id=user_id, last_n=50)
    if error_text(explanation) and error_text(timeline_result):
        reviews = ws.store.reviews_frame(user_id=user_id, until=ws.cutoff) if ws.store.has_user(user_id) else None
        if reviews is None or reviews.empty:  # an unknown user id
            raise gr.Error(f"User {user_id!r}: {error_text(explanation)}")
        # A reviewer with no orders (a reviews-only shop such as Amazon Fine Food): their reviews are the
        # timeline, instead of "unknown user ... use an id returned by at_risk_users" where there is none.
        timeline = pd.DataFrame({"ts": reviews["ts"], "behavior": "review " + reviews["rating"].astype(str) + "★",
                                 "item_id": reviews["item_id"], "title": reviews.get("title")})
        return (f"### User {user_id}\n⚠ No churn prediction: this customer has {len(reviews):,} reviews and no "
                "orders or events in the store. Their reviews are below; the review desk shows each item's.",
                pd.DataFrame(columns=DRIVER_COLUMNS), pd.DataFrame(columns=["cutoff", "p_churn"]),
                timeline.sort_values("ts", ascending=False, ignore_index=True),
                pd.DataFrame(columns=["case_id", "similarity", "user_id", "churned", "summary"]))
    # Columns the shop never records (no categories on CDNOW, no amounts on Instacart) are left out, not blank.
    history = rows_frame(timeline_result, ("events",)).dropna(axis=1, how="all")
    cases = ws.call_tool("similar_cases", user_id=user_id, k=5)
    case_table = rows_frame(cases, ("cases",))
    if error_text(cases):
        case_table = pd.DataFrame([{"note": error_text(cases)}])
    if error_text(explanation):  # no churn model (a shop too short to learn one): the timeline still shows
        return (f"### User {user_id}\n⚠ No churn prediction: {error_text(explanation)}",
                pd.DataFrame(columns=["driver", "kind", "effect", "direction"]),
                pd.DataFrame(columns=["cutoff", "p_churn"]), history, case_table)
    try:
        trend = ws.churn_over_cutoffs(user_id, int(horizon))
    except PartUnavailable as exc:
        raise gr.Error(str(exc)) from exc
    drivers = drivers_frame(explanation)
    return user_head_markdown(user_id, explanation, horizon, ws.settings.currency), drivers, trend, history, case_table


def at_risk_view(ws: Workspace, horizon: str, rank_by: str, segment: str | None, stage: str | None,
                 top_k: float) -> tuple:
    """The Operations view: at-risk table, its CSV, the lapse histogram and the summary (the reason if none)."""
    result = ws.call_tool("at_risk_users", horizon_days=int(horizon), top_k=min(int(top_k), MAX_AT_RISK),
                          segment=segment or None, rank_by=rank_by, stage=stage or None)
    if error_text(result):
        # Said in the view itself: an error badge on the table and the histogram told no one why. Where
        # the workspace knows why there is no model (a reviews-only or too-short shop), its reason wins
        # over the tool's generic "train the predictor", which `predictor train` would refuse there.
        reason = error_text(result)
        if ws.predictor is None and "predictor" in ws.problems and "predictor" in reason:
            reason = ws.problems["predictor"]
        # Empty with its header: a frame without columns rendered as the headers "1 2 3".
        return (pd.DataFrame(columns=list(AT_RISK_COLUMNS)), gr.DownloadButton(visible=False),
                pd.DataFrame(columns=["p_lapse", "customers"]),
                f"⚠ No at-risk list: {reason}")
    from tools.catalog.users import lapse_distribution

    table = at_risk_table(result)
    summary = operations_summary(result)
    if table.empty:  # a filter nobody matches: say so (the table showed the placeholder headers "1 2 3")
        table = pd.DataFrame(columns=list(AT_RISK_COLUMNS))
        chosen = [f"stage {STAGE_LABELS.get(stage, stage)}" if stage else "", f"segment {segment}" if segment else ""]
        summary = (f"**No customer to list** ({', '.join(c for c in chosen if c) or 'no filter'}, "
                   f"{horizon}-day horizon): pick another lifecycle stage or segment.  \n" + summary)
    csv_path = Path(tempfile.mkdtemp(prefix="shopsight-")) / f"at_risk_{horizon}d_{rank_by}.csv"
    table.to_csv(csv_path, index=False)
    histogram = lapse_histogram(lapse_distribution(ws.context, int(horizon)))
    return table, gr.DownloadButton(value=str(csv_path), visible=True), histogram, summary


def review_desk_view(ws: Workspace, target: str | None) -> tuple:
    """The review desk for "item:ID" or "category:ID": sentiment by month, aspects, summary (or why none)."""
    if not target:
        raise gr.Error("Search for an item or a category and pick one first.")
    kind, _, key = target.partition(":")
    args = {"item_id": key} if kind == "item" else {"category_id": key}
    empty = (pd.DataFrame(columns=["month", "sentiment", "share"]),
             pd.DataFrame(columns=["aspect", "sentiment", "mentions"]))
    in_shop = ws.review_count()
    if not in_shop:  # blank charts and "n_reviews 0" told a support agent nothing
        return (*empty, f"### Reviews of {kind} {key}\n\nThis shop has no reviews at all: the review desk "
                        "reads reviews imported from a reviews file (for example Amazon reviews: "
                        "`shopsight data import FILE`, see docs/importing.md). Customers and orders are on the "
                        "Operations tab.")
    summary = ws.call_tool("review_summary", **args)
    if error_text(summary):
        raise gr.Error(error_text(summary))
    aspects = pd.DataFrame([{"aspect": a["aspect"], "sentiment": side, "mentions": int(a.get(side, 0))}
                            for a in summary.get("aspects") or [] for side in ("negative", "positive")],
                           columns=["aspect", "sentiment", "mentions"])
    if not summary.get("n_reviews"):
        return (*empty, f"### Reviews of {kind} {key}\n\nNo reviews of this {kind} up to "
                        f"{ws.cutoff:%Y-%m-%d} (the shop has {in_shop:,} reviews in all): search another item, "
                        "or its category.")
    return ws.review_timeline(**args), aspects, summary_markdown(summary, target)


def build_app(ws: Workspace) -> gr.Blocks:
    """The whole workspace UI over one Workspace (the tests pass one with a scripted chat model)."""
    line = AnswerLine()  # one model answers one question at a time: tell waiting users their place

    def join_line(question: str):
        if not (question or "").strip():
            return gr.skip()
        return line.note(line.join())

    def ask(question: str, chat: list, conversation: list | None):
        line.start()
        started = time.perf_counter()
        try:
            for outputs in answer(question, chat, conversation):
                yield (*outputs, gr.skip())
        finally:
            line.finish(time.perf_counter() - started)
        if (question or "").strip():
            # The end mark: a streamed answer shows no other sign that it is complete (Stop closes the
            # generator above, so a stopped answer never says it was answered).
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), f"Answered in {time.perf_counter() - started:.1f} s."

    def answer(question: str, chat: list, conversation: list | None):
        chat = list(chat or [])
        typed = len(question or "")
        question = (question or "").strip()
        if not question:
            gr.Warning("Type a question first.")
            # The box is left as it is: clearing it raced with what the user typed meanwhile (the
            # browser test typed its next question before this event ended, and it was wiped).
            yield chat, conversation, gr.skip(), gr.skip()
            return
        if len(question) > MAX_QUESTION_CHARS:
            chat.append(gr.ChatMessage(role="assistant", content=(
                f"⚠ That question is {typed:,} characters long; the limit is {MAX_QUESTION_CHARS:,}. "
                "Ask about one thing at a time (for example one user or one item).")))
            yield chat, conversation, question, gr.skip()
            return
        chat.append(gr.ChatMessage(role="user", content=question))
        yield chat, conversation, "", gr.skip()
        try:
            for chat, event, table in render_events(ws.run_agent(question, history=conversation), chat):
                if event.type == "answer":
                    conversation = event.get("messages") or conversation
                shown = gr.Dataframe(value=table, visible=True) if table is not None and len(table) else gr.skip()
                yield chat, conversation, "", shown
        except PartUnavailable as exc:
            chat.append(gr.ChatMessage(role="assistant", content=f"⚠ The assistant is not available: {exc}"))
            yield chat, conversation, "", gr.skip()

    # ---- operations
    def at_risk(horizon: str, rank_by: str, segment: str | None, stage: str | None, top_k: float):
        return at_risk_view(ws, horizon, rank_by, segment, stage, top_k)

    def pick_user(evt: gr.SelectData):
        row = getattr(evt, "row_value", None)
        if not row:
            raise gr.Error("Click a row of the table.")
        return str(row[1] if len(row) > 1 else row[0])  # columns: rank, user_id, ...

    def drill_down(user_id: str, horizon: str):
        return drill_down_view(ws, user_id, horizon)

    def save_case(user_id: str, horizon: str, conclusion: str, outcome: str):
        try:
            case_id = ws.save_case((user_id or "").strip(), int(horizon), conclusion or "", outcome or "")
        except PartUnavailable as exc:
            raise gr.Error(str(exc)) from exc
        return f"✅ Saved as case `{case_id}`; `similar_cases` will find it."

    # ---- review desk
    def find_targets(text: str):
        choices = ws.search_items(text)
        if not choices:  # an empty list gave no sign, and "Show reviews" then asked to search first
            gr.Warning(f"No item or category id or name contains {text.strip()!r}; try part of an id.")
        return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    def review_desk(target: str | None):
        return review_desk_view(ws, target)

    # ---- citations: a click on an id under "Evidence" opens the view that shows it
    def open_citation(horizon: str, evt: gr.EventData):
        kind, key = str(evt._data.get("kind", "")), str(evt._data.get("id", "")).strip()
        try:
            if kind == "user":
                return {tabs: gr.Tabs(selected="operations"), user_box: key, cited_case: "",
                        **dict(zip(drill_outputs, drill_down(key, horizon)))}
            if kind == "case":
                case = ws.case(key)
                shown = {tabs: gr.Tabs(selected="operations"), cited_case: case_markdown(case)}
                user = str(case["metadata"].get("user_id") or "")
                if user and ws.store.has_user(user):  # a snapshot case: its user's drill-down beside it
                    try:
                        shown.update({user_box: user, **dict(zip(drill_outputs, drill_down(user, horizon)))})
                    except gr.Error as exc:  # e.g. no predictor: the case still shows, the reason beside it
                        shown[user_head] = f"⚠ {exc.message}"
                return shown
            if kind in ("review", "item", "category"):
                review = ws.review(key) if kind == "review" else None
                value = f"category:{key}" if kind == "category" else f"item:{review['item_id'] if review else key}"
                shown = {tabs: gr.Tabs(selected="reviews"), cited_review: review_markdown(review) if review else "",
                         target: gr.Dropdown(choices=[(value.replace(":", " "), value)], value=value)}
                try:
                    shown.update(zip([sentiment_plot, aspect_plot, review_md], review_desk(value)))
                except gr.Error as exc:  # e.g. too few reviews to summarize: the cited review still shows
                    shown[review_md] = f"⚠ {exc.message}"
                return shown
        except PartUnavailable as exc:
            raise gr.Error(str(exc)) from exc
        raise gr.Error(f"There is no view for a {kind or 'plain'} citation; its value is in the tool step above.")

    # ---- data & models
    def data_panel():
        return summary_panel(ws.summary())

    def upload(file):
        if file is None:
            raise gr.Error("Choose a file to import.")
        path = file if isinstance(file, str) else getattr(file, "name", str(file))
        try:
            report = ws.import_upload(path)
        except Exception as exc:  # noqa: BLE001 - the import's own message names file, line and field
            return f"❌ Import refused: {exc}", pd.DataFrame()
        return import_report_markdown(report), pd.DataFrame(report.pop("rejected"))

    with gr.Blocks(title="ShopSight") as demo:
        gr.Markdown("# ShopSight — analyst workspace", elem_id="title")
        banner = gr.Markdown(elem_id="banner")
        conversation = gr.State(None)
        with gr.Tabs(selected="ask") as tabs:
            with gr.Tab("Ask", id="ask"):
                chatbot = gr.Chatbot(label="Assistant", height=480, elem_id="chat", layout="panel",
                                     placeholder="Ask about churn, customers, items or reviews. Each tool the "
                                                 "assistant uses shows as a step you can open.")
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask about churn, customers, items or reviews…",
                                          show_label=False, scale=8, elem_id="question", max_lines=4)
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send", size="md")
                    stop = gr.Button("Stop", scale=1, elem_id="stop", variant="stop", size="md")
                    clear = gr.Button("New chat", scale=1, elem_id="new-chat", size="md")
                cite_bridge = gr.HTML("<small>Ids under <b>Evidence</b> open what they cite: a user its drill-down, "
                                      "an item or review the review desk, a case its record.</small>",
                                      js_on_load=CITATION_JS, elem_id="cite-bridge")
                answer_table = gr.Dataframe(label="Numbers behind the answer (last tool result)", interactive=False,
                                            elem_id="answer-table", max_height=260, visible=False)
                for group, questions in examples_for(ws).items():
                    gr.Examples(questions, inputs=question, label=group)
                queue_note = gr.Markdown("", elem_id="queue-note")
                submit_args = dict(fn=ask, inputs=[question, chatbot, conversation],
                                   outputs=[chatbot, conversation, question, answer_table, queue_note], concurrency_id="llm",
                                   concurrency_limit=1, show_progress="full", api_name="ask")
                # The place in line is told at once (no queue), then the question joins the model's queue.
                line_args = dict(fn=join_line, inputs=[question], outputs=[queue_note], queue=False,
                                 api_name="join_line")
                ev1 = question.submit(**line_args).then(**submit_args)
                ev2 = send.click(**{**line_args, "api_name": False}).then(**{**submit_args, "api_name": False})
                stop.click(None, cancels=[ev1, ev2])
                clear.click(lambda: ([], None, gr.Dataframe(value=None, visible=False)), None,
                            [chatbot, conversation, answer_table], cancels=[ev1, ev2])
            with gr.Tab("Operations", id="operations"):
                with gr.Row():
                    # The horizons the predictor is trained for (SHOPSIGHT_HORIZONS_DAYS), not always 7 and 30.
                    days = [str(h) for h in ws.settings.horizons_days]
                    horizon = gr.Radio(days, value=days[0], label="Horizon (days)", elem_id="horizon")
                    # Without prices the value is expected orders (the table's orders_at_risk column).
                    value_label = "Value at risk" if ws.records_prices() else "Expected orders at risk"
                    rank_by = gr.Radio([(value_label, "value_at_risk"), ("Lapse probability", "p_lapse"),
                                        ("No-order probability", "p_churn")], value="value_at_risk", label="Rank by")
                    segment = gr.Dropdown([("all segments", "")] + [(s, s) for s in ws.segments()], value="",
                                          label="Segment")
                    stage = gr.Dropdown([("all stages", ""), ("new", "new"), ("active", "active"),
                                         ("lapsing", "lapsing"), ("at risk", "at_risk")], value="",
                                        label="Lifecycle stage", elem_id="stage")
                    top_k = gr.Slider(5, MAX_AT_RISK, value=25, step=5, label="Users")
                refresh = gr.Button("Show customers slipping now", variant="primary", elem_id="at-risk")
                population = gr.Markdown(elem_id="population")
                with gr.Row():
                    with gr.Column(scale=3):
                        risk_table = gr.Dataframe(label="Customers predicted to lapse (click a row to drill down)",
                                                  interactive=False,
                                                  elem_id="risk-table", max_height=320)
                        download = gr.DownloadButton("Download CSV", visible=False, elem_id="download")
                    with gr.Column(scale=2):
                        histogram = gr.BarPlot(x="p_lapse", y="customers", height=300, elem_id="histogram", sort="x",
                                               title="Lapse probability, customers not lost")
                with gr.Column(elem_id="drill"):
                    gr.Markdown("### Drill-down")
                    with gr.Row():
                        user_box = gr.Textbox(label="User id", elem_id="user-id", scale=3)
                        open_user = gr.Button("Open user", elem_id="open-user", scale=1)
                    cited_case = gr.Markdown(elem_id="cited-case")
                    user_head = gr.Markdown(elem_id="user-head")
                    with gr.Row():
                        trend_plot = gr.LinePlot(x="cutoff", y="p_churn", height=260, elem_id="trend", y_lim=[0, 1],
                                                 title="Churn probability at past weekly cutoffs")
                        drivers = gr.Dataframe(pd.DataFrame(columns=["driver", "kind", "effect", "direction"]),
                                               label="Drivers", interactive=False, elem_id="drivers", max_height=260)
                    timeline = gr.Dataframe(pd.DataFrame(columns=["ts", "behavior", "item_id", "category_id",
                                                                  "amount"]),
                                            label="Timeline (most recent first)", interactive=False, max_height=260,
                                            elem_id="timeline")
                    similar = gr.Dataframe(pd.DataFrame(columns=["case_id", "similarity", "user_id", "churned",
                                                                 "summary"]),
                                           label="Similar past cases and what happened", interactive=False,
                                           max_height=260, elem_id="similar")
                    with gr.Row():
                        conclusion = gr.Textbox(label="Your conclusion", lines=2, scale=3, elem_id="conclusion")
                        outcome = gr.Textbox(label="Outcome / action", lines=2, scale=2, elem_id="outcome",
                                             placeholder="e.g. retained after a 10% voucher")
                    save = gr.Button("Save as case", elem_id="save-case")
                    saved_note = gr.Markdown(elem_id="saved-note")
                drill_outputs = [user_head, drivers, trend_plot, timeline, similar]
                risk_outputs = [risk_table, download, histogram, population]
                refresh.click(at_risk, [horizon, rank_by, segment, stage, top_k], risk_outputs)
                # The view opens filled.
                demo.load(at_risk, [horizon, rank_by, segment, stage, top_k], risk_outputs)
                # Opening a user by hand clears the case a citation showed above the drill-down.
                drill_args = dict(fn=lambda user, days: (*drill_down(user, days), ""), inputs=[user_box, horizon],
                                  outputs=drill_outputs + [cited_case])
                risk_table.select(pick_user, None, [user_box]).then(**drill_args)
                open_user.click(**drill_args)
                user_box.submit(**drill_args)
                save.click(save_case, [user_box, horizon, conclusion, outcome], [saved_note])
            with gr.Tab("Review desk", id="reviews"):
                with gr.Row():
                    search = gr.Textbox(label="Search items or categories by id or name (Enter)",
                                        elem_id="review-search")
                    target = gr.Dropdown(label="Item or category", choices=[], elem_id="review-target")
                    show_reviews = gr.Button("Show reviews", elem_id="show-reviews", variant="primary")
                with gr.Row():
                    sentiment_plot = gr.LinePlot(x="month", y="share", color="sentiment", title="Sentiment over time",
                                                 height=260, elem_id="sentiment", y_lim=[0, 1],
                                                 color_map={"negative": "#d62728", "neutral": "#7f7f7f",
                                                            "positive": "#2ca02c"})
                    aspect_plot = gr.BarPlot(x="aspect", y="mentions", color="sentiment", title="Aspects mentioned",
                                             height=260, elem_id="aspects",
                                             color_map={"negative": "#d62728", "positive": "#2ca02c"})
                cited_review = gr.Markdown(elem_id="cited-review")
                review_md = gr.Markdown(elem_id="review-summary")
                search.submit(find_targets, [search], [target])
                show_reviews.click(lambda value: (*review_desk(value), ""), [target],
                                   [sentiment_plot, aspect_plot, review_md, cited_review])
            with gr.Tab("Data & models", id="data"):
                panel = gr.Markdown(elem_id="data-panel")
                upload_file = gr.File(label="Import a file (Taobao, RetailRocket, CDNOW, Amazon reviews, canonical "
                                            "CSV, JSON lines, Parquet)", elem_id="upload")
                import_btn = gr.Button("Import", elem_id="import", variant="primary")
                import_report = gr.Markdown(elem_id="import-report")
                rejected_table = gr.Dataframe(pd.DataFrame(columns=["line", "field", "reason", "raw_line"]),
                                              label="Rejected rows (line, field, reason)", interactive=False,
                                              elem_id="rejected")
                # An import can clear or change a part's problem: the panel and the banner are read again.
                import_btn.click(upload, [upload_file], [import_report, rejected_table]) \
                    .then(data_panel, None, [panel]).then(lambda: _banner(ws), None, [banner])
        cited_views = [tabs, user_box, cited_case, *drill_outputs, target, cited_review, sentiment_plot, aspect_plot,
                       review_md]
        cite_bridge.click(open_citation, [horizon], cited_views).then(None, js=SHOW_CITED_JS)
        demo.load(data_panel, None, [panel]).then(lambda: _banner(ws), None, [banner])
        # While `shopsight demo` builds parts behind the page, the banner and the panel follow its jobs.
        seen_jobs: dict = {}

        def follow_jobs(last: dict = seen_jobs):
            jobs = ws.jobs()
            if not jobs and not last.get("jobs"):
                return gr.skip(), gr.skip()
            changed = set(jobs) != set(last.get("jobs") or {})
            last["jobs"] = jobs
            return _banner(ws, jobs), (data_panel() if changed else gr.skip())

        gr.Timer(2.0).tick(follow_jobs, None, [banner, panel], show_progress="hidden")
    return demo


def _banner(ws: Workspace, jobs: dict | None = None) -> str:
    jobs = ws.jobs() if jobs is None else jobs
    lines = [f"**{part}**: {line}" for part, line in jobs.items()]  # a part being built: its progress, not a fix
    lines += [f"⚠ **{part}**: {message}" for part, message in ws.problems.items() if part not in jobs]
    # While the demo builds the predictor or its scores, the old scores are about to be replaced: not a fix to run.
    note = None if {"predictor", "scores"} & set(jobs) else ws.scores_note()
    if note:
        lines.append(f"⚠ **scores**: {note}")
    return "\n\n".join(lines)


def launch(ws: Workspace, host: str = "127.0.0.1", port: int = 7860, auth: str = "", block: bool = True):
    """Start the server: local by default, a login when asked, one model run at a time, no share link.

    The page is served first; a lazily opened workspace then loads its predictor and case memory
    in the background (the first view that needs them waits for that), and the chat model loads
    on the first question.
    """
    demo = build_app(ws)
    # The chat events share the "llm" concurrency group of size 1; views and tools run beside them.
    demo.queue(default_concurrency_limit=4, max_size=64)
    demo.launch(server_name=host, server_port=port, auth=read_auth(auth), share=False, ssr_mode=False,
                prevent_thread_lock=True, show_error=True, quiet=not block, footer_links=[],
                auth_message="ShopSight workspace: log in with the user set in SHOPSIGHT_AUTH.")
    if not ws.loaded:
        threading.Thread(target=ws.ensure_loaded, name="workspace-warm-up", daemon=True).start()
    if block:
        demo.block_thread()
    return demo


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
    try:
        workspace = Workspace.open(settings, lazy=True)  # the page first; the parts load behind it
    except PartUnavailable as exc:
        raise SystemExit(str(exc)) from exc
    for part, message in workspace.problems.items():
        print(f"warning: {part}: {message}", flush=True)
    print(f"ShopSight workspace on http://{settings.host}:{settings.port} (Ctrl+C stops it)", flush=True)
    launch(workspace, host=settings.host, port=settings.port, auth=settings.auth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
