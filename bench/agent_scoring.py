"""Scoring of the agent evaluation (bench/agent_eval.py): question files, reference results, metrics.

A question (one JSON line of data/questions/demo_questions.jsonl):
    {"id", "category", "question", "session"?,
     "expected": [{"name": tool, "arguments": {arg: value}}],   # only the arguments the question implies
     "facts": ["users[0].user_id", "sentiment.negative", ...]}   # paths into the expected tool's result
An argument value "$prev:users[1].user_id" refers to the previous turn of the same session (its
reference result); "*" accepts any non-empty value. Facts are resolved at evaluation time by
running the expected call directly, so they follow the data and the predictor actually installed.
"""

from __future__ import annotations

import inspect
import json
import re
import statistics
from pathlib import Path
from typing import Any, Callable

from assistant.agent import grounding

_PATH_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
REQUIRED_FIELDS = {"id": str, "category": str, "question": str, "expected": list, "facts": list}


class QuestionFileError(ValueError):
    """A question file line that cannot be used; the message names file, line, field and fix."""


def load_jsonl(path: Path, required: dict[str, type]) -> list[dict]:
    """Rows of a JSON-lines file, each checked for the required fields and types."""
    rows = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(f"{path}:{line_no}: not valid JSON ({exc.msg}); fix the line") from None
        for field, kind in required.items():
            if not isinstance(row.get(field), kind):
                raise QuestionFileError(
                    f"{path}:{line_no}: field '{field}' must be a {kind.__name__}, got {row.get(field)!r}")
        rows.append(row)
    ids = [r["id"] for r in rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise QuestionFileError(f"{path}: duplicate ids {dupes}; give every line its own id")
    return rows


def load_questions(path: Path) -> list[dict]:
    """The evaluation questions, validated (each expected call names a tool and an arguments object)."""
    rows = load_jsonl(path, REQUIRED_FIELDS)
    for row in rows:
        for call in row["expected"]:
            if not isinstance(call.get("name"), str) or not isinstance(call.get("arguments"), dict):
                raise QuestionFileError(f"{path}: question {row['id']}: each expected call needs "
                                        '"name" (a tool) and "arguments" (an object)')
    return rows


def resolve_path(value: Any, path: str) -> Any:
    """`users[0].user_id` inside a result; KeyError/IndexError when absent."""
    for key, index in _PATH_RE.findall(path):
        value = value[int(index)] if index else value[key]
    return value


def resolve_arguments(arguments: dict, previous: Any) -> dict:
    """Expected arguments with `$prev:` references looked up in the previous turn's reference result."""
    out = {}
    for key, value in arguments.items():
        if isinstance(value, str) and value.startswith("$prev:"):
            if previous is None:
                raise QuestionFileError(f"argument {key}={value!r} refers to a previous turn, but there is none")
            value = str(resolve_path(previous, value[len("$prev:"):]))
        out[key] = value
    return out


def with_defaults(fn: Callable, arguments: dict) -> dict:
    """The arguments a call really ran with: the given ones over the function's defaults."""
    params = inspect.signature(fn).parameters
    full = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    full.update(arguments)
    return full


def arguments_match(expected: dict, actual: dict) -> bool:
    """Every expected argument equals the actual one ("*" = any non-empty; ids compared as strings)."""
    for key, want in expected.items():
        got = actual.get(key)
        if want == "*":
            if got in (None, ""):
                return False
        elif str(got).strip().lower() != str(want).strip().lower():
            return False
    return True


def exact_arguments_match(fn: Callable, expected: dict, actual: dict) -> bool:
    """The call runs exactly as expected: every parameter, defaults filled in on both sides, is equal.

    Stricter than `arguments_match`, which ignores arguments the question does not mention
    (a `rank_by="value_at_risk"` nobody asked for passes there, not here).
    """
    want, got = with_defaults(fn, expected), with_defaults(fn, actual)
    if set(got) - set(inspect.signature(fn).parameters):
        return False  # an argument the tool does not have
    return all(arguments_match({key: want.get(key)}, got) for key in set(want) | set(got))


def fact_found(value: Any, answer: str) -> bool:
    """Whether the answer states the fact (numbers with the grounding check's rounding rules)."""
    if value is None:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        evidence = grounding.Evidence.from_results([value])
        return any(c.grounded for c in grounding.check(answer, evidence).claims)
    text = str(value).strip().lower()
    lowered = answer.lower()
    return text in lowered or text.replace("_", " ") in lowered


def score_turn(question: dict, events: list[dict], reference: list[Any], tools: dict[str, Callable],
               expected_args: list[dict], earlier_results: list[Any] = ()) -> dict:
    """One row of the evaluation table for one question.

    Args:
        question: the question line.
        events: the agent's events as dicts (`AgentEvent.to_dict()`), ending with the answer.
        reference: results of the expected calls, run directly.
        tools: name -> tool function (for default arguments).
        expected_args: the expected calls' arguments with `$prev:` resolved.
        earlier_results: tool results of earlier turns of the same conversation.
    """
    calls = [e for e in events if e["type"] == "tool_call"]
    answer = next((e for e in reversed(events) if e["type"] == "answer"), None)
    first = calls[0] if calls else None
    want = question["expected"][0]["name"]
    tool_ok = bool(first and first["name"] == want)
    args_ok = bool(tool_ok and first["name"] in tools and
                   arguments_match(expected_args[0], with_defaults(tools[first["name"]], first["arguments"])))
    exact_ok = bool(args_ok and exact_arguments_match(tools[first["name"]], expected_args[0], first["arguments"]))
    facts = []
    for path in question["facts"]:
        try:
            value = resolve_path(reference[0], path)
        except (KeyError, IndexError, TypeError):
            value = None  # the reference has no such fact (e.g. an error result): counted as missed
        facts.append({"path": path, "value": value, "found": fact_found(value, answer["text"] if answer else "")})
    return {
        "id": question["id"], "category": question["category"], "tool_ok": tool_ok, "args_ok": args_ok,
        "exact_args_ok": exact_ok,
        # The likelihood router's choice before the exemplar prior (None when not routed).
        "model_only_tool_ok": (first["model_choice"] == want) if first and first.get("model_choice") else None,
        "tools": [c["name"] for c in calls], "first_arguments": first["arguments"] if first else None,
        "facts": facts, "fact_recall": sum(f["found"] for f in facts) / len(facts) if facts else 1.0,
        # Re-checked here, independently of the agent: the final text against every tool result.
        "grounded": bool(answer) and final_is_grounded(answer["text"], question["question"],
                                                       [*earlier_results, *_results(events)],
                                                       [(e["name"], e["result"]) for e in events
                                                        if e["type"] == "tool_result"]),
        "repair": answer.get("repair") if answer else None,
        "seconds": answer.get("seconds") if answer else None,
        "answer": answer["text"] if answer else None,
    }


def _results(events: list[dict]) -> list[Any]:
    return [e["result"] for e in events if e["type"] == "tool_result"]


def final_is_grounded(text: str, question: str, results: list[Any], turn: list[tuple[str, Any]] = ()) -> bool:
    """Every number and id of the final answer is in a tool result (or the user's question), or is a count
    the takeaway's facts make of this turn's (tool name, result) pairs: "10 buy" of a history's 10 recent
    events is no field of the result, so it is derived again here from the results with the agent's own
    rule (assistant/agent/takeaway.py `takeaway_facts`), not taken from what the agent reported."""
    from assistant.agent.takeaway import takeaway_facts

    counts = [takeaway_facts(list(turn))[1]] if turn else []
    return grounding.check(text, grounding.Evidence.from_results([*results, *counts], [question])).ok


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def summarize(rows: list[dict]) -> dict:
    """Accuracy, recall, grounding and latency over rows (one config)."""
    n = len(rows)
    seconds = [r["seconds"] for r in rows if r.get("seconds") is not None]
    # The model's own words reached the user: its answer as is, after one regeneration, or its takeaway.
    kept = [r for r in rows if r.get("repair") in ("none", "regenerated", "composed+takeaway")]
    model_only = [r["model_only_tool_ok"] for r in rows if r.get("model_only_tool_ok") is not None]
    return {
        "n": n,
        "tool_choice_acc": sum(r["tool_ok"] for r in rows) / n if n else None,
        "argument_acc": sum(r["args_ok"] for r in rows) / n if n else None,
        "exact_call_acc": sum(r.get("exact_args_ok", False) for r in rows) / n if n else None,
        "model_only_tool_acc": statistics.fmean(model_only) if model_only else None,
        "fact_recall": statistics.fmean(r["fact_recall"] for r in rows) if n else None,
        "grounding_rate": sum(r["grounded"] for r in rows) / n if n else None,
        "model_prose_kept": len(kept) / n if n else None,
        "median_s": statistics.median(seconds) if seconds else None,
        "p90_s": percentile(seconds, 0.9),
    }


def markdown_table(summaries: dict[str, dict]) -> str:
    """Configs side by side as a markdown table."""
    cols = ["n", "tool_choice_acc", "model_only_tool_acc", "argument_acc", "exact_call_acc", "fact_recall", "grounding_rate", "model_prose_kept",
            "median_s", "p90_s"]
    lines = ["| config | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, s in summaries.items():
        cells = []
        for c in cols:
            v = s.get(c)
            cells.append("-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
