"""Train and evaluate the behavior Transformer on a benchmark dataset, one model per cutoff.

    python -m finetune.predictor --config finetune/configs/predictor_cdnow.yaml
    python -m finetune.predictor --config finetune/configs/predictor_demo.yaml --out /tmp/pred_demo
    accelerate launch -m finetune.predictor --config finetune/configs/predictor_demo.yaml   # several GPUs

The YAML holds TrainConfig fields at the top level (the same file works as
`shopsight bench run --transformer-config FILE`) plus a `run:` section that this script reads:
dataset (cdnow | taobao | demo), data (file path, not needed for demo), n_users and seed (demo),
cutoffs (a subset of the protocol's; default all), out (checkpoint root).
For each cutoff: train on events at or before it, score every user, and measure on what happened
after it with the protocol's metrics (tools/predictor/metrics.py); prints one markdown table with
train time, sequences/s, scoring users/s, churn AUC/ECE and next-item/category NDCG@10.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from tools.paths import default_models_dir
from tools.predictor.bench_datasets import load_bench_data
from tools.predictor.metrics import churn_metrics, ranking_metrics, target_ranks
from tools.predictor.train import TrainConfig, load_config_yaml, train_predictor


def split_config(raw: dict) -> tuple[dict, dict]:
    """(run section, TrainConfig fields) of a recipe."""
    raw = dict(raw)
    return dict(raw.pop("run", None) or {}), raw


def evaluate_cutoff(predictor, events: pd.DataFrame, cutoff: datetime, horizons: tuple[int, ...],
                    tasks: tuple[str, ...]) -> tuple[list[dict], float]:
    """Protocol metrics of one trained predictor at one cutoff; returns (rows, scoring seconds)."""
    past = events[events["ts"] <= cutoff]
    start = time.perf_counter()
    scores = predictor.score_users(past, cutoff)
    score_s = time.perf_counter() - start
    rows = []
    for h in horizons:
        window = events[(events["ts"] > cutoff) & (events["ts"] <= pd.Timestamp(cutoff) + pd.Timedelta(days=h))]
        part = scores[scores["horizon_days"] == h]
        buyers = set(window.loc[window["behavior"] == "buy", "user_id"].astype(str))
        population = pd.Index(pd.unique(past["user_id"].astype(str)))
        p = part.set_index("user_id")["p_churn"].reindex(population).fillna(0.5)
        y = (~population.isin(buyers)).astype(int)
        row = {"cutoff": str(cutoff), "horizon_days": h, **{f"churn_{k}": v for k, v in churn_metrics(y, p.values).items()}}
        first = window.sort_values("ts", kind="stable").drop_duplicates("user_id")
        # Targets are users of P(c) only (docs/benchmark.md): a user whose first event is after c has no
        # score and would count as a miss (it cut demo next-category NDCG@10 from 0.631 to 0.583).
        first = first[first["user_id"].astype(str).isin(population)]
        for task, field, col in (("next_item", "item_id", "top_items"), ("next_category", "category_id", "top_categories")):
            if task not in tasks:
                continue
            seen = set(past[field].dropna().astype(str))
            targets = [t if t in seen else None for t in first[field].astype(str)]
            ranked = part.set_index("user_id")[col].reindex(first["user_id"].astype(str)).fillna("")
            ranks = target_ranks(targets, [r.split() for r in ranked])
            row[f"{task}_ndcg10"] = ranking_metrics(ranks)["ndcg"]
        rows.append(row)
    return rows, score_s


def main(config: Path, out: Path | None = None, resume: bool = True, progress: bool = True) -> list[dict]:
    """Train one predictor per cutoff of the recipe's dataset and evaluate it; returns the result rows.

    Args:
        config: the YAML recipe (TrainConfig fields + `run:` section).
        out: checkpoint root (default: run.out, else <models>/predictor/<dataset>-bench).
        resume: continue interrupted runs found under `out`.
        progress: show progress bars.
    """
    run, fields_ = split_config(load_config_yaml(config))
    dataset = run.get("dataset", "demo")
    data = load_bench_data(dataset, run.get("data"), n_users=int(run.get("n_users", 5000)),
                           seed=int(run.get("seed", 0)), progress=progress)
    fields_["horizons_days"] = list(data.horizons_days)
    cfg = TrainConfig.from_dict(fields_)
    out = Path(out or run.get("out") or default_models_dir() / "predictor" / f"{dataset}-bench")
    cutoffs = [pd.Timestamp(c).to_pydatetime() for c in run.get("cutoffs", [])] or list(data.cutoffs)
    events = data.events
    results = []
    for cutoff in cutoffs:
        past = events[events["ts"] <= cutoff]
        start = time.perf_counter()
        predictor = train_predictor(past, cutoff, cfg, out / pd.Timestamp(cutoff).strftime("%Y%m%dT%H%M%SZ"),
                                    progress=progress, resume=resume)
        train_s = time.perf_counter() - start
        rows, score_s = evaluate_cutoff(predictor, events, cutoff, data.horizons_days, data.tasks)
        n_users = past["user_id"].nunique()
        for row in rows:
            row.update(train_s=round(train_s, 1), sequences_per_s=predictor.config["training"]["examples_per_s"],
                       epochs=predictor.config["training"]["epochs_run"], score_s=round(score_s, 2),
                       users_per_s=round(n_users / max(score_s, 1e-9)), users=n_users)
        results.extend(rows)
    print(markdown_table(results, dataset))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    return results


def markdown_table(rows: list[dict], dataset: str) -> str:
    cols = ["cutoff", "horizon_days", "churn_auc", "churn_ece", "churn_base_rate", "next_item_ndcg10",
            "next_category_ndcg10", "train_s", "epochs", "sequences_per_s", "users_per_s"]
    cols = [c for c in cols if any(c in r for r in rows)]
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) and abs(v) < 10 else str(v)  # noqa: E731
    lines = [f"### transformer on {dataset}", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    for h in sorted({r["horizon_days"] for r in rows}):
        sel = [r for r in rows if r["horizon_days"] == h]
        lines.append(f"| mean {h}d | | " + " | ".join(
            fmt(float(np.mean([r[c] for r in sel]))) if c in ("churn_auc", "churn_ece", "next_item_ndcg10",
                                                              "next_category_ndcg10") and c in sel[0] else ""
            for c in cols[2:]) + " |")
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.predictor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="YAML recipe, e.g. finetune/configs/predictor_cdnow.yaml")
    parser.add_argument("--out", type=Path, default=None, help="checkpoint root (default from the recipe)")
    parser.add_argument("--no-resume", action="store_true", help="start every cutoff over")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        raise SystemExit(f"{args.config}: no such recipe; see finetune/configs/predictor_*.yaml")
    main(args.config, args.out, resume=not args.no_resume, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
