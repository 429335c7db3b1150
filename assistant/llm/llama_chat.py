"""A LangChain chat model over llama.cpp and the packaged GGUF as shipped: the default local engine.

    from assistant.llm.loader import load_llm
    chat = load_llm("qwen2.5-coder-0.5b")                 # SHOPSIGHT_ENGINE=llamacpp (default)
    reply = chat.bind_tools([at_risk_users]).invoke([HumanMessage("Who will churn this week?")])
    for chunk in chat.stream([HumanMessage("Hi")]): ...

`LlamaToolChat` is `LocalToolChat` (assistant/llm/local_chat.py: message rendering, tool-call
parsing, streaming with call markup held back) with llama.cpp underneath: the chat template
comes from the GGUF and is rendered with the same Jinja renderer transformers uses, and every
token is decoded by `LlamaEngine` (assistant/llm/llama_engine.py), which keeps the KV cache of
the prompt prefix between calls and persists the system prompt's head beside the model. It
implements the agent's decoding interface (assistant/llm/decoding.py): name scores, arguments
constrained by the tool's JSON-schema grammar, and greedy completion.

A required call (`tool_choice="any"` or a name) is made the way the router makes one: the bound
names are scored by likelihood and the best one's arguments are decoded under its grammar.
`load_llama_chat(spec)` (what `assistant.llm.loader.load_llm` calls for this engine) opens the
packaged GGUF, a GGUF LoRA adapter and the persisted prompt heads beside the model.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from assistant.llm.adapters import AdapterError, adapter_for_engine
from assistant.llm.loader import AdapterLoadError, ModelLoadError, check_adapter
from assistant.llm.local_chat import LocalToolChat, closing_chunk, cut_at_stop, final_chunk, stream_visible
from assistant.llm.registry import MODEL_REGISTRY, ModelInstallError, ensure_gguf, gguf_path
from assistant.llm.tool_calls import tool_names

ARGUMENTS_INFIX = '", "arguments":'  # after a tool's name inside a call, before its argument object
_ROOT_RULE = re.compile(r"^root ::=", re.MULTILINE)
MAX_STRING_CHARS = 48  # ids, dates and short descriptions: a rambling string ends within the token budget


def arguments_grammar(schema: dict) -> str:
    """GBNF for `" " <a JSON object valid under schema> "}" ["\\n"]`: the rest of a call after `"arguments":`.

    Properties come in the schema's order, required ones always; no other keys are possible. The
    call's own closing brace is part of it: models write `}}` as one token, and a grammar that
    ended after the inner object refused it and pushed decoding into endless digits ("30000...").
    """
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = json.loads(json.dumps({"type": "object", "properties": {}, **schema}))
    schema.setdefault("additionalProperties", False)
    for prop in schema["properties"].values():
        if prop.get("type") == "string" and "enum" not in prop:
            prop.setdefault("maxLength", MAX_STRING_CHARS)  # a rambling string must end inside the token budget
    gbnf = json_schema_to_gbnf(json.dumps(schema))
    # The optional newline: Qwen writes the call's end as one token "}}\n" (its template puts a newline
    # before </tool_call>). A grammar that refused that token pushed greedy decoding into ", " and
    # extra keys copied from the conversation ("segment": ... for explain_user), which rerouted the call.
    return _ROOT_RULE.sub("arguments-object ::=", gbnf, count=1) + '\nroot ::= " " arguments-object "}" "\\n"?\n'


@functools.lru_cache(maxsize=4)
def compiled_chat_template(source: str) -> Any:
    """The GGUF's chat template compiled as transformers' `apply_chat_template` compiles it (same
    sandbox, whitespace options, `tojson`, `raise_exception`, `strftime_now`), so the prompt is the
    same text; tests/test_llama_engine.py compares the two. Importing transformers for it cost a cold
    `shopsight ask` ~1 s of CPU. None for a template using transformers' own `{% generation %}` tag."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError:
        return None


def _object_of_call(text: str) -> str | None:
    """The argument object's JSON when `text` is a finished `{...}}` (object and the call's brace), else None."""
    body = text.strip()
    if not body.endswith("}"):
        return None
    try:
        return body[:-1].strip() if isinstance(json.loads(body[:-1]), dict) else None
    except ValueError:
        return None


class LlamaToolChat(LocalToolChat):
    """Chat model over a `LlamaEngine` (llama.cpp), with tool calling.

    Attributes:
        model: The `LlamaEngine`.
        tokenizer: Unused (llama.cpp tokenizes); kept None so the transformers fields stay one set.
        chat_template: The GGUF's `tokenizer.chat_template`.
        special_tokens: bos_token / eos_token texts for the template.
    """

    tokenizer: Any = None
    chat_template: str = ""
    special_tokens: dict = {}

    @classmethod
    def from_engine(cls, engine: Any, model_name: str = "local", **options: Any) -> "LlamaToolChat":
        """Wrap a loaded engine; the chat template and special tokens come from the GGUF."""
        llm = engine.llm
        template = llm.metadata.get("tokenizer.chat_template", "")
        if not template:
            raise ValueError(f"{llm.model_path}: the GGUF has no chat template (tokenizer.chat_template)")
        specials = {}
        for key, field in (("bos_token", "tokenizer.ggml.bos_token_id"), ("eos_token", "tokenizer.ggml.eos_token_id")):
            if field in llm.metadata:
                specials[key] = llm._model.token_get_text(int(llm.metadata[field]))
        return cls(model=engine, model_name=model_name, chat_template=template, special_tokens=specials, **options)

    @property
    def _llm_type(self) -> str:
        return "shopsight-llama-cpp"

    @property
    def native_tools(self) -> bool:
        return "tools" in self.chat_template

    def apply_template(self, chat: list[dict], tools: list[dict] | None = None,
                       add_generation_prompt: bool = True) -> str:
        template = compiled_chat_template(self.chat_template)
        if template is None:  # a template only transformers' renderer reads ({% generation %} blocks)
            from transformers.utils.chat_template_utils import render_jinja_template

            rendered, _ = render_jinja_template(conversations=[chat], tools=tools or None,
                                                chat_template=self.chat_template,
                                                add_generation_prompt=add_generation_prompt, **self.special_tokens)
            return rendered[0]
        return template.render(messages=chat, tools=tools or None, documents=None,
                               add_generation_prompt=add_generation_prompt, **self.special_tokens)

    # ----- the agent's decoding interface (assistant/llm/decoding.py) ----------------------
    def _ids(self, prompt: str) -> tuple[list[int], int]:
        """Prompt tokens and how many of them are the persisted fixed head (system prompt + tools)."""
        engine = self.model
        head = self.prompt_head(prompt)
        if not head:
            return engine.encode(prompt), 0
        head_ids = engine.encode(head)
        return head_ids + engine.encode(prompt[len(head):]), len(head_ids)

    @property
    def last_reused(self) -> int:
        return self.model.last_reused

    def score_names(self, prompt: str, names: list[str]) -> dict[str, float]:
        engine = self.model
        with engine.lock:
            ids, head = self._ids(prompt)
            scores = engine.score_continuations(ids, [engine.encode(n + '"') for n in names], persist_prefix=head)
        return dict(zip(names, scores))

    def decode_arguments(self, prompt: str, name: str, schema: dict, max_tokens: int = 64) -> str:
        engine = self.model
        with engine.lock:
            ids, _ = self._ids(prompt)
            text = engine.constrained(ids + engine.encode(name + ARGUMENTS_INFIX), arguments_grammar(schema),
                                      max_tokens, done=lambda t: _object_of_call(t) is not None)
        return _object_of_call(text) or text.strip()  # cut short by max_tokens: unparsable, the caller says so

    def complete(self, prompt: str, max_new_tokens: int, stop: tuple[str, ...] = ()) -> tuple[str, int, int]:
        engine = self.model
        with engine.lock:
            ids, head = self._ids(prompt)
            text, n_new = engine.greedy(ids, max_new_tokens, stop_texts=stop, persist_prefix=head)
        return text, len(ids), n_new  # as the transformers engine: a stop text that ended it stays in

    # ----- LangChain entry points ----------------------------------------------------------
    def _setup(self, messages: list[BaseMessage], kwargs: dict) -> tuple[str, str, list[dict], Any, int]:
        tools = kwargs.pop("tools", None) or []
        tool_choice = kwargs.pop("tool_choice", None)
        if tool_choice == "none":
            tools, tool_choice = [], None
        prompt, prefix, required = self.render_prompt(messages, tools, tool_choice)
        return prompt, prefix, tools, required, int(kwargs.get("max_new_tokens", self.max_new_tokens))

    def _required_call(self, prompt: str, prefix: str, tools: list[dict], required: Any) -> str:
        """A call to one of the required tools: the likeliest name, its arguments under its grammar."""
        names = required if isinstance(required, list) else tool_names(tools)
        scores = self.score_names(prompt, names)
        best = max(scores, key=scores.get)
        schema = next(t["function"].get("parameters") or {} for t in tools if t["function"]["name"] == best)
        arguments = self.decode_arguments(prompt, best, schema) or "{}"
        return f'{prefix}{best}{ARGUMENTS_INFIX} {arguments}}}\n</tool_call>'

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        prompt, prefix, tools, required, max_new = self._setup(messages, dict(kwargs))
        if required and prefix:
            text, n_in, n_out = self._required_call(prompt, prefix, tools, required), 0, 0
        else:
            body, n_in, n_out = self.complete(prompt, max_new, tuple(stop or ()))
            text = prefix + cut_at_stop(body, stop)
        return ChatResult(generations=[ChatGeneration(message=self._message(text, tools, n_in, n_out))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        """Answer text as it is decoded; call markup is held back and the last chunk carries the calls."""
        prompt, prefix, tools, required, max_new = self._setup(messages, dict(kwargs))
        if required and prefix:
            final = self._message(self._required_call(prompt, prefix, tools, required), tools, 0, 0)
            yield ChatGenerationChunk(message=final_chunk(final, ""))
            return
        names = tool_names(tools)
        engine = self.model
        with engine.lock:
            ids, head = self._ids(prompt)
            text, shown = yield from stream_visible(engine.stream(ids, max_new, tuple(stop or ()), head), prefix,
                                                    stop, bool(names), run_manager)
        text = cut_at_stop(text, stop)
        final = self._message(text, tools, len(ids), engine.last_new_tokens)
        yield closing_chunk(final, text, shown)


def gguf_identity(gguf: Path, name: str | None) -> dict:
    """Name, hub ids and path of a GGUF (a packaged model's or any file)."""
    packaged = MODEL_REGISTRY.get(name or "")
    return {"name": name if packaged else None, "hub_ids": list(packaged.hub_ids) if packaged else [],
            "path": str(Path(gguf).resolve())}


def _file_stamp(path: Path) -> str:
    stat = Path(path).stat()
    return f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def load_llama_chat(spec: Any, **chat_options: Any) -> "LlamaToolChat":
    """A `LlamaToolChat` over the spec's GGUF (joined and sha256-checked on first use) and GGUF LoRA.

    Args:
        spec: An `assistant.llm.loader.LLMSpec` whose engine is llama.cpp.
        **chat_options: LocalToolChat fields (max_new_tokens, ...).
    """
    import llama_cpp

    from assistant.llm.llama_engine import LlamaEngine

    name = spec.model if spec.model in MODEL_REGISTRY else None
    if name:
        if not spec.auto_install and not gguf_path(name, spec.models_dir).is_file():
            raise ModelLoadError(f"model '{name}' is not installed; run `shopsight models install {name}`")
        try:
            gguf = ensure_gguf(name, spec.models_dir, progress=False)
        except ModelInstallError as exc:
            raise ModelLoadError(str(exc)) from None
        sha = MODEL_REGISTRY[name].sha256 or _file_stamp(gguf)
    else:
        gguf = Path(spec.model).expanduser()
        if not gguf.is_file():
            raise ModelLoadError(f"GGUF file {gguf} does not exist")
        sha = _file_stamp(gguf)
    ident = gguf_identity(gguf, name)
    lora = None
    if spec.adapter:
        # The GGUF LoRA (a file, or adapter.gguf exported into the peft folder), refused when it is
        # stale or its recorded base differs from this GGUF's architecture or packaged name.
        try:
            lora = adapter_for_engine(spec.adapter, "llamacpp", base_gguf=gguf, base_name=name)
        except AdapterError as exc:
            raise AdapterLoadError(str(exc)) from None
        if (lora.parent / "adapter_config.json").is_file():  # a peft folder beside it: its base's name too
            check_adapter(lora.parent, ident, None, spec.model)
    # Everything that changes a prompt prefix's KV state is in its key (the prompt tokens are added per prefix).
    key = json.dumps({"model": sha, "adapter": _file_stamp(lora) if lora else None,
                      "llama_cpp": llama_cpp.__version__, "n_ctx": spec.n_ctx})
    try:
        engine = LlamaEngine.open(gguf, n_threads=spec.n_threads, n_ctx=spec.n_ctx, lora_path=lora,
                                  state_dir=gguf.with_suffix(".kv"), state_key=key)
    except (ValueError, RuntimeError) as exc:
        if lora is not None:
            raise AdapterLoadError(f"llama.cpp could not apply the LoRA adapter {lora} to the model '{spec.model}' "
                                   f"({exc}). Use the adapter with the base model it was trained on, or export "
                                   "it again from its finetune.lora folder (`python -m finetune.export_gguf FOLDER`).") \
                from None
        raise ModelLoadError(f"llama.cpp could not load {gguf} ({exc})") from None
    label = name or gguf.stem
    return LlamaToolChat.from_engine(engine, model_name=label, **chat_options)
