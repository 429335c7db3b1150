"""The GPU speed script runs end to end (tiny config on CPU): both modes train, generate and report."""

from __future__ import annotations

import yaml

from finetune import gpu_speed


def test_gpu_speed_smoke_on_cpu(tmp_path):
    results = gpu_speed.main(["--device", "cpu", "--tiny", "--steps", "1", "--warmup", "1", "--batch", "1",
                              "--seq_len", "32", "--prompt_len", "8", "--gen_tokens", "4", "--out", str(tmp_path)])
    assert [r["mode"] for r in results] == ["lora", "qlora"]
    for r in results:
        assert r["train_tokens_per_s"] > 0 and r["gen_tokens_per_s"] > 0 and r["peak_memory_gib_train"] > 0
        assert r["trainable_params"] == 2 * (2 * 8 * 128 + 2 * 8 * 96 + 3 * 8 * 192)  # r=8, 2 layers
    saved = yaml.safe_load((tmp_path / "gpu_speed.yaml").read_text())
    assert saved["device"] == "cpu" and len(saved["results"]) == 2


def test_1_5b_config_is_the_published_architecture():
    from finetune.memory import count_params

    n = count_params(gpu_speed.QWEN_CODER_15B)
    assert 1.50e9 < sum(n.values()) < 1.56e9  # Qwen2.5-Coder-1.5B: 1.54B parameters
