"""What llama.cpp prints while a LoRA adapter loads: its placement notes are not shown, its errors are.

The tiny Qwen2 of test_export_gguf is written with its ffn_down weights quantized to Q4_0, which
llama.cpp repacks for the CPU (AVX2); a LoRA on those layers then makes it log, at ERROR level,
"lora for 'blk.N.ffn_down.weight' cannot use buft 'CPU_REPACK', fallback to CPU" once per layer,
on every ask that loads the adapter (new-user trial, Round 9).
"""

from __future__ import annotations

import gguf
import pytest
import torch

pytest.importorskip("llama_cpp")

from test_export_gguf import random_adapter, tiny_model, train_tokenizer, write_base_gguf  # noqa: E402

from assistant.llm.llama_engine import LlamaEngine  # noqa: E402
from finetune.export_gguf import export_adapter  # noqa: E402


class Q4FeedForwardWriter(gguf.GGUFWriter):
    """Writes ffn_down as Q4_0 (the block llama.cpp repacks), everything else as given."""

    def add_tensor(self, name, tensor, *args, **kwargs):
        if name.endswith("ffn_down.weight"):
            kind = gguf.GGMLQuantizationType.Q4_0
            return super().add_tensor(name, gguf.quants.quantize(tensor, kind), raw_dtype=kind)
        return super().add_tensor(name, tensor, *args, **kwargs)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("q4")
    tok = train_tokenizer()
    model = tiny_model("qwen2", tok.get_vocab_size())
    writer, gguf.GGUFWriter = gguf.GGUFWriter, Q4FeedForwardWriter
    try:
        base = write_base_gguf(model, tok, tmp / "base.gguf")
    finally:
        gguf.GGUFWriter = writer
    with torch.no_grad():
        random_adapter(model, tok, tmp / "final", "tiny-qwen2")
    return {"base": base, "adapter": export_adapter(tmp / "final", base_config=model.config.to_dict()),
            "tok": tok, "tmp": tmp}


def test_placement_notes_are_not_printed_and_the_adapter_applies(quantized, capfd):
    ids = quantized["tok"].encode("the customer bought tea").ids
    plain = LlamaEngine.open(quantized["base"], n_threads=1, n_ctx=256).prefill(ids)
    capfd.readouterr()
    with_lora = LlamaEngine.open(quantized["base"], n_threads=1, n_ctx=256, lora_path=quantized["adapter"])
    assert "cannot use buft" not in capfd.readouterr().err
    assert abs(with_lora.prefill(ids) - plain).max() > 0.1  # the adapter was applied all the same


def test_a_lora_file_llama_cpp_cannot_read_is_refused_with_its_reason(quantized):
    """llama-cpp-python logs "failed to apply lora adapter" at a level it hides and goes on with the
    base weights; the engine refuses and names llama.cpp's reason."""
    junk = quantized["tmp"] / "junk.gguf"
    junk.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(RuntimeError, match=r"could not load the LoRA adapter .*junk.gguf: .*failed to apply lora"):
        LlamaEngine.open(quantized["base"], n_threads=1, n_ctx=256, lora_path=junk)
