"""LoRA adapter folders: what base model they belong to, atomic saving, checked loading.

An adapter folder holds peft's files (adapter_config.json, adapter_model.safetensors), the
resolved run config (config.yaml) and the base model's identity (base_model.yaml). The
identity is the architecture numbers plus a fingerprint of the token embeddings, so an
adapter is refused on another base model even when both have the same shapes, and accepted
on the same weights loaded from another path or in another dtype (bf16 / fp32 / 4-bit).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
import yaml

IDENTITY_FILE = "base_model.yaml"
CONFIG_FILE = "config.yaml"
_ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def _input_embeddings(model) -> torch.Tensor:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_input_embeddings().weight


def base_identity(model, name_or_path: str) -> dict:
    """The identity of a loaded base model: architecture numbers and an embedding fingerprint.

    The fingerprint hashes the first 64 embedding rows rounded to bf16, so fp32 and bf16 loads
    of the same weights agree (embeddings are never 4-bit quantized).
    """
    config = model.config
    rows = _input_embeddings(model)[:64].detach().to("cpu", torch.bfloat16).view(torch.int16)
    identity = {key: getattr(config, key, None) for key in _ARCH_KEYS}
    identity["name_or_path"] = str(name_or_path)
    identity["embedding_sha256"] = hashlib.sha256(rows.numpy().tobytes()).hexdigest()
    return identity


def check_base(adapter_dir: str | Path, model, name_or_path: str) -> None:
    """Refuse (ValueError) an adapter trained on a different base model than `model`."""
    path = Path(adapter_dir) / IDENTITY_FILE
    if not path.is_file():
        raise ValueError(f"{adapter_dir}: no {IDENTITY_FILE}; this is not an adapter written by "
                         "finetune.lora, so its base model cannot be checked. Retrain it with "
                         "`python -m finetune.lora --config ...`.")
    want = yaml.safe_load(path.read_text(encoding="utf-8"))
    have = base_identity(model, name_or_path)
    diffs = [k for k in (*_ARCH_KEYS, "embedding_sha256") if want.get(k) != have.get(k)]
    if diffs:
        raise ValueError(
            f"{adapter_dir} was trained on base model {want.get('name_or_path')!r}, but the loaded base "
            f"{name_or_path!r} differs in {', '.join(diffs)}. Load the adapter on "
            f"{want.get('name_or_path')!r} (--base_model), or train a new adapter on this base.")


def write_atomically(folder: str | Path, write) -> Path:
    """Call `write(tmp_folder)`, then move the result to `folder` in one rename.

    A crash mid-save leaves the previous folder (or nothing), never a half-written one.
    """
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    return folder


def save_adapter(folder: str | Path, model, tokenizer, config: dict, identity: dict) -> Path:
    """Save the adapter, tokenizer, resolved config and base identity into `folder` atomically."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        (tmp / IDENTITY_FILE).write_text(yaml.safe_dump(identity, sort_keys=False), encoding="utf-8")

    return write_atomically(folder, write)


def load_adapter(model, adapter_dir: str | Path, name_or_path: str, trainable: bool = False):
    """Wrap `model` with the adapter in `adapter_dir` after checking it matches the base."""
    from peft import PeftModel

    check_base(adapter_dir, model, name_or_path)
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)


def check_init_adapter(folder: str | Path, lora_r: int, lora_targets: list[str]) -> None:
    """Refuse (SystemExit) an adapter to start from whose rank or targets differ from the run's.

    The run's memory check and its saved config use the run's values, so they must be the adapter's.
    """
    config_file = Path(folder) / "adapter_config.json"
    if not config_file.is_file():
        raise SystemExit(f"--init_adapter {folder}: no adapter_config.json there; give a `final/` folder "
                         "written by finetune.lora.")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    theirs = (int(config.get("r", -1)), sorted(config.get("target_modules") or []))
    ours = (int(lora_r), sorted(lora_targets))
    if theirs != ours:
        raise SystemExit(f"--init_adapter {folder} has lora_r={theirs[0]} and targets {theirs[1]}; this run asks "
                         f"for lora_r={ours[0]} and {ours[1]}. Set --lora_r and --lora_targets to the adapter's values.")
