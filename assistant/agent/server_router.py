"""Choose the first tool call through an OpenAI-compatible server, as reliably as the local router.

    router = ServerRouter(OpenAICompatChat(base_url="http://127.0.0.1:8000"), prior=default_prior())
    Agent(chat, tools, router=router)          # make_router builds it for a server chat model

A remote model cannot be asked for its likelihoods token by token as the local router does
(assistant/agent/router.py), but a server can constrain a reply by a JSON schema and return its
logprobs (assistant/llm/openai_chat.py). So, in two requests that share the prompt's KV cache
on the server:

1. the tool names are scored: a reply constrained to `{"name": <a tool>}` and its logprobs give
   log P(name | conversation) for every tool; the exemplar prior (assistant/agent/tool_prior.py)
   is added, as in the local router;
2. the best tool's arguments are decoded under its JSON schema (`{"name": <tool>, "arguments":
   ...}`), so they always parse; then the local router's argument checks apply: ids that name
   nothing move or go (`check_known`), optional values nobody gave are dropped
   (`ground_arguments`). A tool whose required arguments the conversation does not supply (an
   explain_user with no user named) is passed over for the next best, up to `max_candidates`.

What the question names reorders the ranking and fills what the model left out exactly as in the local
router (`router.ranked_by_question`, `router.filled_from_question`): the multilingual cues
(assistant/agent/cues.py), the ids, spans of time and counts it names, the closed choices it names outright.

When the server gives no call (it ignores response_format) the router returns None, says why in
its trace (`last.error`), and the agent lets the model write its call as text.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage

from assistant.agent.router import RouteTrace, filled_from_question, named_in, ranked_by_question
from assistant.agent.session import reference_notes
from assistant.agent.tool_specs import (ToolSpec, check_known, fill_named_ids, ground_arguments, required_grounded,
                                        worth_decoding)

log = logging.getLogger(__name__)


@dataclass
class ServerRouteTrace(RouteTrace):
    """The local router's trace, plus why the server gave no call ("" when it did)."""

    error: str = ""


class ServerRouter:
    """Routes a turn's first call with a chat model that has `score_tool_names` and `constrained_arguments`.

    Args:
        chat_model: assistant.llm.openai_chat.OpenAICompatChat (or anything with those two methods).
        prior: an object with `log_prior(question, names)` (assistant.agent.tool_prior.ExemplarPrior),
            added to the server's scores; None: the model's scores alone.
        prior_weight: how much the prior counts against the model's log-likelihoods.
        max_candidates: how many tools, best first, may be decoded before giving up on finding
            one whose required arguments the conversation supplies.
    """

    def __init__(self, chat_model: Any, prior: Any = None, prior_weight: float = 1.0, max_candidates: int = 3):
        self.chat = chat_model
        self.tool_prior = prior
        self.prior_weight = prior_weight
        self.max_candidates = max_candidates
        self.last: ServerRouteTrace | None = None

    def route(self, messages: list[BaseMessage], specs: dict[str, ToolSpec], question: str | None = None) -> dict | None:
        """The first call as `{"name", "args"}`; None when there are no tools or the server gives no call."""
        from assistant.llm.openai_chat import NoToolCall

        if not specs:
            return None
        started = time.perf_counter()
        trace = self.last = ServerRouteTrace()
        asked = [m.content for m in messages if isinstance(m, HumanMessage) and isinstance(m.content, str)]
        question = question if question is not None else (asked[-1] if asked else "")
        texts = [m.content for m in messages if isinstance(m, (HumanMessage, ToolMessage)) and isinstance(m.content, str)]
        schemas = [spec.schema for spec in specs.values()]
        try:
            trace.model_scores, _ = self.chat.score_tool_names(messages, schemas)
            trace.score_s = time.perf_counter() - started
            prior = self.tool_prior.log_prior(question, list(specs)) if self.tool_prior is not None else {}
            trace.scores = {n: s + self.prior_weight * prior.get(n, 0.0) for n, s in trace.model_scores.items()}
            named = named_in(question, reference_notes(asked[-1] if asked else ""))
            ranked = ranked_by_question(specs, sorted(trace.scores, key=trace.scores.get, reverse=True), question,
                                        named)
            name, args = self._choose(messages, schemas, specs, ranked, texts, trace, named)
        except NoToolCall as exc:
            trace.error = str(exc)
            log.warning("the server router gives the call back to the model: %s", exc)
            return None
        trace.args_s = time.perf_counter() - started - trace.score_s
        args, ungrounded = ground_arguments(specs[name], args, texts, user_texts=asked)
        trace.dropped += ungrounded
        args = filled_from_question(specs[name], args, question, trace, named)
        trace.seconds = time.perf_counter() - started
        return {"name": name, "args": args}

    def _choose(self, messages: list[BaseMessage], schemas: list[dict], specs: dict[str, ToolSpec],
                ranked: list[str], texts: list[str], trace: ServerRouteTrace,
                named: list[str] = ()) -> tuple[str, dict]:
        """The best-ranked tool whose required arguments come from the conversation, with its arguments."""
        tried: list[tuple[str, dict]] = []
        for name in worth_decoding(specs, ranked, texts, self.max_candidates):
            raw = self.chat.constrained_arguments(messages, schemas, name)
            trace.raw_arguments = trace.raw_arguments or str(raw)
            args, problem = specs[name].validate(raw)
            if problem:  # the grammar keeps types; a range or a closed choice can still be off
                args = {k: v for k, v in raw.items() if k in specs[name].required}
                trace.dropped += [k for k in raw if k not in args]
            args, unknown = check_known(specs[name], args)
            trace.dropped += unknown
            args, filled = fill_named_ids(specs[name], args, list(named))
            trace.filled += [f"{name}.{key}" for key in filled]
            tried.append((name, args))
            if required_grounded(specs[name], args, texts):
                return name, args
            trace.passed_over.append(name)
        trace.passed_over = []
        return tried[0]  # none fits: the first one's error goes back to the model
