"""Score a benchmark folder: prediction files against `_truth/`, one markdown table out.

Reads only the folder that `run_benchmark` (or anyone following docs/benchmark.md) wrote:
`benchmark.yaml` for the test / validation cutoffs, `_truth/` for labels, `<model>/` for files.
A user of P(c) missing from a churn file counts as p = 0.5, one missing from a ranking file as
an empty list; a model that wrote a task for some cutoffs but not others is scored as if the
missing files were empty (skipping hard cutoffs does not help either).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tools.predictor.bench_files import (TASK_COLUMN, file_name, horizon_tag, model_dirs, parse_cutoff_tag,
                                         read_churn, read_ranking, read_truth)
from tools.predictor.data import normalize_horizon
from tools.predictor.metrics import (best_f1_threshold, churn_metrics, ranking_metrics, target_ranks,
                                     threshold_metrics)

MANIFEST = "benchmark.yaml"
# Preferred column order; any other model follows alphabetically.
MODEL_ORDER = ("oracle", "transformer", "transformer_network", "llm_lora", "llm_base", "logreg_rfm", "lightgbm",
               "bgnbd", "recency", "repeat_recency", "markov", "popularity")
CHURN_ROWS = (("auc", "ROC-AUC"), ("ap", "AP (churn)"), ("brier", "Brier"), ("ece", "ECE"),
              ("accuracy", "accuracy @F1-thr"), ("recall", "recall @F1-thr"), ("f1", "F1 @F1-thr"),
              ("threshold", "F1 threshold (val)"), ("base_rate", "base rate"), ("n", "n users"),
              ("missing", "users missing (p=0.5)"))
RANK_ROWS = (("hr", "HR@10"), ("ndcg", "NDCG@10"), ("mrr", "MRR@10"), ("n", "n target users"),
             ("unseen", "targets unseen before c"), ("missing", "users missing (empty)"))


def _manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a benchmark folder (no {MANIFEST}); "
                                "write one with `shopsight bench run --out DIR` first")
    return yaml.safe_load(path.read_text())


def _churn_predictions(model_dir: Path, truth: pd.DataFrame, horizon: int, cutoff) -> tuple[np.ndarray, int]:
    path = model_dir / file_name("churn", horizon, cutoff)
    if not path.is_file():
        return np.full(len(truth), 0.5), len(truth)
    pred = read_churn(path)
    p = truth[["user_id"]].merge(pred, on="user_id", how="left")["p_churn"]
    return p.fillna(0.5).to_numpy(dtype=float), int(p.isna().sum())


def _score_churn(out_dir: Path, model_dir: Path, horizon: int, cutoff, val_cutoff) -> dict[str, float]:
    truth = read_truth(out_dir, "churn", horizon, cutoff)
    p, missing = _churn_predictions(model_dir, truth, horizon, cutoff)
    row = churn_metrics(truth["churn"].to_numpy(), p)
    val_truth = read_truth(out_dir, "churn", horizon, val_cutoff)
    val_p, _ = _churn_predictions(model_dir, val_truth, horizon, val_cutoff)
    threshold = best_f1_threshold(val_truth["churn"].to_numpy(), val_p)
    row.update(threshold_metrics(truth["churn"].to_numpy(), p, threshold))
    row.pop("precision")
    row["missing"] = float(missing)
    return row


def _score_ranking(out_dir: Path, model_dir: Path, task: str, horizon: int, cutoff) -> dict[str, float]:
    truth = read_truth(out_dir, task, horizon, cutoff)
    path = model_dir / file_name(task, horizon, cutoff)
    column = TASK_COLUMN[task]
    if path.is_file():
        pred = read_ranking(path, task)
        lists = truth[["user_id"]].merge(pred, on="user_id", how="left")[column]
        missing = int(lists.isna().sum())
        lists = [v if isinstance(v, list) else [] for v in lists]
    else:
        lists, missing = [[] for _ in range(len(truth))], len(truth)
    targets = [t if k else None for t, k in zip(truth["target"], truth["known"])]
    row = ranking_metrics(target_ranks(targets, lists))
    row["unseen"] = float((truth["known"] == 0).mean()) if len(truth) else math.nan
    row["missing"] = float(missing)
    return row


def score_long(out_dir: str | Path) -> pd.DataFrame:
    """Every metric of every model, task, horizon and test cutoff: one row each (long format)."""
    out_dir = Path(out_dir)
    manifest = _manifest(out_dir)
    horizons = [normalize_horizon(h) for h in manifest["horizons_days"]]
    cutoffs = [(parse_cutoff_tag(t), parse_cutoff_tag(manifest["validation_cutoffs"][t]))
               for t in manifest["test_cutoffs"]]
    rows = []
    for model_dir in model_dirs(out_dir):
        names = {p.name for p in model_dir.glob("*.csv")}
        for task in manifest["tasks"]:
            if not any(n.startswith(f"{task}__") for n in names):
                continue  # the model does not do this task at all
            for h in horizons:
                for cutoff, val_cutoff in cutoffs:
                    row = _score_churn(out_dir, model_dir, h, cutoff, val_cutoff) if task == "churn" \
                        else _score_ranking(out_dir, model_dir, task, h, cutoff)
                    rows += [{"model": model_dir.name, "task": task, "horizon_days": h,
                              "cutoff": cutoff.isoformat(), "metric": k, "value": v} for k, v in row.items()]
    return pd.DataFrame(rows, columns=["model", "task", "horizon_days", "cutoff", "metric", "value"])


def _ordered_models(models: list[str]) -> list[str]:
    known = [m for m in MODEL_ORDER if m in models]
    return known + sorted(m for m in models if m not in known)


def _fmt(metric: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if metric in ("n", "missing"):
        return f"{value:,.0f}"
    return f"{value:.3f}"


def score_table(long: pd.DataFrame, manifest: dict | None = None) -> str:
    """One markdown table: rows = task, horizon (each and their mean), metric; columns = models.

    Every value is the mean over the test cutoffs.
    """
    if long.empty:
        notes = "".join(f"\n- {n}" for n in (manifest or {}).get("notes", []))
        return "(no prediction files found)" + notes
    models = _ordered_models(sorted(long["model"].unique()))
    per_h = long.groupby(["task", "horizon_days", "metric", "model"], sort=False)["value"].mean()
    lines = ["| task | H | metric | " + " | ".join(models) + " |",
             "|---|---|---|" + "---|" * len(models)]
    for task in ("churn", "next_item", "next_category"):
        if task not in set(long["task"]):
            continue
        horizons = sorted(long.loc[long["task"] == task, "horizon_days"].unique())
        metric_rows = CHURN_ROWS if task == "churn" else RANK_ROWS
        for h in [*horizons, "mean"]:
            for metric, label in metric_rows:
                cells = []
                for model in models:
                    if h == "mean":
                        values = [per_h.get((task, hh, metric, model), math.nan) for hh in horizons]
                        value = float(np.mean(values)) if not any(map(math.isnan, values)) else math.nan
                    else:
                        value = per_h.get((task, h, metric, model), math.nan)
                    cells.append(_fmt(metric, value))
                if metric == "missing" and all(c in ("0", "–") for c in cells):
                    continue  # nobody skipped users: keep the table short
                h_label = horizon_tag(h) if h != "mean" else "mean"
                lines.append(f"| {task} | {h_label} | {label} | " + " | ".join(cells) + " |")
    n_cutoffs = long["cutoff"].nunique()
    footer = f"\n\nMeans over {n_cutoffs} test cutoff(s)"
    if manifest:
        footer += f" of `{manifest['data']['dataset']}` ({', '.join(manifest['test_cutoffs'])})"
    footer += "; the F1 threshold is chosen on each cutoff's validation cutoff (c - max H)."
    for note in (manifest or {}).get("notes", []):
        footer += f"\n- {note}"
    return "\n".join(lines) + footer


def score_directory(out_dir: str | Path) -> str:
    """Score a benchmark folder and return its markdown table (also saved as `scores.md` / `scores.csv`)."""
    out_dir = Path(out_dir)
    manifest = _manifest(out_dir)
    long = score_long(out_dir)
    table = score_table(long, manifest)
    long.to_csv(out_dir / "scores.csv", index=False)
    (out_dir / "scores.md").write_text(table + "\n")
    return table
