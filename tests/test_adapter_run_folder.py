"""SHOPSIGHT_ADAPTER naming a finetune.lora run folder (not its final/) loads final/; a folder that is
no adapter says so plainly (it said "write it with a GGUF LoRA file or a finetune.lora folder").
Tiny real Qwen2 GGUF and a real peft adapter exported to GGUF, built here."""

from __future__ import annotations

import shutil

import pytest
import torch

pytest.importorskip("llama_cpp")

from test_export_gguf import random_adapter, tiny_model, train_tokenizer, write_base_gguf  # noqa: E402

from assistant.llm.adapters import AdapterError, adapter_for_engine  # noqa: E402
from finetune.export_gguf import export_adapter  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora_run")
    tok = train_tokenizer()
    model = tiny_model("qwen2", tok.get_vocab_size())
    base = write_base_gguf(model, tok, tmp / "base.gguf")
    folder = tmp / "lora_shop"
    (folder / "checkpoints" / "step_2").mkdir(parents=True)  # as finetune.lora leaves a run
    (folder / "metrics.jsonl").write_text("{}\n")
    with torch.no_grad():
        random_adapter(model, tok, folder / "final", "tiny-qwen2")
    export_adapter(folder / "final", base_config=model.config.to_dict())
    return {"base": base, "folder": folder, "tmp": tmp}


def test_a_run_folder_stands_for_its_final_adapter(run):
    final = run["folder"] / "final"
    assert adapter_for_engine(run["folder"], "llamacpp", base_gguf=run["base"]) == final / "adapter.gguf"
    assert adapter_for_engine(run["folder"], "transformers") == final


def test_an_unfinished_run_and_a_folder_that_is_no_adapter_say_what_they_are(run):
    unfinished = run["tmp"] / "unfinished"
    shutil.copytree(run["folder"] / "checkpoints", unfinished / "checkpoints")
    with pytest.raises(AdapterError, match=r"run with no final/ adapter yet .*run the same command again"):
        adapter_for_engine(unfinished, "llamacpp", base_gguf=run["base"])
    other = run["tmp"] / "notes"
    other.mkdir()
    with pytest.raises(AdapterError, match=r"not a LoRA adapter \(no adapter.gguf and no adapter_config.json\); "
                                           r"name a GGUF LoRA file, or a finetune.lora run's final/ folder"):
        adapter_for_engine(other, "llamacpp", base_gguf=run["base"])
