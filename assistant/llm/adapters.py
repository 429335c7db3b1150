"""Which file of a LoRA adapter an engine loads, and whether it was made for the base being loaded.

    path = adapter_for_engine(settings.adapter, "llamacpp", base_gguf=model_file, base_name="qwen2.5-coder-0.5b")
    Llama(model_path=model_file, lora_path=str(path))
    folder = adapter_for_engine(settings.adapter, "transformers")     # the peft folder

`SHOPSIGHT_ADAPTER` may name either form of one adapter: the peft folder `finetune.lora` writes
(`final/`, for transformers) or the GGUF LoRA file exported beside it (`final/adapter.gguf`, for
llama.cpp; `python -m finetune.export_gguf FOLDER` writes it); a run folder stands for its
`final/`. An adapter records the base model
it was trained on (base_model.yaml; copied into the GGUF's metadata), so one made for another
base is refused with both names. Nothing here imports finetune: the keys below are the contract.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tools.paths import file_sha256

ENGINES = ("llamacpp", "transformers")
GGUF_FILE = "adapter.gguf"  # finetune.export_gguf.GGUF_FILE
IDENTITY_KEY = "shopsight.base_identity"  # finetune.export_gguf.IDENTITY_KEY
PEFT_SHA_KEY = "shopsight.peft_sha256"
_COMPARED = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


class AdapterError(ValueError):
    """An adapter the engine cannot use; the message names the adapter, the base and the fix."""


def gguf_strings(path: Path, keys: tuple[str, ...]) -> dict[str, object]:
    """Metadata values of a GGUF file (strings and numbers; arrays by their length)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    out: dict[str, object] = {}
    for key in keys:
        field = reader.get_field(key)
        if field is None:
            continue
        if len(field.data) > 1:  # an array, e.g. the vocabulary
            out[key] = len(field.data)
        else:
            value = field.parts[field.data[0]]
            out[key] = bytes(value).decode("utf-8") if value.dtype.kind == "u" and value.dtype.itemsize == 1 \
                else value.tolist()[0]
    return out


def gguf_base_identity(path: Path) -> dict:
    """The architecture numbers of a GGUF model file, named as in base_model.yaml."""
    arch = gguf_strings(path, ("general.architecture",)).get("general.architecture")
    keys = {"hidden_size": f"{arch}.embedding_length", "num_hidden_layers": f"{arch}.block_count",
            "num_attention_heads": f"{arch}.attention.head_count", "vocab_size": "tokenizer.ggml.tokens"}
    values = gguf_strings(path, tuple(keys.values()))
    return {"model_type": arch, **{name: values.get(key) for name, key in keys.items()}}


def _recorded_identity(adapter: Path) -> dict:
    """What the adapter says about its base: base_model.yaml of a folder, the metadata of a GGUF."""
    if adapter.suffix == ".gguf":
        raw = gguf_strings(adapter, (IDENTITY_KEY,)).get(IDENTITY_KEY)
        return json.loads(raw) if isinstance(raw, str) else {}
    path = adapter / "base_model.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {} if path.is_file() else {}


def check_base(adapter: Path, base: dict, base_label: str) -> None:
    """Refuse (AdapterError) an adapter whose recorded base differs from `base` in name or shape.

    Args:
        adapter: The adapter folder or GGUF file.
        base: What is known of the loaded base: architecture numbers (gguf_base_identity) and,
            for a packaged model, "name" (its registry name) and "hub_ids".
        base_label: How to call the loaded base in the message.
    """
    want = _recorded_identity(adapter)
    if not want:
        return  # an adapter from elsewhere: llama.cpp and peft check the tensor shapes themselves
    theirs = str(want.get("name_or_path") or "unknown")
    diffs = [k for k in _COMPARED if want.get(k) is not None and base.get(k) is not None
             and str(want[k]) != str(base[k])]
    known = {base.get("name"), *(base.get("hub_ids") or [])} - {None}
    from assistant.llm.registry import MODEL_REGISTRY

    if theirs in MODEL_REGISTRY and known and theirs not in known:
        diffs.append("name")
    if diffs:
        raise AdapterError(
            f"LoRA adapter {adapter} was trained on base model '{theirs}', not on the loaded model "
            f"'{base_label}' (they differ in {', '.join(diffs)}). Load it with its base (SHOPSIGHT_MODEL={theirs}) "
            f"or train an adapter on '{base_label}'.")


def run_final(path: Path) -> Path:
    """A finetune.lora run folder (checkpoints/, final/, metrics.jsonl) stands for its final/ adapter;
    any other path is returned as given. A run that has no final/ yet is refused: it has not finished."""
    if not path.is_dir() or (path / "adapter_config.json").is_file() or (path / GGUF_FILE).is_file():
        return path
    if (path / "final").is_dir():
        return path / "final"
    if (path / "checkpoints").is_dir():
        raise AdapterError(f"SHOPSIGHT_ADAPTER {path}: a finetune.lora run with no final/ adapter yet (it has not "
                           "finished); finish it (run the same command again: it resumes) or name a finished run")
    return path


def adapter_for_engine(path: str | Path, engine: str, base_gguf: str | Path | None = None,
                       base_name: str | None = None, base: dict | None = None) -> Path:
    """The adapter file (llama.cpp) or folder (transformers) for `engine`, checked against the base.

    Args:
        path: What SHOPSIGHT_ADAPTER names: a peft adapter folder, a GGUF LoRA file, or a
            finetune.lora run folder (its final/ is used).
        engine: "llamacpp" or "transformers".
        base_gguf: The GGUF model file llama.cpp loads (its architecture is read for the check).
        base_name: The packaged model's registry name, if it is one.
        base: Architecture numbers of the base, when there is no GGUF to read them from
            (transformers: model_type, hidden_size, ... of its config).

    Raises:
        AdapterError: a missing path, a form the engine cannot load without an export (the
            message is the command), a stale export, or an adapter trained on another base.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: use one of {', '.join(ENGINES)}")
    path = Path(path).expanduser()
    if not path.exists():
        raise AdapterError(f"SHOPSIGHT_ADAPTER {path}: no such file or folder")
    path = run_final(path)
    folder = path.parent if path.is_file() else path
    is_peft = (folder / "adapter_config.json").is_file()
    if engine == "llamacpp":
        chosen = path if path.suffix == ".gguf" else folder / GGUF_FILE
        if not chosen.is_file():
            if not is_peft:
                raise AdapterError(f"SHOPSIGHT_ADAPTER {path}: not a LoRA adapter (no {GGUF_FILE} and no "
                                   "adapter_config.json); name a GGUF LoRA file, or a finetune.lora run's final/ "
                                   "folder (its run folder also works)")
            raise AdapterError(f"SHOPSIGHT_ADAPTER {path}: llama.cpp needs a GGUF LoRA file and {chosen} is missing; "
                               f"write it with `python -m finetune.export_gguf {folder}` (or use "
                               "SHOPSIGHT_ENGINE=transformers with the peft folder)")
        peft_file = folder / "adapter_model.safetensors"
        recorded = gguf_strings(chosen, (PEFT_SHA_KEY,)).get(PEFT_SHA_KEY)
        if is_peft and peft_file.is_file() and recorded and recorded != file_sha256(peft_file):
            raise AdapterError(f"{chosen} was exported from an older {peft_file.name}; export it again: "
                               f"`python -m finetune.export_gguf {folder}`")
    else:
        if not is_peft:
            raise AdapterError(f"SHOPSIGHT_ADAPTER {path}: no adapter_config.json in {folder}; the transformers "
                               "engine loads a peft adapter folder (finetune.lora's final/), and a GGUF LoRA file "
                               "alone works with SHOPSIGHT_ENGINE=llamacpp")
        chosen = folder
    identity = dict(base or {})
    if base_gguf is not None:
        identity.update(gguf_base_identity(Path(base_gguf)))
    if base_name:
        from assistant.llm.registry import MODEL_REGISTRY

        identity["name"] = base_name
        identity["hub_ids"] = list(getattr(MODEL_REGISTRY.get(base_name), "hub_ids", ()))
    check_base(chosen, identity, base_name or str(base_gguf or "the loaded model"))
    return chosen
