"""Customer value: BG/NBD expected orders, Gamma-Gamma spend per order, and their product in money.

Both are the classic "buy till you die" baselines (Fader, Hardie & Lee 2005): BG/NBD counts
repeat order days (time in weeks, from `baselines.bgnbd_summary`); Gamma-Gamma models the mean
spend of a customer's repeat order days. Expected value over H days = E[orders in H] x E[spend
per order]. A shop without amounts has no spend model: value falls back to expected orders
(`unit="orders"`) and callers say "no prices in the data".

Order days whose amount is zero or negative (returns, free samples) or missing are left out of
Gamma-Gamma and counted (`GammaGammaFit.excluded_orders`); they still count as orders for BG/NBD.

Usage:
    summary = bgnbd_summary(events, cutoff)
    params = fit_bgnbd(summary)
    orders = bgnbd_expected_orders(params, summary, horizon_days=90)
    value = expected_value(events, cutoff, horizon_days=90)   # user_id, p_alive, expected_orders, ...
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

from tools.predictor.baselines import bgnbd_p_alive, bgnbd_summary, fit_bgnbd

RUN_RATE_DAYS = 365  # the run-rate baseline: spend per day over the past year (or the tenure, if shorter)
MIN_RUN_RATE_DAYS = 30  # a customer of three days is not extrapolated from three days
SHORT_VALUE_HORIZONS_DAYS = (60, 30)  # a shop too young for ours at H tries these, scaled to H


def bgnbd_expected_orders(params: dict[str, float], summary: pd.DataFrame, horizon_days: float) -> np.ndarray:
    """E[repeat order days in the next H days | x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10).

    NaN for every customer when the fit left a at 1, where the closed form divides 0 by 0 (its factor
    1 / (a - 1)): a fit on a history of hours stays at the optimizer's start, log a = 0.
    """
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    if abs(a - 1.0) < 1e-9:
        return np.full(len(summary), np.nan)
    x, T = (summary[c].to_numpy(dtype=float) for c in ("x", "T"))
    t = horizon_days / 7.0
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    tail = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    return np.maximum(head * tail * bgnbd_p_alive(params, summary), 0.0)


@dataclass
class GammaGammaFit:
    """Gamma-Gamma spend parameters (p, q, gamma) and what the fit left out."""

    p: float
    q: float
    gamma: float
    customers: int  # customers with at least one repeat order day of positive amount
    excluded_orders: int  # order days with a zero, negative or missing amount

    def expected_spend(self, frequency: np.ndarray, mean_spend: np.ndarray) -> np.ndarray:
        """E[spend per order | x repeat orders of mean m_x]; x = 0 gives the population mean."""
        x = np.asarray(frequency, dtype=float)
        m = np.nan_to_num(np.asarray(mean_spend, dtype=float))
        return (self.gamma + m * x) * self.p / (self.p * x + self.q - 1.0)


def repeat_spend(events: pd.DataFrame, cutoff: datetime) -> tuple[pd.DataFrame, int]:
    """Per buyer: x (repeat order days with a positive amount) and m_x (their mean); excluded count.

    The first order day is left out, as in Fader, Hardie & Lee (the model is of repeat spend).
    """
    buys = events[(events["ts"] <= cutoff) & (events["behavior"] == "buy")]
    days = pd.DataFrame({"user_id": buys["user_id"].to_numpy(), "day": buys["ts"].dt.floor("D").to_numpy(),
                         "amount": buys["amount"].to_numpy(dtype=float)})
    # A day whose every amount is missing stays missing (sum with min_count), so it is excluded, not 0.
    days = days.groupby(["user_id", "day"], sort=True)["amount"].sum(min_count=1).reset_index()
    repeat = days[days.groupby("user_id").cumcount() > 0]
    positive = repeat["amount"] > 0
    kept = repeat[positive].groupby("user_id")["amount"]
    out = pd.DataFrame({"x": kept.size(), "m_x": kept.mean()})
    return out, int((~positive).sum())


def _gg_nll(log_params: np.ndarray, x: np.ndarray, m: np.ndarray) -> float:
    p, q, g = np.exp(log_params)
    ll = (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(g) + (p * x - 1) * np.log(m)
          + p * x * np.log(x) - (p * x + q) * np.log(g + m * x))
    return float(-ll.mean())


def fit_gamma_gamma(spend: pd.DataFrame, excluded_orders: int = 0) -> GammaGammaFit:
    """Maximum-likelihood p, q, gamma on customers with x >= 1 repeat orders of mean m_x > 0."""
    use = spend[(spend["x"] >= 1) & (spend["m_x"] > 0)]
    if len(use) < 3:
        raise ValueError(f"Gamma-Gamma needs at least 3 customers with a repeat order of positive amount; "
                         f"this data has {len(use)}")
    x, m = use["x"].to_numpy(dtype=float), use["m_x"].to_numpy(dtype=float)
    result = minimize(_gg_nll, x0=np.log([1.0, 2.0, max(float(m.mean()), 1.0)]), args=(x, m),
                      method="L-BFGS-B", bounds=[(-8, 8), (np.log(1.01), 8), (-8, 12)])
    if not np.isfinite(result.fun):
        raise RuntimeError(f"Gamma-Gamma fit failed: {result.message}")
    p, q, g = np.exp(result.x)
    return GammaGammaFit(float(p), float(q), float(g), customers=len(use), excluded_orders=excluded_orders)


def has_prices(events: pd.DataFrame) -> bool:
    """Whether the buys carry amounts (Taobao-format data has none)."""
    buys = events[events["behavior"] == "buy"]
    return "amount" in buys and bool((buys["amount"].fillna(0) > 0).any())


def expected_value(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> tuple[pd.DataFrame, dict]:
    """BG/NBD (+ Gamma-Gamma) per user of P(cutoff): (frame, fit notes).

    Frame columns: user_id, p_alive, expected_orders (order days in H, the first order included
    for a customer who has not bought yet), spend_per_order, expected_value (money in H, or
    expected orders when the data has no prices). Notes: unit ("money" or "orders"), the
    parameters, and how many order days Gamma-Gamma excluded.
    """
    summary = bgnbd_summary(events, cutoff)
    params = fit_bgnbd(summary)
    frame = pd.DataFrame({"user_id": summary.index.to_numpy(), "p_alive": bgnbd_p_alive(params, summary),
                          "expected_orders": bgnbd_expected_orders(params, summary, horizon_days)})
    notes: dict = {"bgnbd": {k: round(v, 4) for k, v in params.items()}}
    if frame["expected_orders"].isna().all():
        notes["bgnbd_note"] = ("BG/NBD has no expected orders here: its fit did not leave its start (a history too "
                               "short to show repeat buying), so value comes from the other models only")
    if not has_prices(events[events["ts"] <= cutoff]):
        frame["spend_per_order"] = np.nan
        frame["expected_value"] = frame["expected_orders"]
        return frame, {**notes, "unit": "orders", "note": "no prices in the data: value is expected orders"}
    spend, excluded = repeat_spend(events, cutoff)
    gg = fit_gamma_gamma(spend, excluded)
    spend = spend.reindex(summary.index)
    frame["spend_per_order"] = gg.expected_spend(spend["x"].fillna(0).to_numpy(), spend["m_x"].to_numpy())
    frame["expected_value"] = frame["expected_orders"] * frame["spend_per_order"]
    notes.update(unit="money", gamma_gamma={"p": round(gg.p, 4), "q": round(gg.q, 4), "gamma": round(gg.gamma, 4),
                                            "customers": gg.customers},
                 excluded_orders=excluded,
                 note=f"{excluded} order days with a zero, negative or missing amount left out of Gamma-Gamma")
    return frame, notes


def run_rate_value(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.DataFrame:
    """The run-rate baseline per user of P(cutoff): spend per day over the past year x H (orders without prices)."""
    past = events[events["ts"] <= cutoff]
    c = pd.Timestamp(cutoff)
    first = past.groupby("user_id", sort=True)["ts"].min()
    days = ((c - first) / pd.Timedelta(days=1)).clip(lower=MIN_RUN_RATE_DAYS, upper=RUN_RATE_DAYS)
    buys = past[(past["behavior"] == "buy") & (past["ts"] > c - pd.Timedelta(days=RUN_RATE_DAYS))]
    value = buys["amount"].fillna(0.0) if has_prices(past) else pd.Series(1.0, index=buys.index)
    total = value.groupby(buys["user_id"]).sum().reindex(first.index).fillna(0.0)
    return pd.DataFrame({"user_id": first.index.to_numpy(), "expected_value": (total / days * horizon_days).to_numpy()})


def customer_value(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> tuple[pd.DataFrame, dict]:
    """What the tools call a customer's value: ours (`bench_clv.combined_value`) where the history allows.

    The frame of `expected_value` (p_alive, expected_orders, ...) with expected_value replaced by
    the combined model's (it reads recent visits too, so a heavy buyer who went quiet after a bad
    order is not valued on their order history alone); BG/NBD + Gamma-Gamma when the data holds
    less than `bench_clv.MIN_HISTORY_DAYS` days before c - H. notes["model"] names the one used.

    A young shop (less than that before c - H, but enough before c - h for a shorter h in
    `SHORT_VALUE_HORIZONS_DAYS`) gets ours at h, scaled by H / h, before BG/NBD + Gamma-Gamma: a
    per-day value that reads visits ranks better than one that reads orders only, whose favourites
    on a short history are heavy buyers who stopped browsing after a bad order (bench/results/clv.md,
    Round 6: two generator-lost customers in the demo's top 10 at 2026-05-01 came from that fallback).
    """
    from tools.predictor.bench_clv import combined_value

    frame, notes = expected_value(events, cutoff, horizon_days)
    first_error = None
    for h in (horizon_days, *[d for d in SHORT_VALUE_HORIZONS_DAYS if d < horizon_days]):
        try:
            ours = combined_value(events, cutoff, h).set_index("user_id")["expected_value"] * (horizon_days / h)
        except ValueError as exc:
            first_error = first_error or str(exc)
            continue
        frame["expected_value"] = ours.reindex(frame["user_id"]).fillna(0.0).clip(lower=0.0).to_numpy()
        model = "gradient-boosted trees over BG/NBD, Gamma-Gamma, run rate, RFM and visits"
        if h != horizon_days:
            model += f" (fitted for {h} days and scaled to {horizon_days}: too little history for {horizon_days})"
        return frame, {**notes, "model": model}
    return frame, {**notes, "model": "BG/NBD + Gamma-Gamma", "model_note": first_error}
