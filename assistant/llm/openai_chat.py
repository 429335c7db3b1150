"""A LangChain chat model for an OpenAI-compatible server (llama.cpp's, vLLM), with tool calling.

    chat = OpenAICompatChat(base_url="http://127.0.0.1:8000")   # python -m llama_cpp.server --model M.gguf
    chat.bind_tools(tools).invoke(messages)                     # AIMessage with tool_calls
    scores, chosen = chat.score_tool_names(messages, schemas)   # log P(name | conversation), per tool
    args = chat.constrained_arguments(messages, schemas, "explain_user")   # schema-constrained

A tiny HTTP client on the standard library (no new dependency): POST /v1/chat/completions
with the tool schemas; the server's `tool_calls` become `AIMessage.tool_calls`. When the
server runs without a tool parser and returns the call as text, the same parser as the local
model reads it (`<tool_call>`, fenced or bare JSON). A bad call is an invalid tool call, not an error.

Reliable tool choice with a remote model (what assistant/agent/server_router.py builds on) uses
two standard server features instead of free text: a reply constrained by a JSON schema
(`response_format: {"type": "json_object", "schema": ...}`, which llama.cpp turns into a
grammar) so only `{"name": <a tool>}` or `{"name": <tool>, "arguments": <its schema>}` can come
out, and the logprobs of that reply, which give every tool name's likelihood in one request.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from typing import Any, Iterator, Sequence

import numpy as np

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable

from assistant.llm.local_chat import _text
from assistant.llm.tool_calls import (
    ParsedOutput,
    check_arguments,
    normalize_tool_choice,
    parse_tool_calls,
    tool_names,
    tool_schema,
)


log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """The server could not be reached or answered with an error (message names the URL)."""


class NoToolCall(ServerError):
    """The server answered a constrained call request without a call (it ignores response_format)."""


def to_openai_messages(messages: Sequence[BaseMessage]) -> list[dict]:
    """LangChain messages -> OpenAI chat messages."""
    out: list[dict] = []
    for msg in messages:
        if isinstance(msg, SystemMessage):
            out.append({"role": "system", "content": _text(msg.content)})
        elif isinstance(msg, HumanMessage):
            out.append({"role": "user", "content": _text(msg.content)})
        elif isinstance(msg, AIMessage):
            entry: dict[str, Any] = {"role": "assistant", "content": _text(msg.content)}
            if msg.tool_calls:
                entry["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                    "name": c["name"], "arguments": json.dumps(c["args"])}} for c in msg.tool_calls]
            out.append(entry)
        elif isinstance(msg, ToolMessage):
            out.append({"role": "tool", "tool_call_id": msg.tool_call_id, "content": _text(msg.content)})
    return out


class OpenAICompatChat(BaseChatModel):
    """Chat model over `base_url` (e.g. http://127.0.0.1:8000/v1), an OpenAI-compatible server.

    Attributes:
        base_url: Server URL; "/v1" is added when missing.
        served_model: The model (or LoRA adapter) name the server serves; default its first.
        api_key: Sent as a Bearer token when set (vLLM's --api-key).
        max_new_tokens: Answer length limit.
        temperature: 0 for greedy.
        timeout_s: Seconds to wait for the server.
        top_logprobs: Alternatives per token asked for when scoring tool names (0: the server's
            constrained choice alone, for servers without logprobs).
    """

    base_url: str
    served_model: str | None = None
    api_key: str | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    timeout_s: float = 600.0  # a cold prefill of the ~1,300-token tool prompt on a busy 2-core CPU took minutes
    top_logprobs: int = 20

    @property
    def _llm_type(self) -> str:
        return "shopsight-openai-compatible"

    @property
    def api_root(self) -> str:
        root = self.base_url.rstrip("/")
        return root if root.endswith("/v1") else root + "/v1"

    def _request(self, path: str, payload: dict | None = None):
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.api_root + path, data=data, headers=headers,
                                     method="POST" if data else "GET")
        try:
            return urllib.request.urlopen(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:500]
            raise ServerError(f"{self.api_root}{path}: HTTP {exc.code}: {body}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServerError(f"cannot reach the model server at {self.api_root} ({exc}); is it running? "
                              "(llama.cpp: `python -m llama_cpp.server --model <model.gguf> --port 8000`; "
                              "vLLM: `vllm serve <model> --enable-auto-tool-choice`)") from None

    def model_id(self) -> str:
        """The served model name (asks the server once when not given)."""
        if not self.served_model:
            with self._request("/models") as resp:
                data = json.loads(resp.read())
            models = [m["id"] for m in data.get("data", [])]
            if not models:
                raise ServerError(f"{self.api_root}/models lists no model")
            self.served_model = models[0]
        return self.served_model

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Runnable:
        """Bind tools (typed functions, BaseTools or schema dicts); see `LocalToolChat.bind_tools`."""
        schemas = [tool_schema(t) for t in tools]
        normalize_tool_choice(tool_choice, tool_names(schemas))
        return self.bind(tools=schemas, tool_choice=tool_choice, **kwargs)

    def _payload(self, messages, stop, kwargs, stream: bool) -> tuple[dict, list[str]]:
        tools = kwargs.get("tools") or []
        payload: dict[str, Any] = {
            "model": self.model_id(), "messages": to_openai_messages(messages),
            "max_tokens": int(kwargs.get("max_new_tokens", self.max_new_tokens)),
            "temperature": float(kwargs.get("temperature", self.temperature)), "stream": stream,
        }
        if stop:
            payload["stop"] = list(stop)
        if tools:
            payload["tools"] = tools
            choice = normalize_tool_choice(kwargs.get("tool_choice"), tool_names(tools))
            if choice == "none":
                payload["tool_choice"] = "none"
            elif isinstance(choice, list) and len(choice) == 1:
                payload["tool_choice"] = {"type": "function", "function": {"name": choice[0]}}
            elif isinstance(choice, list):
                payload["tool_choice"] = "required"
        return payload, tool_names(tools)

    @staticmethod
    def _message(content: str, raw_calls: list[dict], names: list[str], usage: dict | None,
                 tools: list[dict] | None = None) -> AIMessage:
        calls, invalid = [], []
        for i, raw in enumerate(raw_calls):
            fn = raw.get("function", {})
            name, args_text = fn.get("name"), fn.get("arguments") or "{}"
            cid = raw.get("id") or f"call_{i}"
            try:
                args = json.loads(args_text) if isinstance(args_text, str) else args_text
                if not isinstance(args, dict):
                    raise ValueError("arguments must be a JSON object")
                if names and name not in names:
                    raise ValueError(f"unknown tool '{name}'; available tools: {', '.join(names)}")
                calls.append({"type": "tool_call", "name": name, "args": args, "id": cid})
            except (ValueError, json.JSONDecodeError) as exc:
                invalid.append({"type": "invalid_tool_call", "name": name, "args": str(args_text),
                                "id": cid, "error": str(exc)})
        if not raw_calls and names:  # a server without a tool parser: the call is in the text
            parsed = parse_tool_calls(content, allowed=names, bare_json=True)
            content, calls, invalid = parsed.content, parsed.tool_calls, parsed.invalid_tool_calls
        checked = check_arguments(ParsedOutput(content, calls, invalid), tools or [])
        calls, invalid = checked.tool_calls, checked.invalid_tool_calls
        usage_md = None
        if usage:
            usage_md = {"input_tokens": usage.get("prompt_tokens", 0),
                        "output_tokens": usage.get("completion_tokens", 0),
                        "total_tokens": usage.get("total_tokens", 0)}
        return AIMessage(content=content, tool_calls=calls, invalid_tool_calls=invalid, usage_metadata=usage_md)

    def _post(self, payload: dict) -> dict:
        with self._request("/chat/completions", payload) as resp:
            return json.loads(resp.read())

    def score_tool_names(self, messages: list[BaseMessage], tools: Sequence[dict]) -> tuple[dict[str, float], str]:
        """Each tool name's log-likelihood as the call's first word, and the server's own choice.

        One request whose reply is constrained to `{"name": <one of the tools>}`; the logprobs of
        the token where the name starts score every tool (the top alternatives there, a name
        matched by the token it would start with). A name among no alternatives gets less than
        the least likely one seen. Without logprobs: 0 for the chosen name, NAME_FLOOR for the rest.

        Raises:
            ServerError: unreachable, or an HTTP error. NoToolCall: the reply names no tool.
        """
        names = tool_names(tools)
        schema = {"type": "object", "properties": {"name": {"type": "string", "enum": names}}, "required": ["name"]}
        payload, _ = self._payload(messages, None, {"tools": list(tools), "max_new_tokens": 16, "temperature": 0.0},
                                   stream=False)
        payload["response_format"] = {"type": "json_object", "schema": schema}
        if self.top_logprobs:
            payload.update(logprobs=True, top_logprobs=self.top_logprobs)
        try:
            choice = self._post(payload)["choices"][0]
        except ServerError as exc:
            if not self.top_logprobs or "logprobs" not in str(exc) or isinstance(exc, NoToolCall):
                raise
            # a server that keeps no logits (llama_cpp.server --logits_all false): its choice alone, from now on
            log.warning("%s gives no logprobs (%s); tool names are chosen by the server's constrained reply alone",
                        self.api_root, str(exc)[:200])
            self.top_logprobs = 0
            return self.score_tool_names(messages, tools)
        content = choice["message"].get("content") or ""
        chosen = _named_tool(content, names)
        if chosen is None:
            raise NoToolCall(f"{self.api_root}: asked for a tool name constrained by a JSON schema "
                             f"(response_format), the server answered {content[:120]!r}; serve the model with "
                             "llama.cpp (`python -m llama_cpp.server --model M.gguf`) or another server that "
                             "honours response_format schemas")
        tokens = (choice.get("logprobs") or {}).get("content") or []
        return name_logprobs(content, tokens, names, chosen), chosen

    def constrained_arguments(self, messages: list[BaseMessage], tools: Sequence[dict], name: str,
                              max_tokens: int = 96) -> dict:
        """The arguments of a call to `name`, decoded under the tool's JSON schema by the server.

        The reply is constrained to `{"name": "<name>", "arguments": <the tool's parameters>}`:
        the model writes the name itself first, so its arguments are written for that tool.

        Raises:
            ServerError: unreachable, or an HTTP error. NoToolCall: no argument object came back.
        """
        schema = next((t["function"] for t in tools if t["function"]["name"] == name), None)
        if schema is None:
            raise ValueError(f"tool {name!r} is not among {tool_names(tools)}")
        params = schema.get("parameters") or {"type": "object", "properties": {}}
        call = {"type": "object", "properties": {"name": {"type": "string", "enum": [name]}, "arguments": params},
                "required": ["name", "arguments"]}
        payload, _ = self._payload(messages, None, {"tools": list(tools), "max_new_tokens": max_tokens,
                                                    "temperature": 0.0}, stream=False)
        payload["response_format"] = {"type": "json_object", "schema": call}
        content = self._post(payload)["choices"][0]["message"].get("content") or ""
        try:
            args = json.loads(content).get("arguments")
        except (json.JSONDecodeError, AttributeError):
            args = None
        if not isinstance(args, dict):
            raise NoToolCall(f"{self.api_root}: asked for the arguments of {name} constrained by its JSON schema, "
                             f"the server answered {content[:120]!r} (cut at {max_tokens} tokens, or "
                             "response_format is not supported)")
        return args

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        payload, names = self._payload(messages, stop, kwargs, stream=False)
        with self._request("/chat/completions", payload) as resp:
            data = json.loads(resp.read())
        msg = data["choices"][0]["message"]
        message = self._message(msg.get("content") or "", msg.get("tool_calls") or [], names, data.get("usage"),
                                kwargs.get("tools") or [])
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        """Server-sent events: content deltas as they come, tool calls assembled at the end."""
        payload, names = self._payload(messages, stop, kwargs, stream=True)
        content, calls = "", {}
        with self._request("/chat/completions", payload) as resp:
            for raw_line in resp:
                line = raw_line.decode().strip()
                if not line.startswith("data:"):
                    continue
                body = line[5:].strip()
                if body == "[DONE]":
                    break
                delta = json.loads(body)["choices"][0].get("delta", {})
                for tc in delta.get("tool_calls") or []:
                    slot = calls.setdefault(tc.get("index", 0), {"id": None, "function": {"name": "", "arguments": ""}})
                    slot["id"] = tc.get("id") or slot["id"]
                    fn = tc.get("function", {})
                    slot["function"]["name"] += fn.get("name") or ""
                    slot["function"]["arguments"] += fn.get("arguments") or ""
                piece = delta.get("content") or ""
                if piece:
                    content += piece
                    if not names or "<tool_call>" not in content:
                        chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                        if run_manager:
                            run_manager.on_llm_new_token(piece, chunk=chunk)
                        yield chunk
        final = self._message(content, [calls[i] for i in sorted(calls)], names, None, payload.get("tools"))
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", tool_calls=final.tool_calls, invalid_tool_calls=final.invalid_tool_calls,
            chunk_position="last"))


NAME_FLOOR = -30.0  # the score of a tool name the server's logprobs say nothing about


def _named_tool(content: str, names: Sequence[str]) -> str | None:
    """The tool a `{"name": ...}` reply names (also when cut short), or None."""
    found = re.search(r'"name"\s*:\s*"([^"]*)', content)
    if not found or not found.group(1):
        return None
    written = found.group(1)
    exact = [n for n in names if n == written]
    started = [n for n in names if n.startswith(written)]
    return (exact or started or [None])[0]


def name_logprobs(content: str, tokens: Sequence[dict], names: Sequence[str], chosen: str) -> dict[str, float]:
    """Per tool name, the log-probability of the token that starts it, read from OpenAI-style logprobs.

    `tokens` are the reply's `logprobs.content` entries ({"token", "logprob", "top_logprobs"}).
    At the token holding the name's first character, each alternative that continues the text
    before the name scores the names it starts (alternatives starting the same name add up).
    The server's `chosen` name wins ties (names sharing a first token) by a hair.
    """
    floor = {n: NAME_FLOOR for n in names}
    floor[chosen] = 0.0
    found = re.search(r'"name"\s*:\s*"', content)
    if not found or not tokens or "".join(t.get("token", "") for t in tokens)[:len(content)] != content:
        return floor  # no logprobs, or tokens that do not spell the reply: the choice alone
    start, pos = found.end(), 0
    for entry in tokens:
        end = pos + len(entry["token"])
        if end > start:
            break
        pos = end
    else:
        return floor
    lead = content[pos:start]
    alternatives = [(entry["token"], entry["logprob"])] + [(a["token"], a["logprob"])
                                                          for a in entry.get("top_logprobs") or []]
    scores: dict[str, float] = {}
    seen: set[str] = set()
    for token, logprob in alternatives:
        if token in seen or not token.startswith(lead) or len(token) == len(lead):
            continue
        seen.add(token)
        rest = token[len(lead):]
        for name in names:
            if name.startswith(rest) or rest.startswith(name + '"'):
                scores[name] = float(np.logaddexp(scores.get(name, -np.inf), logprob))
    if not scores:
        return floor
    least = min(lp for _, lp in alternatives) - 1.0
    result = {n: scores.get(n, least) for n in names}
    result[chosen] += 1e-6
    return result
