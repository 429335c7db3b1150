"""The scale-out training path for real: two processes joined by gloo DDP on this CPU machine.

`accelerate launch --multi_gpu --num_processes 2` (torchrun underneath; the training code's
`Accelerator(cpu=True)` picks gloo) runs tests/accelerate_driver.py, which trains the behavior
predictor (tools/predictor/train.py) or a LoRA adapter on a tiny random-init Qwen2
(finetune/lora.py) and records each process's file writes. Checked: two processes really ran,
the loss goes down, only process 0 writes the checkpoint and each file once, and the result
matches a one-process run with the same effective batch within a stated tolerance:
- predictor: best validation loss within 5% relative, and 30-day churn probabilities within 0.05
  of each other for every user (measured: 1.3% and 0.021);
- LoRA: the same examples make up each optimizer step (2 x 2 per process vs 4 in one), so the
  final eval loss matches within 2% relative and the logged train losses within 5%.
(`accelerate launch --cpu --num_processes 2` would start a single process in accelerate 1.15:
the test asserts the world size so that slip cannot pass.)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "accelerate_driver.py"
ACCELERATE = Path(sys.executable).with_name("accelerate")
PREDICTOR_VAL_RTOL, PREDICTOR_P_ATOL = 0.05, 0.05
LORA_EVAL_RTOL, LORA_TRAIN_RTOL = 0.02, 0.05


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def launch(args: list[str], two: bool, port: int, timeout: int = 900) -> None:
    if two:
        cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
               str(DRIVER), *args]
    else:
        cmd = [sys.executable, str(DRIVER), *args]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def reports(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("rank-*.json"))]


def assert_written_once_by_rank0(ranks: list[dict], final_files: list[str]) -> None:
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    assert ranks[1]["writes"] == [], f"process 1 wrote {ranks[1]['writes'][:5]}"
    renames = [w for w in ranks[0]["writes"] if w.startswith("rename -> ")]
    for name in final_files:
        assert renames.count(f"rename -> {name}") + ranks[0]["writes"].count(name) == 1, name


def test_predictor_two_processes(tmp_path):
    launch(["predictor", str(tmp_path / "out2"), str(tmp_path / "rep2"), "--", "32"], two=True, port=29531)
    launch(["predictor", str(tmp_path / "out1"), str(tmp_path / "rep1"), "--", "64"], two=False, port=0)
    two, (one,) = reports(tmp_path / "rep2"), reports(tmp_path / "rep1")
    assert_written_once_by_rank0(two, ["model.safetensors", "vocab.json", "calibration.json", "config.yaml"])
    history = [h["val_loss"] for h in two[0]["training"]["history"]]
    assert two[0]["training"]["processes"] == 2 and len(history) == 4
    assert history[-1] < history[0]  # the loss goes down
    assert two[0]["p_churn"] == two[1]["p_churn"]  # both processes load the same checkpoint
    best2, best1 = two[0]["training"]["best_val_loss"], one["training"]["best_val_loss"]
    assert abs(best2 - best1) <= PREDICTOR_VAL_RTOL * best1, (best2, best1)
    diffs = [abs(two[0]["p_churn"][u] - p) for u, p in one["p_churn"].items()]
    assert len(diffs) == len(two[0]["p_churn"]) and max(diffs) <= PREDICTOR_P_ATOL, max(diffs)


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


def test_lora_two_processes(tmp_path):
    from finetune.tiny import build_tiny_qwen2

    train, evals = _examples(24, seed=1), _examples(8, seed=2)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", evals)):
        (tmp_path / name).write_text("".join(json.dumps(e) + "\n" for e in rows), encoding="utf-8")
    build_tiny_qwen2(tmp_path / "model", [m["content"] for e in train for m in e["messages"]] * 3, hidden_size=64)

    def argv(out: str, micro: int) -> list[str]:
        args = {"base_model": tmp_path / "model", "train_file": tmp_path / "train.jsonl",
                "eval_file": tmp_path / "eval.jsonl", "out_dir": tmp_path / out, "max_steps": 6,
                "micro_batch_size": micro, "lr": "1e-2", "eval_interval": 100, "save_interval": 3,
                "max_seq_len": 128, "num_threads": 1, "device": "cpu", "lora_dropout": 0.0}
        return [tok for key, value in args.items() for tok in (f"--{key}", str(value))]

    launch(["lora", str(tmp_path / "out2"), str(tmp_path / "rep2"), "--", *argv("out2", 2)], two=True, port=29532)
    launch(["lora", str(tmp_path / "out1"), str(tmp_path / "rep1"), "--", *argv("out1", 4)], two=False, port=0)
    two, (one,) = reports(tmp_path / "rep2"), reports(tmp_path / "rep1")
    assert_written_once_by_rank0(two, ["final", "checkpoints/step-000003"])  # folders written, then renamed
    metrics = [json.loads(line) for line in (tmp_path / "out2" / "metrics.jsonl").read_text().splitlines()]
    train2 = [m["train_loss"] for m in metrics if "train_loss" in m]
    assert [m["step"] for m in metrics if "train_loss" in m] == [1, 2, 3, 4, 5, 6]  # one line per step: rank 0 only
    assert train2[-1] < train2[0]  # the loss goes down
    assert (tmp_path / "out2" / "checkpoints").is_dir() and (tmp_path / "out2" / "final").is_dir()
    train1 = [json.loads(line)["train_loss"] for line in (tmp_path / "out1" / "metrics.jsonl").read_text().splitlines()
              if "train_loss" in line]
    for a, b in zip(train2, train1):
        assert abs(a - b) <= LORA_TRAIN_RTOL * b, (train2, train1)
    e2, e1 = two[0]["summary"]["final_eval_loss"], one["summary"]["final_eval_loss"]
    assert abs(e2 - e1) <= LORA_EVAL_RTOL * e1, (e2, e1)
