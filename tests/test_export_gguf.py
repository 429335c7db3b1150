"""A peft LoRA adapter exported to GGUF changes llama.cpp's logits the way peft changes transformers'.

Same tiny model in both engines: a random-init Llama (grouped-query attention, so both of
llama.cpp's q/k row orders are exercised) or Qwen2 (attention biases) is built here, written to
a float32 GGUF with the `gguf` package (tokenizer: a byte-level BPE trained here), and given a
random LoRA adapter on every projection; llama.cpp runs with an f32 KV cache (its default f16
cache alone moves these logits by ~1.5e-3). Tolerances: base logits max |diff| <= 1e-4 and the
adapter's change of the logits (with minus without) within 1e-4 relative (L2 over all positions);
measured here: 1.3e-6 / 1.5e-6 and 6.5e-7 / 6.6e-7 (llama / qwen2), with logits up to ~2.7 and
changes up to ~3.8. The same adapter exported with its q/k rows ordered for a wrong head count is
off by 0.63 relative, so the check can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

llama_cpp = pytest.importorskip("llama_cpp")

from assistant.llm.adapters import AdapterError, adapter_for_engine  # noqa: E402
from finetune.adapter import base_identity, save_adapter  # noqa: E402
from finetune.export_gguf import ExportError, _permute_rows, export_adapter  # noqa: E402

BASE_TOL = 1e-4
DELTA_REL_TOL = 1e-4
TEXT = "the customer bought tea, then coffee; the cart held a kettle and two cups of green tea."


def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TEXT] * 20 + ["shop churn review item user order basket"] * 20, trainer)
    return tok


def tiny_model(arch: str, vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                  num_hidden_layers=2, vocab_size=vocab, max_position_embeddings=256, rms_norm_eps=1e-6,
                  rope_theta=10000.0, tie_word_embeddings=False)
    model = (LlamaForCausalLM(LlamaConfig(**common)) if arch == "llama" else Qwen2ForCausalLM(Qwen2Config(**common)))
    with torch.no_grad():  # random init is tiny; larger weights make the logits (and any mismatch) visible
        for p in model.parameters():
            p.mul_(4.0) if p.dim() == 2 else None
    return model.eval()


def write_base_gguf(model, tok, path: Path) -> Path:
    """The tiny model as a float32 GGUF, tensors named and ordered as llama.cpp's converter does."""
    import gguf

    cfg = model.config
    arch_name = cfg.model_type
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    names = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    w = gguf.GGUFWriter(str(path), arch_name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_theta if hasattr(cfg, "rope_theta") else cfg.rope_parameters["rope_theta"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t == "<|endoftext|>" else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges([" ".join(m) for m in json.loads(tok.to_str())["model"]["merges"]])
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")  # for the chat model's loader
    w.add_bos_token_id(vocab["<|endoftext|>"])
    w.add_eos_token_id(vocab["<|endoftext|>"])
    for key, tensor in model.state_dict().items():
        stem, suffix = key.rsplit(".", 1)
        data = tensor.detach().float().numpy()
        if arch_name == "llama" and stem.endswith(("q_proj", "k_proj")):
            heads = cfg.num_attention_heads if stem.endswith("q_proj") else cfg.num_key_value_heads
            data = _permute_rows(data, heads)
        w.add_tensor(f"{names.get_name(stem)}.{suffix}", np.ascontiguousarray(data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def random_adapter(model, tok, folder: Path, name: str):
    """A peft LoRA on every projection with random A and B (as if trained), saved as finetune.lora does."""
    from peft import LoraConfig, get_peft_model
    from transformers import PreTrainedTokenizerFast

    identity = base_identity(model, name)
    torch.manual_seed(1)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = get_peft_model(model, lora).eval()
    save_adapter(folder, peft_model, PreTrainedTokenizerFast(tokenizer_object=tok), {"base_model": name}, identity)
    return peft_model


def cpp_logits(gguf_path: Path, ids: list[int], lora: Path | None = None) -> np.ndarray:
    llm = llama_cpp.Llama(model_path=str(gguf_path), lora_path=str(lora) if lora else None, n_ctx=256, type_k=0, type_v=0,
                          n_threads=1, logits_all=True, verbose=False)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float64)


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def engines(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    tok = train_tokenizer()
    model = tiny_model(request.param, tok.get_vocab_size())
    base = write_base_gguf(model, tok, tmp / "base.gguf")
    ids = tok.encode(TEXT).ids
    with torch.no_grad():
        hf_base = model(torch.tensor([ids])).logits[0].double().numpy()
        peft_model = random_adapter(model, tok, tmp / "final", f"tiny-{request.param}")
        hf_lora = peft_model(torch.tensor([ids])).logits[0].double().numpy()
    return {"arch": request.param, "model": peft_model.get_base_model(), "base": base, "ids": ids,
            "hf_base": hf_base, "hf_lora": hf_lora, "adapter": tmp / "final", "tmp": tmp}


def delta_error(engines, exported: Path) -> float:
    cpp_base = cpp_logits(engines["base"], engines["ids"])
    cpp_lora = cpp_logits(engines["base"], engines["ids"], exported)
    want, got = engines["hf_lora"] - engines["hf_base"], cpp_lora - cpp_base
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def test_both_engines_agree_on_the_base_model(engines):
    cpp_base = cpp_logits(engines["base"], engines["ids"])
    assert np.abs(cpp_base - engines["hf_base"]).max() <= BASE_TOL


def test_exported_adapter_changes_llama_cpp_logits_as_peft_changes_transformers(engines):
    exported = export_adapter(engines["adapter"], base_config=engines["model"].config.to_dict())
    assert exported == engines["adapter"] / "adapter.gguf"
    change = engines["hf_lora"] - engines["hf_base"]
    assert np.abs(change).max() > 1.0  # the adapter really moves the logits
    assert delta_error(engines, exported) <= DELTA_REL_TOL


def test_a_wrong_row_order_is_caught(engines):
    """The check can fail: q/k rows ordered for another head count give a different model."""
    if engines["arch"] != "llama":
        pytest.skip("only Llama reorders q/k rows")
    wrong = dict(engines["model"].config.to_dict(), num_key_value_heads=4)
    exported = export_adapter(engines["adapter"], engines["tmp"] / "wrong.gguf", base_config=wrong)
    assert delta_error(engines, exported) > 0.1


def test_adapter_for_engine_picks_the_form_and_refuses_another_base(engines, tmp_path):
    folder = engines["adapter"]
    exported = export_adapter(folder, base_config=engines["model"].config.to_dict())
    assert adapter_for_engine(folder, "llamacpp", base_gguf=engines["base"]) == exported
    assert adapter_for_engine(exported, "transformers") == folder
    assert adapter_for_engine(exported, "llamacpp", base_gguf=engines["base"]) == exported
    other_arch = "qwen2" if engines["arch"] == "llama" else "llama"
    tok = train_tokenizer()
    other = write_base_gguf(tiny_model(other_arch, tok.get_vocab_size()), tok, tmp_path / "other.gguf")
    with pytest.raises(AdapterError, match=rf"trained on base model 'tiny-{engines['arch']}'.*differ in model_type"):
        adapter_for_engine(folder, "llamacpp", base_gguf=other)
    with pytest.raises(AdapterError, match=r"'qwen2.5-coder-1.5b'.*differ in hidden_size"):
        adapter_for_engine(folder, "transformers", base_name="qwen2.5-coder-1.5b",
                           base={"model_type": engines["arch"], "hidden_size": 1536})


def test_missing_or_stale_export_names_the_command(engines, tmp_path):
    folder = tmp_path / "final"
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors", "base_model.yaml"):
        (folder / name).write_bytes((engines["adapter"] / name).read_bytes())
    with pytest.raises(AdapterError, match=r"python -m finetune\.export_gguf .*final"):
        adapter_for_engine(folder, "llamacpp", base_gguf=engines["base"])
    export_adapter(folder, base_config=engines["model"].config.to_dict())
    (folder / "adapter_model.safetensors").write_bytes((folder / "adapter_model.safetensors").read_bytes() + b" ")
    with pytest.raises(AdapterError, match="exported from an older adapter_model.safetensors"):
        adapter_for_engine(folder, "llamacpp", base_gguf=engines["base"])
    with pytest.raises(AdapterError, match="no such file"):
        adapter_for_engine(tmp_path / "nope", "llamacpp")


def test_shopsight_adapter_reaches_the_llama_engine_and_another_base_is_refused(engines, tmp_path):
    """SHOPSIGHT_ADAPTER naming the peft folder (or the exported file) loads the GGUF LoRA into the chat model."""
    from assistant.llm.loader import LLMSpec, ModelLoadError, load_llm

    folder = engines["adapter"]
    exported = export_adapter(folder, base_config=engines["model"].config.to_dict())
    ids = engines["ids"]
    want = cpp_logits(engines["base"], ids, exported)[-1] - cpp_logits(engines["base"], ids)[-1]
    plain = load_llm(LLMSpec(model=str(engines["base"]), n_ctx=256, n_threads=1)).model.prefill(ids)
    for named in (folder, exported):
        chat = load_llm(LLMSpec(model=str(engines["base"]), adapter=str(named), n_ctx=256, n_threads=1))
        got = chat.model.prefill(ids) - plain
        # The chat engine keeps llama.cpp's default f16 KV cache (~1.5e-3 on these logits, see above).
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-2
        assert np.abs(got).max() > 1.0  # the adapter was applied
    other_arch = "qwen2" if engines["arch"] == "llama" else "llama"
    tok = train_tokenizer()
    other = write_base_gguf(tiny_model(other_arch, tok.get_vocab_size()), tok, tmp_path / "other.gguf")
    with pytest.raises(ModelLoadError, match=rf"trained on base model 'tiny-{engines['arch']}'.*differ in model_type"):
        load_llm(LLMSpec(model=str(other), adapter=str(folder), n_ctx=256, n_threads=1))


def test_export_refuses_what_is_no_lora_adapter(tmp_path, engines):
    with pytest.raises(ExportError, match=r"adapter_config.json: missing"):
        export_adapter(tmp_path)
    folder = tmp_path / "dora"
    folder.mkdir()
    for name in ("adapter_model.safetensors", "base_model.yaml"):
        (folder / name).write_bytes((engines["adapter"] / name).read_bytes())
    config = json.loads((engines["adapter"] / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ExportError, match="use_dora"):
        export_adapter(folder)
    identity = yaml.safe_load((folder / "base_model.yaml").read_text())
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "base_model.yaml").write_text(yaml.safe_dump({**identity, "model_type": "gpt2"}))
    with pytest.raises(ExportError, match="model_type 'gpt2'"):
        export_adapter(folder)
