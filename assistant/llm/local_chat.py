"""A LangChain chat model over a local transformers model, with real tool calling.

`LocalToolChat` renders the conversation with the model's own chat template and the tool
schemas (`apply_chat_template(messages, tools=...)`), generates (optionally streaming tokens),
and parses tool calls into `AIMessage.tool_calls`. A call it cannot use lands in
`AIMessage.invalid_tool_calls` with an error the agent can feed back; it never raises for
something the model wrote.

Options for reliable tool choice from a small model:
- `constrain_tool_names`: inside a call, the name can only spell a bound tool (a logits processor).
- `tool_choice="any"` or a tool name (with `force_tool_prefix`): the reply is made to start
  with `<tool_call>\n{"name": "`, so it must be a call.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Generator, Iterable, Iterator, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field, PrivateAttr

from assistant import prompts
from assistant.llm.tool_calls import (
    FORCED_CALL_PREFIX,
    check_arguments,
    normalize_tool_choice,
    parse_tool_calls,
    possible_call_start,
    tool_names,
    tool_schema,
)


def _text(content: Any) -> str:
    """Message content as plain text (LangChain content may be a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b if isinstance(b, str) else b.get("text", "") for b in content if isinstance(b, (str, dict))]
        return "".join(parts)
    return json.dumps(content, default=str)


def to_chat_dicts(messages: Sequence[BaseMessage], native_tools: bool = True) -> list[dict]:
    """LangChain messages -> the dicts `apply_chat_template` expects.

    Args:
        messages: The conversation.
        native_tools: The template knows assistant `tool_calls` and the `tool` role; if not,
            calls are written as `<tool_call>` text and results as user turns.
    """
    out: list[dict] = []
    for msg in messages:
        if isinstance(msg, SystemMessage):
            out.append({"role": "system", "content": _text(msg.content)})
        elif isinstance(msg, HumanMessage):
            out.append({"role": "user", "content": _text(msg.content)})
        elif isinstance(msg, AIMessage):
            calls = [{"type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
                     for c in msg.tool_calls]
            if native_tools:
                entry: dict = {"role": "assistant", "content": _text(msg.content)}
                if calls:
                    entry["tool_calls"] = calls
                out.append(entry)
            else:
                text = _text(msg.content)
                for c in calls:
                    body = json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]})
                    text += f"\n<tool_call>\n{body}\n</tool_call>"
                out.append({"role": "assistant", "content": text.strip()})
        elif isinstance(msg, ToolMessage):
            content = _text(msg.content)
            if native_tools:
                out.append({"role": "tool", "content": content, "name": msg.name or ""})
            else:
                out.append({"role": "user", "content": prompts.render(
                    "tool_result", name=msg.name or "tool", content=content)})
        else:
            out.append({"role": getattr(msg, "role", "user"), "content": _text(msg.content)})
    return out


class LocalToolChat(BaseChatModel):
    """Chat model over an in-process transformers model and tokenizer, with tool calling.

    Attributes:
        model: A causal LM (`AutoModelForCausalLM`, optionally a peft model).
        tokenizer: Its tokenizer, with a chat template.
        max_new_tokens: Default answer length limit.
        temperature: 0 for greedy decoding (deterministic), else sampling.
        constrain_tool_names: Mask tokens so a call can only name a bound tool.
        force_tool_prefix: When a call is required, start the reply with the call prefix.
    """

    model: Any = Field(exclude=True)
    tokenizer: Any = Field(exclude=True)
    model_name: str = "local"
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    constrain_tool_names: bool = True
    force_tool_prefix: bool = True

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())
    _heads: dict = PrivateAttr(default_factory=dict)  # fixed prompt heads seen (system prompt + tools)
    _decoder: Any = PrivateAttr(default=None)  # the KV-cached decoder (assistant/llm/kv_decode.py)

    def prompt_head(self, prompt: str) -> str:
        """The longest fixed head (system prompt and tool schemas, as rendered) `prompt` starts with, or ""."""
        return max((h for h in self._heads if prompt.startswith(h)), key=len, default="")

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, **options: Any) -> "LocalToolChat":
        """Wrap a loaded model (e.g. from `assistant.llm.loader.load_chat_model`), naming it after its source."""
        ident = getattr(model, "shopsight_identity", None) or {}
        name = ident.get("name") or getattr(getattr(model, "config", None), "_name_or_path", "") or "local"
        return cls(model=model, tokenizer=tokenizer, model_name=str(name), **options)

    @property
    def _llm_type(self) -> str:
        return "shopsight-local-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature}

    @property
    def native_tools(self) -> bool:
        """True when the chat template renders `tools` itself (Qwen); else our instructions are used."""
        return "tools" in (getattr(self.tokenizer, "chat_template", None) or "")

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> Runnable:
        """Bind tools: typed functions (schema from their docstrings), BaseTools or schema dicts.

        Args:
            tools: The tools the model may call.
            tool_choice: None/"auto" (model decides), "none", "any"/"required" (must call one),
                or a tool name (must call that one).
            **kwargs: Other generation options bound along (e.g. max_new_tokens).
        """
        schemas = [tool_schema(t) for t in tools]
        normalize_tool_choice(tool_choice, tool_names(schemas))  # fail fast on a bad name
        return self.bind(tools=schemas, tool_choice=tool_choice, **kwargs)

    # ----- prompt -----------------------------------------------------------------------
    def apply_template(self, chat: list[dict], tools: list[dict] | None = None,
                       add_generation_prompt: bool = True) -> str:
        """The model's chat template over chat dicts (and tool schemas when it renders tools)."""
        if tools:
            return self.tokenizer.apply_chat_template(chat, tools=tools, tokenize=False,
                                                      add_generation_prompt=add_generation_prompt)
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=add_generation_prompt)

    def render_prompt(self, messages: Sequence[BaseMessage], tools: list[dict] | None = None,
                      tool_choice: Any = None) -> tuple[str, str, list[str] | None]:
        """The prompt text, the forced reply prefix ("" when none) and the required tool names."""
        tools = tools or []
        required = normalize_tool_choice(tool_choice, tool_names(tools)) if tools else None
        if required == "none":
            tools, required = [], None
        chat = to_chat_dicts(messages, self.native_tools)
        if tools and self.native_tools:
            prompt = self.apply_template(chat, tools)
        else:
            if tools:
                has_system = bool(chat) and chat[0]["role"] == "system"
                system = chat[0]["content"] if has_system else ""
                rest = chat[1:] if has_system else chat
                instructions = prompts.render("tool_instructions", system=system, example=tool_names(tools)[0],
                                              tools=[json.dumps(t) for t in tools])
                chat = [{"role": "system", "content": instructions}, *rest]
            tools = []
            prompt = self.apply_template(chat)
        if chat and chat[0]["role"] == "system":
            # The fixed head of every prompt (system prompt and tool schemas): engines that keep
            # a prefix's KV state (on disk, for llama.cpp) look it up by this text.
            head = self.apply_template(chat[:1], tools or None, add_generation_prompt=False)
            if prompt.startswith(head):
                self._heads[head] = None
                while len(self._heads) > 4:
                    self._heads.pop(next(iter(self._heads)))
        prefix = FORCED_CALL_PREFIX if (required and self.force_tool_prefix) else ""
        return prompt + prefix, prefix, (required or None)

    def _prepare(self, messages, stop, kwargs) -> tuple[dict, str, list[dict], Any]:
        """generate() arguments, the forced prefix, the tools in force, and the stop strings."""
        tools = kwargs.pop("tools", None) or []
        tool_choice = kwargs.pop("tool_choice", None)
        if tool_choice == "none":  # answer in words: no tools in the prompt, nothing parsed as a call
            tools, tool_choice = [], None
        prompt, prefix, required = self.render_prompt(messages, tools, tool_choice)
        names = tool_names(tools)
        # A required call may only name the required tools; a free one any bound tool.
        constrain_to = required if isinstance(required, list) else names
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        sampling = float(kwargs.get("temperature", self.temperature)) > 0
        gen: dict[str, Any] = {
            **enc,
            "max_new_tokens": int(kwargs.get("max_new_tokens", self.max_new_tokens)),
            "do_sample": sampling,
            "pad_token_id": self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id,
        }
        if sampling:
            gen["temperature"] = float(kwargs.get("temperature", self.temperature))
            gen["top_p"] = float(kwargs.get("top_p", self.top_p))
        else:  # silence "temperature is set but do_sample=False" from the model's generation config
            gen.update(temperature=None, top_p=None, top_k=None)
        if stop:
            gen["stop_strings"] = list(stop)
            gen["tokenizer"] = self.tokenizer
        if constrain_to and (required or bool(kwargs.get("constrain_tool_names", self.constrain_tool_names))):
            from transformers import LogitsProcessorList

            from assistant.llm.constrain import ToolNameConstraint

            gen["logits_processor"] = LogitsProcessorList([
                ToolNameConstraint(self.tokenizer, constrain_to, enc["input_ids"].shape[1], prompt_tail=prefix)])
        return gen, prefix, tools, stop

    def _message(self, text: str, tools: list[dict], prompt_tokens: int, new_tokens: int) -> AIMessage:
        names = tool_names(tools)
        parsed = check_arguments(parse_tool_calls(text, allowed=names if names else None), tools)
        if not names:  # no tools bound: nothing the model wrote is a call
            parsed.content, parsed.tool_calls, parsed.invalid_tool_calls = text.strip(), [], []
        return AIMessage(
            content=parsed.content,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
            usage_metadata={"input_tokens": prompt_tokens, "output_tokens": new_tokens,
                            "total_tokens": prompt_tokens + new_tokens},
            response_metadata={"model_name": self.model_name, "raw_text": text},
        )

    # ----- the agent's decoding interface (assistant/llm/decoding.py) ----------------------
    @property
    def decoder(self) -> Any:
        """The KV-cached decoder over this model (assistant/llm/kv_decode.py), made on first use."""
        if self._decoder is None:
            from assistant.llm.kv_decode import CachedDecoder

            self._decoder = CachedDecoder(self.model, self.tokenizer)
        return self._decoder

    @property
    def last_reused(self) -> int:
        """Prompt tokens the last decoding call did not compute again."""
        return self.decoder.last_reused

    def score_names(self, prompt: str, names: list[str]) -> dict[str, float]:
        """log P(name + '"' | prompt) of each name."""
        return self.decoder.score_names(prompt, names)

    def decode_arguments(self, prompt: str, name: str, schema: dict, max_tokens: int = 64) -> str:
        """The argument object of a call to `name` after `prompt`, as JSON text."""
        return self.decoder.decode_arguments(prompt, name, schema, max_tokens)

    def complete(self, prompt: str, max_new_tokens: int, stop: tuple[str, ...] = ()) -> tuple[str, int, int]:
        """Greedy continuation: (text, prompt tokens, new tokens)."""
        return self.decoder.generate(prompt, max_new_tokens, stop_texts=tuple(stop))

    # ----- LangChain entry points ----------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        import torch

        gen, prefix, tools, stop = self._prepare(messages, stop, dict(kwargs))
        prompt_len = gen["input_ids"].shape[1]
        with torch.inference_mode():
            output = self.model.generate(**gen)
        new_ids = output[0, prompt_len:]
        text = prefix + cut_at_stop(self.tokenizer.decode(new_ids, skip_special_tokens=True), stop)
        message = self._message(text, tools, prompt_len, int(new_ids.shape[0]))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        """Yield answer tokens as they come; tool-call markup is held back and parsed at the end.

        The last chunk carries the parsed tool calls, so aggregating the chunks gives the same
        message `invoke` returns.
        """
        import torch
        from transformers import TextIteratorStreamer

        gen, prefix, tools, stop = self._prepare(messages, stop, dict(kwargs))
        names = tool_names(tools)
        prompt_len = gen["input_ids"].shape[1]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        failure: list[BaseException] = []
        counted: list[int] = []

        def work() -> None:
            try:
                with torch.inference_mode():
                    out = self.model.generate(**gen, streamer=streamer)
                counted.append(int(out.shape[1] - prompt_len))
            except BaseException as exc:  # re-raised in the caller's thread below
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        text, shown = yield from stream_visible(streamer, prefix, stop, bool(names), run_manager)
        thread.join()
        if failure:
            raise failure[0]
        text = cut_at_stop(text, stop)
        final = self._message(text, tools, prompt_len, counted[0] if counted else 0)
        yield closing_chunk(final, text, shown)


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """`text` up to the first of the stop strings (all of it when none occurs)."""
    for s in stop or ():
        idx = text.find(s)
        if idx >= 0:
            text = text[:idx]
    return text


def stream_visible(pieces: Iterable[str], prefix: str, stop: Sequence[str] | None, has_tools: bool,
                   run_manager: Any = None) -> Generator[ChatGenerationChunk, None, tuple[str, int]]:
    """Yield the answer text of decoded `pieces` as chunks; return (all text, characters shown).

    Held back from the first call marker on: the UI must never show call markup. With no tools
    bound nothing is a call, and a forced call (a non-empty `prefix`) has no answer text at all.
    Both in-process engines stream through this (local_chat.py, llama_chat.py).
    """
    text, shown = prefix, 0
    held = bool(prefix)
    for piece in pieces:
        text += piece
        if held:
            continue
        visible = cut_at_stop(text, stop)
        safe = possible_call_start(visible) if has_tools else len(visible)
        if safe > shown:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=visible[shown:safe]))
            if run_manager:
                run_manager.on_llm_new_token(visible[shown:safe], chunk=chunk)
            yield chunk
            shown = safe
        held = has_tools and ("<tool_call>" in visible or "```" in visible)
    return text, shown


def closing_chunk(final: AIMessage, text: str, shown: int) -> ChatGenerationChunk:
    """The last chunk of a stream: what `final` says beyond the text already shown, plus its calls."""
    already = text[:shown].lstrip()
    rest = final.content[len(already):] if final.content.startswith(already) else ""
    return ChatGenerationChunk(message=final_chunk(final, rest))


def final_chunk(message: AIMessage, content: str) -> AIMessageChunk:
    """The last streamed chunk: the parsed calls as tool-call chunks that aggregate faithfully.

    LangChain re-parses tool-call chunks when chunks are added, leniently: `{oops` would become
    a valid call with no arguments. So an invalid call's args travel as a JSON *string* (never
    an object, so it stays invalid), and the errors ride along in response_metadata.
    """
    chunks = [{"type": "tool_call_chunk", "name": c["name"], "args": json.dumps(c["args"]), "id": c["id"],
               "index": i} for i, c in enumerate(message.tool_calls)]
    offset = len(chunks)
    chunks += [{"type": "tool_call_chunk", "name": c["name"], "args": json.dumps(str(c["args"] or "")),
                "id": c["id"], "index": offset + i} for i, c in enumerate(message.invalid_tool_calls)]
    errors = {c["id"]: c["error"] for c in message.invalid_tool_calls}
    return AIMessageChunk(
        content=content,
        tool_call_chunks=chunks,
        usage_metadata=message.usage_metadata,
        response_metadata={**message.response_metadata, "invalid_tool_call_errors": errors},
        chunk_position="last",
    )
