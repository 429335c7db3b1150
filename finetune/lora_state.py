"""Resumable training state of finetune.lora: checkpoints, resume, and the metrics log.

A checkpoint is the adapter, the optimizer and schedule state and the RNG state at a step,
written to `*.tmp` and renamed. Resuming restores all of it, and the metrics log is cut back
to that step so a crashed run's tail is not duplicated.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from finetune import adapter as adapters


def last_checkpoint(out_dir: Path) -> Path | None:
    """The newest `checkpoints/step-NNNNNN` folder of a run, or None (unfinished `.tmp` folders never match)."""
    found = sorted((out_dir / "checkpoints").glob("step-[0-9]*[0-9]"))
    return found[-1] if found else None


def save_checkpoint(state: dict, step: int) -> None:
    """Adapter + optimizer + schedule + RNG at `step`, written atomically for `resume_from`."""
    accelerator = state["accelerator"]
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    folder = Path(state["args"].out_dir) / "checkpoints" / f"step-{step:06d}"
    model = accelerator.unwrap_model(state["model"])

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        (tmp / adapters.IDENTITY_FILE).write_text(yaml.safe_dump(state["identity"]), encoding="utf-8")
        torch.save({"step": step, "optimizer": state["optimizer"].state_dict(),
                    "scheduler": state["scheduler"].state_dict(), "rng": torch.get_rng_state()},
                   tmp / "training_state.pt")

    adapters.write_atomically(folder, write)


def resume_from(folder: Path, accelerator, model, optimizer, scheduler, identity: dict) -> int:
    """Load a checkpoint of `save_checkpoint`; refuse one made on another base model."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = yaml.safe_load((folder / adapters.IDENTITY_FILE).read_text(encoding="utf-8"))
    if saved.get("embedding_sha256") != identity["embedding_sha256"]:
        raise SystemExit(f"{folder} was written for base {saved.get('name_or_path')!r}, not this base model; "
                         "use another --out_dir or --resume false.")
    set_peft_model_state_dict(accelerator.unwrap_model(model), load_file(folder / "adapter_model.safetensors"))
    training = torch.load(folder / "training_state.pt", weights_only=False)
    optimizer.load_state_dict(training["optimizer"])
    scheduler.load_state_dict(training["scheduler"])
    torch.set_rng_state(training["rng"])
    return int(training["step"])


def log_metrics(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines past `step` (a crashed run's tail), so a resumed run has no duplicates."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step and "final_eval_loss" not in line]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


# Settings that do not change the adapter a run produces.
_NOT_THE_RESULT = ("resume", "num_threads", "max_memory_gb")


def finished_run(out_dir: Path, settings: dict) -> dict | None:
    """The summary of a finished run in `out_dir` made with these settings from these files, else None.

    Re-running a finished recipe used to resume from its last checkpoint and train the steps
    after it again (90 CPU s for a 4-step smoke run of the 0.5B), rewriting final/. A run counts as
    the same when final/config.yaml equals `settings` (max_steps too when given) apart from
    `_NOT_THE_RESULT`, and its train and eval files are older than final/summary.yaml.
    """
    final = out_dir / "final"
    summary_path, config_path = final / "summary.yaml", final / "config.yaml"
    if not (summary_path.is_file() and config_path.is_file()):
        return None
    saved = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    keys = [k for k in settings if k not in _NOT_THE_RESULT and not (k == "max_steps" and settings[k] is None)]
    if any(saved.get(k) != settings[k] for k in keys):
        return None
    written = summary_path.stat().st_mtime
    for name in ("train_file", "eval_file"):
        data = settings.get(name)
        if data and (not Path(data).is_file() or Path(data).stat().st_mtime > written):
            return None
    return yaml.safe_load(summary_path.read_text(encoding="utf-8")) or {}
