"""One settings object for the assistant: paths, model choice, device, horizons.

Every field can be set from the environment with the prefix SHOPSIGHT_ (for example
SHOPSIGHT_MODEL=qwen2.5-coder-1.5b, SHOPSIGHT_ENGINE=transformers, SHOPSIGHT_LOAD_IN_4BIT=1). Paths default to the
home folder of `tools.paths` so the assistant and the tools agree on where things live.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from tools import paths

PREDICTOR_NAME = "shop"  # the predictor checkpoint of the home's shop, models/predictor/shop
LEGACY_PREDICTOR_NAME = "demo"  # what every home's checkpoint was called before 2026-12


def _env_value(name: str, default, kind):
    raw = os.environ.get(f"SHOPSIGHT_{name.upper()}")
    if raw is None or raw == "":
        return default
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind is int:
        return int(raw)
    if kind is tuple:
        parts = [part.strip() for part in raw.split(",") if part.strip()]
        if not all(part.isdigit() and int(part) > 0 for part in parts):
            raise SystemExit(f"SHOPSIGHT_{name.upper()}={raw!r}: give whole days separated by commas, e.g. 7,30 "
                             "(the assistant's horizons are days; minutes and hours are for `shopsight bench run`)")
        return tuple(int(part) for part in parts)
    if kind is Path:
        return Path(raw).expanduser()
    return raw


@dataclass
class Settings:
    """Resolved settings; build with `Settings.from_env()`."""

    home: Path = field(default_factory=paths.shopsight_home)
    db_path: Path = field(default_factory=paths.default_db_path)
    chroma_path: Path = field(default_factory=paths.default_chroma_path)
    chroma_url: str = ""  # a Chroma server (http://host:port); empty = PersistentClient at chroma_path
    models_dir: Path = field(default_factory=paths.default_models_dir)
    model: str = "qwen2.5-coder-0.5b"  # a registry name, a local HF folder, a hub id, or an http(s) URL
    adapter: str = ""  # a LoRA adapter folder (peft; with adapter.gguf for llama.cpp) or a GGUF LoRA file
    # "llamacpp": the packaged GGUF as shipped (llama.cpp, in process); "transformers": training,
    # evaluation, GPU (assistant/llm/loader.py says which runs when).
    engine: str = "llamacpp"
    threads: int = 0  # llama.cpp threads; 0 = the cores not already busy (assistant/llm/llama_engine.py)
    n_ctx: int = 8192  # llama.cpp's context in tokens: a follow-up after a long tool result passed 4,096
    dtype: str = "auto"  # transformers only: auto = bf16 with native bf16 (AMX / AVX512_BF16) or CUDA, else fp32
    load_in_4bit: bool = False
    device: str = "cpu"
    predictor: str = ""  # checkpoint name under models_dir/predictor/; empty = default_predictor_name(models_dir)
    horizons_days: tuple = (7, 30)
    currency: str = "USD"  # the shop's ISO 4217 code; money in answers is in it (checked by tools.catalog.money)
    max_agent_steps: int = 6
    # Who writes answers: "brief" (the composer's grounded answer at once, then a short model
    # takeaway), "model" (the model writes it, with fallbacks) or "template" (composer only).
    answer_mode: str = "brief"
    tool_prior: bool = True  # the exemplar prior over tools (assistant/agent/tool_prior.py) helps the router
    max_new_tokens: int = 256
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str = ""  # "user:password" or a path to a file of such lines

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        settings = cls()
        # __post_init__ named the checkpoint from the default models_dir; SHOPSIGHT_MODELS_DIR or an override
        # may point elsewhere, so the name is derived again below, from the final models_dir.
        settings.predictor = ""
        for f in fields(cls):
            default = getattr(settings, f.name)
            kind = type(default) if not isinstance(default, Path) else Path
            setattr(settings, f.name, _env_value(f.name, default, kind))
        for name, value in overrides.items():
            if value is not None:
                setattr(settings, name, value)
        if not settings.predictor:  # after models_dir is final: the name depends on what the home holds
            settings.predictor = default_predictor_name(settings.models_dir)
        return settings

    def __post_init__(self) -> None:
        if not self.predictor:
            self.predictor = default_predictor_name(self.models_dir)

    @property
    def predictor_dir(self) -> Path:
        return self.models_dir / "predictor" / self.predictor


def default_predictor_name(models_dir: Path) -> str:
    """The checkpoint a home uses when SHOPSIGHT_PREDICTOR is unset: "shop", or "demo" in an older home.

    Before 2026-12 every home's checkpoint was `models/predictor/demo` (versions `demo-...`) whatever
    its shop; a user with a CDNOW shop read "demo" everywhere. New homes write `shop`. A home that
    holds a `demo` folder and no finished `shop` checkpoint keeps using `demo`, retrains included:
    nothing is moved, renamed or retrained behind the user's back; `predictor train --name shop`
    moves it over once finished (docs/models.md, "Predictor checkpoints").
    """
    root = Path(models_dir) / "predictor"
    if (root / LEGACY_PREDICTOR_NAME).is_dir() and not (root / PREDICTOR_NAME / "config.yaml").is_file():
        return LEGACY_PREDICTOR_NAME
    return PREDICTOR_NAME


def read_auth(spec: str) -> list[tuple[str, str]] | None:
    """SHOPSIGHT_AUTH: 'user:password', or a file with one 'user:password' a line (the workspace's
    login, and what `shopsight ask` logs in with when it forwards a question to a running workspace)."""
    if not spec:
        return None
    lines = Path(spec).read_text().splitlines() if Path(spec).is_file() else [spec]
    pairs = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            where = f"{spec}:{number}" if Path(spec).is_file() else "SHOPSIGHT_AUTH / --auth"
            raise SystemExit(f"{where}: expected 'user:password', got {line!r}")
        pairs.append((user, password))
    if not pairs:
        raise SystemExit(f"{spec}: no 'user:password' line; add one or unset SHOPSIGHT_AUTH")
    return pairs
