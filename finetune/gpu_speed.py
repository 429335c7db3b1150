"""Speed and memory of LoRA and QLoRA on the qwen2.5-coder-1.5b architecture, with random weights.

    python -m finetune.gpu_speed --device cuda --steps 20 --batch 4 --seq_len 512
    python -m finetune.gpu_speed --device cpu --tiny --steps 2      # smoke test of the script itself

Speed and memory do not depend on the weights' values, so the model is built from the
published config (below; or --config_json) with random weights: nothing to download and
nothing large to carry to a GPU machine. For each mode the script saves the random model once,
loads it (bf16, or NF4 4-bit for QLoRA), wraps it with LoRA, trains `--steps` steps on random
tokens (after `--warmup` untimed steps) and then generates `--gen_tokens` tokens greedily.
Reports training tokens/s, generation tokens/s and peak memory (GPU: torch's peak allocated;
CPU: the process's peak RSS) as a table and as YAML under --out.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch
import yaml

from tools import paths  # noqa: F401  (offline environment)

# config.json of Qwen/Qwen2.5-Coder-1.5B-Instruct (architecture numbers only).
QWEN_CODER_15B = {"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                  "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 32768,
                  "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
                  "bos_token_id": 151643, "eos_token_id": 151645}
TINY = {**QWEN_CODER_15B, "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "bos_token_id": 1, "eos_token_id": 2}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def save_random_model(config: dict, folder: Path, seed: int) -> Path:
    """Build the architecture with random bf16 weights on CPU and save it as a HF folder."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**config)).to(torch.bfloat16)
    model.save_pretrained(folder)
    return folder


def run_mode(folder: Path, mode: str, device: torch.device, args) -> dict:
    """Train and generate with one mode ("lora" or "qlora"); return its measurements."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    kwargs: dict = {"dtype": dtype, "device_map": {"": str(device)}}
    if mode == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    model.config.use_cache = False
    ckpt = {"use_reentrant": False}
    if mode == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True, gradient_checkpointing_kwargs=ckpt)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt)
    # LoRA is attached before any generate(): required for 4-bit models (docs/models.md)
    model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules=TARGETS,
                                             task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, vocab, (args.batch, args.seq_len), generator=gen)
               for _ in range(args.warmup + args.steps)]
    model.train()
    losses = []
    for i, batch in enumerate(batches):
        if i == args.warmup:
            _sync(device)
            started = time.perf_counter()
        batch = batch.to(device)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(float(loss.detach()), 4))
    _sync(device)
    train_s = time.perf_counter() - started
    train_peak = _peak_gib(device)

    model.eval()
    model.config.use_cache = True
    prompt = torch.randint(0, vocab, (1, args.prompt_len), generator=gen).to(device)
    with torch.no_grad():
        model.generate(input_ids=prompt, max_new_tokens=2, min_new_tokens=2, do_sample=False)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.gen_tokens,
                             min_new_tokens=args.gen_tokens, do_sample=False)
        _sync(device)
    gen_s = time.perf_counter() - t0
    new_tokens = out.shape[1] - prompt.shape[1]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    del model, optimizer
    return {"mode": mode, "train_tokens_per_s": round(args.steps * args.batch * args.seq_len / train_s, 1),
            "train_s_per_step": round(train_s / args.steps, 3), "gen_tokens_per_s": round(new_tokens / gen_s, 2),
            "peak_memory_gib_train": round(train_peak, 3), "peak_memory_gib_total": round(_peak_gib(device), 3),
            "trainable_params": int(trainable), "losses": losses}


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse arguments, build the model once, run each mode, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="a 2-layer 64-wide config: a smoke test of the script")
    parser.add_argument("--config_json", help="a config.json to use instead of the built-in 1.5B numbers")
    parser.add_argument("--modes", default="lora,qlora")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq_len", type=int, default=512)
    parser.add_argument("--prompt_len", type=int, default=128)
    parser.add_argument("--gen_tokens", type=int, default=128)
    parser.add_argument("--lora_r", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="gpu_speed", help="folder for gpu_speed.yaml")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device; run on a GPU machine or use --device cpu --tiny")
    device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
    config = json.loads(Path(args.config_json).read_text()) if args.config_json else (TINY if args.tiny else QWEN_CODER_15B)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_random_model(config, Path(tmp) / "model", args.seed)
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            if mode not in ("lora", "qlora"):
                raise SystemExit(f"--modes: unknown mode {mode!r}; choose lora and/or qlora")
            results.append(run_mode(folder, mode, device, args))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; {'tiny config' if args.tiny else 'qwen2.5-coder-1.5b architecture'}, random weights; "
          f"batch {args.batch} x {args.seq_len} tokens, {args.steps} timed steps, LoRA r={args.lora_r}")
    print("| mode | train tokens/s | s/step | generation tokens/s | peak memory GiB (train) | trainable params |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['train_tokens_per_s']} | {r['train_s_per_step']} | {r['gen_tokens_per_s']} | "
              f"{r['peak_memory_gib_train']} | {r['trainable_params']:,} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_speed.yaml").write_text(yaml.safe_dump({"device": name, "args": vars(args), "results": results},
                                                       sort_keys=False), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
