"""How well each way of calibrating the network's churn probability would have done, inside the past and after.

    python -m tools.predictor.bench_calibration runs/cdnow --dataset cdnow --data .cache/datasets/CDNOW_master.txt

For every test cutoff's checkpoint of a `shopsight bench run` folder (OUT/_checkpoints/transformer/<cutoff>),
the network's raw churn logits on every labelled rolling cutoff inside the training past are mapped by
each variant below. "out of time": the map is fitted on all but the newest labelled cutoff and judged on
the newest (what a choice made inside the past can see); "test": the map fitted on every labelled cutoff
and judged on the test cutoff against the bench's truth file (for the report only: nothing is chosen on
it). ECE is the bench's own metric (`metrics.expected_calibration_error`, 10 equal-width bins).

Variants: `pooled_platt` (the pooled map), `pooled_isotonic`, `newest_platt` (the newest labelled cutoff
only), `heldout_platt` (held-out users of every labelled cutoff only: the training users' logits are
in-sample), `trend_platt` (the window's time as a second input, extrapolated to the newest window out of
time and to the training's last event for the test), `recent_platt` (windows weighted by recency, half-life
2 windows), `rule` (what ships with `calibrate_on: pooled`: `calibration.choose_pooled_map` over the
pooled map, kept only where it beats the raw logits, and the two drift-aware maps; its out-of-time ECE
is the one the rule judged, at its own gap) and `raw` (no map).

    python -m tools.predictor.bench_calibration runs/cdnow --noise-floor [--model transformer]

reads only the run's prediction and truth files: per test cutoff and horizon, the model's ECE as
scored, the noise floor of its own probabilities (`metrics.ece_noise_floor`: the ECE a perfectly
calibrated model of this size and spread shows), the level error |mean p - churn rate| and, for
the report only, the ECE once the level is set to the realized rate (one logit shift read from the
test labels: how much of the ECE is the window's base rate). Nothing is chosen on these numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tools.predictor.bench_datasets import load_bench_data
from tools.predictor.data import Examples
from tools.predictor.calibration import (apply_calibration, choose_pooled_map, fit_platt, fit_recent, fit_trend, logit,
                                         sigmoid)
from tools.predictor.metrics import ece_noise_floor, expected_calibration_error
from tools.predictor.score import Predictor, _beats_raw, _isotonic, predict_examples
from tools.predictor.train import TrainConfig, build_datasets

FIELDS = ("user_rows", "ends", "cutoffs", "features", "buy", "cart", "mask")


def _maps(z: np.ndarray, y: np.ndarray, cut: np.ndarray, heldout: np.ndarray, fit: np.ndarray, now: float) -> dict:
    newest = fit & (cut == cut[fit].max())
    return {"pooled_platt": fit_platt(z[fit], y[fit]), "pooled_isotonic": _isotonic(z[fit], y[fit]),
            "newest_platt": fit_platt(z[newest], y[newest]),
            "heldout_platt": fit_platt(z[fit & heldout], y[fit & heldout]),
            "trend_platt": fit_trend(z[fit], y[fit], cut[fit], now),
            "recent_platt": fit_recent(z[fit], y[fit], cut[fit]), "raw": None}


def _rule(z: np.ndarray, y: np.ndarray, cut: np.ndarray, now: float) -> tuple[dict | None, dict]:
    """What `score.fit_calibration` ships with `calibrate_on: pooled` (the map kept only if it beats raw)."""
    pooled = fit_platt(z, y) if _beats_raw(z, y, fit_platt) else None
    return choose_pooled_map(z, y, cut, now, pooled)


def probe_checkpoint(run_dir: Path, tag: str, events: pd.DataFrame) -> list[dict]:
    """One row per horizon and variant: out-of-time and test ECE, mean p and the realized churn rate."""
    predictor = Predictor.load(run_dir / "_checkpoints" / "transformer" / tag)
    cfg = TrainConfig.from_dict(predictor.config["train"])
    cutoff = pd.Timestamp(tag.replace("T", " ").rstrip("Z"))
    past = events[events["ts"] <= cutoff]
    _, arrays, train, val, _, label_end = build_datasets(past, cutoff, cfg)
    both = Examples(*(np.concatenate([getattr(val, f), getattr(train, f)]) for f in FIELDS))
    heldout_all = np.r_[np.ones(len(val), bool), np.zeros(len(train), bool)]
    logits = predict_examples(predictor.model, arrays, both, cfg.max_len, "cpu", top_k=0)["buy_logits"]
    now_arrays, now, _ = predictor.prepare(past, cutoff)
    now_logits = predict_examples(predictor.model, now_arrays, now, cfg.max_len, "cpu", top_k=0)["buy_logits"]
    now_users = now_arrays.user_ids[now.user_rows].astype(str)
    rows = []
    for j, h in enumerate(cfg.horizons_days):
        lab = both.mask[:, j] > 0
        z, y, cut, heldout = logits[lab, j].astype(float), both.buy[lab, j].astype(float), both.cutoffs[lab], \
            heldout_all[lab]
        newest = cut == cut.max()
        truth = pd.read_csv(run_dir / "_truth" / f"churn__{int(h)}d__{tag}.csv", dtype={"user_id": str})
        y_test = truth.set_index("user_id")["churn"].reindex(now_users).to_numpy(dtype=float)
        known = ~np.isnan(y_test)
        inside = _maps(z, y, cut, heldout, ~newest, cut.max())
        everything = _maps(z, y, cut, heldout, np.ones(len(z), bool), label_end)
        everything["rule"], record = _rule(z, y, cut, label_end)
        for name in everything:
            p_oot = 1 - apply_calibration(z[newest], inside[name]) if name in inside else np.array([np.nan])
            p_test = 1 - apply_calibration(now_logits[known, j].astype(float), everything[name])
            oot_ece = expected_calibration_error(1 - y[newest], p_oot) if name in inside else \
                record.get("oot_ece", {}).get(record["shipped"], np.nan)  # the rule: what it judged, at its gap
            rows.append({"cutoff": tag, "horizon_days": h, "variant": name, "oot_ece": oot_ece,
                         "oot_mean_p": p_oot.mean(), "oot_rate": 1 - y[newest].mean(),
                         "test_ece": expected_calibration_error(y_test[known], p_test), "test_mean_p": p_test.mean(),
                         "test_rate": y_test[known].mean(), "why": record["why"] if name == "rule" else ""})
    return rows


def _shift_to_rate(p: np.ndarray, rate: float) -> np.ndarray:
    """p moved by one logit shift so that its mean is `rate` (bisection; the ranking is kept)."""
    z = logit(np.clip(p, 1e-12, 1 - 1e-12))
    lo, hi = -20.0, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sigmoid(z + mid).mean() < rate else (lo, mid)
    return sigmoid(z + (lo + hi) / 2)


def noise_floor_rows(run_dir: Path, model: str = "transformer") -> list[dict]:
    """One row per test cutoff and horizon, then one per horizon over the test cutoffs pooled."""
    from tools.predictor.bench_files import parse_cutoff_tag, read_truth
    from tools.predictor.bench_score import MANIFEST, _churn_predictions

    manifest = yaml.safe_load((run_dir / MANIFEST).read_text())
    rows, pooled = [], {}
    for h in manifest["horizons_days"]:
        for tag in manifest["test_cutoffs"]:
            truth = read_truth(run_dir, "churn", h, parse_cutoff_tag(tag))
            p, _ = _churn_predictions(run_dir / model, truth, h, parse_cutoff_tag(tag))
            y = truth["churn"].to_numpy()
            pooled.setdefault(h, []).append((y, p))
            rows.append(_floor_row(tag, h, y, p))
        y, p = (np.concatenate(parts) for parts in zip(*pooled[h]))
        rows.append(_floor_row("pooled", h, y, p))
    return rows


def _floor_row(cutoff: str, h: float, y: np.ndarray, p: np.ndarray) -> dict:
    floor = ece_noise_floor(p)
    return {"cutoff": cutoff, "horizon_days": h, "n": len(y), "rate": y.mean(), "mean_p": p.mean(),
            "ece": expected_calibration_error(y, p), "floor_mean": floor["mean"], "floor_p90": floor["p90"],
            "level_error": abs(p.mean() - y.mean()),
            "ece_at_true_level": expected_calibration_error(y, _shift_to_rate(p, y.mean()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a `shopsight bench run` folder with transformer checkpoints")
    parser.add_argument("--dataset", help="cdnow, taobao or demo (as the run used); not with --noise-floor")
    parser.add_argument("--data", default=None, help="the raw file the run read")
    parser.add_argument("--noise-floor", action="store_true", help="the ECE noise floor of a model's files")
    parser.add_argument("--model", default="transformer", help="with --noise-floor: whose files")
    args = parser.parse_args(argv)
    if args.noise_floor:
        frame = pd.DataFrame(noise_floor_rows(args.run_dir, args.model))
        print(frame.round(4).to_string(index=False))
        return 0
    if not args.dataset:
        parser.error("--dataset is required (cdnow, taobao or demo)")
    data = load_bench_data(args.dataset, args.data, progress=False)
    from tools.predictor.bench_files import cutoff_tag

    rows = [r for c in data.cutoffs for r in probe_checkpoint(args.run_dir, cutoff_tag(c), data.events)]
    frame = pd.DataFrame(rows)
    means = frame.groupby(["horizon_days", "variant"], sort=False)[["oot_ece", "test_ece"]].mean()
    print(frame.drop(columns="why").round(4).to_string(index=False))
    print("\nmean over the test cutoffs:\n" + means.round(4).to_string())
    print("\nthe rule (calibration.choose_pooled_map), per cutoff and horizon:")
    for r in frame[frame["variant"] == "rule"].itertuples():
        print(f"  {r.cutoff} {r.horizon_days:g}d: {r.why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
