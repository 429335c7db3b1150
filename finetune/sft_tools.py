"""Tool-use chat examples: an operations or support question -> the right tool call -> a grounded answer.

Questions come from `prompts/tool_questions.yaml` (phrasings split into train and held-out),
their slots are filled with ids of the shop, and the expected call is derived from the same
slots, so a question and its call can never disagree. Tool schemas come from the tool
functions themselves (`transformers.utils.get_json_schema`, what `apply_chat_template(tools=)`
uses), so the fine-tuned model sees exactly what the agent will show it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

QUESTIONS_FILE = Path(__file__).resolve().parents[1] / "prompts" / "tool_questions.yaml"
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass
class ShopValues:
    """Ids the question slots are filled with (train and held-out use disjoint users)."""

    users: list[str]
    items: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    # The {k} a question states (top_k, last_n, k): a small one keeps the result, hence the example, short.
    # An at-risk row of a real shop is ~110 tokens (stage, reasons, dates), so k=5 alone was 550.
    counts: tuple[int, ...] = (2, 3)


def _first_sentence(text: str) -> str:
    text = " ".join((text or "").split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return match.group(1) if match else text


def tool_schema(fn: Callable, style: str = "compact") -> dict:
    """The JSON schema of a tool function; `compact` keeps the first sentence of its description.

    Compact schemas keep names, types, enums and required fields and drop the parameter
    descriptions, cutting the prompt of seven tools to about a third: what makes CPU
    fine-tuning affordable. Train and evaluate with the same style, and serve the adapter with it.
    """
    from transformers.utils import get_json_schema

    schema = get_json_schema(fn)
    if style == "full":
        return schema
    if style != "compact":
        raise ValueError(f"schema style {style!r}: choose full or compact")
    fn_part = schema["function"]
    fn_part["description"] = _first_sentence(fn_part.get("description", ""))
    fn_part.pop("return", None)
    for prop in fn_part.get("parameters", {}).get("properties", {}).values():
        prop.pop("description", None)  # names, types and enums carry the meaning
        prop.pop("nullable", None)
    return schema


def load_bank(path: str | Path = QUESTIONS_FILE) -> dict:
    """The question bank (see the YAML file's header)."""
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _fill(entry: dict, phrasing: str, bank: dict, values: ShopValues, rng: random.Random) -> dict | None:
    """One question with its expected call, or None when the shop lacks a needed value.

    A shop without categories (CDNOW, the Instacart sample) gets no question that asks about
    categories, and one without segment labels no grouping by them: their right answer is a
    tool saying the data has none, so such a call would teach the model to ask for what is not there.
    """
    if not values.categories and "categor" in phrasing.lower():
        return None
    needed = set(_SLOT.findall(phrasing)) | {s for v in entry["args"].values() if isinstance(v, str)
                                              for s in _SLOT.findall(v)}
    slot_text, slot_value = {}, {}
    for slot in sorted(needed):
        if slot == "h":
            days = rng.choice(sorted(bank["horizons"]))
            slot_text[slot], slot_value[slot] = rng.choice(bank["horizons"][days]), int(days)
        elif slot == "since":
            key = rng.choice(sorted(bank["since"]))
            slot_text[slot], slot_value[slot] = rng.choice(bank["since"][key]), key
        elif slot == "segby":
            keys = [k for k in sorted(bank["segment_by"]) if not (k == "segment" and not values.segments)
                    and not ("category" in k and not values.categories)]
            if not keys:
                return None
            key = rng.choice(keys)
            slot_text[slot], slot_value[slot] = rng.choice(bank["segment_by"][key]), key
        elif slot == "k":
            count = rng.choice(values.counts)
            slot_text[slot], slot_value[slot] = str(count), count
        else:
            pool = {"user": values.users, "item": values.items, "category": values.categories,
                    "segment": values.segments, "text": bank.get("texts", [])}[slot]
            if not pool:
                return None
            choice = rng.choice(pool)
            slot_text[slot], slot_value[slot] = str(choice), choice
    arguments = {}
    for name, spec in entry["args"].items():
        slots = _SLOT.fullmatch(spec) if isinstance(spec, str) else None
        arguments[name] = slot_value[slots.group(1)] if slots else spec
    question = phrasing.format(**slot_text)
    return {"question": question[0].upper() + question[1:], "calls": [{"name": entry["tool"], "arguments": arguments}]}


def sample_questions(bank: dict, split: str, values: ShopValues, n: int, seed: int,
                     tool_params: dict[str, set[str]] | None = None) -> list[dict]:
    """`n` questions of `split` ("train" or "heldout"), cycling through entries for balance.

    Args:
        bank: the question bank.
        split: which phrasings to use.
        values: ids to fill the slots with.
        n: number of questions.
        seed: random seed (same seed -> same questions).
        tool_params: {tool name: its parameter names}: only entries whose tool is available and
            accepts every argument the entry sets (None: all entries).
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split {split!r}: choose train or heldout")
    rng = random.Random(seed)
    entries = [e for e in bank["entries"] if tool_params is None
               or (e["tool"] in tool_params and set(e["args"]) <= tool_params[e["tool"]])]
    pairs = [(e, p) for e in entries for p in e.get(split, [])]
    out, attempts = [], 0
    while len(out) < n and pairs and attempts < 20 * n:
        entry, phrasing = pairs[attempts % len(pairs)] if attempts < len(pairs) else rng.choice(pairs)
        attempts += 1
        item = _fill(entry, phrasing, bank, values, rng)
        if item is not None:
            out.append(item)
    return out


def _call_message(calls: list[dict]) -> dict:
    return {"role": "assistant", "tool_calls": [{"type": "function", "function": dict(c)} for c in calls]}


def result_turns(question: dict, run_tool: Callable[[str, dict], dict],
                 render_answer: Callable[[str, dict, dict], str]) -> list[dict] | None:
    """The tool message and the grounded answer of a question's call, or None when the tool cannot answer here."""
    from assistant.agent.untrusted import result_for_prompt, sanitize_result

    call = question["calls"][0]
    result = run_tool(call["name"], dict(call["arguments"]))
    if isinstance(result, dict) and "error" in result:  # a tool that cannot answer here: train the call only
        return None
    # The result as the agent shows it to the model (assistant/agent/loop.py): review text masked and
    # quoted in « », compact separators. Plain json.dumps trained on another form than the one served,
    # and spent 13 % more tokens on a result (1,504 -> 1,314 for a CDNOW at-risk list).
    clean = sanitize_result(result)[0]
    return [{"role": "tool", "content": result_for_prompt(clean)},
            {"role": "assistant", "content": render_answer(call["name"], call["arguments"], clean)}]


def assemble(question: dict, schemas: list[dict], system: str, turns: list[dict] | None, meta: dict) -> dict:
    """System, question, the call, then the result and answer `turns` when given (else it stops at the call)."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question["question"]},
                _call_message(question["calls"]), *(turns or [])]
    return {"messages": messages, "tools": schemas,
            "meta": {"kind": "tool", "expected_calls": question["calls"], **meta}}


def fit_tool_example(question: dict, schemas: list[dict], system: str, turns: list[dict] | None, meta: dict,
                     distractors: int, rng: random.Random, count_tokens: Callable[[dict], int] | None,
                     max_tokens: int) -> dict | None:
    """The tool example that fits `max_tokens`: whole when it can, else without its result; None when nothing fits.

    A LoRA recipe drops an example longer than its max_seq_len (finetune/sft_tokens.py), and on a real
    shop every tool example was longer than the CPU recipes' 768 (system prompt and three schemas take
    ~700 tokens, a CDNOW at-risk result ~1,100-1,600), so they trained on no tool at all. Tried in order:
    the result with `distractors` other tools shown, then with fewer (at least one, so the example still
    teaches which tool to pick); then the call alone (the question -> the right call, what tool-call
    accuracy measures) with `distractors`, then fewer. The result is never cut (a half JSON result is a
    form the agent never serves) and the answer stays the one rendered from the whole result.
    `meta["fit"]` says which: "result", "call only" (its result did not fit) or "no result" (the tool cannot
    answer here, e.g. no predictor: the call is all there is); `meta["tokens"]` the length.
    """
    needed = question["calls"][0]["name"]
    others = [s["function"]["name"] for s in schemas if s["function"]["name"] != needed]
    drawn = rng.sample(others, min(distractors, len(others)))
    shrink = list(range(len(drawn), -1, -1))
    tries = ([(n, True) for n in shrink[:-1] or shrink] if turns else []) + [(n, False) for n in shrink]
    for n_others, with_result in tries:
        keep = {needed, *drawn[:n_others]}
        example = assemble(question, [s for s in schemas if s["function"]["name"] in keep], system,
                           turns if with_result else None,
                           {**meta, "fit": "result" if with_result else "call only" if turns else "no result"})
        if count_tokens is None:
            return example
        tokens = count_tokens(example)
        if tokens <= max_tokens:
            example["meta"]["tokens"] = tokens
            return example
    return None
