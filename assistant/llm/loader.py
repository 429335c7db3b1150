"""Load a chat model: a packaged model by name, a GGUF file, a local HF folder, a hub id, or a server URL.

    chat = load_llm(LLMSpec.from_settings(Settings.from_env()))   # the app's path
    chat = load_llm("qwen2.5-coder-0.5b")                           # llama.cpp over the packaged GGUF
    model, tokenizer = load_chat_model(LLMSpec(engine="transformers"))  # for training / evaluation

Engines (`LLMSpec.engine`, SHOPSIGHT_ENGINE): "llamacpp" (default) runs a packaged model's GGUF as
shipped in process (`LlamaToolChat`, assistant/llm/llama_chat.py); "transformers" loads the bf16
cache (converted once) or an HF folder (`LocalToolChat`), with dtype "auto" = bf16 only where the
CPU has native bf16 (AMX / AVX512_BF16) or on CUDA, else fp32 (emulated bf16 is ~6x slower). An
HF folder, a hub id, 4-bit loading or a CUDA device always use transformers; an x86 CPU without
AVX2 falls back to transformers fp32 (said once). An http(s) URL talks to an OpenAI-compatible
server such as vLLM (`OpenAICompatChat`). A LoRA adapter made for another base model is refused,
naming both.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import tools.paths  # noqa: F401  (offline environment before transformers is imported)
from assistant.llm.registry import (
    CACHE_INFO_FILE,
    DEFAULT_MODEL,
    MODEL_REGISTRY,
    ModelInstallError,
    cache_dir,
    ensure_model,
    is_cached,
)

log = logging.getLogger(__name__)

DTYPES = ("auto", "bf16", "fp32", "fp16")
ENGINES = ("llamacpp", "transformers")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
_said: set[str] = set()


def say_once(message: str) -> None:
    """Print a note about a choice made for the user once per process (stderr)."""
    if message not in _said:
        _said.add(message)
        print(f"note: {message}", file=sys.stderr, flush=True)


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_dtype(dtype: str, device: str = "cpu", flags: set[str] | None = None) -> str:
    """The transformers dtype: "auto" is bf16 on CUDA or a CPU with native bf16, else fp32 (said once)."""
    if dtype != "auto":
        return dtype
    if device != "cpu":
        return "bf16"
    flags = cpu_flags() if flags is None else flags
    native = [f for f in NATIVE_BF16_FLAGS if f in flags]
    if native:
        say_once(f"transformers engine: bf16 (the CPU has native bf16: {', '.join(native)})")
        return "bf16"
    say_once("transformers engine: fp32 (this CPU has no native bf16 (amx_bf16 / avx512_bf16); emulated bf16 "
             "is ~6x slower; set SHOPSIGHT_DTYPE=bf16 to force it)")
    return "fp32"


class ModelLoadError(RuntimeError):
    """A model or adapter cannot be loaded; the message says why and what to run."""


class AdapterLoadError(ModelLoadError):
    """The model loads but SHOPSIGHT_ADAPTER's LoRA adapter cannot be used with it (the message says why)."""


@dataclass
class LLMSpec:
    """Which model to load and how.

    Attributes:
        model: A registry name, a local HF folder, a hub id, or an http(s):// server URL.
        dtype: "bf16" (default), "fp32" or "fp16" (GPU only).
        load_in_4bit: Quantize linear layers to NF4 with bitsandbytes.
        adapter: A LoRA adapter folder (peft), or None.
        device: "cpu" or a CUDA device such as "cuda:0".
        models_dir: Where packaged model caches live (default SHOPSIGHT_HOME/models).
        served_model: For a server URL, the served model name (default: the server's first).
        auto_install: Join (and, for transformers, convert) an installed packaged model on first use.
        engine: "llamacpp" (default: the GGUF as shipped) or "transformers".
        n_threads: llama.cpp threads (default: the CPU count, at most 8).
        n_ctx: llama.cpp context length in tokens.
    """

    model: str = DEFAULT_MODEL
    dtype: str = "auto"
    load_in_4bit: bool = False
    adapter: str | None = None
    device: str = "cpu"
    models_dir: Path | None = None
    served_model: str | None = None
    auto_install: bool = True
    engine: str = "llamacpp"
    n_threads: int | None = None
    n_ctx: int = 8192

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype '{self.dtype}' is not one of {', '.join(DTYPES)}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine '{self.engine}' is not one of {', '.join(ENGINES)} (SHOPSIGHT_ENGINE)")
        if self.is_server and (self.load_in_4bit or self.adapter):
            raise ValueError("load_in_4bit and adapter apply to in-process models; a server loads its "
                             "own weights (serve the adapter with vLLM's --lora-modules and name it)")

    @property
    def is_server(self) -> bool:
        return self.model.startswith(("http://", "https://"))

    @classmethod
    def from_settings(cls, settings: Any) -> "LLMSpec":
        """Build from `assistant.config.Settings`."""
        return cls(model=settings.model, dtype=settings.dtype, load_in_4bit=settings.load_in_4bit,
                   adapter=settings.adapter or None, device=settings.device, models_dir=settings.models_dir,
                   engine=getattr(settings, "engine", "llamacpp"), n_threads=getattr(settings, "threads", 0) or None,
                   n_ctx=getattr(settings, "n_ctx", 8192))

    def engine_in_use(self, flags: set[str] | None = None) -> str:
        """The engine that will run this spec: llama.cpp only for GGUF weights on a CPU that can run them."""
        if self.is_server:
            return "server"
        gguf = self.model in MODEL_REGISTRY or self.model.endswith(".gguf")
        if self.engine != "llamacpp" or not gguf or self.load_in_4bit or self.device != "cpu":
            return "transformers"
        flags = cpu_flags() if flags is None else flags
        if platform.machine().lower() in ("x86_64", "amd64") and flags and "avx2" not in flags:
            say_once("this CPU has no AVX2: the llama.cpp build here needs it, so the transformers engine "
                     "(fp32) runs instead; expect several times slower answers")
            return "transformers"
        return "llamacpp"


def resolve_source(spec: LLMSpec) -> tuple[str, dict]:
    """Where the weights come from, and what we know about the model's identity.

    Returns:
        (path or hub id for `from_pretrained`, identity dict with name / hub_ids / path).
    """
    name = spec.model
    if name in MODEL_REGISTRY:
        if not is_cached(name, spec.models_dir):
            if not spec.auto_install:
                raise ModelLoadError(f"model '{name}' is not installed; run `shopsight models install {name}`")
            try:
                ensure_model(name, spec.models_dir)
            except ModelInstallError as exc:
                raise ModelLoadError(str(exc)) from None
        folder = cache_dir(name, spec.models_dir)
        return str(folder), identity_of(folder)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model folder (no config.json). Give a folder "
                                 f"made by save_pretrained, or a packaged model: {', '.join(MODEL_REGISTRY)}")
        return str(path.resolve()), identity_of(path)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name, {"name": None, "hub_ids": [name], "path": None}
    raise ModelLoadError(f"model '{name}' is neither a packaged model ({', '.join(MODEL_REGISTRY)}), "
                         "an existing folder, a hub id (org/name) nor an http(s):// URL")


def identity_of(folder: Path) -> dict:
    """Name, hub ids and architecture fingerprint of a model folder (from our info file and config)."""
    folder = Path(folder)
    ident: dict[str, Any] = {"name": None, "hub_ids": [], "path": str(folder.resolve())}
    info = folder / CACHE_INFO_FILE
    if info.is_file():
        data = yaml.safe_load(info.read_text()) or {}
        ident["name"] = data.get("name")
        ident["hub_ids"] = list(data.get("hub_ids") or [])
    config = folder / "config.json"
    if config.is_file():
        cfg = json.loads(config.read_text())
        ident["fingerprint"] = {k: cfg.get(k) for k in (
            "model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size",
            "num_attention_heads", "num_key_value_heads")}
    return ident


def _torch_dtype(dtype: str):
    import torch

    return {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[dtype]


def load_chat_model(spec: LLMSpec | str | None = None) -> tuple[Any, Any]:
    """Load an in-process model and tokenizer as the spec says.

    Args:
        spec: An LLMSpec, or just a model name / folder / hub id (bf16, no adapter).

    Returns:
        (model in eval mode, tokenizer).

    Raises:
        ModelLoadError: a missing model (naming the command that installs it), a hub id not in
            the local cache while offline, or an adapter trained on another base model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = LLMSpec(model=spec) if isinstance(spec, str) else (spec or LLMSpec())
    if spec.is_server:
        raise ModelLoadError(f"{spec.model} is a server URL: use load_llm(), which returns a chat client")
    source, ident = resolve_source(spec)
    dtype = resolve_dtype(spec.dtype, spec.device)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype)}
    if spec.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=_torch_dtype(dtype))
        kwargs["device_map"] = spec.device
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        if ident["path"] is None:  # a hub id that is not in the local cache
            raise ModelLoadError(
                f"model '{spec.model}' is not available offline ({exc.__class__.__name__}). ShopSight never "
                f"downloads at run time: install a packaged model with `shopsight models install "
                f"{DEFAULT_MODEL}` (or one of {', '.join(MODEL_REGISTRY)}), or give a local folder") from None
        raise
    if not spec.load_in_4bit:
        model.to(spec.device)
    if spec.adapter:
        from assistant.llm.adapters import AdapterError, adapter_for_engine

        try:  # SHOPSIGHT_ADAPTER may name the exported GGUF LoRA: its peft folder is what transformers loads
            folder = adapter_for_engine(spec.adapter, "transformers")
        except AdapterError as exc:
            raise AdapterLoadError(str(exc)) from None
        check_adapter(folder, ident, model, spec.model)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(folder))
        if not spec.load_in_4bit:
            model = model.merge_and_unload()  # plain weights generate faster than a LoRA wrapper
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.shopsight_identity = ident  # for logs and the adapter check of later loads
    return model, tokenizer


def _adapter_shapes(adapter: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the LoRA tensors in an adapter folder, read from the file header only."""
    st = adapter / "adapter_model.safetensors"
    if st.is_file():
        from safetensors import safe_open

        with safe_open(str(st), "pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    binary = adapter / "adapter_model.bin"
    if binary.is_file():
        import torch

        return {k: tuple(v.shape) for k, v in torch.load(binary, map_location="meta", weights_only=True).items()}
    raise AdapterLoadError(f"{adapter}: no adapter_model.safetensors (is this a peft adapter folder?)")


def check_adapter(adapter: Path, ident: dict, model: Any, model_label: str) -> None:  # model None: names only
    """Refuse a LoRA adapter that was trained on another base model.

    Checks the adapter's recorded base model against the loaded model's name, hub ids, folder
    and architecture, then every LoRA tensor's shape against the layer it adapts.

    Raises:
        ModelLoadError: naming the adapter, its base model, the loaded model and the fix.
    """
    cfg_path = adapter / "adapter_config.json"
    if not cfg_path.is_file():
        raise AdapterLoadError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    cfg = json.loads(cfg_path.read_text())
    base = str(cfg.get("base_model_name_or_path") or "")
    ours = ident.get("name") or ident.get("path") or model_label

    def refuse(why: str) -> None:
        raise AdapterLoadError(
            f"LoRA adapter {adapter} was trained on base model '{base or 'unknown'}', not on the loaded "
            f"model '{ours}' ({why}). Load it with its base model (--model {base or '<its base>'}) or "
            f"train an adapter on '{ours}'.")

    known = {ident.get("name"), ident.get("path"), model_label, *ident.get("hub_ids", [])} - {None, ""}
    if ident.get("path"):
        known.add(Path(ident["path"]).name)
    if base and base not in known:
        base_path = Path(base).expanduser()
        if base_path.is_dir():
            other = identity_of(base_path)
            if other["path"] == ident.get("path"):
                pass
            elif other.get("name") and ident.get("name"):
                if other["name"] != ident["name"]:
                    refuse(f"its base is the packaged model '{other['name']}'")
            elif other.get("fingerprint") and ident.get("fingerprint") and other["fingerprint"] != ident["fingerprint"]:
                refuse("the architectures differ: "
                       f"{other.get('fingerprint')} vs {ident.get('fingerprint')}")
        else:
            registry_names = {n: {n, *m.hub_ids} for n, m in MODEL_REGISTRY.items()}
            for name, aliases in registry_names.items():
                if base in aliases and name != ident.get("name"):
                    refuse(f"'{base}' is the packaged model '{name}'")
    if model is None:
        return  # llama.cpp checks the LoRA tensors' shapes itself when it applies them
    # Shapes: catches an adapter for another size even when its base was recorded as a path
    # that no longer exists.
    modules = dict(model.named_modules())
    for key, shape in _adapter_shapes(adapter).items():
        if ".lora_A." not in key and ".lora_B." not in key:
            continue
        target = key.split(".lora_")[0].removeprefix("base_model.model.")
        module = modules.get(target)
        if module is None:
            refuse(f"it adapts layer '{target}', which the loaded model does not have")
        in_f, out_f = getattr(module, "in_features", None), getattr(module, "out_features", None)
        if ".lora_A." in key and in_f is not None and shape[-1] != in_f:
            refuse(f"layer '{target}' takes {in_f} inputs, the adapter expects {shape[-1]}")
        if ".lora_B." in key and out_f is not None and shape[0] != out_f:
            refuse(f"layer '{target}' gives {out_f} outputs, the adapter expects {shape[0]}")


def load_llm(spec: LLMSpec | str | None = None, **chat_options: Any):
    """A LangChain chat model with tool calling, as the spec says.

    Args:
        spec: An LLMSpec or a model string (name, GGUF file, folder, hub id, or server URL).
        **chat_options: Passed to the chat model (max_new_tokens, temperature,
            constrain_tool_names, force_tool_prefix, ...).

    Returns:
        `LlamaToolChat` (llama.cpp) or `LocalToolChat` (transformers) for in-process models,
        `OpenAICompatChat` for a server URL.
    """
    spec = LLMSpec(model=spec) if isinstance(spec, str) else (spec or LLMSpec())
    engine = spec.engine_in_use()
    if engine == "server":
        from assistant.llm.openai_chat import OpenAICompatChat

        return OpenAICompatChat(base_url=spec.model, served_model=spec.served_model, **chat_options)
    if engine == "llamacpp":
        from assistant.llm.llama_chat import load_llama_chat

        return load_llama_chat(spec, **chat_options)
    from assistant.llm.local_chat import LocalToolChat

    model, tokenizer = load_chat_model(spec)
    label = spec.model if spec.model in MODEL_REGISTRY else Path(spec.model).name or spec.model
    return LocalToolChat(model=model, tokenizer=tokenizer, model_name=label, **chat_options)
