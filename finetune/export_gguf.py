"""Export a peft LoRA adapter folder as a GGUF LoRA file that llama.cpp applies to the GGUF base.

    python -m finetune.export_gguf out/lora_qwen05_demo/final        # writes final/adapter.gguf
    Llama(model_path=base.gguf, lora_path="out/lora_qwen05_demo/final/adapter.gguf")

`finetune.lora` calls `export_adapter` on each final adapter, so training with transformers +
peft and serving with llama.cpp use the same adapter (SHOPSIGHT_ADAPTER takes either; see
assistant/llm/adapters.py). Written with the pinned `gguf` package, no llama.cpp script:

- each `...layers.N.<proj>.lora_A/B.weight` becomes `blk.N.<gguf name>.weight.lora_a/b`, the
  names of the `gguf` package's tensor map for the base's architecture (llama, qwen2);
- A is stored as peft keeps it, (r, in), and B as (out, r): GGUF lists dimensions in reverse,
  so llama.cpp sees A as [in, r] and B as [r, out] beside the base weight's [in, out];
- llama.cpp reorders the rows of a Llama model's q and k projections for its rotary embedding
  (the GGUF converter does it to the base weights); B's rows move the same way, A is untouched;
- the scale: llama.cpp multiplies by `adapter.lora.alpha / r`; peft by lora_alpha / r (or
  lora_alpha / sqrt(r) with rsLoRA, written as alpha * sqrt(r));
- the base identity of base_model.yaml and the peft file's sha256 go into the metadata
  (`shopsight.*`), so another base and a stale export are refused when loading.
The tensors are float32: LoRA matrices are small (r x width), and llama.cpp applies them in f32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import yaml

from tools.paths import file_sha256

GGUF_FILE = "adapter.gguf"
IDENTITY_KEY = "shopsight.base_identity"  # base_model.yaml as JSON
PEFT_SHA_KEY = "shopsight.peft_sha256"  # of adapter_model.safetensors, to see a stale export
ARCHITECTURES = ("llama", "qwen2")


class ExportError(ValueError):
    """The adapter folder cannot be exported; the message names the file and the fix."""


def _read_adapter(folder: Path) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """(adapter_config.json, base identity, LoRA tensors as float32 numpy) of a finetune.lora folder."""
    from safetensors.numpy import load_file

    config_file, weights, identity_file = (folder / "adapter_config.json", folder / "adapter_model.safetensors",
                                           folder / "base_model.yaml")
    for path in (config_file, weights, identity_file):
        if not path.is_file():
            raise ExportError(f"{path}: missing; give an adapter folder written by finetune.lora (its final/)")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    identity = yaml.safe_load(identity_file.read_text(encoding="utf-8")) or {}
    if config.get("peft_type", "LORA") != "LORA":
        raise ExportError(f"{config_file}: peft_type {config.get('peft_type')!r}; only LoRA adapters export to GGUF")
    if config.get("use_dora"):
        raise ExportError(f"{config_file}: use_dora is true; llama.cpp applies plain LoRA only")
    try:
        tensors = {k: v.astype(np.float32) for k, v in load_file(str(weights)).items()}
    except Exception as exc:  # a bf16 file: safetensors' numpy loader has no bf16
        if "bf16" not in str(exc).lower() and "bfloat16" not in str(exc).lower():
            raise
        from safetensors.torch import load_file as load_torch

        tensors = {k: v.float().numpy() for k, v in load_torch(str(weights)).items()}
    return config, identity, tensors


def _permute_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """The row order llama.cpp's Llama graph expects for a q or k projection (per head: the two
    rotary halves interleaved), applied to the rows of a LoRA B matrix."""
    out = rows.shape[0]
    return rows.reshape(n_head, 2, out // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def export_adapter(folder: str | Path, out: str | Path | None = None, base_config: dict | None = None) -> Path:
    """Write the GGUF LoRA file of a peft adapter folder (default `folder/adapter.gguf`).

    Args:
        folder: A finetune.lora adapter folder (adapter_config.json, adapter_model.safetensors,
            base_model.yaml).
        out: The GGUF file to write (written to a temporary name, then renamed).
        base_config: The base model's config.json values (num_attention_heads,
            num_key_value_heads) for a Llama base; default: read from the adapter's
            base_model_name_or_path folder, else base_model.yaml.

    Returns:
        The written file.

    Raises:
        ExportError: a folder that is not a LoRA adapter, an architecture llama.cpp's LoRA
            loader is not known to take here, or a tensor name that maps to no GGUF tensor.
    """
    import gguf

    folder = Path(folder)
    config, identity, tensors = _read_adapter(folder)
    arch_name = str(identity.get("model_type") or "")
    if arch_name not in ARCHITECTURES:
        raise ExportError(f"{folder / 'base_model.yaml'}: model_type {arch_name!r}; GGUF export supports "
                          f"{', '.join(ARCHITECTURES)}")
    base = dict(base_config or {})
    base_dir = Path(str(config.get("base_model_name_or_path") or "")).expanduser()
    if not base and (base_dir / "config.json").is_file():
        base = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    n_head = int(base.get("num_attention_heads") or identity.get("num_attention_heads") or 0)
    n_head_kv = int(base.get("num_key_value_heads") or n_head)
    arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch_name)
    n_layers = int(identity.get("num_hidden_layers") or 0)
    names = gguf.get_tensor_name_map(arch, n_layers)
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    if config.get("use_rslora"):
        alpha *= math.sqrt(rank)  # peft scales by alpha / sqrt(r); llama.cpp divides by r

    out = Path(out) if out else folder / GGUF_FILE
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch_name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_string(IDENTITY_KEY, json.dumps(identity, sort_keys=True, default=str))
    writer.add_string(PEFT_SHA_KEY, file_sha256(folder / "adapter_model.safetensors"))
    for key in sorted(tensors):
        if ".lora_A." not in key and ".lora_B." not in key:
            raise ExportError(f"{folder / 'adapter_model.safetensors'}: tensor {key!r} is no LoRA A/B matrix "
                              "(modules_to_save or trained embeddings do not export to a GGUF LoRA)")
        module, kind = key.removeprefix("base_model.model.").split(".lora_")
        gguf_name = names.get_name(module)
        if gguf_name is None:
            raise ExportError(f"{folder / 'adapter_model.safetensors'}: {module!r} has no GGUF tensor name "
                              f"for architecture {arch_name}")
        data = tensors[key]
        if kind.startswith("B") and arch_name == "llama" and module.endswith(("q_proj", "k_proj")):
            data = _permute_rows(data, n_head if module.endswith("q_proj") else n_head_kv)
        writer.add_tensor(f"{gguf_name}.weight.lora_{kind[0].lower()}", np.ascontiguousarray(data))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a peft LoRA adapter folder as a GGUF LoRA file.")
    parser.add_argument("adapter", type=Path, help="an adapter folder written by finetune.lora (its final/)")
    parser.add_argument("--out", type=Path, default=None, help=f"the GGUF file (default ADAPTER/{GGUF_FILE})")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        path = export_adapter(args.adapter, args.out)
    except ExportError as err:
        raise SystemExit(str(err)) from None
    print(f"GGUF LoRA written to {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
