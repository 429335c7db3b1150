"""What the workspace tells the user to do points at what is actually wrong (new-user trial, Round 9).

A bad SHOPSIGHT_ADAPTER is named with its fault and the way back, not "run `shopsight models
install`"; a reviews-only store is told it lacks events, not sent to `shopsight cases build` or
`shopsight predictor train`, which would only say that again. Real DuckDB store (the shipped
Amazon fine-food reviews), real Chroma, tiny real GGUF models built here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from assistant.config import Settings
from assistant.workspace import PartUnavailable, Workspace
from tools.data.store import EventStore

REVIEWS_CSV = Path(__file__).resolve().parents[1] / "data" / "amazon_finefood_reviews_7567.csv"


@pytest.fixture(scope="module")
def reviews_only(tmp_path_factory):
    home = tmp_path_factory.mktemp("reviews_home")
    head = "".join(REVIEWS_CSV.read_text(encoding="utf-8").splitlines(keepends=True)[:200])
    (home / "Reviews.csv").write_text(head, encoding="utf-8")
    store = EventStore(home / "shop.duckdb")
    store.import_file(home / "Reviews.csv")
    settings = Settings(home=home, db_path=home / "shop.duckdb", chroma_path=home / "chroma",
                        models_dir=home / "models", predictor="demo")
    yield settings, store
    store.close()


def test_a_reviews_only_store_is_told_it_lacks_events_not_sent_to_build_commands(reviews_only):
    settings, store = reviews_only
    ws = Workspace.open(settings, store=store, chat_model_factory=lambda: None)
    assert ws.cases is not None  # opened (empty): the problem is recorded as it opens
    for part in ("cases", "predictor"):
        problem = ws.problems[part]
        assert "orders or events" in problem, problem  # what the shop lacks
        assert "cases build" not in problem and "predictor train" not in problem, problem
    assert "import an orders or events file" in ws.problems["predictor"]  # said once, with the fix


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from test_export_gguf import random_adapter, tiny_model, train_tokenizer, write_base_gguf

    tmp = tmp_path_factory.mktemp("tiny")
    tok = train_tokenizer()
    qwen, llama = tiny_model("qwen2", tok.get_vocab_size()), tiny_model("llama", tok.get_vocab_size())
    with torch.no_grad():
        random_adapter(llama, tok, tmp / "llama_run" / "final", "tiny-llama")
    from finetune.export_gguf import export_adapter

    export_adapter(tmp / "llama_run" / "final", base_config=llama.config.to_dict())
    return {"qwen": write_base_gguf(qwen, tok, tmp / "qwen.gguf"), "llama_adapter": tmp / "llama_run" / "final"}


@pytest.mark.parametrize("case", ["missing", "another_base"])
def test_a_bad_adapter_is_named_with_its_fault_and_the_way_back(reviews_only, tiny_gguf, case):
    settings, store = reviews_only
    adapter = str(tiny_gguf["llama_adapter"]) if case == "another_base" else "/tmp/nope"
    settings = replace(settings, model=str(tiny_gguf["qwen"]), adapter=adapter, engine="llamacpp", threads=1)
    ws = Workspace.open(settings, store=store)
    with pytest.raises(PartUnavailable) as err:
        ws.chat_model()
    message = str(err.value)
    assert f"SHOPSIGHT_ADAPTER={adapter}" in message
    assert ("no such file or folder. Unset" if case == "missing" else "trained on base model 'tiny-llama'") in message
    assert "Unset SHOPSIGHT_ADAPTER to go back to the packaged weights" in message
    assert "finetune.lora run's final/ folder" in message and "finetune.export_gguf" in message
    assert "shopsight models install" not in message  # the model is fine


def test_a_model_that_cannot_load_still_says_how_to_install_one(reviews_only, tmp_path):
    settings, store = reviews_only
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))
    ws = Workspace.open(replace(settings, model=str(broken), adapter="", engine="llamacpp", threads=1), store=store)
    with pytest.raises(PartUnavailable, match="shopsight models install"):
        ws.chat_model()
