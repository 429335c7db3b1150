"""Measure the lifecycle answers of issue 15: calibration of P(lapse) and what the churn list names.

    .venv/bin/python bench/lifecycle_eval.py                   # CDNOW and the demo shop (5,000 users)
    .venv/bin/python bench/lifecycle_eval.py --datasets demo
    .venv/bin/python bench/lifecycle_eval.py --datasets demo --predictor HOME/models/predictor/jun01  # + the Transformer

Tables (markdown on stdout):
1. ECE of P(lapse within 7 / 30 days) among non-lost customers (tools/predictor/lifecycle.py),
   10 equal-width bins, per dataset and cutoff (CDNOW: the churn cutoffs of docs/benchmark.md;
   demo: its DEMO_CUTOFFS), then the mean over cutoffs and the cutoffs pooled. P(no order in H)
   comes from BG/NBD (fitted at the cutoff), gated by the lifecycle rule, as it is, with the
   Round 5 map (a logistic regression on the one window (c - H, c], 7 features), the shipped one
   (`calibrated_p_lapse`: a logistic regression on 4 past windows pooled alike, Round 6's, again
   since Round 8, reading Round 10's D1 too), `CANDIDATE_MAPS` (Round 7's recency weights, Round
   8's review signals and nowcast, Round 9's guarded exposure, Round 10's activity change) and Platt scaling / isotonic regression on the shipped map's windows;
   the plain P(no order) read as P(lapse) beside it; on the demo shop also from the generator's
   exact oracle; the same at the demo's validation cutoffs (`DEMO_VALIDATION_CUTOFFS`), kept out
   of the means. "noise floor" = the mean ECE of labels drawn as Bernoulli(P) from the row's own
   P (perfectly calibrated by construction) at the same n and bins, 200 draws: an ECE near it
   is as good as this many customers can show. --n-users sizes the demo shop (20,000: a quarter
   of the noise); --validation-only prints the validation cutoffs alone (--validation-cutoffs to
   name others), the tables a map is chosen on (`CANDIDATE_RULE`), without computing any scored
   cutoff; --calibration-only stops after table 1 (with --predictor, table 4's ECE rows too);
   --candidates-only leaves the Round 5, Platt and isotonic rows out (--round9-only: Round 9's
   variants are the only candidates; --round10-only: Round 10's activity-change maps).
   --floor-sizes prints only the noise floor of the ECE by the number of non-lost customers a
   cutoff has (`floor_by_size`): where a target of 0.02 is reachable.
2. Demo shop, each cutoff and the app's (the last event's day): the 7-day headline list (value at
   risk among non-lost customers, top 10: recalibrated P(lapse) x `clv.customer_value`) beside
   the old list (p_churn among customers with a purchase in 90 days): how many listed users the
   generator considers lost (engagement below `GENERATOR_LOST`, documented in docs/demo_shop.md),
   and whether each has a money value.
3. Demo shop: money at risk captured@10 / @100 over 30 days: the share of the next-30-day
   revenue shortfall (run rate over the past 90 days minus the actual spend, floored at 0)
   held by the users each list names.
4. With --predictor (a checkpoint trained on the demo shop at a labelled cutoff): tables 1-3 at
   that cutoff with the Transformer's P(no order), the source the app uses.
6. With --p-alive (a checkpoint trained at 2026-04-01) / --p-alive-cdnow (one at 1997-09-30):
   P(alive) as BG/NBD's closed form, the Transformer's 1 - p_churn at its longest horizon and
   their mean, ranking "orders again within 90 / 180 days" (AUC, Brier) at that cutoff, whose
   outcomes the checkpoint never saw (issue 15 item 1).
5. Demo shop: who the "lost after a bad experience" rule takes out of the non-lost customers at
   six cutoffs, their latent engagement and how many order within 30 days (docs/demo_shop.md);
   then who is measured against their latest gap ("back after a lapse") at those cutoffs and the
   app's, how many were due within 7 days by the old rhythm, their engagement and 30-day orders.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from tools.predictor.baselines import bgnbd_p_no_purchase, bgnbd_summary, fit_bgnbd
from tools.predictor.bench_datasets import read_cdnow
from tools.predictor.clv import customer_value
from tools.predictor.lifecycle import (AT_RISK_RATIO, LAPSE_FEATURES, MIN_GAP_DAYS, LapseCalibration, _window,
                                       calibrated_p_lapse, lapse_features, lapse_labels, lifecycle_frame, p_lapse)
from tools.predictor.metrics import ece_noise_floor, expected_calibration_error

CDNOW_CUTOFFS = [datetime(1997, 9, 30, 23, 59, 59), datetime(1997, 12, 31, 23, 59, 59),
                 datetime(1998, 3, 31, 23, 59, 59)]
GENERATOR_LOST = 0.05  # docs/demo_shop.md, "Who the generator considers lost"
ACTIVE_DAYS = 90
ROUND5_FEATURES = ("logit_p", "log_overdue_ratio", "log_events_14d", "log_events_30d", "log_days_since_event",
                   "log_orders", "is_new")  # the map of Round 5 (bench/results/clv.md), kept for comparison
FLOOR_DRAWS = 200
# Round 7's drift-adaptive candidates were recency weights (shipped in Round 7) and the newest 2
# windows only (rejected; bench/results/clv.md, Round 7). Round 8's, fixed before any was run
# (bench/results/clv.md, Round 8): the review signals of tools/predictor/lapse_signals.py as
# features, and a 7-day nowcast of the level, each on Round 7's recency weights (then shipped);
# Round 6's windows alike won the rule and are the defaults of `calibrated_p_lapse` since.
# The map's features through Round 9 (Round 10's D1 joined them since): every earlier candidate is
# defined on them, so its rows stay what they measured then.
ROUND9_FEATURES = tuple(f for f in LAPSE_FEATURES if f != "activity_vs_own_rate")
ROUND7 = {"half_life_days": 14.0, "features": ROUND9_FEATURES}  # the map the Round 8 candidates were defined on
SHIPPED_MAP = "BG/NBD, shipped map (Round 10: Round 6's windows alike + D1 own-rate activity)"
# Round 9's variants of B, fixed and committed before any ran (bench/results/clv.md, Round 9), each on
# the shipped windows and weights: a bounded 0/1 spell flag, and B clipped to its fitted range with a
# prior N(0, 0.5^2) on its coefficient. --round9-only runs them beside the shipped map alone.
ROUND9_MAPS = {"BG/NBD, B1: ordered during a delivery spell (0/1)": {"features": ROUND9_FEATURES + ("delivery_spell",)},
               "BG/NBD, B2: B clipped to its fitted range, prior sd 0.5": {
                   "features": ROUND9_FEATURES + ("delivery_exposure",), "clip_to_fit": ("delivery_exposure",),
                   "prior_sd": {"delivery_exposure": 0.5}}}
# Round 10's, fixed and committed before any ran (bench/results/clv.md, Round 10), each on the shipped
# windows and weights: the change of the customer's own activity (lapse_signals.activity_change), D1 against
# their own rate, D2 since the last order against before it, and both. --round10-only runs them alone.
# The rule shipped D1, so the shipped map's row is D1's, and the map shipped before (Round 9's) is a row here.
ROUND10_MAPS = {"BG/NBD, Round 9's shipped map (Round 6's, no activity change)": {"features": ROUND9_FEATURES},
                "BG/NBD, D2: activity since the last order against before it": {
                    "features": ROUND9_FEATURES + ("activity_since_order",)},
                "BG/NBD, D1 + D2": {"features": ROUND9_FEATURES + ("activity_vs_own_rate", "activity_since_order")}}
CANDIDATE_MAPS = {"BG/NBD, Round 7 map (half-life 14 d)": ROUND7,
                  "BG/NBD, A: + bad experience lately": {**ROUND7, "features": ROUND9_FEATURES + ("bad_lately",)},
                  "BG/NBD, B: + delivery-trouble exposure": {**ROUND7,
                                                             "features": ROUND9_FEATURES + ("delivery_exposure",)},
                  "BG/NBD, A + B": {**ROUND7, "features": ROUND9_FEATURES + ("bad_lately", "delivery_exposure")},
                  "BG/NBD, C: 7-day nowcast of the level": {"nowcast_days": 7, **ROUND7},
                  **ROUND9_MAPS, **ROUND10_MAPS}
# Round 8's rule (bench/results/clv.md, Round 8), fixed before any of its candidates ran: several
# validation cutoffs, because one (Round 7's 05-15) preferred a map the scored cutoffs did not.
DEMO_VALIDATION_CUTOFFS = [datetime(2026, 3, 15), datetime(2026, 4, 15), datetime(2026, 5, 15)]  # none is scored
CANDIDATE_RULE = ("at the validation cutoffs 2026-03-15, 04-15 and 05-15 (BG/NBD source): per map, the mean over "
                  "those cutoffs of the mean of the 7- and 30-day ECE, on the 5,000- and the 20,000-user shop; a "
                  "candidate replaces the shipped map only if that number is lower than the shipped map's on both "
                  "shops, and among those the lowest on the 20,000-user shop wins")


def noise_floor(p: np.ndarray, seed: int = 0) -> float:
    """Mean ECE of labels drawn from P itself (perfectly calibrated) at the same n and bins."""
    return ece_noise_floor(np.nan_to_num(np.asarray(p, dtype=float)), n_draws=FLOOR_DRAWS, seed=seed)["mean"]


def round5_p_lapse(events: pd.DataFrame, cutoff: datetime, horizon_days: int, source, stages,
                   reviews=None) -> pd.Series:
    """Round 5's map: logistic regression on ROUND5_FEATURES, fitted on the one window c - H."""
    c = pd.Timestamp(cutoff)
    known = events[events["ts"] <= c]
    then = (c - pd.Timedelta(days=horizon_days)).to_pydatetime()
    calib = LapseCalibration("logistic", ROUND5_FEATURES).fit(*_window(known, then, horizon_days, source(then),
                                                                        reviews))
    live = p_lapse(stages, source(cutoff)).dropna()
    out = p_lapse(stages, source(cutoff))
    out[live.index] = calib.apply(live, lapse_features(stages, known, cutoff, live))
    return out


def markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A markdown table (no tabulate dependency)."""
    def cell(v):
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def bgnbd_no_order(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.Series:
    summary = bgnbd_summary(events, cutoff)
    return pd.Series(bgnbd_p_no_purchase(fit_bgnbd(summary), summary, horizon_days), index=summary.index)


def bgnbd_source(events: pd.DataFrame, horizon_days: int):
    """p_no_order_at(day) for `calibrated_p_lapse`: BG/NBD fitted at that day (cached per day)."""
    cache: dict = {}

    def at(day: datetime) -> pd.Series:
        if day not in cache:
            cache[day] = bgnbd_no_order(events, day, horizon_days)
        return cache[day]
    return at


def calibration_rows(name: str, events: pd.DataFrame, cutoffs: list[datetime], oracle=None,
                     reviews=None, candidates_only: bool = False, maps: dict | None = None) -> tuple[list[dict], list]:
    """(rows of table 1, the pooled (label, P) pairs per source for the pooled ECE).
    `candidates_only`: the shipped map and `CANDIDATE_MAPS` (with the plain P and the oracle), not
    Round 5's map nor Platt / isotonic. `maps`: the candidates (default `CANDIDATE_MAPS`)."""
    rows, pooled = [], []
    for c in cutoffs:
        for h in (7, 30):
            stages = lifecycle_frame(events, c, h, reviews)
            labels = lapse_labels(stages, events, c, h)
            source = bgnbd_source(events, h)
            p_no = source(c)
            sources = {"BG/NBD": p_lapse(stages, p_no)}
            if oracle is not None:
                sources["generator oracle"] = p_lapse(stages, oracle(c, h))
            windows = {}  # source -> the windows its map was fitted on
            for method in () if candidates_only else ("platt", "isotonic"):
                key = f"BG/NBD, {method}, the shipped windows and weights"
                sources[key], notes = calibrated_p_lapse(events, c, h, source, stages, method=method, reviews=reviews)
                windows[key] = len(notes.get("windows", []))
            if not candidates_only:
                sources["BG/NBD, Round 5 map (c-H only)"] = round5_p_lapse(events, c, h, source, stages, reviews)
            for key, options in (CANDIDATE_MAPS if maps is None else maps).items():
                sources[key], notes = calibrated_p_lapse(events, c, h, source, stages, reviews=reviews, **options)
                windows[key] = len(notes.get("windows", []))
            sources[SHIPPED_MAP], notes = calibrated_p_lapse(events, c, h, source, stages, reviews=reviews)
            windows[SHIPPED_MAP] = len(notes.get("windows", []))
            for src, p in sources.items():
                p = p.reindex(labels.index)
                plain = p_no.reindex(labels.index)
                pooled.append({"dataset": name, "H": h, "P(no order) from": src, "y": labels, "p": p})
                rows.append({"dataset": name, "cutoff": f"{c:%Y-%m-%d}", "H": h, "P(no order) from": src,
                             "non-lost n": len(labels), "lapse rate": labels.mean(), "mean P(lapse)": p.mean(),
                             "ECE P(lapse)": expected_calibration_error(labels.to_numpy(), p.to_numpy()),
                             "noise floor": noise_floor(p.to_numpy()),
                             "windows": windows.get(src, ""),
                             "ECE plain P(no order) as P(lapse)":
                                 expected_calibration_error(labels.to_numpy(), plain.to_numpy())})
    return rows, pooled


def pooled_ece(pooled: list[dict]) -> pd.DataFrame:
    """ECE over the cutoffs pooled (one set of bins, n summed): the sampling noise of a few hundred
    customers per bin at one cutoff is itself about 0.02-0.03 at H = 30 (see the oracle's row)."""
    out = []
    keys = sorted({(r["dataset"], r["H"], r["P(no order) from"]) for r in pooled})
    for key in keys:
        part = [r for r in pooled if (r["dataset"], r["H"], r["P(no order) from"]) == key]
        y = pd.concat([r["y"] for r in part]).to_numpy()
        p = pd.concat([r["p"] for r in part]).to_numpy()
        out.append({"dataset": key[0], "H": key[1], "P(no order) from": key[2], "n (all cutoffs)": len(y),
                    "pooled ECE P(lapse)": expected_calibration_error(y, p), "noise floor": noise_floor(p)})
    return pd.DataFrame(out)


def ranked_lists(events: pd.DataFrame, cutoff: datetime, horizon: int,
                 source_for=None, reviews=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ours: value at risk among non-lost, ranked; old: p_churn among 90-day buyers, ranked).

    Ours is what `at_risk_users` ranks by default: P(lapse) recalibrated on (c - H, c] times the
    customer's expected value over 90 days (`clv.customer_value`: ours, or BG/NBD + Gamma-Gamma
    where the history is too short).
    """
    stages = lifecycle_frame(events, cutoff, horizon, reviews)
    source = (source_for or bgnbd_source)(events, horizon)
    p_no = source(cutoff)
    value, _ = customer_value(events, cutoff, 90)
    value = value.set_index("user_id")
    table = stages.assign(p_no=p_no, p_lapse=calibrated_p_lapse(events, cutoff, horizon, source, stages,
                                                                reviews=reviews)[0],
                          value=value["expected_value"])
    table["value_at_risk"] = table["p_lapse"] * table["value"]
    ours = table[table["p_lapse"] > 0].sort_values(["value_at_risk", "p_lapse"], ascending=False, kind="stable")
    old = table[(table["days_since_last_order"] < ACTIVE_DAYS)].sort_values("p_no", ascending=False, kind="stable")
    return ours, old


def headline_rows(shop, events: pd.DataFrame, cutoff: datetime, source_for=None) -> list[dict]:
    """The 7-day top 10 of both lists: generator-lost users, money values, stages."""
    engagement = shop.engagement_at(cutoff).set_index("user_id")["engagement"]
    ours, old = ranked_lists(events, cutoff, 7, source_for, shop.reviews)
    return [{"cutoff": f"{cutoff:%Y-%m-%d}", "list": name,
             "top 10 generator-lost (e < %.2f)" % GENERATOR_LOST:
                 int((engagement.reindex(lst.index) < GENERATOR_LOST).sum()),
             "top 10 e < 0.10": int((engagement.reindex(lst.index) < 0.10).sum()),
             "with a money value": int(lst["value"].notna().sum()),
             "stages": ", ".join(f"{k} {int(v)}" for k, v in lst["stage"].value_counts().items())}
            for name, lst in (("ours: value at risk, non-lost", ours.head(10)),
                              ("old: p_churn, 90-day buyers", old.head(10)))]


def captured_rows(events: pd.DataFrame, cutoff: datetime, source_for=None, reviews=None) -> list[dict]:
    """Money at risk captured@10 / @100 over 30 days (share of the next-30-day revenue shortfall)."""
    c = pd.Timestamp(cutoff)
    buys = events[events["behavior"] == "buy"]
    past = buys[(buys["ts"] <= c) & (buys["ts"] > c - pd.Timedelta(days=90))]
    future = buys[(buys["ts"] > c) & (buys["ts"] <= c + pd.Timedelta(days=30))]
    expected = past["amount"].groupby(past["user_id"]).sum() / 90 * 30
    actual = future["amount"].groupby(future["user_id"]).sum().reindex(expected.index).fillna(0.0)
    shortfall = (expected - actual).clip(lower=0)
    ours, old = ranked_lists(events, cutoff, 30, source_for, reviews)
    return [{"cutoff": f"{cutoff:%Y-%m-%d}", "k": k,
             "ours": shortfall.reindex(ours.index[:k]).fillna(0).sum() / shortfall.sum(),
             "old p_churn list": shortfall.reindex(old.index[:k]).fillna(0).sum() / shortfall.sum()}
            for k in (10, 100)]


BAD_EXPERIENCE_CUTOFFS = [datetime(2026, 3, 15), datetime(2026, 4, 1), datetime(2026, 4, 15), datetime(2026, 5, 1),
                          datetime(2026, 5, 15), datetime(2026, 6, 1)]


def bad_experience_rows(shop, events: pd.DataFrame) -> list[dict]:
    """Who the "lost after a bad experience" rule takes out of the non-lost customers, per cutoff:
    their latent engagement and how many order within 30 days, beside the customers it leaves."""
    rows = []
    for c in BAD_EXPERIENCE_CUTOFFS:
        rhythm, both = lifecycle_frame(events, c, 7), lifecycle_frame(events, c, 7, shop.reviews)
        live = rhythm.index[rhythm["stage"].isin(["new", "active", "lapsing", "at_risk"])]
        taken = both.loc[live, "stage"] == "lost"
        e = shop.engagement_at(c).set_index("user_id")["engagement"].reindex(live)
        future = events[(events["ts"] > c) & (events["ts"] <= c + pd.Timedelta(days=30)) & (events["behavior"] == "buy")]
        ordered = pd.Series(live.isin(future["user_id"].unique()), index=live)
        rows.append({"cutoff": f"{c:%Y-%m-%d}", "non-lost by rhythm": len(live), "lost after a bad experience":
                     int(taken.sum()), "of them e < 0.05": float((e[taken] < GENERATOR_LOST).mean()),
                     "of them e < 0.15": float((e[taken] < 0.15).mean()), "order in 30 d: them":
                     float(ordered[taken].mean()), "order in 30 d: the others": float(ordered[~taken].mean())})
    return rows


def back_after_lapse_rows(shop, events: pd.DataFrame) -> list[dict]:
    """The customers measured against their latest gap ("back after a lapse": lost before their last
    order), per cutoff: how many, their stage by the old rhythm, latent engagement, orders in 30 d."""
    rows = []
    for c in BAD_EXPERIENCE_CUTOFFS + [pd.Timestamp(events["ts"].max()).normalize().to_pydatetime()]:
        st = lifecycle_frame(events, c, 7, shop.reviews)
        back = st.index[st["gap_source"] == "latest"]
        latest_gap = st.loc[back, "gap_days"]
        days = events[(events["behavior"] == "buy") & (events["ts"] <= c)]
        days = days.assign(day=days["ts"].dt.normalize()).drop_duplicates(["user_id", "day"])
        span = days.groupby("user_id")["day"].agg(["min", "max", "nunique"]).reindex(back)
        mean_gap = ((span["max"] - span["min"]).dt.days / (span["nunique"] - 1)).clip(lower=MIN_GAP_DAYS)
        was_due = (st.loc[back, "days_since_last_order"] + 7) >= AT_RISK_RATIO * mean_gap  # by the old rhythm
        e = shop.engagement_at(c).set_index("user_id")["engagement"].reindex(back)
        future = events[(events["ts"] > c) & (events["ts"] <= c + pd.Timedelta(days=30))
                        & (events["behavior"] == "buy")]
        live = st.index[st["stage"].isin(["new", "active", "lapsing", "at_risk"])]
        ordered = pd.Series(live.isin(future["user_id"].unique()), index=live)
        others = ordered.drop(back, errors="ignore")
        if c >= pd.Timestamp(events["ts"].max()).normalize():  # the app's cutoff: no 30 days after it
            ordered, others = ordered.astype(float) * float("nan"), others.astype(float) * float("nan")
        rows.append({"cutoff": f"{c:%Y-%m-%d}", "back after a lapse": len(back), "latest gap (median d)":
                     float(latest_gap.median()) if len(back) else float("nan"),
                     "due in 7 d by the old rhythm": int(was_due.sum()),
                     "of them e < 0.05": float((e < GENERATOR_LOST).mean()) if len(back) else float("nan"),
                     "order in 30 d: them": float(ordered.reindex(back).mean()) if len(back) else float("nan"),
                     "order in 30 d: other non-lost": float(others.mean())})
    return rows


def transformer_source(predictor):
    """`source_for` of a trained checkpoint: its p_churn as of any day (scored once per day)."""
    scored: dict = {}

    def source_for(events: pd.DataFrame, horizon_days: int):
        def at(day: datetime) -> pd.Series:
            if day not in scored:
                scored[day] = predictor.score_users(events[events["ts"] <= day], day, top_k=1)
            frame = scored[day]
            return frame[frame["horizon_days"] == horizon_days].set_index("user_id")["p_churn"].astype(float)
        return at
    return source_for


def transformer_rows(shop, events: pd.DataFrame, folder: Path,
                     lists: bool = True) -> tuple[list[dict], list[dict], list[dict]]:
    """The app's pairing at the checkpoint's training cutoff (a labelled one): its P(lapse) as given
    and recalibrated on (c - H, c], beside the oracle; the headline list and money captured."""
    from tools.predictor.score import Predictor

    predictor = Predictor.load(folder)
    cutoff = pd.Timestamp(predictor.config["cutoff"]).to_pydatetime()
    source_for = transformer_source(predictor)
    rows = []
    for h in (7, 30):
        stages = lifecycle_frame(events, cutoff, h, shop.reviews)
        labels = lapse_labels(stages, events, cutoff, h)
        source = source_for(events, h)
        oracle = shop.true_churn_probability(cutoff, h).set_index("user_id")["p_churn"]
        given = p_lapse(stages, source(cutoff)).reindex(labels.index)
        mapped = calibrated_p_lapse(events, cutoff, h, source, stages, reviews=shop.reviews)[0].reindex(labels.index)
        weighted = calibrated_p_lapse(events, cutoff, h, source, stages, reviews=shop.reviews,
                                      half_life_days=14.0)[0].reindex(labels.index)
        rows.append({"model": predictor.version, "cutoff": f"{cutoff:%Y-%m-%d}", "H": h, "non-lost n": len(labels),
                     "lapse rate": labels.mean(), "ECE as given": expected_calibration_error(labels, given),
                     "ECE recalibrated (shipped)": expected_calibration_error(labels, mapped),
                     "mean P (shipped)": float(mapped.mean()),
                     "ECE Round 7 map (half-life 14 d)": expected_calibration_error(labels, weighted),
                     "mean P (Round 7)": float(weighted.mean()),
                     "ECE generator oracle": expected_calibration_error(
                         labels, p_lapse(stages, oracle).reindex(labels.index))})
    if not lists:  # the calibration rows only (--calibration-only)
        return rows, [], []
    return rows, headline_rows(shop, events, cutoff, source_for), captured_rows(events, cutoff, source_for,
                                                                                shop.reviews)


P_ALIVE_HORIZONS = (90, 180)


def p_alive_rows(events: pd.DataFrame, folder: Path) -> list[dict]:
    """Issue 15's P(alive): BG/NBD's closed form against the Transformer's own 1 - p_churn at its
    longest horizon, and their mean, at the checkpoint's training cutoff (its labels end there):
    AUC and Brier for "orders again within 90 / 180 days" among the customers (an order by c).
    A horizon whose window runs past the data is left out. BG/NBD's P(alive) is 1 for a customer
    with one order (no repeat: the model has seen no chance to die), so its own P(order within H)
    stands beside it."""
    from tools.predictor.baselines import bgnbd_p_alive
    from tools.predictor.metrics import brier, roc_auc
    from tools.predictor.score import Predictor

    predictor = Predictor.load(folder)
    c = pd.Timestamp(predictor.config["cutoff"])
    long = max(predictor.horizons_days)
    past = events[events["ts"] <= c]
    scored = predictor.score_users(past, c.to_pydatetime(), top_k=1)
    own = 1 - scored[scored["horizon_days"] == long].set_index("user_id")["p_churn"].astype(float)
    summary = bgnbd_summary(events, c.to_pydatetime())
    closed = pd.Series(bgnbd_p_alive(fit_bgnbd(summary), summary), index=summary.index)
    customers = past.loc[past["behavior"] == "buy", "user_id"].unique()
    rows = []
    for h in P_ALIVE_HORIZONS:
        if c + pd.Timedelta(days=h) > events["ts"].max() + pd.Timedelta(days=1):
            continue
        future = events[(events["ts"] > c) & (events["ts"] <= c + pd.Timedelta(days=h)) & (events["behavior"] == "buy")]
        y = pd.Series(pd.Index(customers).isin(future["user_id"].unique()).astype(int), index=customers)
        ordering = pd.Series(1 - bgnbd_p_no_purchase(fit_bgnbd(summary), summary, h), index=summary.index)
        sources = {"BG/NBD P(alive)": closed, f"BG/NBD P(order within {h} d)": ordering,
                   f"Transformer 1 - p_churn@{long}d": own}
        sources["mean of the two"] = (closed.reindex(customers) + own.reindex(customers)) / 2
        for name, p in sources.items():
            p = p.reindex(customers).astype(float)
            keep = p.notna()
            rows.append({"cutoff": f"{c:%Y-%m-%d}", "outcome": f"orders within {h} d", "customers": int(keep.sum()),
                         "rate": float(y[keep].mean()), "P from": name, "AUC": roc_auc(y[keep], p[keep]),
                         "Brier": brier(y[keep], p[keep])})
    return rows


FLOOR_SIZES = (500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000, 6000, 8000)
ECE_TARGET = 0.02  # issue 15's target for P(lapse) among non-lost customers


def floor_by_size(p: np.ndarray, sizes: tuple[int, ...] = FLOOR_SIZES, seed: int = 0) -> list[dict]:
    """The noise floor (mean and 90th percentile of `ece_noise_floor`) of a perfectly calibrated P
    whose values are drawn from `p` (with replacement) at each size: the ECE no map can beat there."""
    rng = np.random.default_rng(seed)
    p = np.asarray(p, dtype=float)
    p = p[~np.isnan(p)]
    out = []
    for n in sizes:
        floor = ece_noise_floor(rng.choice(p, size=n, replace=True), n_draws=FLOOR_DRAWS, seed=seed)
        out.append({"customers": n, "floor (mean)": floor["mean"], "floor (p90)": floor["p90"]})
    return out


def print_floor_sizes(n_users: int) -> None:
    """Per H, at the scored cutoffs of the demo shop: the shipped map's and the oracle's P pooled, and
    the noise floor of the ECE a perfectly calibrated P of that spread shows per cutoff of n customers."""
    from tools.data.synth import DEMO_CUTOFFS, generate_shop

    shop = generate_shop(n_users=n_users, seed=0, progress=False)
    events = shop.events.copy()
    events["ts"] = pd.to_datetime(events["ts"])
    rows, reach = [], []
    for h in (7, 30):
        ps = {"shipped map": [], "generator oracle": []}
        for c in DEMO_CUTOFFS:
            stages = lifecycle_frame(events, c, h, shop.reviews)
            labels = lapse_labels(stages, events, c, h)
            ps["shipped map"].append(calibrated_p_lapse(events, c, h, bgnbd_source(events, h), stages,
                                                        reviews=shop.reviews)[0].reindex(labels.index))
            oracle = shop.true_churn_probability(c, h).set_index("user_id")["p_churn"]
            ps["generator oracle"].append(p_lapse(stages, oracle).reindex(labels.index))
        for name, parts in ps.items():
            by_size = floor_by_size(pd.concat(parts).to_numpy())
            rows += [{"H": h, "P of": name, **r} for r in by_size]
            met = [r["customers"] for r in by_size if r["floor (mean)"] <= ECE_TARGET]
            reach.append({"H": h, "P of": name, "customers per cutoff, 3 cutoffs pooled":
                          ", ".join(str(len(part)) for part in parts),
                          f"smallest n with a floor <= {ECE_TARGET}": min(met) if met else f"> {max(FLOOR_SIZES)}"})
    print(f"Noise floor of the ECE by size (P drawn from the demo shop's {n_users}-user scored cutoffs, 10 bins, "
          f"{FLOOR_DRAWS} draws):")
    print(markdown(pd.DataFrame(rows), 4))
    print(markdown(pd.DataFrame(reach)))


def validation_choice(validation: pd.DataFrame) -> pd.DataFrame:
    """Per map over the validation cutoffs: the mean ECE at 7 and 30 days and their mean (`CANDIDATE_RULE`),
    the means of the floor too; the rule reads "mean"."""
    wide = validation.pivot_table(index="P(no order) from", columns="H", values="ECE P(lapse)", aggfunc="mean")
    wide.columns = [f"ECE {h} d" for h in wide.columns]
    floor = validation.pivot_table(index="P(no order) from", columns="H", values="noise floor", aggfunc="mean")
    wide["mean"] = wide.mean(axis=1)
    wide["noise floor 7 / 30 d"] = [f"{floor.loc[i, 7]:.4f} / {floor.loc[i, 30]:.4f}" for i in wide.index]
    return wide.reset_index()


def print_validation(n_users: int, cutoffs: list[datetime], maps: dict | None = None) -> None:
    """Only the demo's validation cutoffs: the tables the map choice reads, nothing scored."""
    from tools.data.synth import generate_shop

    shop = generate_shop(n_users=n_users, seed=0, progress=False)
    events = shop.events.copy()
    events["ts"] = pd.to_datetime(events["ts"])

    def oracle(c, h):
        return shop.true_churn_probability(c, h).set_index("user_id")["p_churn"]

    validation = pd.DataFrame(calibration_rows("demo, validation", events, cutoffs, oracle, shop.reviews,
                                               candidates_only=True, maps=maps)[0])
    print(f"Demo shop ({n_users} users) at the validation cutoffs {', '.join(f'{c:%Y-%m-%d}' for c in cutoffs)}; "
          f"rule: {CANDIDATE_RULE}.")
    print(markdown(validation.drop(columns=["ECE plain P(no order) as P(lapse)"]), 4))
    print()
    print(markdown(validation_choice(validation), 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cdnow", "demo"], choices=["cdnow", "demo"])
    parser.add_argument("--n-users", type=int, default=5000)
    parser.add_argument("--predictor", type=Path, default=None,
                        help="a Transformer checkpoint trained on the demo shop at a labelled cutoff, e.g. "
                             "`shopsight predictor train --cutoff 2026-06-01 --name jun01`: its pairing is measured too")
    parser.add_argument("--p-alive", type=Path, default=None, dest="p_alive",
                        help="a Transformer checkpoint trained on the demo shop at a cutoff 90+ days before its end, "
                             "e.g. --cutoff 2026-04-01 --name apr01: its P(alive) is compared with BG/NBD's")
    parser.add_argument("--p-alive-cdnow", type=Path, default=None, dest="p_alive_cdnow",
                        help="the same on CDNOW: a checkpoint of finetune/configs/predictor_cdnow.yaml at 1997-09-30")
    parser.add_argument("--validation-only", action="store_true", dest="validation_only",
                        help="the demo's validation cutoffs only (where a map is chosen): no scored cutoff is computed")
    parser.add_argument("--validation-cutoffs", nargs="+", default=[f"{c:%Y-%m-%d}" for c in DEMO_VALIDATION_CUTOFFS],
                        dest="validation_cutoffs", help="with --validation-only: the cutoffs (YYYY-MM-DD, none scored)")
    parser.add_argument("--candidates-only", action="store_true", dest="candidates_only",
                        help="table 1 with the shipped map and CANDIDATE_MAPS only (no Round 5 map, Platt, isotonic)")
    parser.add_argument("--calibration-only", action="store_true", dest="calibration_only",
                        help="the ECE tables only (no lists, rule tables or checkpoints): for a large --n-users")
    parser.add_argument("--round9-only", action="store_true", dest="round9_only",
                        help="with --candidates-only / --validation-only: Round 9's variants (ROUND9_MAPS) as the "
                             "only candidates beside the shipped map")
    parser.add_argument("--round10-only", action="store_true", dest="round10_only",
                        help="with --candidates-only / --validation-only: Round 10's activity-change maps "
                             "(ROUND10_MAPS) as the only candidates beside the shipped map")
    parser.add_argument("--floor-sizes", action="store_true", dest="floor_sizes",
                        help="only the table of the ECE's noise floor by the number of non-lost customers a cutoff "
                             "has (`floor_by_size`), for the shipped map's and the oracle's P at the scored cutoffs")
    args = parser.parse_args()
    if args.round9_only and args.round10_only:
        parser.error("--round9-only and --round10-only name different candidates: choose one")
    maps = ROUND9_MAPS if args.round9_only else ROUND10_MAPS if args.round10_only else None
    if args.floor_sizes:
        print_floor_sizes(args.n_users)
        return
    if args.validation_only:
        print_validation(args.n_users, [datetime.fromisoformat(c) for c in args.validation_cutoffs], maps)
        return
    rows, pooled = [], []
    if "cdnow" in args.datasets:
        r, p = calibration_rows("cdnow", read_cdnow(ROOT / ".cache/datasets/CDNOW_master.txt"), CDNOW_CUTOFFS,
                                candidates_only=args.candidates_only, maps=maps)
        rows, pooled = rows + r, pooled + p
    if "demo" in args.datasets:
        from tools.data.synth import DEMO_CUTOFFS, generate_shop

        shop = generate_shop(n_users=args.n_users, seed=0, progress=False)
        events = shop.events.copy()
        events["ts"] = pd.to_datetime(events["ts"])

        def oracle(c, h):
            return shop.true_churn_probability(c, h).set_index("user_id")["p_churn"]

        r, p = calibration_rows("demo", events, list(DEMO_CUTOFFS), oracle, shop.reviews, args.candidates_only, maps)
        rows, pooled = rows + r, pooled + p
        validation = ([] if args.candidates_only else  # printed apart by --validation-only
                      calibration_rows("demo, validation", events, DEMO_VALIDATION_CUTOFFS, oracle, shop.reviews,
                                       candidates_only=True)[0])
    if args.p_alive_cdnow is not None:
        print("P(alive) on CDNOW: BG/NBD's closed form against the Transformer's own (ranks 'orders again'):")
        print(markdown(pd.DataFrame(p_alive_rows(read_cdnow(ROOT / ".cache/datasets/CDNOW_master.txt"),
                                                 args.p_alive_cdnow)), 4) + "\n")
    table = pd.DataFrame(rows)
    print(markdown(table))
    if len(table):
        print("\nMean ECE of P(lapse) over cutoffs:")
        columns = ["ECE P(lapse)", "noise floor", "ECE plain P(no order) as P(lapse)"]
        print(markdown(table.groupby(["dataset", "H", "P(no order) from"])[columns]
              .mean().reset_index(), 4))
        print("\nECE of P(lapse) with the cutoffs pooled:")
        print(markdown(pooled_ece(pooled), 4))
    if "demo" in args.datasets and validation:
        print(f"\nDemo shop at the validation cutoffs (the map is chosen here: {CANDIDATE_RULE}; the window count "
              "and spacing came from a Round 6 sweep that also read the scored cutoffs):")
        print(markdown(pd.DataFrame(validation).drop(columns=["ECE plain P(no order) as P(lapse)"]), 4))
        print(markdown(validation_choice(pd.DataFrame(validation)), 4))
    if "demo" in args.datasets and args.calibration_only and args.predictor is not None:
        print("\nThe Transformer's P(no order) (the app's source), at its training cutoff:")
        print(markdown(pd.DataFrame(transformer_rows(shop, events, args.predictor, lists=False)[0]), 4))
    if "demo" in args.datasets and not args.calibration_only:
        app_cutoff = pd.Timestamp(events["ts"].max()).normalize().to_pydatetime()  # the app scores as of the last day
        print("\nDemo shop, the 7-day list (top 10) at each cutoff and at the app's (the last event's day):")
        print(markdown(pd.DataFrame([r for c in [*DEMO_CUTOFFS, app_cutoff] for r in headline_rows(shop, events, c)])))
        print("\nMoney at risk captured (share of the next-30-day revenue shortfall held by the listed users):")
        print(markdown(pd.DataFrame([r for c in DEMO_CUTOFFS for r in captured_rows(events, c, None, shop.reviews)])))
        print("\nLost after a bad experience (a review of <= 2 stars of the last order, not seen since):")
        print(markdown(pd.DataFrame(bad_experience_rows(shop, events))))
        print("\nBack after a lapse (latest gap >= 3 usual gaps: measured against the latest gap):")
        print(markdown(pd.DataFrame(back_after_lapse_rows(shop, events))))
        if args.p_alive is not None:
            print("\nP(alive): BG/NBD's closed form against the Transformer's own (ranks 'orders again'):")
            print(markdown(pd.DataFrame(p_alive_rows(events, args.p_alive)), 4))
        if args.predictor is not None:
            rows, headline, captured = transformer_rows(shop, events, args.predictor)
            print("\nThe Transformer's P(no order) (the app's source), at its training cutoff:")
            print(markdown(pd.DataFrame(rows), 4))
            print(markdown(pd.DataFrame(headline)))
            print(markdown(pd.DataFrame(captured)))


if __name__ == "__main__":
    main()
