"""The numpy MiniLM encoder gives the vectors sentence-transformers gives, from the same packaged files."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.llm.sentence_encoder import MiniLMEncoder, minilm_folder

TEXTS = ["Which users will churn this week and why?", "Summarize the reviews of item P00123.",
         "hi", "Wie viele Kunden sind gefährdet? Ünïcödé and a very " + "long " * 300 + "question"]


@pytest.fixture(scope="module")
def folder():
    try:
        return minilm_folder()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_vectors_match_sentence_transformers(folder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = np.stack(MiniLMEncoder(folder, batch_size=3)(TEXTS))  # batches of unequal lengths: padding is masked
    assert got.shape == expected.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() > 0.9999, cosines
    assert np.abs(got - expected).max() < 1e-3


def test_a_folder_with_another_pipeline_is_refused(folder, tmp_path) -> None:
    import json
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    pooling = next(m for m in json.loads((copy / "modules.json").read_text()) if m["type"].endswith("Pooling"))
    config = copy / pooling["path"] / "config.json"
    settings = json.loads(config.read_text())
    settings.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    config.write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="mean Pooling"):
        MiniLMEncoder(copy)
