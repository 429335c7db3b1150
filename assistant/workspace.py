"""The assistant's back office: one object that opens the store, the predictor, the case
memory and the tools, and loads the chat model lazily.

The Gradio app, `shopsight ask` and `shopsight demo` all build the same stack through
`Workspace.open`, so what the UI shows is exactly what the agent can see. Each part that
fails to load is recorded as a message saying what to run, never a crash: the UI still
starts and shows that message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

import pandas as pd

from assistant.config import Settings
from tools.data.store import EventStore


class PartUnavailable(Exception):
    """A part of the stack (chat model, predictor, case memory) is not installed or failed to load."""


@dataclass
class Workspace:
    settings: Settings
    store: EventStore
    cutoff: datetime
    predictor: Any = None
    cases: Any = None
    reviews: Any = None
    tools: list[Callable] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # part -> what is wrong and what to run
    chat_model_factory: Callable[[], Any] | None = None
    _chat_model: Any = None
    _chat_lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ building
    @classmethod
    def open(
        cls,
        settings: Settings | None = None,
        store: EventStore | None = None,
        chat_model_factory: Callable[[], Any] | None = None,
        predictor: Any = None,
        cases: Any = None,
    ) -> "Workspace":
        """Open every part that is there; record what is missing instead of failing."""
        settings = settings or Settings.from_env()
        store = store or EventStore(settings.db_path)
        _, last_ts = store.time_span()
        cutoff = last_ts or datetime.utcnow()
        ws = cls(settings=settings, store=store, cutoff=cutoff, chat_model_factory=chat_model_factory)
        ws.predictor = predictor if predictor is not None else ws._try("predictor", ws._load_predictor)
        ws.cases = cases if cases is not None else ws._try("cases", ws._load_cases)
        ws.reviews = ws._try("reviews", ws._load_reviews)
        ws.tools = ws._build_tools()
        if ws.chat_model_factory is None:
            ws.chat_model_factory = ws._load_chat_model
        return ws

    def _try(self, part: str, loader: Callable[[], Any]) -> Any:
        try:
            return loader()
        except PartUnavailable as exc:
            self.problems[part] = str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken part must not stop the workspace
            self.problems[part] = f"{type(exc).__name__}: {exc}"
        return None

    def _load_predictor(self):
        from tools.predictor.score import Predictor

        folder = self.settings.predictor_dir
        if not (folder / "config.yaml").exists():
            raise PartUnavailable(
                f"no trained predictor at {folder}; run `shopsight predictor train` (or `make run`)"
            )
        return Predictor.load(folder)

    def _load_cases(self):
        from tools.cases import CaseMemory

        return CaseMemory.open(path=self.settings.chroma_path, url=self.settings.chroma_url or None)

    def _load_reviews(self):
        from tools.reviews import ReviewAnalyzer

        return ReviewAnalyzer.for_store(self.store)

    def _build_tools(self) -> list[Callable]:
        from tools.catalog import ToolContext, build_tools

        ctx = ToolContext(
            store=self.store, predictor=self.predictor, cases=self.cases, reviews=self.reviews, cutoff=self.cutoff
        )
        return build_tools(ctx)

    def _load_chat_model(self):
        from assistant.chat import LocalToolChat
        from assistant.llm import LLMSpec, load_chat_model

        spec = LLMSpec.from_settings(self.settings)
        model, tokenizer = load_chat_model(spec)
        return LocalToolChat.from_model(model, tokenizer, max_new_tokens=self.settings.max_new_tokens)

    # ------------------------------------------------------------------ the chat model and the agent
    def chat_model(self):
        """The chat model, loaded once; raises PartUnavailable with what to run."""
        with self._chat_lock:
            if self._chat_model is None:
                try:
                    self._chat_model = self.chat_model_factory()
                except PartUnavailable:
                    raise
                except Exception as exc:  # noqa: BLE001 - shown in the UI, with the fix
                    message = (
                        f"the chat model '{self.settings.model}' could not be loaded ({type(exc).__name__}: {exc}); "
                        "run `shopsight models install` or set SHOPSIGHT_MODEL"
                    )
                    self.problems["llm"] = message
                    raise PartUnavailable(message) from exc
                self.problems.pop("llm", None)
            return self._chat_model

    def new_agent(self):
        from assistant.agent import Agent

        return Agent(self.chat_model(), self.tools, max_steps=self.settings.max_agent_steps)

    # ------------------------------------------------------------------ tools, called directly by the UI
    def tool(self, name: str) -> Callable:
        for fn in self.tools:
            if fn.__name__ == name:
                return fn
        raise PartUnavailable(f"no tool named {name!r}; known: {', '.join(f.__name__ for f in self.tools)}")

    def call_tool(self, name: str, **arguments) -> dict:
        return self.tool(name)(**arguments)

    # ------------------------------------------------------------------ views the UI needs beyond the tools
    def summary(self) -> dict:
        info = dict(self.store.summary())
        info["cutoff"] = self.cutoff.isoformat(sep=" ")
        info["predictor"] = getattr(self.predictor, "version", None) or self.problems.get("predictor", "not loaded")
        info["llm"] = self.settings.model + (f" + adapter {self.settings.adapter}" if self.settings.adapter else "")
        info["llm_state"] = "loaded" if self._chat_model is not None else self.problems.get("llm", "loads on first question")
        info["problems"] = dict(self.problems)
        return info

    def churn_over_cutoffs(self, user_id: str, horizon_days: int, weeks: int = 12) -> pd.DataFrame:
        """p_churn of one user at weekly cutoffs up to now (each scored only on events up to it)."""
        if self.predictor is None:
            raise PartUnavailable(self.problems.get("predictor", "no predictor loaded"))
        if not self.store.has_user(user_id):
            raise PartUnavailable(f"unknown user id {user_id!r}; pick one from the at-risk table")
        history = self.store.user_history(user_id, until=self.cutoff)
        first = pd.Timestamp(history["ts"].min()).to_pydatetime()
        rows = []
        for week in range(weeks - 1, -1, -1):
            cutoff = self.cutoff - timedelta(days=7 * week)
            if cutoff < first:
                continue
            events = history[history["ts"] <= cutoff]
            scored = self.predictor.score_users(events, cutoff, users=[user_id])
            scored = scored[scored["horizon_days"] == horizon_days]
            if len(scored):
                rows.append({"cutoff": cutoff, "p_churn": float(scored["p_churn"].iloc[0])})
        return pd.DataFrame(rows, columns=["cutoff", "p_churn"])

    def review_timeline(self, item_id: str | None = None, category_id: str | None = None) -> pd.DataFrame:
        """Monthly review counts and the share of negative (1-2 star) and positive (4-5 star) reviews."""
        reviews = self.store.reviews_frame(item_id=item_id or None, category_id=category_id or None)
        if reviews.empty:
            return pd.DataFrame(columns=["month", "sentiment", "share", "reviews"])
        month = pd.to_datetime(reviews["ts"]).dt.to_period("M").dt.to_timestamp()
        label = pd.cut(reviews["rating"], bins=[0, 2, 3, 5], labels=["negative", "neutral", "positive"])
        counts = pd.crosstab(month, label)
        shares = counts.div(counts.sum(axis=1), axis=0).stack().rename("share").reset_index()
        shares.columns = ["month", "sentiment", "share"]
        totals = counts.sum(axis=1).rename("reviews")
        return shares.merge(totals, left_on="month", right_index=True)

    def search_items(self, text: str, limit: int = 20) -> list[tuple[str, str]]:
        """(label, value) pairs of items and categories whose id or name contains the text."""
        items = self.store.items_frame()
        text = (text or "").strip().lower()
        if text:
            mask = items["item_id"].str.lower().str.contains(text, regex=False)
            if "name" in items:
                mask |= items["name"].fillna("").str.lower().str.contains(text, regex=False)
            mask |= items["category_id"].fillna("").str.lower().str.contains(text, regex=False)
            items = items[mask]
        choices = []
        for row in items.head(limit).itertuples():
            name = getattr(row, "name", None) or ""
            choices.append((f"item {row.item_id} {name}".strip(), f"item:{row.item_id}"))
        categories = sorted({c for c in items["category_id"].dropna().unique()})[:limit]
        choices += [(f"category {c}", f"category:{c}") for c in categories]
        return choices

    def save_case(self, user_id: str, horizon_days: int, conclusion: str) -> dict:
        if self.cases is None:
            raise PartUnavailable(self.problems.get("cases", "no case memory; run `shopsight cases build`"))
        if not conclusion.strip():
            raise PartUnavailable("write the conclusion first")
        return self.cases.save_analyst_case(user_id=user_id, cutoff=self.cutoff, note=conclusion.strip(),
                                            horizon_days=horizon_days)

    def import_upload(self, path: str) -> dict:
        """Import an uploaded file; the report says rows read / imported / rejected with reasons."""
        report = self.store.import_file(path, progress=False)
        return report.as_dict() if hasattr(report, "as_dict") else dict(vars(report))

    def run_agent(self, question: str, history: list | None = None) -> Iterator[Any]:
        agent = self.new_agent()
        yield from agent.run(question, history=history)
