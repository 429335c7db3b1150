"""Measure the lifecycle answers of issue 15: calibration of P(lapse) and what the churn list names.

    .venv/bin/python bench/lifecycle_eval.py                   # CDNOW and the demo shop (5,000 users)
    .venv/bin/python bench/lifecycle_eval.py --datasets demo

Tables (markdown on stdout):
1. ECE of P(lapse within 7 / 30 days) among non-lost customers (tools/predictor/lifecycle.py),
   10 equal-width bins, per dataset and cutoff (CDNOW: the churn cutoffs of docs/benchmark.md;
   demo: its DEMO_CUTOFFS). P(no order in H) comes from BG/NBD (fitted at the cutoff), gated by
   the lifecycle rule, as it is and recalibrated (isotonic, `LapseCalibration`) on the window
   (c - H, c] whose outcome is known at c; the plain P(no order) read as P(lapse) beside it; on
   the demo shop also from the generator's exact oracle.
2. Demo shop, last cutoff: the 7-day headline list (value at risk among non-lost customers,
   top 10) beside the old list (p_churn among customers with a purchase in 90 days): how many
   listed users the generator considers lost (engagement below `GENERATOR_LOST`; the generator
   documents no threshold, so this one is stated here), and whether each has a money value.
3. Demo shop: money at risk captured@10 / @100 over 30 days: the share of the next-30-day
   revenue shortfall (run rate over the past 90 days minus the actual spend, floored at 0)
   held by the users each list names.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from tools.predictor.baselines import bgnbd_p_no_purchase, bgnbd_summary, fit_bgnbd
from tools.predictor.bench_datasets import read_cdnow
from tools.predictor.clv import expected_value
from tools.predictor.lifecycle import LapseCalibration, lapse_labels, lifecycle_frame, p_lapse
from tools.predictor.metrics import expected_calibration_error

CDNOW_CUTOFFS = [datetime(1997, 9, 30, 23, 59, 59), datetime(1997, 12, 31, 23, 59, 59),
                 datetime(1998, 3, 31, 23, 59, 59)]
GENERATOR_LOST = 0.05  # engagement below this: under ~7 % chance of an order in 30 days at median rates
ACTIVE_DAYS = 90


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


def calibration_rows(name: str, events: pd.DataFrame, cutoffs: list[datetime], oracle=None) -> list[dict]:
    rows = []
    for c in cutoffs:
        for h in (7, 30):
            stages = lifecycle_frame(events, c, h)
            labels = lapse_labels(stages, events, c, h)
            sources = {"BG/NBD": bgnbd_no_order(events, c, h)}
            if oracle is not None:
                sources["generator oracle"] = oracle(c, h)
            before = (pd.Timestamp(c) - pd.Timedelta(days=h)).to_pydatetime()
            stages_then = lifecycle_frame(events, before, h)
            labels_then = lapse_labels(stages_then, events[events["ts"] <= c], before, h)
            calib = LapseCalibration().fit(p_lapse(stages_then, bgnbd_no_order(events, before, h)), labels_then)
            sources["BG/NBD, recalibrated on (c-H, c]"] = sources["BG/NBD"]
            for source, p_no in sources.items():
                p = p_lapse(stages, p_no).reindex(labels.index)
                if "recalibrated" in source:
                    p = calib.apply(p)
                plain = p_no.reindex(labels.index)
                rows.append({"dataset": name, "cutoff": f"{c:%Y-%m-%d}", "H": h, "P(no order) from": source,
                             "non-lost n": len(labels), "lapse rate": labels.mean(), "mean P(lapse)": p.mean(),
                             "ECE P(lapse)": expected_calibration_error(labels.to_numpy(), p.to_numpy()),
                             "ECE plain P(no order) as P(lapse)":
                                 expected_calibration_error(labels.to_numpy(), plain.to_numpy())})
    return rows


def _lists(events: pd.DataFrame, cutoff: datetime, horizon: int, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ours: value at risk among non-lost, top k; old: p_churn among 90-day buyers, top k)."""
    stages = lifecycle_frame(events, cutoff, horizon)
    p_no = bgnbd_no_order(events, cutoff, horizon)
    value, _ = expected_value(events, cutoff, 90)
    value = value.set_index("user_id")
    table = stages.assign(p_no=p_no, p_lapse=p_lapse(stages, p_no), value=value["expected_value"])
    table["value_at_risk"] = table["p_lapse"] * table["value"]
    ours = table[table["p_lapse"] > 0].sort_values(["value_at_risk", "p_lapse"], ascending=False, kind="stable")
    old = table[(table["days_since_last_order"] < ACTIVE_DAYS)].sort_values("p_no", ascending=False, kind="stable")
    return ours.head(k), old.head(k)


def demo_rows(shop, events: pd.DataFrame, cutoff: datetime) -> tuple[list[dict], list[dict]]:
    engagement = shop.engagement_at(cutoff).set_index("user_id")["engagement"]
    ours, old = _lists(events, cutoff, 7, 10)
    headline = [{"list": name, "top 10 generator-lost (e < %.2f)" % GENERATOR_LOST:
                 int((engagement.reindex(lst.index) < GENERATOR_LOST).sum()),
                 "top 10 e < 0.10": int((engagement.reindex(lst.index) < 0.10).sum()),
                 "with a money value": int(lst["value"].notna().sum()),
                 "stages": ", ".join(f"{k} {int(v)}" for k, v in lst["stage"].value_counts().items())}
                for name, lst in (("ours: value at risk, non-lost", ours), ("old: p_churn, 90-day buyers", old))]
    c = pd.Timestamp(cutoff)
    buys = events[events["behavior"] == "buy"]
    past = buys[(buys["ts"] <= c) & (buys["ts"] > c - pd.Timedelta(days=90))]
    future = buys[(buys["ts"] > c) & (buys["ts"] <= c + pd.Timedelta(days=30))]
    expected = past["amount"].groupby(past["user_id"]).sum() / 90 * 30
    actual = future["amount"].groupby(future["user_id"]).sum().reindex(expected.index).fillna(0.0)
    shortfall = (expected - actual).clip(lower=0)
    captured = []
    for k in (10, 100):
        ours, old = _lists(events, cutoff, 30, k)
        captured.append({"k": k, "ours": shortfall.reindex(ours.index).fillna(0).sum() / shortfall.sum(),
                         "old p_churn list": shortfall.reindex(old.index).fillna(0).sum() / shortfall.sum()})
    return headline, captured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cdnow", "demo"], choices=["cdnow", "demo"])
    parser.add_argument("--n-users", type=int, default=5000)
    args = parser.parse_args()
    rows = []
    if "cdnow" in args.datasets:
        rows += calibration_rows("cdnow", read_cdnow(ROOT / ".cache/datasets/CDNOW_master.txt"), CDNOW_CUTOFFS)
    if "demo" in args.datasets:
        from tools.data.synth import DEMO_CUTOFFS, generate_shop

        shop = generate_shop(n_users=args.n_users, seed=0, progress=False)
        events = shop.events.copy()
        events["ts"] = pd.to_datetime(events["ts"])

        def oracle(c, h):
            return shop.true_churn_probability(c, h).set_index("user_id")["p_churn"]

        rows += calibration_rows("demo", events, list(DEMO_CUTOFFS), oracle)
    table = pd.DataFrame(rows)
    print(markdown(table))
    if len(table):
        print("\nMean ECE of P(lapse) over cutoffs:")
        print(markdown(table.groupby(["dataset", "H", "P(no order) from"])[["ECE P(lapse)", "ECE plain P(no order) as P(lapse)"]]
              .mean().reset_index(), 4))
    if "demo" in args.datasets:
        headline, captured = demo_rows(shop, events, DEMO_CUTOFFS[-1])
        print(f"\nDemo shop, cutoff {DEMO_CUTOFFS[-1]:%Y-%m-%d}, the 7-day list (top 10):")
        print(markdown(pd.DataFrame(headline)))
        print("\nMoney at risk captured (share of the next-30-day revenue shortfall held by the listed users):")
        print(markdown(pd.DataFrame(captured)))


if __name__ == "__main__":
    main()
