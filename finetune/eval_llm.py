"""The LLM's scores on held-out examples: churn P("yes"), tool-call exactness, answer grounding.

Each function takes a loaded causal LM and tokenizer and the examples of finetune.sft_data
(their `meta` carries the truth), so base and LoRA models go through identical code.
"""

from __future__ import annotations

import inspect
import json
from typing import Callable

import torch
from tqdm import tqdm

YES_WORDS, NO_WORDS = ("yes", "Yes", "YES"), ("no", "No", "NO")


def _first_token_ids(tokenizer, words: tuple[str, ...]) -> list[int]:
    ids = {tokenizer.encode(w, add_special_tokens=False)[0] for w in words}
    return sorted(ids)


@torch.no_grad()
def churn_probabilities(model, tokenizer, examples: list[dict], batch_size: int = 8,
                        progress: bool = True) -> list[float]:
    """P(churn) = P(yes) / (P(yes) + P(no)) for the first answer token of each churn example.

    The prompt is the example without its answer, rendered with the generation prompt, so the
    next token is exactly where the fine-tuning target put "yes" or "no". Spelling variants
    (Yes, YES) count for their side: the base model is not penalized for capitalizing.
    """
    yes, no = _first_token_ids(tokenizer, YES_WORDS), _first_token_ids(tokenizer, NO_WORDS)
    prompts = [tokenizer.apply_chat_template(e["messages"][:-1], tools=e.get("tools") or None, tokenize=False,
                                             add_generation_prompt=True) for e in examples]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # the last position is then the next-token position of every row
    out: list[float] = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="churn P(yes)", disable=not progress):
            enc = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            logits = model(**enc).logits[:, -1, :].float()
            probs = torch.softmax(logits, dim=-1)
            p_yes, p_no = probs[:, yes].sum(-1), probs[:, no].sum(-1)
            out += (p_yes / (p_yes + p_no).clamp(min=1e-12)).tolist()
    finally:
        tokenizer.padding_side = side
    return out


def normalize_arguments(name: str, arguments: dict, defaults: dict[str, dict]) -> dict:
    """Arguments as the tool would see them: integer strings as ints, defaults and None dropped.

    Two calls that run the same way compare equal ("7" and 7; an omitted top_k and top_k=10).
    """
    out = {}
    for key, value in (arguments or {}).items():
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if value is None or (key in defaults.get(name, {}) and defaults[name][key] == value):
            continue
        out[key] = value
    return out


def tool_defaults(tools: list[Callable]) -> dict[str, dict]:
    """{tool name: {argument: default}} from the tool functions' signatures."""
    return {fn.__name__: {k: p.default for k, p in inspect.signature(fn).parameters.items()
                          if p.default is not inspect.Parameter.empty} for fn in tools}


@torch.no_grad()
def generate(model, tokenizer, messages: list[dict], tools: list[dict] | None, max_new_tokens: int) -> str:
    """Greedy continuation of a chat (special tokens dropped)."""
    enc = tokenizer.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True).to(model.device)
    ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def tool_call_accuracy(model, tokenizer, examples: list[dict], defaults: dict[str, dict],
                       max_new_tokens: int = 64, progress: bool = True) -> tuple[float, list[dict]]:
    """Share of questions whose first generated call has exactly the expected name and arguments.

    Returns:
        (accuracy, one record per question: question, expected, got, raw output, correct).
    """
    from assistant.llm.tool_calls import parse_tool_calls

    records = []
    for e in tqdm(examples, desc="tool calls", disable=not progress):
        question = [m for m in e["messages"] if m["role"] in ("system", "user")][:2]
        names = [t["function"]["name"] for t in e["tools"]]
        text = generate(model, tokenizer, question, e["tools"], max_new_tokens)
        # bare_json: the tuned 0.5B writes `<|im_start|>` where it means `<tool_call>` (docs/finetune.md)
        parsed = parse_tool_calls(text, allowed=names, bare_json=True)
        want = e["meta"]["expected_calls"][0]
        got = parsed.tool_calls[0] if parsed.tool_calls else None
        ok = got is not None and got["name"] == want["name"] and \
            normalize_arguments(got["name"], got["args"], defaults) == \
            normalize_arguments(want["name"], want["arguments"], defaults)
        records.append({"question": question[-1]["content"], "expected": want,
                        "got": None if got is None else {"name": got["name"], "arguments": got["args"]},
                        "output": text, "correct": bool(ok)})
    accuracy = sum(r["correct"] for r in records) / max(len(records), 1)
    return accuracy, records


def grounding_share(model, tokenizer, examples: list[dict], max_new_tokens: int = 96,
                    progress: bool = True) -> tuple[float | None, list[dict]]:
    """Share of the numbers and ids in generated answers that appear in the tool results.

    Uses examples that carry a tool result: the model sees question, call and result (the true
    ones) and writes the answer; assistant.agent.grounding decides which claims are backed.
    Returns (None, []) when no example has a result.
    """
    from assistant.agent.grounding import Evidence, check

    records, grounded, claims = [], 0, 0
    usable = [e for e in examples if any(m["role"] == "tool" for m in e["messages"])]
    for e in tqdm(usable, desc="grounding", disable=not progress):
        cut = max(i for i, m in enumerate(e["messages"]) if m["role"] == "tool") + 1
        text = generate(model, tokenizer, e["messages"][:cut], e["tools"], max_new_tokens)
        results = [json.loads(m["content"]) for m in e["messages"][:cut] if m["role"] == "tool"]
        question = [m["content"] for m in e["messages"] if m["role"] == "user"]
        report = check(text, Evidence.from_results(results, extra_texts=question))
        n_ok = sum(c.grounded for c in report.claims)
        grounded, claims = grounded + n_ok, claims + len(report.claims)
        records.append({"answer": text, "claims": len(report.claims), "grounded": n_ok,
                        "ungrounded": report.ungrounded})
    return (grounded / claims if claims else None), records


def routed_tool_call_accuracy(model, tokenizer, examples: list[dict], defaults: dict[str, dict],
                              tools: list[Callable], prior=None, progress: bool = True) -> tuple[float, list[dict]]:
    """Like `tool_call_accuracy`, but the call comes from the agent's likelihood router
    (assistant/agent/router.py), optionally with the exemplar prior: what the agent really runs.

    Args:
        tools: the tool functions whose names the examples' schemas use (for argument checking);
            over a shop (finetune.sft_sources.shop_tools) they bring the agent's id checks.
        prior: an assistant.agent.tool_prior.ExemplarPrior, or None for the model's likelihoods alone.
    """
    from langchain_core.messages import HumanMessage, SystemMessage

    from assistant.llm.local_chat import LocalToolChat
    from assistant.agent.router import LikelihoodRouter
    from assistant.agent.tool_specs import ToolSpec

    functions = {fn.__name__: fn for fn in tools}
    router = LikelihoodRouter(LocalToolChat(model=model, tokenizer=tokenizer), prior=prior)
    records = []
    for e in tqdm(examples, desc="routed calls" + (" + prior" if prior else ""), disable=not progress):
        # The example's own schemas (the style it was trained with) over the real functions,
        # with their read-only id checks when the functions run over a shop.
        specs = {t["function"]["name"]: ToolSpec.of(functions[t["function"]["name"]], t) for t in e["tools"]}
        turns = [m for m in e["messages"] if m["role"] in ("system", "user")][:2]
        question = turns[-1]["content"]
        messages = [SystemMessage(m["content"]) if m["role"] == "system" else HumanMessage(m["content"]) for m in turns]
        got = router.route(messages, specs, question=question)
        want = e["meta"]["expected_calls"][0]
        ok = got is not None and got["name"] == want["name"] and \
            normalize_arguments(got["name"], got["args"], defaults) == \
            normalize_arguments(want["name"], want["arguments"], defaults)
        records.append({"question": question, "expected": want,
                        "got": None if got is None else {"name": got["name"], "arguments": got["args"]},
                        "correct": bool(ok)})
    return sum(r["correct"] for r in records) / max(len(records), 1), records
