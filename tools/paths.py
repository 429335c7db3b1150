"""Where ShopSight keeps its files: one home folder, overridable by SHOPSIGHT_HOME.

Lives in `tools` (not `assistant.config`) because tools must never import the assistant,
yet the store, the predictor and the case memory all need the same defaults.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

# Offline by default: no code path may reach a hub or an analytics host.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",  # chromadb's posthog telemetry
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)

# On CPUs with avx512_bf16, importing bitsandbytes (sentence-transformers and peft do) tries to fetch a
# 4-bit kernel from the Hub with the optional `kernels` package, which offline it must not; it then
# uses its own CPU kernel and warns about it on every start. The warning tells a user to install a
# package that would download code at run time: silenced here, where the offline rules live.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def shopsight_home() -> Path:
    """The home folder: $SHOPSIGHT_HOME, else ~/.shopsight (created on first use)."""
    home = Path(os.environ.get("SHOPSIGHT_HOME") or Path.home() / ".shopsight").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def default_db_path() -> Path:
    """The DuckDB event store file."""
    return Path(os.environ.get("SHOPSIGHT_DB") or shopsight_home() / "shop.duckdb")


def default_chroma_path() -> Path:
    """The Chroma PersistentClient folder of the case memory."""
    return shopsight_home() / "chroma"


def default_models_dir() -> Path:
    """Converted LLM caches, predictor checkpoints and adapters live here."""
    path = shopsight_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 8 MB blocks: a GGUF of a GB, a checkpoint, a dataset, an adapter.

    One digest for every layer (the model registry, predictor checkpoints, bench datasets): it lives
    here because tools must never import the assistant.
    """
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
