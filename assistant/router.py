"""Choose the first tool call by likelihood instead of free text (reliable tool choice at 0.5B).

Free generation lets a small model ramble, fence its JSON, misspell a tool or skip the call.
The router asks a narrower question of the same model and prompt:

1. render the prompt exactly as LocalToolChat does, ending with the forced call prefix
   `<tool_call>\n{"name": "` (so only a call can follow);
2. score every tool name by the model's log-likelihood of `<name>"` after that prefix, with
   one prefill and the KV cache cropped back after each candidate;
3. continue the best name with `", "arguments": {` and decode greedily until the braces
   balance (at most `max_arg_tokens`), then parse and check the arguments against the schema,
   dropping optional ones that do not fit, and optional ones whose values appear nowhere in
   the conversation (copied from a docstring, say): their defaults apply.

The prompt's prefix (system prompt and tool schemas, the same for every question) is kept as
a KV cache between calls, so a question costs the prefill of its own tokens only.

Only the user's question and the conversation decide the call; nothing is matched by keywords.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_core.messages import HumanMessage, ToolMessage

from assistant.tool_specs import ToolSpec, ground_arguments

ARGS_PREFIX = '", "arguments": {'
MIN_REUSE_TOKENS = 16  # below this a shared prefix is not worth copying a cache for


@dataclass
class RouteTrace:
    """What the router decided and why (for the bench and debugging)."""

    scores: dict[str, float] = field(default_factory=dict)
    raw_arguments: str = ""
    dropped: list[str] = field(default_factory=list)
    reused_tokens: int = 0
    seconds: float = 0.0


class LikelihoodRouter:
    """Routes the first call of a turn with a LocalToolChat's model and tokenizer.

    Args:
        chat_model: an object with `model`, `tokenizer` and `render_prompt(messages, tools, tool_choice)`
            (assistant.chat.LocalToolChat).
        max_arg_tokens: the longest argument object decoded.
    """

    def __init__(self, chat_model: Any, max_arg_tokens: int = 64):
        self.chat = chat_model
        self.max_arg_tokens = max_arg_tokens
        self.last: RouteTrace | None = None
        self._prefix: tuple[list[int], Any] | None = None  # (token ids, their KV cache) of the last prompt

    def route(self, messages: list[BaseMessage], specs: dict[str, ToolSpec]) -> dict | None:
        """The first call as `{"name", "args"}`, or None when there are no tools."""
        import torch

        if not specs:
            return None
        started = time.perf_counter()
        trace = RouteTrace()
        tokenizer, model = self.chat.tokenizer, self.chat.model
        prompt, _, _ = self.chat.render_prompt(messages, [s.schema for s in specs.values()], "any")
        device = model.device
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        cache, start = self._cached_prefix(ids)
        trace.reused_tokens = start
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids[start:]], device=device), cache=cache, use_cache=True)
            cache, first_logp = _cache_of(out), torch.log_softmax(out.logits[0, -1].float(), -1)
            prompt_len = len(ids)
            self._prefix = (list(ids), copy.deepcopy(cache))
            for name in specs:
                ids = tokenizer(name + '"', add_special_tokens=False)["input_ids"]
                score = float(first_logp[ids[0]])
                if len(ids) > 1:
                    step = model(input_ids=torch.tensor([ids[:-1]], device=device), cache=cache, use_cache=True)
                    logp = torch.log_softmax(step.logits[0].float(), -1)
                    score += float(sum(logp[k, ids[k + 1]] for k in range(len(ids) - 1)))
                    cache.crop(prompt_len - cache.get_seq_length())  # negative: tokens to drop
                trace.scores[name] = score
            best = max(trace.scores, key=trace.scores.get)
            trace.raw_arguments = self._decode_arguments(model, tokenizer, cache, best, device)
        args = _parse_object("{" + trace.raw_arguments)
        args, trace.dropped = _fit(specs[best], args)
        texts = [m.content for m in messages if isinstance(m, (HumanMessage, ToolMessage)) and isinstance(m.content, str)]
        args, ungrounded = ground_arguments(specs[best], args, texts)
        trace.dropped += ungrounded
        trace.seconds = time.perf_counter() - started
        self.last = trace
        return {"name": best, "args": args}

    def _cached_prefix(self, ids: list[int]) -> tuple[Any, int]:
        """A copy of the stored KV cache cut to the longest prefix shared with `ids` (None, 0 if none)."""
        if self._prefix is None:
            return None, 0
        stored_ids, stored_cache = self._prefix
        shared = 0
        for a, b in zip(stored_ids, ids):
            if a != b:
                break
            shared += 1
        shared = min(shared, len(ids) - 1)  # at least one new token, for the next-token scores
        if shared < MIN_REUSE_TOKENS:
            return None, 0
        cache = copy.deepcopy(stored_cache)
        if cache.get_seq_length() > shared:
            cache.crop(shared - cache.get_seq_length())
        return cache, shared

    def _decode_arguments(self, model, tokenizer, cache, name: str, device) -> str:
        """Greedy decoding of the argument object after the chosen name (text after the `{`)."""
        import torch

        ids = tokenizer(name + ARGS_PREFIX, add_special_tokens=False)["input_ids"]
        step = model(input_ids=torch.tensor([ids], device=device), cache=cache, use_cache=True)
        text, depth = "", 1
        eos = {tokenizer.eos_token_id, getattr(tokenizer, "pad_token_id", None)} - {None}
        for _ in range(self.max_arg_tokens):
            token = int(step.logits[0, -1].argmax())
            if token in eos:
                break
            piece = tokenizer.decode([token])
            for i, char in enumerate(piece):
                depth += {"{": 1, "}": -1}.get(char, 0)
                if depth == 0:
                    return text + piece[:i]
            text += piece
            if "</tool_call>" in text or "\n\n" in text:
                break
            step = model(input_ids=torch.tensor([[token]], device=device), cache=cache, use_cache=True)
        return text


def _cache_of(output: Any) -> Any:
    # transformers 5.x names the returned cache `past_key_values` on outputs but `cache` as an argument.
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _parse_object(text: str) -> dict:
    """The argument object, forgiving a missing close brace; {} when it cannot be read."""
    for candidate in (text + "}", text, text.rstrip(", \n") + "}"):
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        return value if isinstance(value, dict) else {}
    return {}


def _fit(spec: ToolSpec, args: dict) -> tuple[dict, list[str]]:
    """Arguments that pass the schema: optional ones that do not are dropped (defaults apply)."""
    dropped: list[str] = []
    args = dict(args)
    for _ in range(len(args) + 1):
        checked, problem = spec.validate(args)
        if problem is None:
            return checked, dropped
        bad = [k for k in args if k not in spec.parameters or (k not in spec.required and spec.validate({
            **{r: args[r] for r in spec.required if r in args}, k: args[k]})[1])]
        if not bad:
            return args, dropped  # a required argument is wrong: the agent reports it to the model
        for key in bad:
            dropped.append(key)
            args.pop(key)
    return args, dropped


def make_router(chat_model: Any) -> LikelihoodRouter | None:
    """A likelihood router when the chat model exposes a local model and tokenizer, else None."""
    if all(hasattr(chat_model, a) for a in ("model", "tokenizer", "render_prompt")):
        return LikelihoodRouter(chat_model)
    return None
