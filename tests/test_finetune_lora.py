"""The LoRA script end to end on CPU: a tiny random-init Qwen2 and a tokenizer trained here.

Like torchtune's recipe tests, the first losses are pinned: a change in masking, data order,
seeding or the loop shows up as a number.
"""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
import yaml

from finetune import lora
from finetune.adapter import check_base, load_adapter
from finetune.lora_state import finished_run
from finetune.memory import lora_params
from finetune.sft_tokens import SFTFormatError, read_sft_file, tokenize_example
from finetune.tiny import build_tiny_qwen2

# Pinned on this code with seed 1337 (torch 2.13 CPU); rtol 1e-5.
EXPECTED_FIRST_LOSSES = [5.862645626068115, 5.506345748901367, 5.269176959991455, 5.166141033172607]


def _examples(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        buys = rng.randint(0, 12)
        out.append({"messages": [
            {"role": "system", "content": "You predict churn."},
            {"role": "user", "content": f"User u{i} bought {buys} times in 30 days. Will they churn?"},
            {"role": "assistant", "content": "yes" if buys < 4 else "no"}]})
    return out


def _write(path, examples) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    train, evals = _examples(24, seed=1), _examples(8, seed=2)
    _write(root / "train.jsonl", train)
    _write(root / "eval.jsonl", evals)
    corpus = [m["content"] for e in train for m in e["messages"]] * 3
    build_tiny_qwen2(root / "model", corpus, hidden_size=64)
    return root


def _argv(root, out, **over) -> list[str]:
    args = {"base_model": root / "model", "train_file": root / "train.jsonl", "eval_file": root / "eval.jsonl",
            "out_dir": out, "max_steps": 6, "micro_batch_size": 4, "lr": "1e-2", "eval_interval": 3,
            "save_interval": 3, "max_seq_len": 128, "num_threads": 2}
    args.update(over)
    return [tok for key, value in args.items() for tok in (f"--{key}", str(value))]


def _losses(out) -> dict[int, float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {x["step"]: x["train_loss"] for x in lines if "train_loss" in x}


@pytest.fixture(scope="module")
def trained(workdir):
    out = workdir / "run"
    summary = lora.cli(_argv(workdir, out))
    return out, summary


def test_losses_pinned_and_decreasing(trained):
    out, _ = trained
    losses = _losses(out)
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    first = [losses[s] for s in (1, 2, 3, 4)]
    assert first == pytest.approx(EXPECTED_FIRST_LOSSES, rel=1e-5)
    assert losses[6] < losses[1]
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval_loss" in r]
    assert [e["step"] for e in evals] == [3]


def test_folders_config_and_param_count(trained, workdir):
    out, summary = trained
    final = out / "final"
    for name in ("adapter_model.safetensors", "adapter_config.json", "config.yaml", "base_model.yaml",
                 "summary.yaml", "tokenizer.json", "adapter.gguf"):
        assert (final / name).is_file(), name
    assert (out / "checkpoints" / "step-000003" / "training_state.pt").is_file()
    assert not list(out.rglob("*.tmp"))
    config = yaml.safe_load((final / "config.yaml").read_text())
    assert config["max_steps"] == 6 and config["lr"] == pytest.approx(1e-2)
    assert config["base_model"] == str(workdir / "model")
    model_cfg = json.loads((workdir / "model" / "config.json").read_text())
    # r=8 per layer: q,o 8*(64+64); k,v 8*(64+32) (2 kv heads of 16); gate,up,down 8*(64+128)
    per_layer = 2 * 1024 + 2 * 768 + 3 * 1536
    assert summary["trainable_params"] == lora_params(model_cfg, 8, lora.ALL_TARGETS) == 2 * per_layer == 16384


def test_reload_adapter_and_generate(trained, workdir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = trained
    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    base = AutoModelForCausalLM.from_pretrained(workdir / "model")
    model = load_adapter(base, out / "final", str(workdir / "model"))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "User u1 bought 2 times."}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    new = model.generate(**prompt, max_new_tokens=4, do_sample=False)[0, prompt["input_ids"].shape[1]:]
    assert len(new) >= 1
    # the adapter changes the output distribution: it was trained
    with torch.no_grad(), model.disable_adapter():
        plain = model(**prompt).logits[0, -1]
    assert not torch.allclose(model(**prompt).logits[0, -1], plain)


def test_rerunning_a_finished_run_trains_nothing_unless_its_settings_or_data_changed(trained, workdir, capsys):
    out, summary = trained
    metrics, adapter = (out / "metrics.jsonl").read_text(), (out / "final" / "adapter_model.safetensors").stat()
    assert lora.cli(_argv(workdir, out)) == summary  # before: resumed from step 3 and trained steps 4-6 again
    assert "already holds this run (6 steps" in capsys.readouterr().out
    assert (out / "metrics.jsonl").read_text() == metrics
    assert (out / "final" / "adapter_model.safetensors").stat().st_mtime_ns == adapter.st_mtime_ns
    settings = yaml.safe_load((out / "final" / "config.yaml").read_text())
    assert finished_run(out, {**settings, "num_threads": 1, "max_steps": None}) == summary
    assert finished_run(out, {**settings, "lr": 5e-3}) is None
    assert finished_run(out, {**settings, "train_file": str(workdir / "eval.jsonl")}) is None


def test_resume_continues_with_same_losses(trained, workdir):
    out, _ = trained
    again = workdir / "resumed"
    shutil.copytree(out / "checkpoints", again / "checkpoints")
    # a crashed run's tail that must not survive the resume
    (again / "metrics.jsonl").write_text(json.dumps({"step": 5, "train_loss": 99.0}) + "\n")
    lora.cli(_argv(workdir, again))
    resumed, original = _losses(again), _losses(out)
    assert sorted(resumed) == [4, 5, 6]
    assert [resumed[s] for s in (4, 5, 6)] == pytest.approx([original[s] for s in (4, 5, 6)], rel=1e-5)


def test_adapter_refused_on_other_base(trained, workdir, tmp_path):
    from transformers import AutoModelForCausalLM

    out, _ = trained
    build_tiny_qwen2(tmp_path / "other", ["another corpus entirely"] * 20, seed=7, hidden_size=64)
    other = AutoModelForCausalLM.from_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="was trained on base model"):
        check_base(out / "final", other, str(tmp_path / "other"))


def test_training_can_start_from_a_trained_adapter(trained, workdir, tmp_path):
    out, _ = trained
    more = tmp_path / "more"
    lora.cli(_argv(workdir, more, max_steps=2, init_adapter=out / "final"))
    # it starts where the first run ended, not from fresh LoRA layers
    assert _losses(more)[1] < _losses(out)[1] and _losses(more)[1] == pytest.approx(_losses(out)[6], rel=0.5)
    assert (more / "final" / "adapter_model.safetensors").is_file()
    with pytest.raises(SystemExit, match=r"has lora_r=8 .* asks for lora_r=4"):
        lora.cli(_argv(workdir, tmp_path / "other_rank", max_steps=1, lora_r=4, init_adapter=out / "final"))
    with pytest.raises(SystemExit, match=r"no adapter_config.json"):
        lora.cli(_argv(workdir, tmp_path / "nothing", max_steps=1, init_adapter=tmp_path))


def test_qlora_runs_on_cpu(workdir, tmp_path):
    summary = lora.cli(_argv(workdir, tmp_path / "q", quantize="nf4", max_steps=2, eval_interval=5))
    assert (tmp_path / "q" / "final" / "adapter_model.safetensors").is_file()
    assert summary["trainable_params"] > 0


def test_batch_that_cannot_fit_is_refused_before_loading(workdir, tmp_path):
    with pytest.raises(SystemExit, match=r"needs about .* GiB .* only 0.01 GiB"):
        lora.cli(_argv(workdir, tmp_path / "big", micro_batch_size=512, max_memory_gb=0.01))
    assert not (tmp_path / "big").exists()


# Qwen2.5-Coder-0.5B's config.json (the packaged default model), for estimates against measurements.
QWEN05 = {"vocab_size": 151936, "num_attention_heads": 14, "num_key_value_heads": 2, "hidden_size": 896,
          "intermediate_size": 4864, "num_hidden_layers": 24, "tie_word_embeddings": False}
LORA_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize("micro_batch, seq_len, measured_gib, fits_24", [
    (4, 1024, 23.23, False),  # OOM-killed on the 24 GiB machine at 23.23 GiB resident (dmesg)
    (2, 1024, 14.16, True),  # peak resident set over steps with 930-token tool examples
])
def test_memory_estimate_covers_measured_cpu_runs(micro_batch, seq_len, measured_gib, fits_24):
    from finetune.memory import GIB, estimate_bytes

    total = estimate_bytes(QWEN05, dtype="bf16", quantize=None, micro_batch_size=micro_batch, max_seq_len=seq_len,
                           lora_r=8, lora_targets=LORA_ALL, gradient_checkpointing=False)["total"] / GIB
    assert total >= measured_gib  # never below what the run really took
    assert (total <= 22.0) == fits_24  # 22 GiB is what that machine has available


def test_malformed_line_names_line_number(tmp_path):
    good = json.dumps(_examples(1, 0)[0])
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n\n{good}\n{{\"messages\": [}}\n")
    with pytest.raises(SFTFormatError, match=r"bad.jsonl:4: not valid JSON"):
        read_sft_file(path)
    path.write_text(f"{good}\n" + json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(SFTFormatError, match=r"bad.jsonl:2: no assistant message"):
        read_sft_file(path)


def test_mask_covers_only_assistant_turns(workdir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(workdir / "model")
    example = {"messages": [
        {"role": "user", "content": "Who is u1?"},
        {"role": "assistant", "tool_calls": [{"type": "function",
                                              "function": {"name": "user_profile", "arguments": {"user_id": "u1"}}}]},
        {"role": "tool", "content": "{\"p_churn\": 0.25}"},
        {"role": "assistant", "content": "u1 churns with p 0.25"}]}
    item = tokenize_example(tokenizer, example)
    trained_text = tokenizer.decode([t for t, lab in zip(item.input_ids, item.labels) if lab != -100])
    assert trained_text == ('<tool_call>{"name": "user_profile", "arguments": {"user_id": "u1"}}</tool_call>'
                            "<|im_end|>\nu1 churns with p 0.25<|im_end|>\n")


def test_bad_arguments_say_how_to_fix():
    with pytest.raises(SystemExit, match="Choose null .* or nf4"):
        lora.parse_args(["--train_file", "x", "--out_dir", "y", "--quantize", "int3"])
    with pytest.raises(SystemExit, match="unknown option"):
        lora.parse_args(["--train_file", "x", "--out_dir", "y", "--learning_rate", "1"])


CONFIGS = lora.Path(__file__).resolve().parent.parent / "finetune" / "configs"


@pytest.mark.parametrize("config", sorted([*CONFIGS.glob("lora_*.yaml"), *CONFIGS.glob("qlora_*.yaml")]),
                         ids=lambda p: p.name)
def test_every_config_parses_and_documents_its_launch(config):
    args = lora.parse_args(["--config", str(config), "--max_steps", "3"])
    assert args.max_steps == 3
    header = config.read_text().split("\n\n")[0]
    assert f"--config finetune/configs/{config.name}" in header  # the launch command names this file
    assert args.quantize == ("nf4" if config.name.startswith("qlora") else None)


def test_examples_dropped_as_too_long_are_named_by_kind_with_the_length_that_keeps_them(workdir, tmp_path):
    # A recipe sized for the demo (768 tokens) dropped every tool example of a CDNOW shop, saying only "dropped 8".
    from transformers import AutoTokenizer

    from finetune.sft_tokens import tokenize_file

    tokenizer = AutoTokenizer.from_pretrained(workdir / "model")
    short = [dict(e, meta={"kind": "churn"}) for e in _examples(3, seed=4)]
    long_tool = {"messages": [{"role": "user", "content": "Top 3 churn risks?"},
                              {"role": "tool", "content": json.dumps({"users": list(range(200))})},
                              {"role": "assistant", "content": "u1, u2, u3"}], "meta": {"kind": "tool"}}
    path = tmp_path / "mixed.jsonl"
    _write(path, short + [long_tool, long_tool])
    kept, too_long = tokenize_file(tokenizer, path, max_seq_len=128)
    longest = max(length for _, length in too_long)
    assert len(kept) == 3 and [kind for kind, _ in too_long] == ["tool", "tool"] and longest > 128
    message = lora.describe_too_long(too_long, 128, read=5)
    assert message == (f"dropped 2 of 5 examples longer than max_seq_len=128 tokens (2 tool: longest {longest:,}); "
                       f"--max_seq_len {longest} keeps them (more memory and time per step), or build shorter examples")
    _write(path, [long_tool])
    with pytest.raises(SFTFormatError, match=r"mixed.jsonl: dropped 1 of 1 examples .* \(1 tool: longest"):
        tokenize_file(tokenizer, path, max_seq_len=128)
