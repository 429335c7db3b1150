"""The clv benchmark task on a real CDNOW slice: files, truth, the three models, metrics and the CLI."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assistant.cli import main as shopsight
from tools.predictor.bench_clv import (TRUTH_DIR, actual_spend, clv_file_name, clv_metrics, clv_score_long,
                                       clv_score_table, run_clv)
from tools.predictor.bench_datasets import read_cdnow

CDNOW = Path(__file__).resolve().parents[1] / ".cache" / "datasets" / "CDNOW_master.txt"
CUTOFF = datetime(1997, 12, 31, 23, 59, 59)


@pytest.fixture(scope="module")
def cdnow_slice() -> pd.DataFrame:
    if not CDNOW.is_file():
        pytest.skip(f"{CDNOW} missing: run `make data`")
    events = read_cdnow(CDNOW)
    return events[events["user_id"].astype(int) <= 3000].reset_index(drop=True)


def test_metrics_on_a_hand_made_case():
    actual = np.array([100.0, 0, 0, 0, 0, 0, 0, 0, 0, 50.0])
    m = clv_metrics(actual, np.array([9.0, 1, 1, 1, 1, 1, 1, 1, 1, 2.0]))
    assert m["top_decile_capture"] == pytest.approx(100 / 150)  # the top 10 % is user 0
    assert m["mae"] == pytest.approx((91 + 8 + 48) / 10)
    assert clv_metrics(actual, actual)["spearman"] == pytest.approx(1.0)


def test_truth_is_the_money_in_the_window(cdnow_slice):
    truth = actual_spend(cdnow_slice, CUTOFF, 90).set_index("user_id")["actual_spend"]
    c = pd.Timestamp(CUTOFF)
    window = cdnow_slice[(cdnow_slice["ts"] > c) & (cdnow_slice["ts"] <= c + pd.Timedelta(days=90))]
    assert truth.sum() == pytest.approx(window["amount"].sum())
    assert len(truth) == cdnow_slice["user_id"].nunique()  # everyone of P(c); CDNOW's cohort all joined by March


def test_every_model_writes_its_file_and_ours_ranks_better_than_run_rate(cdnow_slice, tmp_path):
    run_clv("cdnow", cdnow_slice, tmp_path, cutoffs=[CUTOFF], say=lambda _: None)
    name = clv_file_name(90, CUTOFF)
    assert name == "clv__90d__19971231T235959Z.csv"
    truth = pd.read_csv(tmp_path / TRUTH_DIR / name, dtype={"user_id": str})
    for model in ("bgnbd_gg", "run_rate", "clv_combined"):
        pred = pd.read_csv(tmp_path / model / name, dtype={"user_id": str})
        assert list(pred.columns) == ["user_id", "expected_spend"]
        assert sorted(pred["user_id"]) == sorted(truth["user_id"]) and (pred["expected_spend"] >= 0).all()
    long = clv_score_long(tmp_path).set_index(["model", "horizon_days"])
    assert len(long) == 6  # 3 models x 2 horizons
    for h in (90, 180):
        assert long.loc[("clv_combined", h), "spearman"] > long.loc[("run_rate", h), "spearman"]
        assert long.loc[("bgnbd_gg", h), "mae"] < long.loc[("run_rate", h), "mae"]
    assert "| clv_combined | 90 d |" in clv_score_table(tmp_path)


def test_cli_runs_only_the_clv_task_and_scores_it(cdnow_slice, tmp_path, capsys):
    data = tmp_path / "cdnow.txt"
    rows = cdnow_slice.assign(day=cdnow_slice["ts"].dt.strftime("%Y%m%d"))
    data.write_text("\n".join(f"{u} {d} {q} {a}" for u, d, q, a in
                              zip(rows["user_id"], rows["day"], rows["quantity"], rows["amount"])) + "\n")
    out = tmp_path / "run"
    assert shopsight(["bench", "run", "--dataset", "cdnow", "--data", str(data), "--out", str(out),
                      "--models", "bgnbd_gg", "run_rate", "--quiet"]) == 0
    assert not (out / "clv_combined").exists() and len(list((out / "bgnbd_gg").glob("clv__*.csv"))) == 6
    capsys.readouterr()
    assert shopsight(["bench", "score", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| bgnbd_gg | 180 d |" in printed and "| run_rate | 90 d |" in printed


def test_visit_features_tell_a_daily_visitor_gone_quiet_from_a_weekly_one():
    from tools.predictor.bench_clv import visit_features

    start = pd.Timestamp("2024-01-01 10:00")
    daily = [("daily", start + pd.Timedelta(days=d), "view") for d in range(30)]
    weekly = [("weekly", start + pd.Timedelta(days=d), "view") for d in range(0, 30, 7)]
    events = pd.DataFrame(daily + weekly, columns=["user_id", "ts", "behavior"])
    quiet = visit_features(events, datetime(2024, 2, 9))  # ten silent days after day 29 for the daily visitor
    assert quiet.loc["daily", "visit_days_30d"] == 20 and quiet.loc["daily", "visit_days_7d"] == 0
    assert quiet.loc["daily", "log_p_quiet"] < np.log(1e-3) < quiet.loc["weekly", "log_p_quiet"] < 0
    on_time = visit_features(events, datetime(2024, 1, 30, 23))  # the daily visitor came today
    assert on_time.loc["daily", "log_p_quiet"] == 0


def _windows_of(n_users: int, truth_feature: str, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Two past windows of the same customers; the spend is read off `truth_feature` (the other column is noise)."""
    rng = np.random.default_rng(seed)
    users = np.tile(np.arange(n_users), 2)
    window = np.repeat([0, 30], n_users)
    spend = rng.gamma(0.5, 40.0, 2 * n_users)
    noise = rng.gamma(0.5, 40.0, 2 * n_users)
    columns = {"bgnbd_gg": spend if truth_feature == "bgnbd_gg" else noise,
               "monetary": spend if truth_feature == "monetary" else rng.normal(size=2 * n_users)}
    return pd.DataFrame(columns, index=pd.Index(users, name="user_id")), spend, window


def test_blend_weight_follows_what_predicts_the_held_out_customers():
    from tools.predictor.bench_clv import BLEND_WEIGHTS, choose_blend_weight

    # BG/NBD x GG is the spend itself: the trees can only add error, so they get no share.
    weight, scores = choose_blend_weight(*_windows_of(300, "bgnbd_gg"))
    assert weight == 0.0 and set(scores) == set(BLEND_WEIGHTS)
    # BG/NBD x GG is noise and another column holds the spend: the trees alone.
    weight, scores = choose_blend_weight(*_windows_of(300, "monetary"))
    assert weight == 1.0 and scores[1.0] > scores[0.0] + 0.3


def test_blend_weight_on_too_few_customers_keeps_the_trees_alone():
    from tools.predictor.bench_clv import MIN_FOLD_USERS, VALIDATION_FOLDS, choose_blend_weight

    assert choose_blend_weight(*_windows_of(VALIDATION_FOLDS * MIN_FOLD_USERS - 1, "bgnbd_gg")) == (1.0, {})


def test_history_check_counts_calendar_days_not_the_first_events_hour(cdnow_slice):
    from tools.predictor.bench_clv import MIN_HISTORY_DAYS, combined_value

    events = cdnow_slice.assign(ts=cdnow_slice["ts"] + pd.Timedelta(hours=8))  # first event 1997-01-01 08:00
    start = events["ts"].min().normalize() + pd.Timedelta(days=MIN_HISTORY_DAYS)  # c - H: 60 calendar days in
    value = combined_value(events, (start + pd.Timedelta(days=30)).to_pydatetime(), 30)
    assert len(value) == events.loc[events["ts"] <= start + pd.Timedelta(days=30), "user_id"].nunique()
    with pytest.raises(ValueError, match="needs 60 days of history"):
        combined_value(events, (start + pd.Timedelta(days=29)).to_pydatetime(), 30)


def test_a_young_shop_gets_ours_at_a_shorter_horizon_scaled_before_the_bgnbd_fallback(cdnow_slice):
    from tools.predictor.bench_clv import combined_value
    from tools.predictor.clv import customer_value

    cutoff = datetime(1997, 5, 1, 23, 59, 59)  # 30 days of data before c - 90 d, 60 before c - 60 d
    frame, notes = customer_value(cdnow_slice, cutoff, 90)
    assert notes["model"].startswith("gradient-boosted trees") and "fitted for 60 days and scaled to 90" in notes["model"]
    at_60 = combined_value(cdnow_slice, cutoff, 60).set_index("user_id")["expected_value"].clip(lower=0) * 1.5
    assert frame.set_index("user_id")["expected_value"].to_numpy() == pytest.approx(
        at_60.reindex(frame["user_id"]).fillna(0).to_numpy(), rel=1e-9)
