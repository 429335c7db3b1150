"""LoRA / QLoRA fine-tune of ShopSight's chat model on chat examples in JSON lines.

    python -m finetune.lora --config finetune/configs/lora_qwen05_demo.yaml [--key value ...]
    accelerate launch -m finetune.lora --config finetune/configs/lora_qwen05_demo.yaml

Plain functions in the litgpt way: `setup()` checks and loads, `main()` builds the optimizer
and resumes, `fit()` is the loop, `validate()` the eval loss. Every field of `LoRAArgs` is a
config key and a `--key value` override; its docstring is the help. The loss is masked to the
assistant's turns (finetune/sft_tokens.py). Artifacts under `out_dir`:
    checkpoints/step-NNNNNN/   adapter + optimizer state, for resuming
    final/                     adapter, tokenizer, config.yaml (resolved), base_model.yaml,
                               adapter.gguf (the same adapter for llama.cpp, finetune/export_gguf.py)
    metrics.jsonl              one line per logged step and per evaluation
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import yaml

from finetune import adapter as adapters
from finetune import export_gguf
from finetune.lora_state import (finished_run, last_checkpoint, log_metrics, resume_from, save_checkpoint,
                                  truncate_metrics)
from finetune.memory import check_fits
from finetune.sft_tokens import IGNORE_INDEX, TokenizedExample, describe_too_long, tokenize_file
from tools import paths  # noqa: F401  (sets the offline environment variables)

ALL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoRAArgs:
    """Arguments of a LoRA run (each one is a YAML key and a `--key value` override).

    Attributes:
        base_model: a registry name of assistant.llm.loader (qwen2.5-coder-0.5b, ...) or a HF model folder.
        train_file: SFT examples, JSON lines (finetune.sft_data writes them).
        out_dir: where checkpoints/, final/ and metrics.jsonl go.
        eval_file: held-out SFT examples for the eval loss; none = no evaluation.
        quantize: null for LoRA, "nf4" for QLoRA (bitsandbytes 4-bit base weights).
        dtype: "fp32" or "bf16" for the base weights (and the 4-bit compute dtype).
        device: "auto" (accelerate decides), "cpu" or "cuda".
        lora_r: LoRA rank. lora_alpha: scaling numerator. lora_dropout: dropout on the LoRA input.
        lora_targets: projection names to adapt.
        max_seq_len: longer examples are dropped (counted in the log), never cut.
        micro_batch_size: examples per forward pass. grad_accum_steps: micro-batches per optimizer step.
        lr: peak learning rate. weight_decay: AdamW decay. warmup_steps: linear warm-up steps.
        epochs: passes over the data when max_steps is null. max_steps: optimizer steps (wins over epochs).
        eval_interval: steps between eval losses. eval_max_examples: cap on eval examples per evaluation.
        save_interval: steps between resumable checkpoints. log_interval: steps between log lines.
        gradient_checkpointing: recompute activations in backward (less memory, ~30% slower).
        group_by_length: batch examples of similar length together (less padding on CPU).
        seed: seeds the weights of LoRA, dropout and the data order.
        resume: continue from the last checkpoint in out_dir when there is one.
        init_adapter: start from this adapter's weights instead of fresh LoRA layers (teach a
            shipped adapter new examples); its base, rank and targets must match this run's.
        max_memory_gb: memory budget for the fit check; null = what the device has free.
        num_threads: torch CPU threads; null = torch's default.
    """

    base_model: str = "qwen2.5-coder-0.5b"
    train_file: str = ""
    out_dir: str = ""
    eval_file: str | None = None
    quantize: str | None = None
    dtype: str = "fp32"
    device: str = "auto"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: list(ALL_TARGETS))
    max_seq_len: int = 384
    micro_batch_size: int = 4
    grad_accum_steps: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    epochs: int = 1
    max_steps: int | None = None
    eval_interval: int = 10
    eval_max_examples: int | None = None
    save_interval: int = 50
    log_interval: int = 1
    gradient_checkpointing: bool = True
    group_by_length: bool = False
    seed: int = 1337
    resume: bool = True
    init_adapter: str | None = None
    max_memory_gb: float | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if not self.train_file:
            raise ValueError("No training data: set --train_file PATH (JSON lines from `python -m finetune.sft_data`).")
        if not self.out_dir:
            raise ValueError("No output folder: set --out_dir PATH (adapters and checkpoints are written there).")
        if self.quantize not in (None, "nf4"):
            raise ValueError(f"--quantize {self.quantize!r} is not supported. Choose null (LoRA) or nf4 (QLoRA).")
        if self.dtype not in ("fp32", "bf16"):
            raise ValueError(f"--dtype {self.dtype!r} is not supported. Choose fp32 or bf16.")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"--device {self.device!r} is not supported. Choose auto, cpu or cuda.")
        unknown = [t for t in self.lora_targets if t not in ALL_TARGETS]
        if unknown or not self.lora_targets:
            raise ValueError(f"--lora_targets {unknown or '[]'} invalid. Choose a non-empty subset of {ALL_TARGETS}.")
        for name in ("lora_r", "lora_alpha", "max_seq_len", "micro_batch_size", "grad_accum_steps",
                     "epochs", "eval_interval", "save_interval", "log_interval"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max_steps must be >= 1 or null (use --epochs), got {self.max_steps}.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if self.lr <= 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}.")


def parse_args(argv: list[str]) -> LoRAArgs:
    """`--config FILE` (optional) then `--key value` / `--key=value` overrides, values read as YAML."""
    valid = {f.name for f in fields(LoRAArgs)}
    values: dict = {}
    pairs, i = [], 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise SystemExit(f"unexpected argument {token!r}: use --key value")
        if "=" in token:
            key, raw = token[2:].split("=", 1)
            i += 1
        elif i + 1 < len(argv):
            key, raw = token[2:], argv[i + 1]
            i += 2
        else:
            raise SystemExit(f"--{token[2:]} needs a value")
        pairs.append((key, raw))
    for key, raw in pairs:
        if key == "config":
            path = Path(raw)
            if not path.is_file():
                raise SystemExit(f"--config {raw}: no such file (see finetune/configs/)")
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            bad = sorted(set(loaded) - valid)
            if bad:
                raise SystemExit(f"{path}: unknown keys {bad}; valid keys: {sorted(valid)}")
            values.update(loaded)
    for key, raw in pairs:
        if key == "config":
            continue
        if key not in valid:
            raise SystemExit(f"--{key}: unknown option; valid options: {sorted(valid)}")
        values[key] = yaml.safe_load(raw)
    for f in fields(LoRAArgs):  # YAML reads "1e-4" as a string: coerce what the field says is a float
        if "float" in str(f.type) and isinstance(values.get(f.name), (str, int)) and values[f.name] is not True:
            try:
                values[f.name] = float(values[f.name])
            except ValueError:
                raise SystemExit(f"--{f.name} {values[f.name]!r}: expected a number") from None
    try:
        return LoRAArgs(**values)
    except (ValueError, TypeError) as err:
        raise SystemExit(str(err)) from None


def resolve_base(name: str) -> Path:
    """A model folder for `name`: an existing folder, or a packaged model of assistant.llm.loader."""
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    try:
        from assistant.llm.registry import MODEL_REGISTRY, ensure_model
    except ImportError as err:
        raise SystemExit(f"--base_model {name!r} is not a folder and the model registry is unavailable ({err}).")
    if name not in MODEL_REGISTRY:
        raise SystemExit(f"--base_model {name!r} is neither a folder nor one of {sorted(MODEL_REGISTRY)}; "
                         "`shopsight models list` shows what is installed.")
    return Path(ensure_model(name))


def load_model(args: LoRAArgs, model_dir: Path, device: torch.device):
    """The base model, 4-bit when `args.quantize`, wrapped with fresh LoRA layers (before any generate)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    kwargs: dict = {"dtype": dtype}
    if args.quantize:  # created only when asked: bitsandbytes stays out of plain LoRA runs
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": str(device)}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    model.config.use_cache = False  # the cache is useless in training and conflicts with checkpointing
    ckpt_kwargs = {"use_reentrant": False}
    if args.quantize:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=ckpt_kwargs)
    elif args.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # the transformers 5 name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=ckpt_kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)
    identity = adapters.base_identity(model, args.base_model)
    torch.manual_seed(args.seed)  # LoRA's A matrices are drawn here
    if args.init_adapter:
        adapters.check_init_adapter(args.init_adapter, args.lora_r, args.lora_targets)
        try:
            return adapters.load_adapter(model, args.init_adapter, args.base_model, trainable=True), identity
        except ValueError as err:  # trained on another base model
            raise SystemExit(f"--init_adapter {args.init_adapter}: {err}") from None
    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                      target_modules=list(args.lora_targets), task_type="CAUSAL_LM")
    return get_peft_model(model, lora), identity


class EpochSampler(torch.utils.data.Sampler):
    """A shuffled order fixed by (seed, epoch), so a resumed run sees the same batches.

    With `group_batch` set, examples of similar length are put in the same micro-batch (sorted
    within windows of 16 batches, then the batches shuffled): less padding, same randomness.
    """

    def __init__(self, lengths: list[int], seed: int, group_batch: int | None = None) -> None:
        self.lengths, self.seed, self.epoch, self.group_batch = lengths, seed, 0, group_batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=gen).tolist()
        if not self.group_batch:
            return iter(order)
        size, window = self.group_batch, self.group_batch * 16
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda i: self.lengths[i])
            batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
        shuffled = torch.randperm(len(batches), generator=gen).tolist()
        return iter([i for b in shuffled for i in batches[b]])

    def __len__(self) -> int:
        return len(self.lengths)


def collate(batch: list[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked out of attention and loss."""
    width = max(len(item.input_ids) for item in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def setup(args: LoRAArgs) -> dict:
    """Check the run can work, load data and model, then hand over to `main`.

    Returns:
        The summary `main` wrote (steps, losses, trainable parameters, adapter folder).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer

    done = finished_run(Path(args.out_dir), asdict(args)) if args.resume else None
    if done is not None:
        print(f"{Path(args.out_dir) / 'final'} already holds this run ({done.get('steps')} steps, the same settings, "
              f"trained after {args.train_file} was written): nothing to do. --resume false trains it again; "
              "another --out_dir keeps both.")
        return done
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    cpu = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is visible; use --device cpu or auto.")
    accelerator = Accelerator(cpu=cpu, gradient_accumulation_steps=args.grad_accum_steps)
    set_seed(args.seed)
    model_dir = resolve_base(args.base_model)
    estimate = check_fits(model_dir, args, accelerator.device.type)  # before any weight is loaded
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train, too_long = tokenize_file(tokenizer, args.train_file, args.max_seq_len)
    evals = tokenize_file(tokenizer, args.eval_file, args.max_seq_len)[0] if args.eval_file else []
    evals = evals[: args.eval_max_examples] if args.eval_max_examples else evals
    dropped = describe_too_long(too_long, args.max_seq_len, read=len(train) + len(too_long))
    accelerator.print(f"train examples {len(train)} ({dropped}), "
                      f"eval examples {len(evals)}; memory estimate {estimate['total'] / 2**30:.2f} GiB")
    model, identity = load_model(args, model_dir, accelerator.device)
    return main(args, accelerator, model, tokenizer, identity, train, evals)


def main(args: LoRAArgs, accelerator, model, tokenizer, identity: dict, train: list, evals: list) -> dict:
    """Optimizer, schedule and data loaders; resume when asked; fit; save the final adapter."""
    from functools import partial

    from transformers import get_cosine_schedule_with_warmup

    out_dir = Path(args.out_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    loader = torch.utils.data.DataLoader(train, batch_size=args.micro_batch_size,
                                         sampler=EpochSampler([len(t.input_ids) for t in train], args.seed,
                                                              args.micro_batch_size if args.group_by_length else None),
                                         collate_fn=partial(collate, pad_id=pad_id),
                                         # own generators: a loader must not draw from the global RNG
                                         # that dropout uses, or a resumed run would drift
                                         generator=torch.Generator().manual_seed(args.seed))
    eval_loader = torch.utils.data.DataLoader(evals, batch_size=args.micro_batch_size,
                                              collate_fn=partial(collate, pad_id=pad_id),
                                              generator=torch.Generator().manual_seed(args.seed)) if evals else None
    steps_per_epoch = max(1, len(loader) // args.grad_accum_steps)
    max_steps = args.max_steps or args.epochs * steps_per_epoch
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps, max_steps)
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    accelerator.print(f"trainable parameters {n_trainable:,} of {n_total:,}; {max_steps} steps")
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)

    step = 0
    last = last_checkpoint(out_dir) if args.resume else None
    if last is not None:
        step = resume_from(last, accelerator, model, optimizer, scheduler, identity)
        accelerator.print(f"resumed from {last} at step {step}")
    metrics_path = out_dir / "metrics.jsonl"
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        truncate_metrics(metrics_path, step)
    state = {"args": args, "accelerator": accelerator, "model": model, "optimizer": optimizer,
             "scheduler": scheduler, "loader": loader, "eval_loader": eval_loader, "tokenizer": tokenizer,
             "identity": identity, "metrics_path": metrics_path, "max_steps": max_steps}
    fit(state, step)
    eval_loss = validate(model, eval_loader, accelerator) if eval_loader is not None else None
    summary = {"steps": max_steps, "trainable_params": n_trainable, "total_params": n_total,
               "train_examples": len(train), "eval_examples": len(evals), "final_eval_loss": eval_loss,
               "adapter_dir": str(out_dir / "final")}
    if accelerator.is_main_process:
        resolved = {**asdict(args), "max_steps": max_steps}
        folder = adapters.save_adapter(out_dir / "final", accelerator.unwrap_model(model), tokenizer,
                                       resolved, identity)
        (folder / "summary.yaml").write_text(yaml.safe_dump(summary, sort_keys=False), encoding="utf-8")
        try:  # the same adapter for llama.cpp; an architecture it cannot take leaves the peft folder alone
            accelerator.print(f"GGUF LoRA for llama.cpp: {export_gguf.export_adapter(folder)}")
        except export_gguf.ExportError as err:
            accelerator.print(f"no GGUF LoRA export: {err}")
        log_metrics(metrics_path, {"step": max_steps, "final_eval_loss": eval_loss})
        accelerator.print(f"adapter saved to {folder}")
    accelerator.wait_for_everyone()
    return summary


def fit(state: dict, step: int) -> None:
    """The training loop from optimizer step `step` to `max_steps`, with logs, evals and checkpoints."""
    args, accelerator, model = state["args"], state["accelerator"], state["model"]
    optimizer, scheduler, loader = state["optimizer"], state["scheduler"], state["loader"]
    max_steps, per_epoch = state["max_steps"], len(loader)
    consumed = step * args.grad_accum_steps  # micro-batches already seen, to skip on resume
    epoch, skip = divmod(consumed, per_epoch)
    model.train()
    losses, tokens, started = [], 0, time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=max_steps, initial=step, desc="lora", disable=not accelerator.is_main_process)
    while step < max_steps:
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        skip = 0
        for batch in batches:
            with accelerator.accumulate(model):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            labels=batch["labels"])
                accelerator.backward(out.loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses.append(out.loss.detach().float().item())
            tokens += int(batch["attention_mask"].sum())
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if step % args.log_interval == 0:
                rate = tokens / max(time.perf_counter() - started, 1e-9)
                record = {"step": step, "train_loss": sum(losses) / len(losses),
                          "lr": scheduler.get_last_lr()[0], "tokens_per_s": round(rate, 1)}
                bar.set_postfix(loss=f"{record['train_loss']:.4f}")
                if accelerator.is_main_process:
                    log_metrics(state["metrics_path"], record)
            losses = []
            if state["eval_loader"] is not None and step % args.eval_interval == 0 and step < max_steps:
                eval_loss = validate(model, state["eval_loader"], accelerator)
                if accelerator.is_main_process:
                    log_metrics(state["metrics_path"], {"step": step, "eval_loss": eval_loss})
                model.train()
            if step % args.save_interval == 0 and step < max_steps:
                save_checkpoint(state, step)
            if step >= max_steps:
                break
        epoch += 1
    bar.close()


@torch.no_grad()
def validate(model, loader, accelerator) -> float:
    """Mean loss per assistant token over the eval set (all processes together)."""
    model.eval()
    total = torch.zeros(2, device=accelerator.device)
    for batch in loader:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        n = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        total += torch.stack([out.loss.float() * n, n.float()])
    total = accelerator.reduce(total, reduction="sum")
    return float(total[0] / total[1].clamp(min=1))


def cli(argv: list[str] | None = None) -> dict:
    """Entry point: parse `--config` and overrides, then run `setup`."""
    return setup(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    cli()
