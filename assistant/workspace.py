"""The assistant's back office: one object that opens the store, the predictor, the case
memory and the tools, and loads the chat model lazily.

The Gradio app, `shopsight ask` and `shopsight demo` all build the same stack through
`Workspace.open`, so what the UI shows is exactly what the agent can see. Each part that
fails to load is recorded as a message saying what to run, never a crash: the UI still
starts and shows that message. Nothing slow happens at open: the chat model loads on the
first question and the review classifier on the first review question (the tools do that).
While `shopsight demo` still builds parts behind the page (tools/jobs.py), a part not built yet
is reported with its progress ("not ready yet: training the predictor, 40 %, about 70 s left"),
and the parts are reloaded when a job finishes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from assistant.config import Settings
from tools.data.store import EventStore

# What an upload may be: the importers read text (CSV / TXT / JSON lines) and Parquet.
UPLOAD_SUFFIXES = (".csv", ".txt", ".tsv", ".json", ".jsonl", ".parquet")


class PartUnavailable(Exception):
    """A part of the stack (chat model, predictor, case memory) is missing, or a request cannot be served."""


class DeferredPart:
    """A part that loads on first use: the predictor needs torch, the case memory chromadb.

    A cold `shopsight ask` about churn reads the stored scores and never touches either; loading
    them up front cost seconds of imports and hundreds of MB of RSS (bench/cold_ask.py). Known
    attributes (`known`, read cheaply from the part's files) answer without loading; any other
    attribute loads the part once (thread-safe) and is read from it. A load that fails raises
    `error(message)`, an error the tools already report with its fix.
    """

    def __init__(self, load: Callable[[], Any], known: dict | None = None,
                 error: Callable[[str], Exception] = PartUnavailable):
        self._load, self._known, self._error = load, dict(known or {}), error
        self._part: Any = None
        self._lock = threading.Lock()

    @property
    def part_loaded(self) -> bool:
        return self._part is not None

    def part(self) -> Any:
        """The loaded part (loading it now if needed)."""
        with self._lock:
            if self._part is None:
                try:
                    self._part = self._load()
                except Exception as exc:  # noqa: BLE001 - a broken part is reported where it is used
                    raise self._error(f"{type(exc).__name__}: {exc}") from exc
            return self._part

    def __getattr__(self, name: str) -> Any:  # only for names the proxy itself lacks
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._known and self._part is None:
            return self._known[name]
        return getattr(self.part(), name)


@dataclass
class Workspace:
    """The opened stack; build with `Workspace.open`."""

    settings: Settings
    store: EventStore
    cutoff: datetime
    problems: dict[str, str] = field(default_factory=dict)  # part -> what is wrong and what to run
    chat_model_factory: Callable[[], Any] | None = None
    agent_options: dict = field(default_factory=dict)  # extra Agent(...) arguments (router, answer_mode)
    _given: dict = field(default_factory=dict)  # parts handed to `open` (tests), used instead of loading
    _parts: dict | None = None  # predictor, cases, context, tools once loaded
    _load_lock: threading.Lock = field(default_factory=threading.Lock)
    _chat_model: Any = None
    _chat_lock: threading.Lock = field(default_factory=threading.Lock)
    _agent: Any = None
    _agent_lock: threading.Lock = field(default_factory=threading.Lock)
    _jobs_marker: str = ""  # tools.jobs.finished_marker when the parts were loaded

    # ------------------------------------------------------------------ building
    @classmethod
    def open(
        cls,
        settings: Settings | None = None,
        store: EventStore | None = None,
        chat_model_factory: Callable[[], Any] | None = None,
        predictor: Any = None,
        cases: Any = None,
        reviews: Any = None,
        agent_options: dict | None = None,
        lazy: bool = False,
    ) -> "Workspace":
        """Open every part that is there; record what is missing instead of failing.

        Args:
            settings: paths and model choice (default: from the environment).
            store: an open EventStore (default: the settings' file, opened for writing so
                uploads can be imported).
            chat_model_factory: builds the chat model on the first question (default: the
                settings' model through `assistant.llm.loader.load_llm`); tests pass a scripted one.
            predictor, cases, reviews: already built parts (tests); loaded from the home folder when None.
            agent_options: extra keyword arguments for `assistant.agent.loop.Agent`.
            lazy: open only the store now; the predictor, the case memory and the tools load on
                first use or on `ensure_loaded()` (the app serves the page first, then warms them).
        """
        settings = settings or Settings.from_env()
        store = store or EventStore(settings.db_path)
        _, last_ts = store.time_span()
        if last_ts is None:
            raise PartUnavailable(f"the event store {settings.db_path} is empty; run `shopsight demo` "
                                  "or `shopsight data import FILE` first")
        ws = cls(settings=settings, store=store, cutoff=pd.Timestamp(last_ts).to_pydatetime(),
                 chat_model_factory=chat_model_factory, agent_options=dict(agent_options or {}),
                 _given={"predictor": predictor, "cases": cases, "reviews": reviews})
        if ws.chat_model_factory is None:
            ws.chat_model_factory = ws._load_chat_model
            ws._try("llm", ws._check_llm_installed)
        if not lazy:
            ws.ensure_loaded()
        return ws

    def ensure_loaded(self) -> dict:
        """Load the predictor and the case memory and build the tools, once (thread-safe); again
        after a background job finished (a new predictor or case memory is then on disk)."""
        from tools.jobs import finished_marker

        with self._load_lock:
            marker = finished_marker(self.settings.home)
            if self._parts is not None and marker != self._jobs_marker:
                self._parts = None
                self._agent = None  # it holds the old tools
                for part in ("predictor", "cases", "llm"):
                    self.problems.pop(part, None)
                if self.chat_model_factory == self._load_chat_model:
                    self._try("llm", self._check_llm_installed)
            self._jobs_marker = marker
            if self._parts is None:
                given = self._given
                predictor = given["predictor"] if given["predictor"] is not None else \
                    self._try("predictor", self._load_predictor)
                cases = given["cases"] if given["cases"] is not None else self._try("cases", self._load_cases)
                from tools.catalog import ToolContext, build_tools

                context = ToolContext(store=self.store, predictor=predictor, cases=cases, reviews=given["reviews"],
                                      cutoff=self.cutoff, currency=self.settings.currency)
                self._parts = {"predictor": predictor, "cases": cases, "context": context,
                               "tools": build_tools(context)}
            return self._parts

    @property
    def loaded(self) -> bool:
        return self._parts is not None

    @property
    def predictor(self) -> Any:
        return self.ensure_loaded()["predictor"]

    @property
    def cases(self) -> Any:
        return self.ensure_loaded()["cases"]

    @property
    def context(self) -> Any:
        """The tools' ToolContext (holds the lazily trained review analyzer and caches)."""
        return self.ensure_loaded()["context"]

    @property
    def tools(self) -> list[Callable]:
        return self.ensure_loaded()["tools"]

    def _try(self, part: str, loader: Callable[[], Any]) -> Any:
        try:
            return loader()
        except PartUnavailable as exc:
            self.problems[part] = str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken part must not stop the workspace
            self.problems[part] = f"{type(exc).__name__}: {exc}"
        return None

    def _load_predictor(self):
        import yaml

        from tools.predictor.data import PredictorError

        folder = self.settings.predictor_dir
        if not (folder / "config.yaml").exists():
            self._raise_if_building("predictor")
            from tools.spans import too_short_for_churn

            short = self.reviews_only() or too_short_for_churn(*self.store.time_span())
            if short:  # training would refuse: "run predictor train" would send the user in a circle
                raise PartUnavailable(f"no trained predictor at {folder}: {short}")
            raise PartUnavailable(f"no trained predictor at {folder}; run `shopsight predictor train` "
                                  "then `shopsight predictor score` (or `make run`)")
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))

        def load():
            from tools.predictor.score import Predictor

            return Predictor.load(folder)

        # What the tools read without scoring (the horizons a question may ask for, the model's version).
        known = {"folder": folder, "version": config["version"],
                 "horizons_days": tuple(config["train"]["horizons_days"])}
        return DeferredPart(load, known, error=PredictorError)

    def _load_cases(self):
        if self.settings.chroma_url or not Path(self.settings.chroma_path).is_dir():
            return self._open_cases()  # a server, or nothing on disk yet: open now, as before
        return DeferredPart(self._open_cases)

    def _open_cases(self):
        from tools.cases import CaseMemory
        from tools.jobs import readiness

        memory = CaseMemory(path=self.settings.chroma_path, url=self.settings.chroma_url or None)
        if memory.by_text.count() == 0:
            building = readiness("cases", self.settings.home)
            # A reviews-only store: the predictor's problem says why and what to import; not said twice.
            self.problems["cases"] = building["error"] if building else (
                "the case memory is empty: cases are built from orders or events, and this store has none"
                if self.reviews_only() else "the case memory is empty; run `shopsight cases build` (or `make run`)")
        return memory

    def reviews_only(self) -> str | None:
        """Why a store of reviews without events (the Amazon Fine Food file) has no predictor or cases, else None.

        `predictor train` and `cases build` refuse such a store, so "run them" would send the user in a circle.
        """
        events, reviews = self.store.query(
            "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM reviews) AS reviews").iloc[0]
        if events or not reviews:
            return None
        return (f"this store holds {int(reviews):,} reviews and no orders or events; churn predictions, the at-risk "
                "list and the case memory learn from orders or events, so import an orders or events file for "
                "them (docs/importing.md). The review desk and review questions work without them")

    def _check_llm_installed(self) -> None:
        """A cheap look (no weights read) so the UI can say what to run before anyone asks."""
        from assistant.llm.registry import MODEL_REGISTRY, is_cached, packages_installed

        name = self.settings.model
        self._raise_if_building("llm")
        if name in MODEL_REGISTRY and not is_cached(name, self.settings.models_dir) \
                and not packages_installed(MODEL_REGISTRY[name]):
            raise PartUnavailable(f"the chat model '{name}' is not installed; run `shopsight models install` "
                                  "(or `make run`), or set SHOPSIGHT_MODEL")
        if name not in MODEL_REGISTRY and not name.startswith(("http://", "https://")) \
                and "/" in name and name.startswith((".", "/", "~")) and not Path(name).expanduser().exists():
            raise PartUnavailable(f"the chat model folder {name} does not exist; fix SHOPSIGHT_MODEL")

    def _raise_if_building(self, part: str) -> None:
        """A part a background job is still building: say so, with its progress (tools/jobs.py)."""
        from tools.jobs import readiness

        building = readiness(part, self.settings.home)
        if building:
            raise PartUnavailable(building["error"])

    def jobs(self) -> dict[str, str]:
        """Part -> a line, per background job not done yet (empty when none runs): the banner shows them."""
        from tools.jobs import status_lines

        return status_lines(self.settings.home)

    def _load_chat_model(self):
        from assistant.llm.loader import LLMSpec, load_llm

        return load_llm(LLMSpec.from_settings(self.settings), max_new_tokens=self.settings.max_new_tokens)

    # ------------------------------------------------------------------ the chat model and the agent
    @property
    def chat_model_loaded(self) -> bool:
        return self._chat_model is not None

    def chat_model(self):
        """The chat model, loaded once; raises PartUnavailable with what to run."""
        with self._chat_lock:
            if self._chat_model is None:
                if self.chat_model_factory == self._load_chat_model:
                    self._raise_if_building("llm")
                try:
                    self._chat_model = self.chat_model_factory()
                except PartUnavailable:
                    raise
                except Exception as exc:  # noqa: BLE001 - shown in the UI, with the fix
                    from assistant.llm.loader import AdapterLoadError

                    if isinstance(exc, AdapterLoadError):  # the model is fine: installing it again cannot help
                        message = (
                            f"the LoRA adapter SHOPSIGHT_ADAPTER={self.settings.adapter} cannot be used with the chat "
                            f"model '{self.settings.model}': {str(exc).rstrip('. ')}. Unset SHOPSIGHT_ADAPTER to go "
                            "back to the packaged weights, or point it at a finetune.lora run's final/ folder or a "
                            "GGUF LoRA written by `python -m finetune.export_gguf`"
                        )
                    else:
                        message = (
                            f"the chat model '{self.settings.model}' could not be loaded ({type(exc).__name__}: {exc}); "
                            "run `shopsight models install` or set SHOPSIGHT_MODEL to an installed model"
                        )
                    self.problems["llm"] = message
                    raise PartUnavailable(message) from exc
                self.problems.pop("llm", None)
            return self._chat_model

    def new_agent(self):
        from assistant.agent.loop import Agent

        options = {"answer_mode": self.settings.answer_mode, "horizons": tuple(self.settings.horizons_days),
                   **self.agent_options}
        if "tool_prior" not in options and "router" not in options and self.settings.tool_prior:
            from assistant.agent.tool_prior import default_prior

            options["tool_prior"] = default_prior()
        return Agent(self.chat_model(), self.tools, max_steps=self.settings.max_agent_steps, **options)

    def agent(self):
        """The agent, built once: its KV cache of the system prompt and the embedded example
        questions of the tool prior then serve every question, not just one."""
        with self._agent_lock:
            if self._agent is None:
                self._agent = self.new_agent()
            return self._agent

    def run_agent(self, question: str, history: list | None = None) -> Iterator[Any]:
        """The agent's events for one question (loads the chat model on first use)."""
        yield from self.agent().run(question, history=history)

    # ------------------------------------------------------------------ tools, called directly by the UI
    def tool(self, name: str) -> Callable:
        for fn in self.tools:
            if fn.__name__ == name:
                return fn
        raise PartUnavailable(f"no tool named {name!r}; known: {', '.join(f.__name__ for f in self.tools)}")

    def call_tool(self, name: str, **arguments) -> dict:
        """Run one tool as the agent would (same checks, audit log); errors come back as {"error", "hint"}."""
        return self.tool(name)(**arguments)

    # ------------------------------------------------------------------ views the UI needs beyond the tools
    def summary(self) -> dict:
        """What is loaded: store counts and span, predictor, case memory, chat model, problems."""
        info = dict(self.store.summary())
        info.pop("imports", None)
        info["as_of"] = self.cutoff.isoformat(sep=" ")
        info["the data records"] = self.records()
        if self.predictor is not None:
            info["predictor"] = f"{self.predictor.version} ({self.settings.predictor_dir})"
            metrics = self._predictor_metrics()
            if metrics:
                info["predictor_validation"] = metrics
        if self.cases is not None:
            try:
                # Counts only: CaseMemory.info() reads every case's metadata, too slow for each page load.
                info["case_memory"] = {"location": self.cases.location, "cases": self.cases.by_text.count(),
                                       "user_vectors": self.cases.by_vector.count()}
            except Exception as exc:  # noqa: BLE001 - a server that went away is a problem to show
                self.problems["cases"] = f"{type(exc).__name__}: {exc}"
        info["llm"] = self.settings.model + (f" + adapter {self.settings.adapter}" if self.settings.adapter else "")
        info["llm_state"] = "loaded" if self.chat_model_loaded else (
            "not available" if "llm" in self.problems else "loads on the first question")
        info["problems"] = dict(self.problems)
        info["jobs"] = self.jobs()
        return info

    def scores_note(self) -> str | None:
        """The tools' `scores_checkpoint_note` for the served churn scores, None when they are current or absent.

        The banner says it before any tool runs: a retrained, unscored checkpoint (or a removed one) left the
        Operations tab serving another checkpoint's scores, and only `shopsight ask` said so. One aggregate
        query (no scores frame): it runs on every page load.
        """
        from tools.catalog.reads import scores_version_note, served_version

        versions = self.store.query(
            "SELECT model_version, count(*) AS n FROM scores WHERE cutoff = "
            "(SELECT max(cutoff) FROM scores WHERE cutoff <= ?) GROUP BY 1", [self.cutoff])
        if versions.empty:
            return None
        current = str(self.predictor.version) if self.predictor is not None else None
        served = served_version(versions.set_index("model_version")["n"], current)  # the tools' own choice
        return scores_version_note(served, current)

    def _predictor_metrics(self) -> dict:
        """Validation figures the trainer saved in calibration.json (churn AUC per horizon)."""
        import json

        path = self.settings.predictor_dir / "calibration.json"
        if not path.is_file():
            return {}
        data = json.loads(path.read_text())
        out = {}
        for h, entry in zip(data.get("horizons_days", []), data.get("validation", [])):
            if entry and entry.get("churn_auc") is not None:  # in words: the panel showed raw JSON
                out[f"{h} days"] = (f"churn AUC {entry['churn_auc']:.3f} on {entry.get('n', '?')} held-out users "
                                    f"(base rate {entry.get('churn_base_rate', '?')}, "
                                    f"cutoff {entry.get('cutoff', '?')})")
        return out

    def records_prices(self) -> bool:
        """Whether any purchase has an amount (else value is counted in expected orders, not money)."""
        return bool(self.store.query("SELECT EXISTS (SELECT 1 FROM events WHERE behavior = 'buy' AND amount > 0) "
                                     "AS priced").iloc[0]["priced"])

    def records(self) -> str:
        """What the shop's data records and lacks, in words: a view that comes up empty is explained here."""
        row = self.store.query("""SELECT (SELECT count(*) FROM events) AS events,
            (SELECT count(*) FROM events WHERE category_id IS NOT NULL) AS categorized,
            (SELECT count(*) FROM reviews) AS reviews""").iloc[0]
        kinds = self.store.query("SELECT behavior, count(*) AS n FROM events GROUP BY 1 ORDER BY n DESC")
        parts = [("events " + ", ".join(f"{r.behavior} {r.n:,}" for r in kinds.itertuples())) if len(kinds)
                 else "no events (the Operations tab needs orders or events)"]
        if row.events:
            parts.append(f"prices in {self.settings.currency}" if self.records_prices()
                         else "no prices (value is counted in orders, not money)")
            parts.append("categories" if row.categorized else "no categories")
        parts.append(f"{int(row.reviews):,} reviews" if row.reviews
                     else "no reviews (the review desk has nothing to show)")
        return " · ".join(parts)

    def segments(self) -> list[str]:
        """The shop's own segment labels (for the at-risk filter)."""
        users = self.store.users_frame()
        if "segment" not in users:
            return []
        return sorted(str(s) for s in users["segment"].dropna().unique())

    def churn_over_cutoffs(self, user_id: str, horizon_days: int, weeks: int = 12) -> pd.DataFrame:
        """p_churn of one user at weekly cutoffs up to now (each scored only on events up to it)."""
        if self.predictor is None:
            raise PartUnavailable(self.problems.get("predictor", "no predictor loaded"))
        if not self.store.has_user(user_id):
            raise PartUnavailable(f"unknown user id {user_id!r}; pick one from the at-risk table")
        history = self.store.user_history(user_id, until=self.cutoff)
        if history.empty:
            return pd.DataFrame(columns=["cutoff", "p_churn"])
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
                rows.append({"cutoff": pd.Timestamp(cutoff), "p_churn": round(float(scored["p_churn"].iloc[0]), 3)})
        return pd.DataFrame(rows, columns=["cutoff", "p_churn"])

    def review_timeline(self, item_id: str | None = None, category_id: str | None = None) -> pd.DataFrame:
        """Monthly share of negative (1-2 star), neutral and positive (4-5 star) reviews."""
        reviews = self.store.reviews_frame(item_id=item_id or None, category_id=category_id or None)
        if reviews.empty:
            return pd.DataFrame(columns=["month", "sentiment", "share", "reviews"])
        month = pd.to_datetime(reviews["ts"]).dt.to_period("M").dt.to_timestamp()
        label = pd.cut(reviews["rating"], bins=[0, 2, 3, 5], labels=["negative", "neutral", "positive"])
        counts = pd.crosstab(month, label)
        shares = counts.div(counts.sum(axis=1), axis=0).stack().rename("share").reset_index()
        shares.columns = ["month", "sentiment", "share"]
        shares["sentiment"] = shares["sentiment"].astype(str)
        totals = counts.sum(axis=1).rename("reviews")
        return shares.merge(totals, left_on="month", right_index=True)

    def review_count(self) -> int:
        """How many reviews the store holds (0: a shop of orders or clicks only)."""
        return int(self.store.query("SELECT count(*) AS n FROM reviews").iloc[0]["n"])

    def search_items(self, text: str, limit: int = 20) -> list[tuple[str, str]]:
        """(label, value) pairs of items and categories whose id or name contains the text."""
        items = self.store.items_frame()
        text = (text or "").strip().lower()
        if text:
            mask = items["item_id"].astype(str).str.lower().str.contains(text, regex=False)
            if "name" in items:
                mask |= items["name"].fillna("").astype(str).str.lower().str.contains(text, regex=False)
            mask |= items["category_id"].fillna("").astype(str).str.lower().str.contains(text, regex=False)
            items = items[mask]
        # Categories first: their summaries have enough reviews to read; then single items.
        categories = sorted({str(c) for c in items["category_id"].dropna().unique()})[:limit]
        choices = [(f"category {c}", f"category:{c}") for c in categories]
        for row in items.head(limit).itertuples():
            name = getattr(row, "name", None)
            name = "" if pd.isna(name) else name  # an item without a name read "item 12196 nan"
            choices.append((f"item {row.item_id} {name}".strip(), f"item:{row.item_id}"))
        return choices

    def review(self, review_id: str) -> dict:
        """One review by id with its item's category (a cited review opens the desk on its item)."""
        rows = self.store.query("SELECT r.*, i.category_id FROM reviews r LEFT JOIN items i USING (item_id) "
                                "WHERE r.review_id = ? LIMIT 1", [str(review_id)])
        if rows.empty:
            raise PartUnavailable(f"unknown review id {review_id!r}; it is not in the event store")
        return rows.iloc[0].to_dict()

    def case(self, case_id: str) -> dict:
        """One case from the memory by id: {case_id, text, metadata}."""
        if self.cases is None:
            raise PartUnavailable(self.problems.get("cases", "no case memory; run `shopsight cases build`"))
        found = self.cases.get_case(case_id)
        if found is None:
            raise PartUnavailable(f"unknown case id {case_id!r}; it is not in the case memory")
        return found

    def save_case(self, user_id: str, horizon_days: int, conclusion: str, outcome: str) -> str:
        """Store the analyst's conclusion about a user as a case in the memory; returns the case id."""
        if self.cases is None:
            raise PartUnavailable(self.problems.get("cases", "no case memory; run `shopsight cases build`"))
        if not conclusion.strip():
            raise PartUnavailable("write your conclusion first (what you found about this customer)")
        if not outcome.strip():
            raise PartUnavailable("say what happened or what was done, e.g. 'retained after a 10% voucher'")
        if user_id and not self.store.has_user(user_id):
            raise PartUnavailable(f"unknown user id {user_id!r}; open a user from the at-risk table first")
        about = f"User {user_id} as of {self.cutoff:%Y-%m-%d}, {horizon_days}-day horizon: " if user_id else ""
        title = f"user {user_id}" if user_id else "analyst note"
        return self.cases.save_case(about + conclusion.strip(), outcome.strip(), user_id=user_id or None,
                                    title=title, analyst="workspace")

    def import_upload(self, path: str) -> dict:
        """Import an uploaded file; the report says rows read / imported / rejected with reasons.

        Raises:
            PartUnavailable: the file's type is not one the importers read.
            tools.data.importers.ImportFailed: the whole file was refused (its message names the fix).
        """
        suffix = Path(path).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise PartUnavailable(
                f"{Path(path).name}: '{suffix or 'no extension'}' is not a supported format; import CSV/TXT "
                f"(Taobao, RetailRocket, CDNOW, Amazon reviews, canonical columns), JSON lines or Parquet "
                f"({', '.join(UPLOAD_SUFFIXES)}); export a spreadsheet as CSV first")
        report = self.store.import_file(path, progress=False)
        self.context.cache.clear()  # new events: cached frames and facts are stale
        if report.rows_imported:
            # What the parts' problems said may no longer hold (orders imported into a reviews-only store):
            # they are found again on next use, as after a background job (ensure_loaded).
            with self._load_lock:
                self._parts = None
                self._agent = None  # it holds the old tools
                for part in ("predictor", "cases"):
                    self.problems.pop(part, None)
                # "Now" is the newest event, as at open: newer uploaded rows were ignored until a restart.
                # An upload of older history never moves it back.
                _, last_ts = self.store.time_span()
                if last_ts is not None and pd.Timestamp(last_ts).to_pydatetime() > self.cutoff:
                    self.cutoff = pd.Timestamp(last_ts).to_pydatetime()
        rejected = [{"line": p.line_no, "field": p.field, "reason": p.reason, "raw_line": p.raw_line[:200]}
                    for p in report.problems]
        return {"file": Path(report.source_file).name, "format": report.format, "table": report.target_table,
                "rows_read": report.rows_read, "rows_imported": report.rows_imported,
                "rows_rejected": report.rows_rejected, "rows_dropped": report.rows_dropped,
                "duplicates": report.duplicates, "already_imported": report.already_imported,
                "rejected_by_reason": dict(report.rejected_by_reason), "rejected": rejected,
                "summary": report.summary()}
