"""Choose the first tool call by likelihood instead of free text (reliable tool choice at 0.5B).

Free generation lets a small model ramble, fence its JSON, misspell a tool or skip the call.
The router asks a narrower question of the same model and prompt:

1. render the prompt exactly as the chat model does, ending with the forced call prefix
   `<tool_call>\n{"name": "` (so only a call can follow);
2. ask the chat model for every tool name's log-likelihood of `<name>"` after that prefix
   (`score_names`: one prefill, the KV cache rewound after each candidate);
3. ask it for the best name's argument object (`decode_arguments`: llama.cpp decodes under the
   tool's JSON-schema grammar, so the object always parses and names only real parameters, plus
   the other tools' id keys, see `decoding_schema`), then check the arguments against the schema,
   dropping optional ones that do not fit, and optional ones whose values appear nowhere in
   the conversation (copied from a docstring, say): their defaults apply. An id that names
   nothing of its argument's kind moves to the sibling slot it does name, or is dropped
   (the tools' `known_values` checks, read-only lookups in the shop's data);
4. when the arguments name a shop id this tool cannot take but another can ("user_id": "1334"
   written for at_risk_users), the model has told us which tool it meant: that one is decoded
   next. A tool whose required arguments the conversation does not supply is passed over.

The router never decodes by itself: the chat model does (assistant/llm/decoding.py), keeping the
prompt prefix (system prompt and tool schemas, the same for every question) as a KV cache
between calls, so a question costs the prefill of its own tokens only.

Optionally an exemplar prior (assistant/agent/tool_prior.py) adds log P(tool | question) from
sentence embeddings of example questions to the name scores, a second opinion that corrects
the small model's standing preferences. It counts less for a question near no example ("why #2?",
a question in French): `ExemplarPrior.confidence`.

Only the user's question and the conversation decide the call. Where the English-only prior is blind
(a question in Spanish, Chinese, German ...), multilingual cue lists (assistant/agent/cues.py) say what
kind of answer is wanted: groups set side by side or against the rest, a grouping's words ("Neukunden",
"新老客户"), a rate rather than a list, carts; they reorder the model's ranking and settle a grouping,
nothing more (`prefer_cued_tools`). What the question itself names settles what the model is unsure
of: a customer or product it names puts the tools that take one first, an id slot left empty takes the
one id of its kind the question names, a span of time ("este mes", "30d") the horizon or window left
out, and a choice named outright ("by lapse probability") the closed choice (`tool_specs.fill_named_ids`,
`fill_time_span`, `prefer_named_entities`; the ids are the shop's, checked read-only).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage

from assistant.llm.decoding import decodes_locally
from assistant.agent.counts import fill_stated_count
from assistant.agent.cues import compares_groups, grouping_cued, prefer_cued_tools
from assistant.agent.mentions import mentions
from assistant.agent.session import reference_notes
from assistant.agent.tool_specs import (ENTITY_ARGUMENTS, ToolSpec, check_known, fill_named_ids, fill_time_span,
                                        ground_arguments, named_grouping, prefer_compared_groups,
                                        prefer_named_entities, required_grounded, worth_decoding)


@dataclass
class RouteTrace:
    """What the router decided and why (for the bench and debugging)."""

    scores: dict[str, float] = field(default_factory=dict)
    model_scores: dict[str, float] = field(default_factory=dict)  # before the exemplar prior
    raw_arguments: str = ""
    dropped: list[str] = field(default_factory=list)
    passed_over: list[str] = field(default_factory=list)  # better-scored tools whose required args were not given
    rerouted: list[str] = field(default_factory=list)  # "a->b": a's arguments named an id only b takes
    filled: list[str] = field(default_factory=list)  # arguments taken from what the question names
    settled: list[str] = field(default_factory=list)  # closed choices the question settles (no prior vote)
    prior_weight: float = 0.0  # the exemplar prior's weight for this question (its confidence applied)
    reused_tokens: int = 0
    score_s: float = 0.0
    args_s: float = 0.0
    seconds: float = 0.0


# How much the exemplar prior counts against the model's log-likelihoods. Chosen on the dev questions and held-out
# set A only (bench/results/agent_eval.md, Round 7): replaying the 0.5B's recorded name scores with the prior at
# weights 1 to 4, the first-call tool choice was best from 3.0 to 3.75 (at 1.0, "per customer segment" and "new
# versus long-time customers" questions went to the at-risk list; at 4.0 a Chinese question went astray).
DEFAULT_PRIOR_WEIGHT = 3.25


class LikelihoodRouter:
    """Routes the first call of a turn by asking an in-process chat model for likelihoods and arguments.

    Args:
        chat_model: a chat model with the decoding interface of assistant/llm/decoding.py
            (LlamaToolChat or LocalToolChat).
        max_arg_tokens: the longest argument object decoded.
        prior: an object with `log_prior(question, names) -> {name: log-probability}`
            (assistant.agent.tool_prior.ExemplarPrior), added to the model's scores; None: model only.
        prior_weight: how much the prior counts against the model's log-likelihoods.
        max_candidates: how many tools, best first, may be decoded before giving up on
            finding one whose required arguments the conversation supplies.
    """

    def __init__(self, chat_model: Any, max_arg_tokens: int = 64, prior: Any = None,
                 prior_weight: float = DEFAULT_PRIOR_WEIGHT, max_candidates: int = 3):
        self.chat = chat_model
        self.max_candidates = max_candidates
        self.tool_prior = prior
        self.prior_weight = prior_weight
        self.prior: dict[str, float] = {}  # content-free log-likelihoods subtracted when calibrated
        self.max_arg_tokens = max_arg_tokens
        self.last: RouteTrace | None = None

    def route(self, messages: list[BaseMessage], specs: dict[str, ToolSpec], question: str | None = None) -> dict | None:
        """The first call as `{"name", "args"}`, or None when there are no tools.

        `question` is the user's own words for the exemplar prior (the last human message when None).
        """
        if not specs:
            return None
        started = time.perf_counter()
        trace = RouteTrace()
        asked = [m.content for m in messages if isinstance(m, HumanMessage) and isinstance(m.content, str)]
        if question is None:
            question = asked[-1] if asked else ""
        prior = self.tool_prior.log_prior(question, list(specs)) if self.tool_prior is not None else {}
        confidence = getattr(self.tool_prior, "confidence", None)
        trace.prior_weight = self.prior_weight * (confidence(question, list(specs)) if confidence else 1.0)
        prompt, _, _ = self.chat.render_prompt(messages, [s.schema for s in specs.values()], "any")
        for name, score in self.chat.score_names(prompt, list(specs)).items():
            trace.model_scores[name] = score - self.prior.get(name, 0.0)
            trace.scores[name] = trace.model_scores[name] + trace.prior_weight * prior.get(name, 0.0)
        trace.reused_tokens = getattr(self.chat, "last_reused", 0)
        notes = reference_notes(asked[-1] if asked else "")  # (phrase, kind, id) of each reference
        named = named_in(question, notes)
        ranked = ranked_by_question(specs, sorted(trace.scores, key=trace.scores.get, reverse=True), question, named)
        trace.score_s = time.perf_counter() - started
        texts = [m.content for m in messages if isinstance(m, (HumanMessage, ToolMessage)) and isinstance(m.content, str)]
        best, trace.raw_arguments, args, trace.dropped = self._choose(prompt, specs, ranked, texts, trace,
                                                                      named, question)
        trace.args_s = time.perf_counter() - started - trace.score_s
        args, ungrounded = ground_arguments(specs[best], args, texts, user_texts=asked)
        trace.dropped += ungrounded
        args = _described_in_the_question(specs[best], args, _read_object(trace.raw_arguments), ungrounded,
                                          question, trace)
        args = _without_reference_phrases(specs[best], args, [phrase for phrase, _, _ in notes], trace)
        args = _without_restated_question(specs[best], args, question, trace)
        args = filled_from_question(specs[best], args, question, trace, named)
        if self.tool_prior is not None:
            args = _settle_choices(specs[best], args, texts, question, self.tool_prior, trace)
        trace.seconds = time.perf_counter() - started
        self.last = trace
        return {"name": best, "args": args}

    def _choose(self, prompt: str, specs: dict[str, ToolSpec], ranked: list[str], texts: list[str],
                trace: RouteTrace, named: list[str] = (), question: str = "") -> tuple[str, str, dict, list[str]]:
        """(tool, raw argument text, checked arguments, dropped names) of the call to make.

        The best-scored tool whose required arguments come from the conversation: a call needing
        an id nobody gave cannot be meant, so the next candidate is tried. An id the model tried
        to pass that this tool cannot take but another tool can ("user_id": "1334" for
        at_risk_users) says which tool it meant: that one is tried next. An id slot left empty takes
        the one id of its kind the question names (`named`, see `fill_named_ids`).
        """
        queue, tried = worth_decoding(specs, ranked, texts, self.max_candidates), []
        while queue:
            name = queue.pop(0)
            if any(t[0] == name for t in tried):
                continue
            raw = self.chat.decode_arguments(prompt, name, decoding_schema(specs, name), self.max_arg_tokens)
            parsed = _read_object(raw)
            args, dropped = _fit(specs[name], parsed)
            args, unknown = check_known(specs[name], args)
            args, filled = fill_named_ids(specs[name], args, list(named))
            trace.filled += [f"{name}.{key}" for key in filled]
            tried.append((name, raw, args, dropped + unknown))
            meant = _meant_elsewhere(specs, name, parsed, args, ranked, texts, named,
                                     compared=compares_groups(specs, question, list(named)))
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
        prompt, _, _ = self.chat.render_prompt(messages, [s.schema for s in specs.values()], "any")
        self.prior = self.chat.score_names(prompt, list(specs))
        return self.prior


def named_in(question: str, notes: list[tuple[str, str, str]]) -> list[str]:
    """What the question names (`mentions`), with the ids its references resolve to ("the first one" -> user 3810)."""
    return mentions(" ".join([question, *(f"{kind} {value}" for _, kind, value in notes)]))


def ranked_by_question(specs: dict[str, ToolSpec], ranked: list[str], question: str, named: list[str]) -> list[str]:
    """The model's ranking reordered by what the question names: two groups compared, a customer or product,
    and the multilingual cues (assistant/agent/cues.py). Shared by the local and the server router."""
    ranked = prefer_named_entities(specs, prefer_compared_groups(specs, ranked, named), named)
    return prefer_cued_tools(specs, ranked, question, named)


def filled_from_question(spec: ToolSpec, args: dict, question: str, trace: RouteTrace, named: list[str]) -> dict:
    """The call's arguments with what the question itself names and the model left out: a span of time,
    a count, a closed choice named outright. Shared by the local and the server router."""
    args, filled = fill_time_span(spec, args, question)
    trace.filled += filled
    args, filled = fill_stated_count(spec, args, question)
    trace.filled += filled
    return _choices_named(spec, args, question, trace, named)


def decoding_schema(specs: dict[str, ToolSpec], name: str) -> dict:
    """The parameters schema `name`'s arguments are decoded under, plus the other tools' id keys.

    An id key this tool lacks ("user_id" for at_risk_users) stays writable, optional and last: when
    the model writes one, it has said which tool it meant (`_meant_elsewhere`); `_fit` drops it.
    """
    schema = json.loads(json.dumps(specs[name].schema["function"].get("parameters") or {}))
    properties = schema.setdefault("properties", {})
    for other in specs.values():
        for key in other.known:
            if key not in properties:
                properties[key] = {"type": "string"}
    return schema


def _read_object(raw: str) -> dict:
    """The decoded argument object; when the decoding ran out before it closed, its complete pairs.

    The grammar lets the model write every optional key, the other tools' id keys too, so a long
    object can meet the token limit mid-value ('..., "top_k": 3, ..., "category_id": "categ'): the
    pairs written whole before the cut are still what the model chose ({} when none is whole).
    """
    text = str(raw or "")
    while text:
        try:
            value = json.loads(text)
            return value if isinstance(value, dict) else {}
        except ValueError:
            pass
        cut = text.rfind(', "')
        if cut <= 0 or not text.lstrip().startswith("{"):
            return {}
        text = text[:cut] + "}"
    return {}


def _meant_elsewhere(specs: dict[str, ToolSpec], name: str, parsed: dict, kept: dict,
                     ranked: list[str], texts: list[str], named: list[str] = (), compared: bool = False) -> str | None:
    """The best-ranked other tool that takes an id the model wrote but `name` could not keep.

    Only ids from the conversation that name something in the shop count (a tool's read-only
    `known_values` checks): a stray "user_id": "1334" for at_risk_users points to a tool taking
    that user, a "segment_by": "dog_household" to the tool whose `segment` accepts that segment.
    Counts and free text are no evidence, nor is a slot for one value when the question names
    two of its kind ("dog_household vs cat_household": a `segment` filter holds only one), nor a group the
    question sets beside the rest ("multi_pet ... than the others", `compared`, assistant/agent/cues.py):
    only an id of one entity (a customer, a product) then points elsewhere.
    """
    id_keys = {key for spec in specs.values() for key in spec.known}
    conversation = "\n".join(texts).lower()
    stray = [str(value).strip() for key, value in parsed.items()
             if key not in kept and (isinstance(value, str) or (key in id_keys and isinstance(value, int)
                                                                 and not isinstance(value, bool)))]
    stray = [value for value in stray if value and value.lower() in conversation]
    names = set(named)
    for other in ranked:
        if other == name:
            continue
        checks = [is_known for key, is_known in specs[other].known.items()
                  if len({v.lower() for v in names if is_known(v)}) < 2 and (not compared or key in ENTITY_ARGUMENTS)]
        if any(is_known(value) for value in stray for is_known in checks):
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


def _without_reference_phrases(spec: ToolSpec, args: dict, phrases: list[str], trace: RouteTrace) -> dict:
    """Optional free-text arguments that are only a reference the notes resolved ("text": "the first one"
    beside "user_id": "3936") are dropped: the id is what the phrase meant."""
    said = {p.strip().lower() for p in phrases}
    out = {}
    for key, value in args.items():
        if key not in spec.required and key not in spec.known and isinstance(value, str) and \
                value.strip().lower() in said:
            trace.dropped.append(key)
            continue
        out[key] = value
    return out


def _described_in_the_question(spec: ToolSpec, args: dict, written: dict, dropped: list[str], question: str,
                               trace: RouteTrace) -> dict:
    """A description the model wrote from elsewhere (the docstring's "The situation as the user described
    it") is replaced by the user's own words when the call has no id to go on: the question is the situation.

    Only a free-text argument (a string of three words or more, no closed choice, no id) that grounding
    dropped; a short value (a window "2026-05-01") is no description.
    """
    if any(args.get(key) for key in spec.known):
        return args
    args = dict(args)
    for key in dropped:
        value, prop = written.get(key), spec.parameters.get(key, {})
        if key in spec.known or "enum" in prop or prop.get("type") != "string" or not isinstance(value, str) \
                or len(_words(value)) < 3:
            continue
        args[key] = question.strip()
        trace.filled.append(key)
    return args


def _without_restated_question(spec: ToolSpec, args: dict, question: str, trace: RouteTrace) -> dict:
    """An optional free-text argument that only restates the question is dropped beside an id the question names.

    "lookalikes of customer 554, how did they end up" as similar_cases' `text` beside "user_id": "554":
    the customer is what the question asks about; the words around the id describe no other situation.
    """
    asked = question.lower()
    if not any(str(args.get(key) or "").strip().lower() in _words(asked) for key in spec.known if args.get(key)):
        return args
    out = {}
    for key, value in args.items():
        words = _words(value.lower()) if isinstance(value, str) else []
        if key not in spec.required and key not in spec.known and "enum" not in spec.parameters.get(key, {}) \
                and len(words) >= 3 and sum(w in asked for w in words) >= 0.5 * len(words):
            trace.dropped.append(key)
            continue
        out[key] = value
    return out


def _words(text: str) -> list[str]:
    return re.findall(r"[\w-]+", text)


_PROBABILITY = r"(?:probability|probabilities|prob|chance|likelihood|odds)"


def names_choice(value: str, question: str) -> bool:
    """Whether the question names the closed choice `value` outright.

    As written ("p_lapse", "value_at_risk", "value at risk", "tenure"), or, for a probability
    ("p_lapse"), as the ranking it asks for: "by lapse probability", "by the probability of
    lapsing". A "highest churn probability" without "by" names no ranking: it asks who is at risk.
    """
    text, value = question.lower(), str(value).lower()
    if re.search(rf"(?<![a-z]){re.escape(value)}(?![a-z])", text) or \
            re.search(rf"(?<![a-z]){re.escape(value.replace('_', ' '))}(?![a-z])", text):
        return True
    prob = re.fullmatch(r"p_([a-z]+)", value)
    if prob is None:
        return False
    stem = re.escape(prob.group(1)[:4])
    return bool(re.search(rf"\bby\s+(?:the\s+|their\s+)?(?:{stem}\w*\s+{_PROBABILITY}|"
                          rf"{_PROBABILITY}\s+(?:of\s+|to\s+)?{stem}\w*)", text))


def _choices_named(spec: ToolSpec, args: dict, question: str, trace: RouteTrace, mentioned: list[str] = ()) -> dict:
    """Closed-choice (enum) arguments set to the one value the question names outright
    ("rank by lapse probability" -> rank_by="p_lapse", "per customer segment" -> segment_by="segment"),
    else, for a grouping, to the one grouping whose members it names ("snacker vs home_cook" ->
    segment_by="segment", `named_grouping`); with none or several named, the model's value stands
    (and `_settle_choices` reads it). The keys the question settled are added to `trace.settled`.
    """
    args, settled = dict(args), set()
    for key, prop in spec.parameters.items():
        named = [value for value in prop.get("enum", []) if names_choice(value, question)]
        if len(named) == 1:
            settled.add(key)
            if args.get(key) != named[0]:
                args[key] = named[0]
                trace.filled.append(key)
    by_members = named_grouping(spec, mentioned)
    for key in spec.groups:
        # named outright ("by tenure") wins over members ("snacker"), members over cue words ("Neukunden")
        choice = by_members.get(key) or grouping_cued(spec, key, question)
        if key in settled or choice is None:
            continue
        settled.add(key)
        if args.get(key) != choice:
            args[key] = choice
            trace.filled.append(key)
    for key, value in _values_named_with_their_argument(spec, question).items():
        if key not in settled and key not in args:
            settled.add(key)
            args[key] = value
            trace.filled.append(key)
    trace.settled += sorted(settled)
    return args


def _values_named_with_their_argument(spec: ToolSpec, question: str) -> dict[str, str]:
    """{argument: value} for an optional argument whose documented values ("new", "lapsing", "at_risk")
    the question names beside the argument's own name: "customers in the at_risk stage", "stage: lapsing".

    Such a value (a lifecycle stage) is no closed choice in the schema, so `names_choice` does not read it,
    and "at risk" alone is no stage: nearly every churn question says it.
    """
    out = {}
    for key, prop in spec.parameters.items():
        if key in spec.required or "enum" in prop or prop.get("type") != "string":
            continue
        values = re.findall(r'"([a-z][a-z_]*)"', prop.get("description", ""))
        word = re.escape(key.replace("_", " "))
        hits = [v for v in values if re.search(rf"(?<![\w-])(?:{re.escape(v)}|{re.escape(v.replace('_', ' '))})"
                                               rf"[\s-]+{word}\b|\b{word}\s*[:=]?\s*{re.escape(v)}(?!\w)",
                                               question, re.I)]
        if len(set(hits)) == 1:
            out[key] = hits[0]
    return out


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
        if "enum" not in prop or key in trace.settled:
            continue
        value = args.get(key)
        if value is not None and names_choice(value, question):
            continue
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


def make_router(chat_model: Any, prior: Any = None) -> Any:
    """A likelihood router when the chat model decodes in process (assistant/llm/decoding.py), a
    server router when it scores tool names on a server (assistant/agent/server_router.py), else None."""
    if decodes_locally(chat_model):
        return LikelihoodRouter(chat_model, prior=prior)
    if all(hasattr(chat_model, a) for a in ("score_tool_names", "constrained_arguments")):
        from assistant.agent.server_router import ServerRouter

        return ServerRouter(chat_model, prior=prior)
    return None
