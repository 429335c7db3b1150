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
   the conversation (copied from a docstring, say): their defaults apply. An id that names
   nothing of its argument's kind moves to the sibling slot it does name, or is dropped
   (the tools' `known_values` checks, read-only lookups in the shop's data);
4. when the arguments name a shop id this tool cannot take but another can ("user_id": "1334"
   written for at_risk_users), the model has told us which tool it meant: that one is decoded
   next. A tool whose required arguments the conversation does not supply is passed over.

The prompt's prefix (system prompt and tool schemas, the same for every question) is kept as
a KV cache between calls, so a question costs the prefill of its own tokens only.

Optionally an exemplar prior (assistant/agent/tool_prior.py) adds log P(tool | question) from
sentence embeddings of example questions to the name scores, a second opinion that corrects
the small model's standing preferences.

Only the user's question and the conversation decide the call; nothing is matched by keywords.
"""

from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage

from assistant.llm.kv_decode import CachedDecoder
from assistant.agent.tool_specs import ToolSpec, check_known, ground_arguments, required_grounded

ARGS_PREFIX = '", "arguments": {'
_OPEN_KEY_RE = re.compile(r',\s*"([^"]*)"?$')  # the key being written after a comma


@dataclass
class RouteTrace:
    """What the router decided and why (for the bench and debugging)."""

    scores: dict[str, float] = field(default_factory=dict)
    model_scores: dict[str, float] = field(default_factory=dict)  # before the exemplar prior
    raw_arguments: str = ""
    dropped: list[str] = field(default_factory=list)
    passed_over: list[str] = field(default_factory=list)  # better-scored tools whose required args were not given
    rerouted: list[str] = field(default_factory=list)  # "a->b": a's arguments named an id only b takes
    reused_tokens: int = 0
    prefill_s: float = 0.0
    score_s: float = 0.0
    args_s: float = 0.0
    seconds: float = 0.0


class LikelihoodRouter:
    """Routes the first call of a turn with a LocalToolChat's model and tokenizer.

    Args:
        chat_model: an object with `model`, `tokenizer` and `render_prompt(messages, tools, tool_choice)`
            (assistant.llm.local_chat.LocalToolChat).
        max_arg_tokens: the longest argument object decoded.
        decoder: a shared CachedDecoder (the agent's later steps reuse the same KV cache).
        prior: an object with `log_prior(question, names) -> {name: log-probability}`
            (assistant.agent.tool_prior.ExemplarPrior), added to the model's scores; None: model only.
        prior_weight: how much the prior counts against the model's log-likelihoods.
        max_candidates: how many tools, best first, may be decoded before giving up on
            finding one whose required arguments the conversation supplies.
    """

    def __init__(self, chat_model: Any, max_arg_tokens: int = 64, decoder: CachedDecoder | None = None,
                 prior: Any = None, prior_weight: float = 1.0, max_candidates: int = 3):
        self.chat = chat_model
        self.max_candidates = max_candidates
        self.tool_prior = prior
        self.prior_weight = prior_weight
        self.prior: dict[str, float] = {}  # content-free log-likelihoods subtracted when calibrated
        self.max_arg_tokens = max_arg_tokens
        self.decoder = decoder or CachedDecoder(chat_model.model, chat_model.tokenizer)
        self.last: RouteTrace | None = None

    def route(self, messages: list[BaseMessage], specs: dict[str, ToolSpec], question: str | None = None) -> dict | None:
        """The first call as `{"name", "args"}`, or None when there are no tools.

        `question` is the user's own words for the exemplar prior (the last human message when None).
        """
        import torch

        if not specs:
            return None
        started = time.perf_counter()
        trace = RouteTrace()
        asked = [m.content for m in messages if isinstance(m, HumanMessage) and isinstance(m.content, str)]
        if question is None:
            question = asked[-1] if asked else ""
        prior = self.tool_prior.log_prior(question, list(specs)) if self.tool_prior is not None else {}
        dec = self.decoder
        prompt, _, _ = self.chat.render_prompt(messages, [s.schema for s in specs.values()], "any")
        with dec.lock, torch.inference_mode():
            ids = dec.encode(prompt)
            cache, last_logits = dec.prefill(ids)
            trace.reused_tokens = dec.last_reused
            first_logp = torch.log_softmax(last_logits.float(), -1)
            trace.prefill_s = time.perf_counter() - started
            for name, score in self._score_names(list(specs), cache, first_logp).items():
                trace.model_scores[name] = score - self.prior.get(name, 0.0)
                trace.scores[name] = trace.model_scores[name] + self.prior_weight * prior.get(name, 0.0)
            ranked = sorted(trace.scores, key=trace.scores.get, reverse=True)
            trace.score_s = time.perf_counter() - started - trace.prefill_s
            texts = [m.content for m in messages if isinstance(m, (HumanMessage, ToolMessage)) and isinstance(m.content, str)]
            chosen = self._choose(cache, specs, ranked, texts, trace)
            best, trace.raw_arguments, args, trace.dropped = chosen
            trace.args_s = time.perf_counter() - started - trace.prefill_s - trace.score_s
        args, ungrounded = ground_arguments(specs[best], args, texts, user_texts=asked)
        trace.dropped += ungrounded
        if self.tool_prior is not None:
            args = _settle_choices(specs[best], args, texts, question, self.tool_prior, trace)
        trace.seconds = time.perf_counter() - started
        self.last = trace
        return {"name": best, "args": args}

    def _choose(self, cache: Any, specs: dict[str, ToolSpec], ranked: list[str], texts: list[str],
                trace: RouteTrace) -> tuple[str, str, dict, list[str]]:
        """(tool, raw argument text, checked arguments, dropped names) of the call to make.

        The best-scored tool whose required arguments come from the conversation: a call needing
        an id nobody gave cannot be meant, so the next candidate is tried. An id the model tried
        to pass that this tool cannot take but another tool can ("user_id": "1334" for
        at_risk_users) says which tool it meant: that one is tried next.
        """
        prompt_len = cache.get_seq_length()
        queue, tried = list(ranked[: self.max_candidates]), []
        while queue:
            name = queue.pop(0)
            if any(t[0] == name for t in tried):
                continue
            if cache.get_seq_length() > prompt_len:
                cache.crop(prompt_len - cache.get_seq_length())
            raw = self._decode_arguments(cache, name, list(specs[name].parameters))
            parsed = _parse_object("{" + raw)
            args, dropped = _fit(specs[name], parsed)
            args, unknown = check_known(specs[name], args)
            tried.append((name, raw, args, dropped + unknown))
            meant = _meant_elsewhere(specs, name, parsed, args, ranked, texts)
            if meant is not None and not any(t[0] == meant for t in tried):
                trace.rerouted.append(f"{name}->{meant}")
                queue.insert(0, meant)
            elif required_grounded(specs[name], args, texts):
                return tried[-1]
            trace.passed_over.append(name)
        trace.passed_over = []
        return tried[0]  # none fits: the first one's error goes back to the model

    def calibrate(self, messages: list[BaseMessage], specs: dict[str, ToolSpec]) -> dict[str, float]:
        """Learn each name's prior from a content-free question ("calibrate before use").

        `messages` should be the system prompt and a question with no content ("N/A"); later
        scores are log P(name | question) - log P(name | "N/A"), which removes the model's
        standing preference for some tool names.
        """
        import torch

        prompt, _, _ = self.chat.render_prompt(messages, [s.schema for s in specs.values()], "any")
        with self.decoder.lock, torch.inference_mode():
            cache, last_logits = self.decoder.prefill(self.decoder.encode(prompt))
            first_logp = torch.log_softmax(last_logits.float(), -1)
            self.prior = self._score_names(list(specs), cache, first_logp)
        return self.prior

    def _score_names(self, names: list[str], cache: Any, first_logp: Any) -> dict[str, float]:
        """log P(name + '"' | prompt) for every name in one batched forward pass (right-padded)."""
        import torch

        dec = self.decoder
        encoded = [dec.encode(name + '"') for name in names]
        scores = {name: float(first_logp[ids[0]]) for name, ids in zip(names, encoded)}
        width = max(len(ids) for ids in encoded) - 1
        if width == 0:
            return scores
        batch = copy.deepcopy(cache)
        batch.batch_repeat_interleave(len(names))
        pad = dec.tokenizer.pad_token_id if dec.tokenizer.pad_token_id is not None else 0
        rows = [ids[:-1] + [pad] * (width - len(ids) + 1) for ids in encoded]
        out = dec.model(input_ids=torch.tensor(rows, device=dec.device), cache=batch, use_cache=True)
        logp = torch.log_softmax(out.logits.float(), -1)  # (names, width, vocab); padding only follows
        for row, (name, ids) in enumerate(zip(names, encoded)):
            scores[name] += float(sum(logp[row, k, ids[k + 1]] for k in range(len(ids) - 1)))
        return scores

    def _decode_arguments(self, cache: Any, name: str, params: list[str]) -> str:
        """Greedy decoding of the argument object after the chosen name (text after the `{`)."""
        dec = self.decoder
        logits = dec.forward(dec.encode(name + ARGS_PREFIX), cache)[-1]
        text, depth = "", 1
        for _ in range(self.max_arg_tokens):
            token = int(logits.argmax())
            if token in dec.eos_ids:
                break
            piece = dec.tokenizer.decode([token])
            for i, char in enumerate(piece):
                depth += {"{": 1, "}": -1}.get(char, 0)
                if depth == 0:
                    return text + piece[:i]
            text += piece
            if "</tool_call>" in text or "\n\n" in text:
                break
            key = _OPEN_KEY_RE.search(text)
            if key and not any(p.startswith(key.group(1)) for p in params):
                return text[:key.start()]  # a key this tool does not have: the object is done
            logits = dec.forward([token], cache)[-1]
        return text


_BARE_KEY_RE = re.compile(r'([{,]\s*)([A-Za-z_]\w*)\s*:')


def _parse_object(text: str) -> dict:
    """The argument object, forgiving a missing close brace and unquoted keys; {} when it cannot be read."""
    quoted = _BARE_KEY_RE.sub(r'\1"\2":', text)  # `{horizon_days: 7` as a tuned model sometimes writes it
    for candidate in (text + "}", text, text.rstrip(", \n") + "}", quoted + "}", quoted.rstrip(", \n") + "}"):
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        return value if isinstance(value, dict) else {}
    return {}


def _meant_elsewhere(specs: dict[str, ToolSpec], name: str, parsed: dict, kept: dict,
                     ranked: list[str], texts: list[str]) -> str | None:
    """The best-ranked other tool that takes an id the model wrote but `name` could not keep.

    Only ids from the conversation that name something in the shop count (a tool's read-only
    `known_values` checks): a stray "user_id": "1334" for at_risk_users points to a tool taking
    that user, a "segment_by": "dog_household" to the tool whose `segment` accepts that segment.
    Counts and free text are no evidence.
    """
    id_keys = {key for spec in specs.values() for key in spec.known}
    conversation = "\n".join(texts).lower()
    stray = [str(value).strip() for key, value in parsed.items()
             if key not in kept and (isinstance(value, str) or (key in id_keys and isinstance(value, int)
                                                                 and not isinstance(value, bool)))]
    stray = [value for value in stray if value and value.lower() in conversation]
    for other in ranked:
        if other != name and any(is_known(value) for value in stray for is_known in specs[other].known.values()):
            return other
    return None


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


def _settle_choices(spec: ToolSpec, args: dict, texts: list[str], question: str, prior: Any,
                    trace: RouteTrace) -> dict:
    """Closed-choice (enum) arguments the user did not name are settled by the nearest example question.

    Greedy decoding picks an enum value by the model's taste ("rank_by": "value_at_risk" for a
    plain churn question); a value the conversation names ("by tenure", "value at risk") stays,
    any other comes from the example question nearest to this one, or the default when that
    example leaves the argument out.
    """
    haystack = "\n".join(texts).lower()
    args = dict(args)
    for key, prop in spec.parameters.items():
        if "enum" not in prop:
            continue
        value = args.get(key)
        if value is not None and (str(value).lower() in haystack or str(value).lower().replace("_", " ") in haystack):
            continue
        opinion, vote = prior.argument_vote(question, spec.name, key)
        if not opinion or vote == value:
            continue
        if vote is None or vote not in prop["enum"]:
            if key in args:
                args.pop(key)
                trace.dropped.append(key)
        else:
            args[key] = vote
    return args


def make_router(chat_model: Any, decoder: CachedDecoder | None = None, prior: Any = None) -> Any:
    """A likelihood router when the chat model exposes a local model and tokenizer, a server router
    when it scores tool names on a server (assistant/agent/server_router.py), else None."""
    if all(hasattr(chat_model, a) for a in ("model", "tokenizer", "render_prompt")):
        return LikelihoodRouter(chat_model, decoder=decoder, prior=prior)
    if all(hasattr(chat_model, a) for a in ("score_tool_names", "constrained_arguments")):
        from assistant.agent.server_router import ServerRouter

        return ServerRouter(chat_model, prior=prior)
    return None
