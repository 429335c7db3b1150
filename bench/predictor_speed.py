"""Speed and memory of the behavior Transformer: training on CDNOW and the demo shop, scoring 100,000 demo users.

    .venv/bin/python bench/predictor_speed.py                       # both parts, default sizes
    .venv/bin/python bench/predictor_speed.py --part score --users 100000 --threads 2
    .venv/bin/python bench/predictor_speed.py --part train --cdnow .cache/datasets/CDNOW_master.txt
    .venv/bin/python bench/predictor_speed.py --part demo-profile   # data building vs forward vs backward
    .venv/bin/python bench/predictor_speed.py --part demo-train     # `make run`'s training, timed per phase
    .venv/bin/python bench/predictor_speed.py --part demo-train --set epochs=3 --set item_loss_positions=4

Scoring: a 5,000-user demo shop (tools/data/synth.py) is replicated with renamed users up to
`--users` (generating 100,000 users directly works too, `--generate`, but takes minutes), a small
demo predictor is trained on the original shop, then a fresh subprocess loads the events and the
checkpoint and scores everyone, so its peak RSS is the scoring job's own. The logistic-RFM
baseline scores the same users beside it. Training: one CDNOW model (finetune/configs/
predictor_cdnow.yaml) at the first protocol cutoff; sequences/s from the trainer's own record.
Timings on a shared machine are noisy: the load average is printed with every table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score_child(events_path: str, checkpoint: str, cutoff: str, threads: int) -> dict:
    """Run in a fresh process: load events + checkpoint, score all users, report time and peak RSS."""
    import pandas as pd
    import torch

    from tools.predictor.baselines import logreg_rfm_baseline
    from tools.predictor.score import Predictor

    torch.set_num_threads(threads)
    events = pd.read_parquet(events_path)
    rss_events = _rss_mb()
    predictor = Predictor.load(Path(checkpoint))
    start, cpu = time.perf_counter(), time.process_time()
    scores = predictor.score_users(events, pd.Timestamp(cutoff), progress=False)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu  # CPU time: fair when the box is busy
    users = int(scores["user_id"].nunique())
    peak = _rss_mb()
    start = time.perf_counter()
    logreg_rfm_baseline(events, pd.Timestamp(cutoff).to_pydatetime(), predictor.horizons_days[0])
    base_s = time.perf_counter() - start
    return {"users": users, "events": int(len(events)), "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
            "users_per_s": round(users / seconds), "peak_rss_mb": round(peak), "rss_after_events_mb": round(rss_events),
            "truncated_users": predictor.last_info["truncated_users"], "threads": threads,
            "logreg_rfm_seconds": round(base_s, 2)}


def bench_score(users: int, threads: int, generate: bool, workdir: Path) -> dict:
    import pandas as pd
    import yaml

    from tools.data.synth import DEMO_CUTOFFS, generate_shop
    from tools.predictor.train import TrainConfig, train_predictor

    cutoff = DEMO_CUTOFFS[0]
    base = generate_shop(n_users=users if generate else 5000, seed=0, progress=False).events
    base = base[base["ts"] <= cutoff]
    raw = yaml.safe_load((ROOT / "finetune/configs/predictor_demo.yaml").read_text())
    raw.update(epochs=1, n_cutoffs=2)  # speed of scoring does not depend on how long it trained
    start = time.perf_counter()
    train_predictor(base, cutoff, TrainConfig.from_dict(raw), workdir / "ckpt", progress=False, resume=False)
    train_s = time.perf_counter() - start
    if not generate:
        copies = -(-users // base["user_id"].nunique())
        base = pd.concat([base.assign(user_id=base["user_id"].astype(str) + f"_{k}") for k in range(copies)],
                         ignore_index=True)
        keep = pd.Index(pd.unique(base["user_id"]))[:users]
        base = base[base["user_id"].isin(keep)]
    base.to_parquet(workdir / "events.parquet")
    code = (f"import json,sys; sys.path.insert(0,{str(ROOT)!r}); from bench.predictor_speed import score_child; "
            f"print(json.dumps(score_child({str(workdir / 'events.parquet')!r}, {str(workdir / 'ckpt')!r}, "
            f"{str(cutoff)!r}, {threads})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["demo_train_s_1_epoch"] = round(train_s, 1)
    return result


def bench_train(cdnow: Path, workdir: Path) -> dict:
    import pandas as pd
    import yaml

    from tools.predictor.bench_datasets import read_cdnow
    from tools.predictor.train import TrainConfig, train_predictor

    raw = yaml.safe_load((ROOT / "finetune/configs/predictor_cdnow.yaml").read_text())
    raw["horizons_days"] = [30, 90]
    events = read_cdnow(cdnow)
    cutoff = pd.Timestamp("1997-09-30 23:59:59")
    start = time.perf_counter()
    predictor = train_predictor(events[events["ts"] <= cutoff], cutoff, TrainConfig.from_dict(raw), workdir / "cdnow",
                                progress=False, resume=False)
    seconds = time.perf_counter() - start
    record = predictor.config["training"]
    users = predictor.config["data"]["users"]
    return {"seconds_total": round(seconds, 1), "seconds_training_loop": record["seconds"],
            "epochs": record["epochs_run"], "sequences_per_s": record["examples_per_s"],
            "train_examples": predictor.config["data"]["train_examples"], "users": users,
            "users_per_s": round(users * record["epochs_run"] / max(record["seconds"], 1e-9)),
            "parameters": record["parameters"]}


def profile_demo_training(batches: int = 30, overrides: dict | None = None) -> dict:
    """Where demo training time goes (#17): data building vs forward vs backward, CPU seconds of this process.

    CPU seconds (`time.process_time`) are what the job itself used, so they stay meaningful when
    other jobs share the cores; wall seconds are printed beside them.
    """
    import numpy as np
    import torch
    import yaml

    from tools.data.synth import DEMO_CUTOFFS, generate_shop
    from tools.predictor.data import FEATURE_NAMES, collate, length_batches
    from tools.predictor.model import BehaviorTransformer, ModelConfig
    from tools.predictor.train import TrainConfig, _to_tensors, build_datasets

    torch.set_num_threads(1)  # the recipe's num_threads
    events = generate_shop(n_users=5000, seed=0, progress=False).events
    raw = yaml.safe_load((ROOT / "finetune/configs/predictor_demo.yaml").read_text())
    cfg = TrainConfig.from_dict({**raw, **(overrides or {})})
    cpu, wall = time.process_time(), time.perf_counter()
    vocab, arrays, train, _, _, label_end = build_datasets(events, DEMO_CUTOFFS[0], cfg)
    out = {"build_datasets_cpu_s": round(time.process_time() - cpu, 2),
           "build_datasets_wall_s": round(time.perf_counter() - wall, 2), "train_examples": len(train)}
    model = BehaviorTransformer(ModelConfig(
        n_items=vocab.n_items, n_categories=vocab.n_categories, n_known_items=len(vocab.items),
        n_known_categories=len(vocab.categories), n_features=len(FEATURE_NAMES), n_horizons=len(cfg.horizons_days),
        d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads, dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout, max_len=cfg.max_len, item_loss_positions=cfg.item_loss_positions))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    lengths = train.ends - arrays.offsets[train.user_rows]
    all_batches = length_batches(lengths, cfg.batch_size, np.random.default_rng(0))
    spent = {"collate": 0.0, "forward": 0.0, "backward_step": 0.0}
    for idx in all_batches[:batches]:
        t = time.process_time()
        b = _to_tensors(collate(arrays, train, idx, cfg.max_len, label_end), "cpu")
        spent["collate"] += time.process_time() - t
        t = time.process_time()
        loss = model(b, cfg.loss_weights)["loss"]
        spent["forward"] += time.process_time() - t
        t = time.process_time()
        opt.zero_grad()
        loss.backward()
        opt.step()
        spent["backward_step"] += time.process_time() - t
    n = min(batches, len(all_batches))
    out.update({f"{k}_cpu_s_per_step": round(v / n, 4) for k, v in spent.items()})
    out["steps_per_epoch"] = len(all_batches)
    out["epochs"] = cfg.epochs
    out["loop_cpu_s_estimate"] = round(sum(spent.values()) / n * len(all_batches) * cfg.epochs, 1)
    return out


class _PhaseClock:
    """CPU and wall seconds spent inside named functions of our own modules, while `train_predictor` runs.

    The functions are wrapped for the duration of one run (timing only: each still runs as is)
    and restored afterwards.
    """

    def __init__(self, targets: dict[str, tuple[object, str]]):
        self.targets, self.spent, self._saved = targets, {}, []

    def __enter__(self) -> "_PhaseClock":
        for phase, (module, attr) in self.targets.items():
            original = getattr(module, attr)
            self._saved.append((module, attr, original))
            setattr(module, attr, self._timed(phase, original))
        return self

    def _timed(self, phase: str, fn):
        def run(*args, **kwargs):
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                was = self.spent.get(phase, (0.0, 0.0, 0))
                self.spent[phase] = (was[0] + time.process_time() - cpu, was[1] + time.perf_counter() - wall, was[2] + 1)
        return run

    def __exit__(self, *exc) -> None:
        for module, attr, original in reversed(self._saved):
            setattr(module, attr, original)


def time_demo_training(overrides: dict, workdir: Path) -> dict:
    """`make run`'s predictor phase: the demo shop (5,000 users, seed 0) up to its last event, the recipe
    finetune/configs/predictor_demo.yaml (plus `overrides`), timed per phase in CPU and wall seconds."""
    import torch
    import yaml

    import tools.predictor.checkpoint as ckpt
    import tools.predictor.rerank as rerank
    import tools.predictor.score as score
    import tools.predictor.train as train
    from tools.data.synth import generate_shop

    events = generate_shop(n_users=5000, seed=0, progress=False).events
    cutoff = events["ts"].max()
    raw = yaml.safe_load((ROOT / "finetune/configs/predictor_demo.yaml").read_text())
    raw.update(overrides)
    cfg = train.TrainConfig.from_dict(raw)
    phases = {"build_datasets": (train, "build_datasets"), "validation_loss": (train, "_evaluate"),
              "epoch_checkpoints": (ckpt, "save_weights"), "calibration": (score, "fit_calibration"),
              "blend_fit": (rerank, "fit_ranking"), "final_checkpoint": (ckpt, "save_checkpoint"),
              "load_back": (score.Predictor, "load")}
    threads_before = torch.get_num_threads()
    cpu, wall = time.process_time(), time.perf_counter()
    with _PhaseClock(phases) as clock:
        predictor = train.train_predictor(events, cutoff, cfg, workdir / "demo", progress=False, resume=False)
    total_cpu, total_wall = time.process_time() - cpu, time.perf_counter() - wall
    torch.set_num_threads(threads_before)
    rows = {}
    for phase in phases:
        c, w, n = clock.spent.get(phase, (0.0, 0.0, 0))
        rows[phase] = (round(c, 1), round(w, 1), n)
    # save_weights also runs once inside save_checkpoint (counted twice; well under 0.1 s on the demo).
    rest_cpu = total_cpu - sum(r[0] for r in rows.values())
    rest_wall = total_wall - sum(r[1] for r in rows.values())
    rows["training steps (the rest)"] = (round(rest_cpu, 1), round(rest_wall, 1), predictor.config["training"]["epochs_run"])
    rows["total"] = (round(total_cpu, 1), round(total_wall, 1), 1)
    ranking = predictor.config.get("ranking") or {}
    return {"rows": rows, "cutoff": str(cutoff), "train_examples": predictor.config["data"]["train_examples"],
            "overrides": overrides, "history": predictor.config["training"]["history"],
            "validation": predictor.calibration.get("validation"),
            "blend": {k: {"weights": v.get("weights"), "ndcg": v.get("ndcg"), "best": v.get("best_ndcg"),
                          "alone": v.get("alone")} for k, v in ranking.items() if isinstance(v, dict)}}


def _parse_overrides(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: write KEY=VALUE with a TrainConfig field, e.g. --set epochs=3")
        out[key] = yaml.safe_load(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["train", "score", "both", "demo-profile", "demo-train"], default="both")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generate", action="store_true", help="generate all users instead of replicating 5,000")
    parser.add_argument("--cdnow", type=Path, default=ROOT / ".cache/datasets/CDNOW_master.txt")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="demo-train, demo-profile: override a recipe field (TrainConfig), e.g. --set epochs=3")
    args = parser.parse_args()
    load = os.getloadavg()
    if args.part == "demo-train":
        with tempfile.TemporaryDirectory() as tmp:
            r = time_demo_training(_parse_overrides(args.set), Path(tmp))
        print(f"demo training at {r['cutoff']} (last event), {r['train_examples']:,} training examples, "
              f"recipe predictor_demo.yaml + {r['overrides'] or 'nothing'}")
        print("| phase | CPU s | wall s | calls |\n|---|---|---|---|")
        for phase, (c, w, n) in r["rows"].items():
            print(f"| {phase} | {c} | {w} | {n} |")
        print(f"\nepochs: {r['history']}\nvalidation: {r['validation']}\nblend: {r['blend']}")
        print(f"load average at start: {load[0]:.1f}, at end: {os.getloadavg()[0]:.1f} (2 cores)")
        return
    if args.part == "demo-profile":
        print("| demo training, cutoff 2026-04-01 (predictor_demo.yaml) | value |\n|---|---|")
        for k, v in profile_demo_training(overrides=_parse_overrides(args.set)).items():
            print(f"| {k} | {v} |")
        print(f"\nload average at start: {load[0]:.1f} (2 cores)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("train", "both"):
            r = bench_train(args.cdnow, Path(tmp))
            print("| CDNOW training (cutoff 1997-09-30) | value | target |\n|---|---|---|")
            for k, v in r.items():
                print(f"| {k} | {v} | {'< 300 s' if k == 'seconds_total' else ''} |")
        if args.part in ("score", "both"):
            r = bench_score(args.users, args.threads, args.generate, Path(tmp))
            print(f"\n| scoring {r['users']:,} demo users | transformer | logreg_rfm baseline | target |\n|---|---|---|---|")
            print(f"| seconds (wall) | {r['seconds']} | {r['logreg_rfm_seconds']} (fit + predict) | < 60 |")
            print(f"| CPU seconds (all threads) | {r['cpu_seconds']} | | |")
            print(f"| users/s | {r['users_per_s']:,} | {round(r['users'] / max(r['logreg_rfm_seconds'], 1e-9)):,} | |")
            print(f"| peak RSS MB (whole process) | {r['peak_rss_mb']:,} | | < 4096 |")
            for k in ("events", "rss_after_events_mb", "truncated_users", "threads", "demo_train_s_1_epoch"):
                print(f"| {k} | {r[k]} | | |")
    print(f"\nload average at start: {load[0]:.1f} (2 cores; numbers are noisy when others run)")


if __name__ == "__main__":
    main()
