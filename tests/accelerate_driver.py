"""Run one training under `accelerate launch` and record, per process, what it wrote.

Launched by tests/test_accelerate_ddp.py (also runnable with plain `python` for the one-process
baseline):

    accelerate launch --multi_gpu --num_processes 2 tests/accelerate_driver.py predictor OUT REPORT_DIR -- BATCH
    accelerate launch --multi_gpu --num_processes 2 tests/accelerate_driver.py lora OUT REPORT_DIR -- LORA_ARGS...

(`--multi_gpu` starts the processes through torchrun; on a machine without GPUs the training's
`Accelerator(cpu=True)` then joins them with gloo. `--cpu --num_processes 2` starts one process
in accelerate 1.15: its simple launcher needs mpirun for several CPU processes.)

A Python audit hook (an observer, not a stand-in) records every file this process opens for
writing and every rename into OUT, so the test can check that one process, and only one, writes
each checkpoint file. REPORT_DIR/rank-N.json gets the writes and the training result.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def watch_writes(out_dir: Path) -> list[str]:
    """Start recording writes under `out_dir`; returns the list that fills up."""
    prefix = str(out_dir.resolve())
    writes: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], (str, os.PathLike)):
            path, mode = str(args[0]), args[1]
            if isinstance(mode, str) and any(c in mode for c in "wax+") and path.startswith(prefix):
                writes.append(os.path.relpath(path, prefix))
            elif isinstance(mode, str) is False and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR) \
                    and path.startswith(prefix):
                writes.append(os.path.relpath(path, prefix))
        elif event == "os.rename" and str(args[1]).startswith(prefix):
            writes.append("rename -> " + os.path.relpath(str(args[1]), prefix))

    sys.addaudithook(hook)
    return writes


def train_predictor_run(out_dir: Path, batch_size: int) -> dict:
    import torch
    import yaml

    from predictor_shop import CUTOFF, make_shop
    from tools.predictor.train import TrainConfig, train_predictor

    torch.set_num_threads(1)
    config = TrainConfig(horizons_days=(7, 30), max_len=16, d_model=16, n_layers=1, n_heads=2, n_cutoffs=6,
                         cutoff_stride_days=7, batch_size=batch_size, epochs=4, warmup_steps=2, lr=3e-3,
                         val_fraction=0.25, max_items=100, max_categories=20, item_hash_buckets=4,
                         category_hash_buckets=2, device="cpu", patience=10)
    events = make_shop()
    predictor = train_predictor(events, CUTOFF, config, out_dir, progress=False, resume=False)
    scores = predictor.score_users(events, CUTOFF)
    scores = scores[scores["horizon_days"] == 30].set_index("user_id")["p_churn"]
    config_yaml = yaml.safe_load((out_dir / "config.yaml").read_text())
    return {"training": config_yaml["training"], "p_churn": {str(k): float(v) for k, v in scores.items()}}


def lora_run(argv: list[str]) -> dict:
    from finetune import lora

    return {"summary": lora.cli(argv)}


def main() -> None:
    kind, out_dir, report_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    rest = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    out_dir.mkdir(parents=True, exist_ok=True)
    writes = watch_writes(out_dir)
    result = train_predictor_run(out_dir, int(rest[0])) if kind == "predictor" else lora_run(rest)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"rank-{rank}.json").write_text(json.dumps(
        {"rank": rank, "world_size": world, "writes": writes, **result}, default=str))


if __name__ == "__main__":
    main()
