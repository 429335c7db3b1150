"""The `clv` benchmark task: predicted spend over the next H days, scored against the actual spend.

Files (docs/benchmark.md, "clv"): `OUT/<model>/clv__<H>d__<cutoff>.csv` with header
`user_id,expected_spend` (every user of P(c); a missing user counts as 0), the truth in
`OUT/_truth/clv__<H>d__<cutoff>.csv` (`user_id,actual_spend`, money in (c, c+H]). A shop
without prices is scored in orders. Metrics: Spearman rank correlation, MAE, and top-decile
capture (the share of the next-H revenue held by the 10 % of users the model ranks highest).

Models: `bgnbd_gg` (BG/NBD x Gamma-Gamma), `run_rate` (spend per day over the past year x H)
and `clv_combined` (ours: gradient-boosted trees over the BG/NBD, Gamma-Gamma, run-rate and RFM
features, trained on windows that end at or before the cutoff, so it sees only the past, and blended
with BG/NBD x Gamma-Gamma at a weight chosen on held-out customers of those windows).

Usage:
    run_clv("cdnow", ".cache/datasets/CDNOW_master.txt", "runs/cdnow")
    print(clv_score_table("runs/cdnow"))
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from tools.predictor.baselines import features
from tools.predictor.bench_files import cutoff_tag, parse_cutoff_tag
from tools.predictor.clv import expected_value, has_prices, run_rate_value

TRUTH_DIR = "_truth"
CLV_MODELS = ("bgnbd_gg", "run_rate", "clv_combined")
# CDNOW ends 1998-06-30: the last churn cutoff (1998-03-31) has no 180 observed days, so clv uses
# three cutoffs that do. The demo shop's cutoffs leave 30 days each.
CLV_PROTOCOL = {
    "cdnow": ([datetime(1997, 9, 30, 23, 59, 59), datetime(1997, 10, 31, 23, 59, 59),
               datetime(1997, 12, 31, 23, 59, 59)], (90, 180)),
    "demo": (None, (30,)),  # None: the generator's DEMO_CUTOFFS
}
_NAME = re.compile(r"^clv__(\d+)d__(\d{8}T\d{6}Z)\.csv$")
SEED = 0
MIN_HISTORY_DAYS = 60  # a training window needs this much history before its start
BLEND_WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)  # the trees' share of ours; the rest is BG/NBD x Gamma-Gamma
VALIDATION_FOLDS = 3  # customer groups for choosing the blend weight on the past windows
MIN_FOLD_USERS = 50  # fewer customers per group than this: too noisy to choose, the trees are used alone


def clv_file_name(horizon_days: int, cutoff: datetime) -> str:
    return f"clv__{int(horizon_days)}d__{cutoff_tag(cutoff)}.csv"


def actual_spend(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.DataFrame:
    """`user_id, actual_spend` for every user of P(cutoff): money in (c, c+H] (orders without prices)."""
    users = np.sort(events.loc[events["ts"] <= cutoff, "user_id"].unique())
    c = pd.Timestamp(cutoff)
    future = events[(events["ts"] > c) & (events["ts"] <= c + pd.Timedelta(days=horizon_days))
                    & (events["behavior"] == "buy")]
    value = future["amount"].fillna(0.0) if has_prices(events[events["ts"] <= cutoff]) \
        else pd.Series(1.0, index=future.index)
    spend = value.groupby(future["user_id"]).sum().reindex(users).fillna(0.0)
    return pd.DataFrame({"user_id": users, "actual_spend": spend.to_numpy()})


def visit_features(events: pd.DataFrame, cutoff: datetime) -> pd.DataFrame:
    """Recent visits of every user of P(cutoff): days with an event in 7 / 30 / 90 days, and the silence.

    BG/NBD reads orders only; a heavy buyer who stopped browsing after a late or poor order still
    looks valuable there. `log_p_quiet` = silent days x log(1 - share of days with a visit in the
    30 days before the last one): how unlikely the silence is at the user's own visit rate.
    """
    past = events[events["ts"] <= cutoff]
    c = pd.Timestamp(cutoff).normalize()
    days = pd.DataFrame({"user_id": past["user_id"].to_numpy(), "day": past["ts"].dt.normalize().to_numpy()})
    days = days.drop_duplicates()
    users = pd.Index(np.sort(days["user_id"].unique()), name="user_id")
    out = pd.DataFrame(index=users)
    for window in (7, 30, 90):
        recent = days[days["day"] > c - pd.Timedelta(days=window)]
        out[f"visit_days_{window}d"] = recent.groupby("user_id").size().reindex(users).fillna(0).astype(float)
    first, last = (days.groupby("user_id")["day"].agg(f).reindex(users) for f in ("min", "max"))
    before_last = days.merge(last.rename("last"), left_on="user_id", right_index=True)
    before_last = before_last[before_last["day"] > before_last["last"] - pd.Timedelta(days=30)]
    span = ((last - first) / pd.Timedelta(days=1) + 1).clip(upper=30)
    share = (before_last.groupby("user_id").size().reindex(users) / span).clip(upper=0.95)
    silent = ((c - last) / pd.Timedelta(days=1) - 1).clip(lower=0)
    out["log_p_quiet"] = silent * np.log1p(-share)
    return out


def _design(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.DataFrame:
    """Features of every user of P(cutoff): RFM and gaps, BG/NBD x Gamma-Gamma, run-rate, recent visits.

    Visits only where the shop logs more than orders (CDNOW holds orders only: there they would
    repeat the RFM columns and add noise).
    """
    rfm = features(events, cutoff)
    btyd, _ = expected_value(events, cutoff, horizon_days)
    rate = run_rate_value(events, cutoff, horizon_days)
    design = rfm.join(btyd.set_index("user_id")).join(rate.set_index("user_id")["expected_value"]
                                                      .rename("run_rate"))
    if (events["behavior"] != "buy").any():
        design = design.join(visit_features(events, cutoff))
    return design.rename(columns={"expected_value": "bgnbd_gg"}).astype(float)


def _training_rows(past: pd.DataFrame, cutoff: datetime, horizon_days: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows of the past windows ending at c, c - 30 d and c - 60 d: features at the window's start,
    target = spend in the window, and which window each row is from.

    Only windows that leave at least `MIN_HISTORY_DAYS` of history before their start are used;
    ValueError when not even the first one does (callers fall back to BG/NBD + Gamma-Gamma).
    """
    first = past["ts"].min().normalize()  # calendar days: data from 01-01 08:00 holds 60 days before 03-02
    xs, ys, ids = [], [], []
    for back in (0, 30, 60):
        end = pd.Timestamp(cutoff) - pd.Timedelta(days=back)
        start = (end - pd.Timedelta(days=horizon_days)).to_pydatetime()
        if (pd.Timestamp(start) - first).days < MIN_HISTORY_DAYS:
            if not xs:
                raise ValueError(f"the combined value model needs {MIN_HISTORY_DAYS} days of history before "
                                 f"{start:%Y-%m-%d} (c - {horizon_days} d); the data starts {first:%Y-%m-%d}")
            break
        window = past[past["ts"] <= end]
        x = _design(window, start, horizon_days)
        xs.append(x)
        ys.append(actual_spend(window, start, horizon_days).set_index("user_id")["actual_spend"].reindex(x.index))
        ids.append(np.full(len(x), back))
    return pd.concat(xs), pd.concat(ys).to_numpy(), np.concatenate(ids)


def _fit_trees(x: pd.DataFrame, y: np.ndarray):
    import lightgbm as lgb

    model = lgb.LGBMRegressor(objective="tweedie", n_estimators=300, learning_rate=0.03, num_leaves=15,
                              min_child_samples=40, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                              random_state=SEED, verbose=-1, n_jobs=1)
    return model.fit(x, y)


def choose_blend_weight(x: pd.DataFrame, y: np.ndarray, window: np.ndarray) -> tuple[float, dict[float, float]]:
    """The trees' share of ours (the rest is BG/NBD x Gamma-Gamma), chosen on held-out customers of the past windows.

    Customers are split into `VALIDATION_FOLDS` groups (all of a customer's rows in one group);
    each group is predicted by trees fitted on the other groups' rows. Per training window (each
    ends at or before the cutoff, so its spend is known), every weight of `BLEND_WEIGHTS` is scored
    by the mean of Spearman and top-decile capture; the best mean over the windows wins (ties go
    to the larger share of trees). The test cutoff's own future is never read. With under
    `MIN_FOLD_USERS` customers per group the trees are used alone. Returns (weight, score per weight).
    """
    users = pd.Index(x.index.unique())
    if len(users) < VALIDATION_FOLDS * MIN_FOLD_USERS:
        return 1.0, {}
    fold_of_user = pd.Series(np.random.default_rng(SEED).permutation(len(users)) % VALIDATION_FOLDS, index=users)
    fold = fold_of_user.reindex(x.index).to_numpy()
    held_out = np.empty(len(x))
    for k in range(VALIDATION_FOLDS):
        held_out[fold == k] = _fit_trees(x[fold != k], y[fold != k]).predict(x[fold == k])
    btyd = x["bgnbd_gg"].to_numpy()
    scores = {}
    for w in BLEND_WEIGHTS:
        per_window = [clv_metrics(y[window == b], (w * held_out + (1 - w) * btyd)[window == b])
                      for b in np.unique(window)]
        scores[w] = float(np.nanmean([(m["spearman"] + m["top_decile_capture"]) / 2 for m in per_window]))
    best = max(BLEND_WEIGHTS, key=lambda w: (scores[w], w))
    return best, scores


def combined_value(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.DataFrame:
    """Ours: LightGBM (Tweedie loss) on `_design`, fitted on past windows, blended with BG/NBD x
    Gamma-Gamma at the weight `choose_blend_weight` picks on held-out customers of those windows,
    then scaled for MAE.

    ValueError when the data is too short for a training window (`_training_rows`).
    One scale factor, chosen on the training rows to minimize the absolute error, sets the level
    (it changes neither the ranking nor the capture).
    """
    past = events[events["ts"] <= cutoff]
    train_x, train_y, window = _training_rows(past, cutoff, horizon_days)
    weight, _ = choose_blend_weight(train_x, train_y, window)
    model = _fit_trees(train_x, train_y)
    fitted = weight * model.predict(train_x) + (1 - weight) * train_x["bgnbd_gg"].to_numpy()
    scales = np.linspace(0.2, 1.5, 27)
    scale = scales[int(np.argmin([np.abs(train_y - s * fitted).mean() for s in scales]))]
    test_x = _design(past, cutoff, horizon_days)[train_x.columns]
    value = weight * model.predict(test_x) + (1 - weight) * test_x["bgnbd_gg"].to_numpy()
    out = pd.DataFrame({"user_id": test_x.index.to_numpy(), "expected_value": scale * value})
    out.attrs["blend_weight"] = weight  # the bench's progress line reports it
    return out


def _predict(model: str, events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.DataFrame:
    past = events[events["ts"] <= cutoff]
    if model == "bgnbd_gg":
        return expected_value(past, cutoff, horizon_days)[0][["user_id", "expected_value"]]
    if model == "run_rate":
        return run_rate_value(past, cutoff, horizon_days)
    if model == "clv_combined":
        return combined_value(past, cutoff, horizon_days)
    raise ValueError(f"unknown clv model {model!r}; choose from {CLV_MODELS}")


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    frame.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)  # atomic: an interrupted run never leaves half a file


def run_clv(dataset: str, events: pd.DataFrame, out_dir: str | Path, models: tuple[str, ...] = CLV_MODELS,
            cutoffs: list[datetime] | None = None, resume: bool = False, say=print) -> dict[str, float]:
    """Write the clv truth and every model's files for the dataset's clv cutoffs; seconds per model."""
    out_dir = Path(out_dir)
    protocol_cutoffs, horizons = CLV_PROTOCOL[dataset]
    if cutoffs is None:
        if protocol_cutoffs is None:
            from tools.data.synth import DEMO_CUTOFFS

            protocol_cutoffs = list(DEMO_CUTOFFS)
        cutoffs = protocol_cutoffs
    seconds = {m: 0.0 for m in models}
    for c in cutoffs:
        for h in horizons:
            name = clv_file_name(h, c)
            _write(actual_spend(events, c, h), out_dir / TRUTH_DIR / name)
            for model in models:
                path = out_dir / model / name
                if resume and path.is_file():
                    continue
                t0 = time.perf_counter()
                frame = _predict(model, events, c, h)
                seconds[model] += time.perf_counter() - t0
                _write(frame.rename(columns={"expected_value": "expected_spend"}), path)
                weight = frame.attrs.get("blend_weight")
                chosen = "" if weight is None else f" (trees' share {weight:g}, chosen on the past windows)"
                say(f"clv {model} {name}: {time.perf_counter() - t0:.1f}s{chosen}")
    return seconds


def clv_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Spearman, MAE and top-decile capture of one prediction against the actual spend."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    top = np.argsort(-predicted, kind="stable")[: max(1, int(round(0.1 * len(predicted))))]
    total = actual.sum()
    return {"spearman": float(spearmanr(actual, predicted).statistic), "mae": float(np.abs(actual - predicted).mean()),
            "top_decile_capture": float(actual[top].sum() / total) if total > 0 else float("nan"), "n": len(actual)}


def has_clv_files(out_dir: str | Path) -> bool:
    folder = Path(out_dir) / TRUTH_DIR
    return folder.is_dir() and any(_NAME.match(p.name) for p in folder.iterdir())


def clv_score_long(out_dir: str | Path) -> pd.DataFrame:
    """One row per model, horizon and cutoff with the clv metrics (missing users predicted as 0)."""
    out_dir = Path(out_dir)
    rows = []
    for truth_path in sorted((out_dir / TRUTH_DIR).iterdir()):
        match = _NAME.match(truth_path.name)
        if not match:
            continue
        truth = pd.read_csv(truth_path, dtype={"user_id": str})
        for model_dir in sorted(p for p in out_dir.iterdir() if p.is_dir() and p.name != TRUTH_DIR):
            path = model_dir / truth_path.name
            if not path.is_file():
                continue
            pred = pd.read_csv(path, dtype={"user_id": str})
            if list(pred.columns) != ["user_id", "expected_spend"]:
                raise ValueError(f"{path}: header must be user_id,expected_spend (got {','.join(pred.columns)})")
            merged = truth.merge(pred, on="user_id", how="left").fillna({"expected_spend": 0.0})
            rows.append({"model": model_dir.name, "horizon_days": int(match.group(1)),
                         "cutoff": parse_cutoff_tag(match.group(2)),
                         **clv_metrics(merged["actual_spend"], merged["expected_spend"])})
    return pd.DataFrame(rows)


def clv_score_table(out_dir: str | Path) -> str:
    """Markdown: per horizon, each model's mean over the cutoffs (and the per-cutoff values)."""
    long = clv_score_long(out_dir)
    if long.empty:
        return "no clv files"
    lines = ["| model | H | Spearman | MAE | top-decile capture | per cutoff (Spearman / capture) |",
             "|---|---|---|---|---|---|"]
    for (h, model), g in long.sort_values("cutoff").groupby(["horizon_days", "model"], sort=True):
        per = "; ".join(f"{c:%Y-%m-%d} {s:.3f} / {t:.3f}" for c, s, t in
                        zip(g["cutoff"], g["spearman"], g["top_decile_capture"]))
        lines.append(f"| {model} | {h} d | {g['spearman'].mean():.3f} | {g['mae'].mean():.2f} | "
                     f"{g['top_decile_capture'].mean():.3f} | {per} |")
    return "\n".join(lines)


def clv_only(out_dir: str | Path) -> bool:
    """Whether the folder holds clv files and no churn / ranking benchmark (no benchmark.yaml)."""
    return has_clv_files(out_dir) and not (Path(out_dir) / "benchmark.yaml").is_file()


def run_clv_for(dataset: str, data_path: str | Path | None, out_dir: str | Path, models: list[str],
                n_users: int = 5000, seed: int = 0, resume: bool = False, score: bool = True) -> int:
    """The CLI's entry (`shopsight bench run`): load the dataset, write the clv files, print the table."""
    if not models or dataset not in CLV_PROTOCOL:
        return 0
    from tools.predictor.bench_datasets import load_bench_data

    try:
        data = load_bench_data(dataset, data_path, n_users=n_users, seed=seed, progress=False)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(str(exc)) from None
    seconds = run_clv(dataset, data.events, out_dir, tuple(models), resume=resume)
    print("clv seconds per model: " + ", ".join(f"{m} {s:.1f}" for m, s in seconds.items()))
    if score:
        print(clv_score_table(out_dir))
    return 0
