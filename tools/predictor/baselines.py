"""Churn baselines every benchmark report carries (docs/benchmark.md, "Baselines every report carries").

Each baseline is a function `(events, cutoff, horizon_days) -> DataFrame[user_id, p_churn]`
over P(cutoff). It reads only events with `ts <= cutoff` (it filters them itself, so a caller
cannot leak the future by mistake). Supervised baselines learn from the past only: features at
`cutoff - H`, labels = no buy in `(cutoff - H, cutoff]`, then predict from features at `cutoff`.

- `recency`: logistic regression on log days since the last buy.
- `logreg_rfm`: logistic regression on recency, frequency, monetary and tenure.
- `lightgbm`: LightGBM on RFM plus inter-purchase-gap features.
- `bgnbd`: BG/NBD (Fader, Hardie & Lee 2005) fitted by maximum likelihood with scipy,
  P(no purchase in H) = 1 - P(alive) + P(alive) * ((alpha + T) / (alpha + T + H)) ** (r + x).

Ranking baselines live in `baselines_rank.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, logsumexp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DAY = np.timedelta64(1, "D")
SEED = 0


def _past(events: pd.DataFrame, cutoff: datetime) -> pd.DataFrame:
    return events[events["ts"] <= cutoff]


def features(events: pd.DataFrame, cutoff: datetime) -> pd.DataFrame:
    """RFM and inter-purchase-gap features of every user of P(cutoff), indexed by user_id (sorted).

    Purchases are counted on distinct buy days (several orders on one day are one visit, as
    BG/NBD and RFM usually count them). Users who never bought get recency = tenure and NaN gaps.
    """
    past = _past(events, cutoff)
    if past.empty:
        raise ValueError(f"no events at or before {cutoff}: no user to score")
    c = np.datetime64(pd.Timestamp(cutoff).to_datetime64())
    by_user = past.groupby("user_id", sort=True)["ts"]
    out = pd.DataFrame({
        "tenure_days": (c - by_user.min().to_numpy()) / DAY,
        "recency_any_days": (c - by_user.max().to_numpy()) / DAY,
        "n_events": by_user.size().to_numpy().astype(float),
    }, index=by_user.size().index)
    buys = past[past["behavior"] == "buy"]
    day = buys["ts"].dt.floor("D")
    visits = pd.DataFrame({"user_id": buys["user_id"].to_numpy(), "day": day.to_numpy(),
                           "amount": buys["amount"].fillna(0.0).to_numpy()})
    visits = visits.groupby(["user_id", "day"], sort=True, as_index=False)["amount"].sum()
    per_user = visits.groupby("user_id", sort=True)
    out["n_buy_days"] = per_user.size().reindex(out.index, fill_value=0).astype(float)
    out["monetary"] = (per_user["amount"].sum() / per_user.size()).reindex(out.index).fillna(0.0)
    last_buy = per_user["day"].max().reindex(out.index)
    out["recency_buy_days"] = ((c - last_buy.to_numpy()) / DAY)
    out["recency_buy_days"] = out["recency_buy_days"].fillna(out["tenure_days"])
    gaps = visits.assign(gap=per_user["day"].diff() / DAY).dropna(subset=["gap"]).groupby("user_id")["gap"]
    out["gap_mean"] = gaps.mean().reindex(out.index)
    out["gap_std"] = gaps.std(ddof=0).reindex(out.index)
    out["gap_max"] = gaps.max().reindex(out.index)
    out["gap_last"] = gaps.last().reindex(out.index)
    out["recency_over_gap"] = out["recency_buy_days"] / out["gap_mean"]
    for window in (30, 90):
        recent = visits[visits["day"] > c - np.timedelta64(window, "D")]
        out[f"buy_days_{window}d"] = recent.groupby("user_id").size().reindex(out.index, fill_value=0).astype(float)
    return out


def _labels(events: pd.DataFrame, start: datetime, end: datetime, users: pd.Index) -> np.ndarray:
    """1 for users of `users` with no buy in (start, end]."""
    window = events[(events["ts"] > start) & (events["ts"] <= end) & (events["behavior"] == "buy")]
    return (~users.isin(window["user_id"].unique())).astype(np.int64)


class TooLittleData(ValueError):
    """The data cannot train this model at this cutoff (no events before it, or one label for all):
    a limit of the shop, not a bug, so the benchmark skips the model with the reason."""


def _training_set(past: pd.DataFrame, cutoff: datetime, horizon_days: float) -> tuple[pd.DataFrame, np.ndarray]:
    """(features at cutoff - H, churn labels from (cutoff - H, cutoff]); a clear error where it cannot be built."""
    train_cut = cutoff - timedelta(days=horizon_days)
    from tools.predictor.bench_files import horizon_tag

    def horizon_tag_or_days(days: float) -> str:  # 15m, not 0.010416666666666666 days
        try:
            return horizon_tag(days)
        except ValueError:
            return f"{days:g}-day"

    if not (past["ts"] <= train_cut).any():
        raise TooLittleData(f"cannot train at {train_cut}: no events before it; the data before the cutoff {cutoff} is "
                         f"too short for a {horizon_tag_or_days(horizon_days)} horizon (labels come from ({train_cut}, "
                         f"{cutoff}]); pick a later cutoff or a shorter horizon")
    train = features(past, train_cut)
    y = _labels(past, train_cut, cutoff, train.index)
    if len(np.unique(y)) < 2:  # a tiny shop: a handful of users who all bought, or none did
        did = "made no purchase" if y[0] == 1 else "bought"
        raise TooLittleData(f"cannot train at {train_cut}: all {len(y)} users active by then {did} in ({train_cut}, "
                         f"{cutoff}] (the {horizon_tag_or_days(horizon_days)} window before the cutoff), so churn has "
                         "nothing to learn from; use a shop with more users, a longer horizon or a later cutoff")
    return train, y


def _train_then_predict(events: pd.DataFrame, cutoff: datetime, horizon_days: int,
                        design: Callable[[pd.DataFrame], pd.DataFrame],
                        make_model: Callable[[], object]) -> pd.DataFrame:
    """Fit on features at cutoff - H with labels from (cutoff - H, cutoff]; predict at cutoff."""
    past = _past(events, cutoff)
    train, y = _training_set(past, cutoff, horizon_days)
    model = make_model()
    model.fit(design(train), y)
    now = features(past, cutoff)
    p = model.predict_proba(design(now))[:, 1]
    return pd.DataFrame({"user_id": now.index.to_numpy(), "p_churn": np.clip(p, 0.0, 1.0)})


def _recency_design(f: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"log_recency": np.log1p(f["recency_buy_days"])}, index=f.index)


def _rfm_design(f: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "log_recency_buy": np.log1p(f["recency_buy_days"]),
        "log_recency_any": np.log1p(f["recency_any_days"]),
        "log_frequency": np.log1p(f["n_buy_days"]),
        "log_events": np.log1p(f["n_events"]),
        "log_monetary": np.log1p(f["monetary"]),
        "log_tenure": np.log1p(f["tenure_days"]),
        "has_bought": (f["n_buy_days"] > 0).astype(float),
    }, index=f.index)


EXTRAPOLATION_SDS = 5.0  # how far past its training mean a feature may be read, in training SDs


class LimitExtrapolation(TransformerMixin, BaseEstimator):
    """Hold each feature within EXTRAPOLATION_SDS training standard deviations of its training mean.

    The model is fitted at cutoff - H and applied at the cutoff, where every age is H days older. On a
    derived timeline where every customer starts on one day, tenure is the same for all of them in the
    training window: its tiny standard deviation turned H more days into ~170 standard deviations and
    every probability into 0 (logreg_rfm's ECE was 0.44 / 0.68 on the Instacart sample). A feature that
    varies keeps extrapolating a little (in a closed cohort the oldest customers at the cutoff are older
    than any in the training window; holding every feature to its training range tied them and cost
    CDNOW's recency baseline 0.009 AUC at 90 days).
    """

    def fit(self, X, y=None):
        values = np.asarray(X, dtype=float)
        mean, sd = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        self.low_, self.high_ = mean - EXTRAPOLATION_SDS * sd, mean + EXTRAPOLATION_SDS * sd
        return self

    def transform(self, X):
        return np.clip(np.asarray(X, dtype=float), self.low_, self.high_)


def _logistic() -> object:
    return make_pipeline(LimitExtrapolation(), StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))


def recency_baseline(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.DataFrame:
    """Recency alone: a logistic curve of log days since the last buy, fitted on an earlier window."""
    return _train_then_predict(events, cutoff, horizon_days, _recency_design, _logistic)


def logreg_rfm_baseline(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.DataFrame:
    """Logistic regression on RFM features (standardized logs), fitted on an earlier window."""
    return _train_then_predict(events, cutoff, horizon_days, _rfm_design, _logistic)


def _lightgbm() -> object:
    import lightgbm as lgb

    # Small, regularized trees on tens of thousands of rows. One thread: with busy cores, LightGBM's
    # OpenMP threads spin-wait (one CDNOW fit took 165 s on 2 threads vs 11 s on 1, measured here).
    return lgb.LGBMClassifier(n_estimators=200, learning_rate=0.03, num_leaves=15, min_child_samples=50,
                              subsample=0.8, subsample_freq=1, colsample_bytree=0.8, reg_lambda=1.0,
                              random_state=SEED, n_jobs=1, deterministic=True, force_row_wise=True, verbose=-1)


def lightgbm_baseline(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.DataFrame:
    """LightGBM on RFM and inter-purchase-gap features, trained on labels from cutoff - H."""
    return _train_then_predict(events, cutoff, horizon_days, lambda f: f.astype(float), _lightgbm)


# ---------------------------------------------------------------- BG/NBD


def bgnbd_summary(events: pd.DataFrame, cutoff: datetime) -> pd.DataFrame:
    """Per user of P(cutoff): x (repeat buy days), t_x and T in weeks since the first buy.

    Users who never bought are born at their first event with x = 0.
    """
    f = features(events, cutoff)
    x = np.maximum(f["n_buy_days"] - 1, 0)
    born = np.where(f["n_buy_days"] > 0, _first_buy_age(events, cutoff, f.index), f["tenure_days"])
    t_x = np.where(x > 0, born - f["recency_buy_days"], 0.0)
    return pd.DataFrame({"x": x, "t_x": t_x / 7.0, "T": born / 7.0}, index=f.index)


def _first_buy_age(events: pd.DataFrame, cutoff: datetime, users: pd.Index) -> np.ndarray:
    past = _past(events, cutoff)
    buys = past[past["behavior"] == "buy"]
    first = buys["ts"].dt.floor("D").groupby(buys["user_id"]).min().reindex(users)
    c = np.datetime64(pd.Timestamp(cutoff).to_datetime64())
    return ((c - first.to_numpy()) / DAY).astype(float)


def _bgnbd_nll(log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray) -> float:
    r, alpha, a, b = np.exp(log_params)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    # The "died after the last purchase" term exists only for x > 0.
    a3 = np.where(x > 0, betaln(a + 1, np.maximum(b + x - 1, 1e-12)) - betaln(a, b) - (r + x) * np.log(alpha + t_x),
                  -np.inf)
    ll = a1 + logsumexp(np.stack([a2, a3]), axis=0)
    return float(-(w * ll).sum() / w.sum())


def fit_bgnbd(summary: pd.DataFrame) -> dict[str, float]:
    """Maximum-likelihood r, alpha, a, b (time in weeks) on unique (x, t_x, T) rows with weights."""
    grouped = summary.groupby(["x", "t_x", "T"], sort=True).size().reset_index(name="w")
    args = tuple(grouped[c].to_numpy(dtype=float) for c in ("x", "t_x", "T", "w"))
    result = minimize(_bgnbd_nll, x0=np.log([0.5, 5.0, 1.0, 2.0]), args=args, method="L-BFGS-B",
                      bounds=[(-10, 10)] * 4)
    if not result.success and not np.isfinite(result.fun):
        raise RuntimeError(f"BG/NBD fit failed: {result.message}")
    r, alpha, a, b = np.exp(result.x)
    return {"r": float(r), "alpha": float(alpha), "a": float(a), "b": float(b), "nll": float(result.fun)}


def bgnbd_p_alive(params: dict[str, float], summary: pd.DataFrame) -> np.ndarray:
    """P(alive | x, t_x, T) = 1 / (1 + [x>0] a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))."""
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    x, t_x, T = (summary[c].to_numpy(dtype=float) for c in ("x", "t_x", "T"))
    log_ratio = (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    odds_dead = np.where(x > 0, a / np.maximum(b + x - 1, 1e-12) * np.exp(np.minimum(log_ratio, 700)), 0.0)
    return 1.0 / (1.0 + odds_dead)


def bgnbd_p_no_purchase(params: dict[str, float], summary: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """P(no purchase in the next H days) for each row of `bgnbd_summary`."""
    r, alpha = params["r"], params["alpha"]
    x, T = (summary[c].to_numpy(dtype=float) for c in ("x", "T"))
    h = horizon_days / 7.0
    p_alive = bgnbd_p_alive(params, summary)
    # Alive customers buy as Poisson(lambda), lambda | data ~ Gamma(r + x, alpha + T); dropout
    # only happens right after a purchase, so "no purchase" needs no death term.
    p_zero_if_alive = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + h)))
    return np.clip(1.0 - p_alive + p_alive * p_zero_if_alive, 0.0, 1.0)


def bgnbd_baseline(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.DataFrame:
    """BG/NBD fitted on everything at or before the cutoff; p_churn = P(no purchase in H)."""
    summary = bgnbd_summary(events, cutoff)
    params = fit_bgnbd(summary)
    return pd.DataFrame({"user_id": summary.index.to_numpy(),
                         "p_churn": bgnbd_p_no_purchase(params, summary, horizon_days)})


CHURN_BASELINES: dict[str, Callable[[pd.DataFrame, datetime, int], pd.DataFrame]] = {
    "recency": recency_baseline,
    "logreg_rfm": logreg_rfm_baseline,
    "lightgbm": lightgbm_baseline,
    "bgnbd": bgnbd_baseline,
}


# ---------------------------------------------------------------- fitted once, applied at any cutoff
# The predictor ships a baseline chosen on validation (churn_select.py); the app then scores one
# user's own events at a time (workspace trend, drill-down), too few to refit on. So the baseline is
# fitted once at the training cutoff on every user and its parameters travel in calibration.json.

_DESIGNS = {"recency": _recency_design, "logreg_rfm": _rfm_design, "lightgbm": lambda f: f.astype(float)}


def fit_churn_baseline(name: str, events: pd.DataFrame, cutoff: datetime, horizon_days: float) -> dict:
    """JSON-able parameters of baseline `name` fitted as `CHURN_BASELINES[name]` fits it at `cutoff`."""
    if name == "bgnbd":
        return {"name": name, "horizon_days": horizon_days, **fit_bgnbd(bgnbd_summary(events, cutoff))}
    train, y = _training_set(_past(events, cutoff), cutoff, horizon_days)
    X = _DESIGNS[name](train)
    if name == "lightgbm":
        model = _lightgbm().fit(X, y)
        return {"name": name, "columns": list(X.columns), "booster": model.booster_.model_to_string()}
    model = _logistic().fit(X, y)
    held, scaler, lr = (step for _, step in model.steps)
    return {"name": name, "columns": list(X.columns), "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
            "coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0]),
            "hold_low": held.low_.tolist(), "hold_high": held.high_.tolist()}


def apply_churn_baseline(fitted: dict, events: pd.DataFrame, cutoff: datetime) -> pd.DataFrame:
    """[user_id, p_churn] at `cutoff` from `fit_churn_baseline`'s parameters; per-user features only."""
    name = fitted["name"]
    if name == "bgnbd":
        summary = bgnbd_summary(events, cutoff)
        p = bgnbd_p_no_purchase(fitted, summary, fitted["horizon_days"])
        return pd.DataFrame({"user_id": summary.index.to_numpy(), "p_churn": p})
    now = features(events, cutoff)
    X = _DESIGNS[name](now)[fitted["columns"]]
    if name == "lightgbm":
        import lightgbm as lgb

        p = lgb.Booster(model_str=fitted["booster"]).predict(X.to_numpy(dtype=float), num_threads=1)
    else:
        values = X.to_numpy(dtype=float, copy=True)
        if "hold_low" in fitted:  # LimitExtrapolation's range (older checkpoints have none)
            values = np.clip(values, fitted["hold_low"], fitted["hold_high"])
        z = ((values - np.array(fitted["mean"])) / np.array(fitted["scale"])) @ np.array(fitted["coef"])
        p = 1.0 / (1.0 + np.exp(-(z + fitted["intercept"])))
    return pd.DataFrame({"user_id": now.index.to_numpy(), "p_churn": np.clip(p, 0.0, 1.0)})
