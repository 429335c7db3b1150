"""BG/NBD expectations and Gamma-Gamma against Fader & Hardie's published CDNOW numbers, and bad money.

The published fits use the 2,357-customer CDNOW sample (CDNOW_sample.txt, master ids in column
one) with a 39-week calibration period ending 1997-09-30.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tools.predictor.baselines import bgnbd_summary, fit_bgnbd
from tools.predictor.bench_datasets import read_cdnow
from tools.predictor.clv import (bgnbd_expected_orders, expected_value, fit_gamma_gamma, repeat_spend,
                                 run_rate_value)

DATASETS = Path(__file__).resolve().parents[1] / ".cache" / "datasets"
CALIBRATION_END = datetime(1997, 9, 30, 23, 59, 59)
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


@pytest.fixture(scope="module")
def cdnow_sample() -> pd.DataFrame:
    for name in ("CDNOW_master.txt", "CDNOW_sample.txt"):
        if not (DATASETS / name).is_file():
            pytest.skip(f"{DATASETS / name} missing: run `make data`")
    events = read_cdnow(DATASETS / "CDNOW_master.txt")
    ids = pd.read_csv(DATASETS / "CDNOW_sample.txt", sep=r"\s+", header=None, dtype=str)[0].astype(int)
    return events[events["user_id"].astype(int).isin(set(ids))].reset_index(drop=True)


def test_bgnbd_on_the_published_sample(cdnow_sample):
    summary = bgnbd_summary(cdnow_sample, CALIBRATION_END)
    assert len(summary) == 2357
    params = fit_bgnbd(summary)
    for key, published in PUBLISHED_BGNBD.items():  # day-level dates /7 versus the paper's weeks: within 3 %
        assert params[key] == pytest.approx(published, rel=0.03), (key, params)


def test_bgnbd_conditional_expectation_matches_the_paper():
    # Fader, Hardie & Lee (2005): x = 2, t_x = 30.43, T = 38.86 weeks -> 1.226 purchases in the next 39 weeks.
    summary = pd.DataFrame({"x": [2.0, 0.0], "t_x": [30.43, 0.0], "T": [38.86, 38.86]})
    got = bgnbd_expected_orders(PUBLISHED_BGNBD, summary, 39 * 7)
    assert got[0] == pytest.approx(1.226, abs=0.001)
    assert 0 < got[1] < got[0]


def test_gamma_gamma_on_the_published_sample(cdnow_sample):
    spend, excluded = repeat_spend(cdnow_sample, CALIBRATION_END)
    fit = fit_gamma_gamma(spend, excluded)
    assert fit.customers == 946 and excluded == 0  # the paper's 946 repeat buyers
    assert (fit.p, fit.q, fit.gamma) == pytest.approx((6.25, 3.74, 15.44), abs=0.01)
    # A customer with 2 repeat orders of mean $30: shrunk towards the population mean (~$35).
    assert 30 < fit.expected_spend(np.array([2]), np.array([30.0]))[0] < 35


def _shop(amounts: dict[str, list[float | None]]) -> pd.DataFrame:
    rows = []
    for user, values in amounts.items():
        for day, amount in enumerate(values):
            rows.append((user, pd.Timestamp("2024-01-01") + pd.Timedelta(days=7 * day + int(user[1:])), "buy",
                         "i1", "c1", 1, amount))
    return pd.DataFrame(rows, columns=["user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"])


def test_returns_and_zero_amounts_are_left_out_of_gamma_gamma_and_counted():
    events = _shop({"u1": [10.0, -10.0, 12.0, 0.0], "u2": [20.0, 25.0, None], "u3": [5.0, 6.0, 7.0, 8.0],
                    "u4": [30.0, 31.0], "u5": [9.0]})
    spend, excluded = repeat_spend(events, datetime(2024, 3, 1))
    assert excluded == 3  # -10, 0 and the missing amount; the first order of each user is not a repeat
    assert spend.loc["u1", "x"] == 1 and spend.loc["u1", "m_x"] == 12.0
    frame, notes = expected_value(events, datetime(2024, 3, 1), 30)
    assert notes["unit"] == "money" and notes["excluded_orders"] == 3 and "left out of Gamma-Gamma" in notes["note"]
    assert frame["expected_value"].notna().all() and (frame["expected_value"] >= 0).all()


def test_a_shop_without_prices_values_customers_in_orders():
    events = _shop({"u1": [None] * 4, "u2": [None] * 2, "u3": [None] * 5, "u4": [None]})
    frame, notes = expected_value(events, datetime(2024, 3, 1), 30)
    assert notes["unit"] == "orders" and "no prices in the data" in notes["note"]
    assert frame["expected_value"].tolist() == frame["expected_orders"].tolist()
    rate = run_rate_value(events, datetime(2024, 3, 1), 30).set_index("user_id")["expected_value"]
    assert rate["u3"] > rate["u4"] > 0  # orders per day, not zero money


def test_the_tools_value_falls_back_to_bgnbd_gamma_gamma_on_a_short_history():
    from tools.predictor.clv import customer_value

    events = _shop({"u1": [10.0, 12.0, 11.0], "u2": [20.0, 25.0], "u3": [5.0, 6.0, 7.0, 8.0], "u4": [9.0]})
    frame, notes = customer_value(events, datetime(2024, 3, 1), 30)  # 30 days of history before c - 30 d
    assert notes["model"] == "BG/NBD + Gamma-Gamma" and "needs 60 days of history" in notes["model_note"]
    baseline, _ = expected_value(events, datetime(2024, 3, 1), 30)
    assert frame["expected_value"].tolist() == baseline["expected_value"].tolist()


def test_a_fit_that_never_left_its_start_gives_no_expected_orders_and_no_warning():
    """Two hours of clicks: BG/NBD's fit stays at a = 1, where eq. 10 is 0 / 0; NaN with a note, never a warning."""
    import warnings

    start = pd.Timestamp("2017-11-26 01:00")
    events = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3"], "behavior": ["buy", "buy", "buy", "pv"],
                           "ts": [start, start + pd.Timedelta(minutes=40), start + pd.Timedelta(minutes=5),
                                  start + pd.Timedelta(minutes=9)], "item_id": ["i1", "i2", "i1", "i3"],
                           "amount": [np.nan] * 4})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame, notes = expected_value(events, start + pd.Timedelta(hours=2), horizon_days=7)
    assert notes["bgnbd"]["a"] == 1.0 and frame["expected_orders"].isna().all()
    assert "did not leave its start" in notes["bgnbd_note"] and notes["unit"] == "orders"
