"""A small, real ShopSight stack for the workspace tests: demo shop, predictor, case memory, scripted chat.

- the demo shop from `tools.data.synth.generate_shop` (few users) in a real DuckDB store
  under a temporary SHOPSIGHT_HOME;
- a tiny predictor trained here with a small TrainConfig, scores written to the store;
- a real Chroma case memory with a deterministic embedding (test_cases.HashingEmbedding);
- a review classifier fit on a slice of the bundled Amazon reviews;
- the agent helper's `ScriptedChatModel` (tests/test_agent.py, a real BaseChatModel) with a
  responder that calls the tool the question asks for, then answers from the tool result.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from pydantic import PrivateAttr

from assistant.agent.loop import FEEDBACK_KEY
from test_agent import ScriptedChatModel, call  # the agent helper's scripted model (reused, not copied)
from test_cases import HashingEmbedding

N_USERS = 250
N_ITEMS = 150


def tiny_train_config():
    """Seconds to train on a few hundred users; the numbers only need to be real, not good."""
    from tools.predictor.train import TrainConfig

    return TrainConfig(name="demo", horizons_days=(7, 30), max_len=16, d_model=16, n_layers=1, n_heads=2,
                       n_cutoffs=4, cutoff_stride_days=7, batch_size=128, epochs=1, warmup_steps=5,
                       val_fraction=0.25, max_items=100, max_categories=40, item_hash_buckets=4,
                       category_hash_buckets=2, device="cpu")


@contextlib.contextmanager
def stack_in_home(home: Path, n_users: int = N_USERS) -> Iterator[dict[str, Any]]:
    """`build_stack` with SHOPSIGHT_HOME pointing at `home` (the audit log and caches land there,
    not in ~/.shopsight); the store is closed and the variable restored afterwards."""
    old = os.environ.get("SHOPSIGHT_HOME")
    os.environ["SHOPSIGHT_HOME"] = str(home)
    parts = build_stack(home, n_users=n_users)
    try:
        yield parts
    finally:
        parts["store"].close()
        if old is None:
            os.environ.pop("SHOPSIGHT_HOME", None)
        else:
            os.environ["SHOPSIGHT_HOME"] = old


def build_stack(home: Path, n_users: int = N_USERS) -> dict[str, Any]:
    """Build every part under `home`; returns settings, store, predictor, cases, reviews, shop."""
    from assistant.config import Settings
    from tools.cases import CaseMemory
    from tools.data.store import EventStore
    from tools.data.synth import generate_shop
    from tools.predictor.score import score_store
    from tools.predictor.train import train_predictor
    from tools.reviews import FINEFOOD_CSV, ReviewAnalyzer
    from tools.sentiment import SentimentConfig, SentimentModel, rating_labels

    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=home, db_path=home / "shop.duckdb", chroma_path=home / "chroma",
                        models_dir=home / "models", predictor="demo", max_agent_steps=4)
    shop = generate_shop(n_users=n_users, n_items=N_ITEMS, seed=3, progress=False)
    store = EventStore(settings.db_path)
    store.import_frames(f"demo-shop:seed=3:users={n_users}", events=shop.events, reviews=shop.reviews,
                        items=shop.items, users=shop.users)
    cutoff = pd.Timestamp(store.time_span()[1]).to_pydatetime()
    events = store.events_frame()
    predictor = train_predictor(events, cutoff, tiny_train_config(), settings.predictor_dir, progress=False)
    score_store(store, predictor, cutoff, progress=False)
    cases = CaseMemory(path=settings.chroma_path, text_embedding=HashingEmbedding())
    cases.build(events, [cutoff - pd.Timedelta(days=60)], predictor=predictor, progress=False,
                reviews=store.reviews_frame())
    ff = pd.read_csv(FINEFOOD_CSV, nrows=300)
    small = SentimentConfig(char_ngrams=(2, 3), word_ngrams=(1, 1), max_features=5000, C=1.0)
    reviews = ReviewAnalyzer(SentimentModel(small).fit((ff["Summary"].fillna("") + ". " + ff["Text"].fillna("")).tolist(),
                                                  rating_labels(ff["Score"])))
    return {"settings": settings, "store": store, "predictor": predictor, "cases": cases, "reviews": reviews,
            "shop": shop, "cutoff": cutoff}


# ---------------------------------------------------------------------------- the scripted analyst
def _last_tool_result(messages: list[BaseMessage]) -> tuple[str, dict] | None:
    """The tool result of this turn (after the last human message), if any."""
    for message in reversed(messages):
        if isinstance(message, ToolMessage):
            try:
                return message.name or "", json.loads(message.content)
            except (TypeError, ValueError):
                return message.name or "", {}
        if isinstance(message, HumanMessage) and not message.additional_kwargs.get(FEEDBACK_KEY):
            return None  # the user's question: no result yet this turn (the agent's own notes do not count)
    return None


def analyst_reply(messages: list[BaseMessage]) -> str:
    """Call the tool the question is about; once a result is there, answer from it (only its numbers).

    Asked for the takeaway (prompts/agent_takeaway.j2: a short prompt of facts, no tool result in
    it), the analyst repeats the first fact, as a careful model would: true, so the check keeps it.
    """
    last = messages[-1] if messages else None
    if isinstance(last, HumanMessage) and "The facts behind it:" in str(last.content):
        facts = [line[2:] for line in str(last.content).splitlines() if line.startswith("- ")]
        return facts[0] if facts else ""
    done = _last_tool_result(messages)
    if done is None:
        question = str(messages[-1].content).lower()
        category = re.search(r"category (\w+)", question)
        if category:
            return call("review_summary", category_id=category.group(1))
        if "segment" in question or "tenure" in question:
            return call("segment_report", segment_by="tenure", horizon_days=30)
        horizon = 30 if "30" in question or "month" in question else 7
        return call("at_risk_users", horizon_days=horizon, top_k=5)
    name, result = done
    users = result.get("users") or []
    if users:
        top = users[0]
        return (f"The customer most likely to churn is user {top['user_id']} with a churn probability of "
                f"{top['p_churn']}. I listed {len(users)} users in the table.")
    if result.get("segments"):
        seg = result["segments"][0]
        return f"The {seg['segment']} segment has the highest predicted churn rate, {seg['predicted_churn_rate']}."
    return f"The {name} tool answered; see its result in the step above."


class SlowScriptedChat(ScriptedChatModel):
    """The scripted model with a per-reply delay, recording how many replies ever overlapped."""

    delay_s: float = 0.0
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _running: int = PrivateAttr(default=0)
    _max_running: int = PrivateAttr(default=0)

    @property
    def max_running(self) -> int:
        return self._max_running

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        with self._lock:
            self._running += 1
            self._max_running = max(self._max_running, self._running)
        try:
            time.sleep(self.delay_s)
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        finally:
            with self._lock:
                self._running -= 1


def scripted_analyst(replies: int = 400, delay_s: float = 0.0) -> SlowScriptedChat:
    """A scripted analyst with enough replies for a whole test module."""
    return SlowScriptedChat(script=[analyst_reply] * replies, delay_s=delay_s)


def user_ids_in(text: str) -> list[str]:
    return re.findall(r"user (\S+?)[ ,.]", text)
