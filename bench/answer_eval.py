"""Evaluate the answers themselves: facts stated, statements avoided, topic kept, questions no tool fits.

    .venv/bin/python bench/answer_eval.py --demo-home ~/.shopsight --amazon-home /tmp/amazon-home
    .venv/bin/python bench/answer_eval.py --demo-home H --configs template brief --limit 20
    .venv/bin/python bench/answer_eval.py --replay data/questions/answer_eval_results.jsonl --configs brief

Questions: data/questions/answer_eval.jsonl (demo shop and the Amazon fine food reviews), each
with its reference calls, the facts the answer must state (`must_say`: a path into a tool
result, or `text:` a phrase), the statements it must not make (`must_not`: regexes) and its
topic. Routing is held fixed so the answer is what is measured: a reference chat model writes
the question's first call (the router's job, measured by bench/agent_eval.py); every other
part is the real agent -- the "no tool fits" gate, the planner's second call, the composer,
the claim check, the model's takeaway in the `brief` config (needs the packaged LLM).

Scores per config: must-say recall, must-not violations, answers with a false or off-topic
statement (after the check: what a user sees) and the statements the check dropped, two-part
questions answered in full, no-tool questions handled (no unrelated list), internal field names
or raw timestamps in prose, grounding re-checked, words per answer, and how often the model's
own words were kept. Rows go to OUT/rows_<config>.jsonl, the table to OUT/table.md.
The demo home needs `shopsight demo` (store, predictor, scores, cases); the Amazon home needs
`shopsight data import data/amazon_finefood_reviews_7567.csv --format amazon_finefood`.

`--replay FILE` needs no home: the tools return the results recorded by an earlier `--record`
run (same names, signatures and docstrings as the real tools), so the model's takeaway is
measured on real tool results where building a home does not fit the time. Only questions with
a reference call run (the gate's answers carry no model words either way).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from pydantic import Field  # noqa: E402

QUESTIONS = ROOT / "data" / "questions" / "answer_eval.jsonl"
# What no answer's prose may show: internal field names and raw ISO timestamps.
INTERNAL_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}|\b(?:p_churn|p_buy|p_cart|model_version|user_id|item_id|"
                         r"horizon_days|value_at_risk|next_behavior|as_of)\b|\bp buy\b|\bmodel version\b|From [a-z]+_[a-z_]+:")
UNRELATED_LIST_RE = re.compile(r"most likely to stop buying|最可能不再购买|with the most (?:money|expected orders) at stake")
CHURN_RE = re.compile(r"\bchurn\w*|\bat[- ]risk\b|stop(?:s|ped)? buying|流失", re.I)


class ReferenceChat(BaseChatModel):
    """Writes the question's first reference call, then nothing: routing held fixed.

    A real BaseChatModel (like the scripted model of tests/test_agent.py); with `takeaway`
    it hands the answer step and the takeaway step to a real chat model instead.
    """

    first_call: dict | None = None
    takeaway: Any = None
    used: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "reference"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        if self.first_call is not None and not self.used:
            self.used.append("call")
            call = {"name": self.first_call["name"], "args": self.first_call["arguments"], "id": "call_ref",
                    "type": "tool_call"}
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="", tool_calls=[call]))])
        self.used.append("prose")
        if self.takeaway is not None:
            reply = self.takeaway.invoke(messages)  # its usage (prompt tokens) goes to the answer's record
            message = AIMessage(content=reply.content or "", usage_metadata=getattr(reply, "usage_metadata", None))
            return ChatResult(generations=[ChatGeneration(message=message)])
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=""))])


# ------------------------------------------------------------------------------------------- scoring
def lookup(results: list[tuple[str, Any]], spec: str) -> Any:
    """The value at "tool:path" (e.g. "at_risk_users:users[0].user_id") in this turn's results, else None."""
    tool, _, path = spec.partition(":")
    for name, result in results:
        if name != tool:
            continue
        value: Any = result
        for part in re.findall(r"[^.\[\]]+|\[-?\d+\]", path):
            try:
                value = value[int(part[1:-1])] if part.startswith("[") else value[part]
            except (KeyError, IndexError, TypeError):
                value = None
                break
        if value is not None:
            return value
    return None


def said(text: str, value: Any) -> bool:
    """Whether `text` states `value`, formatting forgiven (0.734 as "73%" or "0.73", 12.5 as "$12.50")."""
    low = text.lower()
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return re.search(rf"(?<![\d.]){value}(?![\d])", text.replace(",", "")) is not None
    if isinstance(value, float):
        forms = {f"{value:.2f}", f"{value:.3f}".rstrip("0").rstrip("."), f"{value * 100:.0f}%", f"{value * 100:.1f}%",
                 f"{value:,.2f}"}
        return any(f in text for f in forms)
    return str(value).lower() in low


def score_row(q: dict, events: list[dict], answer: dict) -> dict:
    text = answer["text"]
    results = [(e["name"], e["result"]) for e in events if e["type"] == "tool_result" and "error" not in e["result"]]
    called = [e["name"] for e in events if e["type"] == "tool_call"]
    facts, hits = [], 0
    for spec in q["must_say"]:
        if spec == "text:zh":
            ok = len(re.findall(r"[\u4e00-\u9fff]", text)) >= 6
        elif spec.startswith("text:"):
            ok = spec[5:].lower() in text.lower()
        else:
            ok = said(text, lookup(results, spec))
        facts.append({"fact": spec, "ok": ok})
        hits += ok
    violations = [p for p in q["must_not"] if re.search(p, text, re.I)]
    internal = INTERNAL_RE.findall(text)
    statements = [c for c in answer.get("ungrounded") or [] if c.startswith(("false", "off topic", "unsupported",
                                                                               "internal field"))]
    from assistant.agent.claims import statement_problems
    from assistant.agent.grounding import Evidence, check, split_sentences

    shown_problems = statement_problems(split_sentences(text), [r for _, r in results], [n for n, _ in results],
                                        q["question"])
    from assistant.agent.takeaway import takeaway_facts

    counts = takeaway_facts(results)[1]  # the agent's own counts, evidence for what the takeaway repeats
    evidence = Evidence.from_results([e["result"] for e in events if e["type"] == "tool_result"] +
                                     [{"horizons_days": [7, 30]}, counts], [q["question"]])
    expected = [c["name"] for c in q["calls"]]
    row = {"id": q["id"], "kind": q["kind"], "dataset": q["dataset"], "topic": q["topic"], "question": q["question"],
           "calls": called, "repair": answer.get("repair"), "text": text,
           "must_say": facts, "recall": hits / max(1, len(q["must_say"])), "violations": violations,
           "internal": internal, "false_shown": [w for _, w in shown_problems], "dropped_statements": statements,
           "grounded": check(text, evidence).ok, "words": len(text.split()) + len(re.findall(r"[\u4e00-\u9fff]", text)),
           "model_words_kept": answer.get("repair") in ("none", "regenerated", "composed+takeaway"),
           "seconds": answer.get("seconds")}
    if answer.get("takeaway") is not None:  # brief: the model's draft, its prompt size, what the check kept
        row["takeaway"] = {k: answer["takeaway"].get(k) for k in ("prompt_tokens", "draft", "kept", "dropped")}
    if q["kind"] == "two_part":
        row["two_part_full"] = all(n in called for n in expected) and hits == len(q["must_say"])
    if q["kind"] == "no_tool":
        row["handled"] = hits == len(q["must_say"]) and not violations and \
            (q["topic"] == "churn" or not UNRELATED_LIST_RE.search(text))
    return row


def summarize(rows: list[dict]) -> dict:
    def rate(xs: list[bool]) -> str:
        return f"{sum(xs) / len(xs):.3f} ({sum(xs)}/{len(xs)})" if xs else "—"

    two = [r["two_part_full"] for r in rows if "two_part_full" in r]
    handled = [r["handled"] for r in rows if "handled" in r]
    return {"questions": len(rows), "must-say recall": f"{statistics.mean(r['recall'] for r in rows):.3f}",
            "must-not violations": sum(len(r["violations"]) for r in rows),
            "false/off-topic statements shown": sum(len(r["false_shown"]) for r in rows),
            "statements dropped by the check": sum(len(r["dropped_statements"]) for r in rows),
            "two-part answered in full": rate(two), "no-tool-fits handled": rate(handled),
            "internal names / raw timestamps": sum(len(r["internal"]) for r in rows),
            "grounded": rate([r["grounded"] for r in rows]),
            "median words": f"{statistics.median(r['words'] for r in rows):.0f}",
            "model words kept": rate([r["model_words_kept"] for r in rows]),
            **_takeaway_summary(rows),
            "median s": f"{statistics.median(r['seconds'] or 0 for r in rows):.2f}"}


def _takeaway_summary(rows: list[dict]) -> dict:
    """Brief config: drafts written, fully kept, partly kept, dropped, and the prompt's size."""
    drafts = [r["takeaway"] for r in rows if r.get("takeaway") and r["takeaway"].get("draft")]
    if not drafts:
        return {}
    tokens = [d["prompt_tokens"] for d in drafts if isinstance(d.get("prompt_tokens"), int)]
    return {"takeaways written": len(drafts),
            "takeaways kept whole / in part / dropped": f"{sum(1 for d in drafts if d['kept'] and not d['dropped'])} / "
                                                        f"{sum(1 for d in drafts if d['kept'] and d['dropped'])} / "
                                                        f"{sum(1 for d in drafts if not d['kept'])}",
            "takeaway prompt tokens (median, max)": f"{statistics.median(tokens):.0f}, {max(tokens)}" if tokens else "—",
            "why sentences were dropped": ", ".join(f"{k} {v}" for k, v in _why_dropped(drafts).most_common()) or "—"}


def _why_dropped(drafts: list[dict]):
    """Dropped claims by kind: a false or off-topic statement, a number or id no result holds, the rest."""
    from collections import Counter

    kinds = Counter()
    for d in drafts:
        for why in d.get("dropped") or []:
            kinds[why.split(":")[0] if why.startswith(("false", "off topic", "unsupported", "internal field"))
                  else why if why in ("not written in Chinese", "cut off, repeating itself or echoing the prompt") else "number/id not in the results"] += 1
    return kinds


# ------------------------------------------------------------------------------------------- running
class Replay:
    """Tools that return recorded results: the real tools' names, signatures and docstrings.

    `Replay(recorded).tools` are handed to the agent; `start(question_id)` loads that question's
    results, which each call then takes in order per tool. A call nothing was recorded for gets a
    tool error, as a failed call would.
    """

    def __init__(self, recorded: dict[str, list]):
        import inspect
        import typing

        from tools.catalog import TOOLS

        self.recorded, self.queue = recorded, {}
        self.tools = []
        for fn in TOOLS:
            sig = inspect.signature(fn)
            hints = typing.get_type_hints(fn)

            def call(*args: Any, _name: str = fn.__name__, **kwargs: Any) -> dict:
                left = self.queue.get(_name) or []
                return left.pop(0) if left else {"error": f"{_name}: nothing recorded for this call",
                                                 "hint": "record the run again with --record"}

            call.__name__, call.__doc__ = fn.__name__, fn.__doc__
            call.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
            call.__annotations__ = {k: v for k, v in hints.items() if k != "ctx"}
            self.tools.append(call)

    def start(self, question_id: str) -> None:
        self.queue = {}
        for name, result in self.recorded.get(question_id, []):
            self.queue.setdefault(name, []).append(result)



def open_tools(dataset: str, home: Path) -> list:
    """The real tools over a home folder: the demo shop through the workspace, Amazon reviews directly."""
    os.environ["SHOPSIGHT_HOME"] = str(home)
    from assistant.config import Settings

    settings = Settings.from_env()
    from tools.data.store import EventStore

    store = EventStore(settings.db_path, read_only=True)  # several readers may share the home
    if dataset == "demo":
        from assistant.workspace import Workspace

        return Workspace.open(settings, store=store, chat_model_factory=lambda: None).tools
    import pandas as pd

    from tools.catalog import ToolContext, build_tools

    last = store.reviews_frame()["ts"].max()  # a reviews-only store: "now" is its last review
    return build_tools(ToolContext(store=store, cutoff=pd.Timestamp(last).to_pydatetime(),
                                   audit_path=Path(home) / "audit" / "eval.jsonl"))


def recheck_takeaways(rows: list[dict], recorded: dict[str, list], questions: list[dict]) -> list[dict]:
    """The recorded takeaway drafts checked again with today's checks and the rows scored again
    (no model run): how a change to the checks or the questions moves the table, on the same drafts."""
    from assistant.agent.grounding import Evidence, check, redact
    from assistant.agent.intent import answer_language
    from assistant.agent.takeaway import echoes, takeaway_facts, whole_sentences

    by_id = {q["id"]: q for q in questions}
    out = []
    for row in rows:
        q, old = by_id[row["id"]], row.get("takeaway") or {}
        results = [(n, r) for n, r in recorded.get(row["id"], [])]
        good = [(n, r) for n, r in results if "error" not in r]
        composed = row["text"]
        if old.get("kept") and composed.endswith(old["kept"]):
            composed = composed[:-len(old["kept"])].rstrip()
        draft, text, dropped = old.get("draft") or "", "", []
        if draft:
            evidence = Evidence.from_results([r for _, r in good] + [{"horizons_days": [7, 30]}, takeaway_facts(good)[1]],
                                             [q["question"]], tools=[n for n, _ in good], question=q["question"])
            text = whole_sentences(draft)
            if answer_language(q["question"]) == "zh" and not re.search(r"[\u4e00-\u9fff]", draft):
                text, dropped = "", ["not written in Chinese"]
            elif not text or echoes(text, q["question"]):
                text, dropped = "", ["cut off, repeating itself or echoing the prompt"]
            if text:
                report = check(text, evidence)
                dropped, text = report.ungrounded, text if report.ok else redact(text, report).strip()
        events = [{"type": "tool_call", "name": n} for n, _ in results] + \
                 [{"type": "tool_result", "name": n, "result": r} for n, r in results]
        answer = {"text": composed + ("\n\n" + text if text else ""), "seconds": row.get("seconds"),
                  "repair": "composed+takeaway" if text else row["repair"] if not draft else "composed",
                  "ungrounded": dropped}
        if draft:
            answer["takeaway"] = dict(old, kept=text, dropped=dropped)
        out.append(score_row(q, events, answer))
    return out


def run_config(config: str, questions: list[dict], tools_by_dataset: dict, out: Path, takeaway_model: Any,
               record: Path | None = None) -> list[dict]:
    from assistant.agent.loop import Agent

    path = out / f"rows_{config}.jsonl"
    done = {json.loads(line)["id"]: json.loads(line) for line in path.open()} if path.exists() else {}
    rows = []
    with path.open("a") as sink:
        for q in questions:
            if q["id"] in done:
                rows.append(done[q["id"]])
                continue
            tools = tools_by_dataset.get(q["dataset"])
            if isinstance(tools, Replay):
                tools.start(q["id"])
                tools = tools.tools
            chat = ReferenceChat(first_call=q["calls"][0] if q["calls"] else None,
                                 takeaway=takeaway_model if config == "brief" else None)
            agent = Agent(chat, tools, router=None, answer_mode="brief" if config == "brief" else "template")
            started = time.perf_counter()
            events = [e.to_dict() for e in agent.run(q["question"])]
            answer = events[-1]
            answer["seconds"] = round(time.perf_counter() - started, 3)
            row = score_row(q, events, answer)
            rows.append(row)
            if record is not None:  # the tool results, for tests/test_answer_eval.py
                results = [[e["name"], e["result"]] for e in events if e["type"] == "tool_result"]
                with record.open("a", encoding="utf-8") as rec:
                    rec.write(json.dumps({"id": q["id"], "question": q["question"], "results": results},
                                         ensure_ascii=False, default=str) + "\n")
            sink.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            sink.flush()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-home", type=Path, help="a home with `shopsight demo` done")
    parser.add_argument("--replay", type=Path, help="recorded tool results (--record) instead of homes")
    parser.add_argument("--amazon-home", type=Path, help="a home with the Amazon reviews imported (else skipped)")
    parser.add_argument("--configs", nargs="+", default=["template"], choices=["template", "brief"])
    parser.add_argument("--limit", type=int, default=0, help="first N questions only")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "answer_eval")
    parser.add_argument("--record", type=Path, help="append each question's tool results to this JSON-lines file")
    parser.add_argument("--recheck", action="store_true",
                        help="with --replay: check the drafts in OUT/rows_brief.jsonl again with today's checks, run no model")
    args = parser.parse_args(argv)
    questions = [json.loads(line) for line in QUESTIONS.open(encoding="utf-8") if line.strip()]
    if args.replay:
        recorded = {r["id"]: r["results"] for r in map(json.loads, args.replay.open(encoding="utf-8"))}
        questions = [q for q in questions if q["calls"]]
        replay = Replay(recorded)
        tools = {"demo": replay, "amazon": replay}
    elif args.demo_home is None:
        parser.error("give --demo-home (a home with `shopsight demo` done) or --replay FILE")
    else:
        if not args.amazon_home:
            questions = [q for q in questions if q["dataset"] != "amazon"]
        tools = {"demo": open_tools("demo", args.demo_home)}
        if args.amazon_home:
            tools["amazon"] = open_tools("amazon", args.amazon_home)
    questions = questions[:args.limit] if args.limit else questions
    takeaway = None
    if "brief" in args.configs and not args.recheck:
        from assistant.llm.loader import load_llm

        takeaway = load_llm()
    args.out.mkdir(parents=True, exist_ok=True)
    table = {}
    if args.recheck:
        if not args.replay:
            parser.error("--recheck needs --replay FILE (the tool results the drafts were written from)")
        rows = [json.loads(line) for line in (args.out / "rows_brief.jsonl").open(encoding="utf-8")]
        rows = recheck_takeaways(rows, recorded, questions)
        with (args.out / "rows_brief_rechecked.jsonl").open("w", encoding="utf-8") as sink:
            sink.writelines(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
        args.configs, table["brief (rechecked)"] = [], summarize(rows)
    for config in args.configs:
        rows = run_config(config, questions, tools, args.out, takeaway, args.record if config == "template" else None)
        table[config] = summarize(rows)
    keys = list(next(iter(table.values())))
    lines = ["| metric | " + " | ".join(table) + " |", "|---|" + "---|" * len(table)]
    lines += [f"| {k} | " + " | ".join(str(table[c][k]) for c in table) + " |" for k in keys]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
