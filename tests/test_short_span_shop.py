"""A clickstream shop of a few hours (the real Taobao 2-hour slice) through the product's commands.

The assistant's horizons are whole days (7 and 30 by default). On two hours of events no training
cutoff has a 7-day window after it: training used to run anyway and score every user ~0.5 / ~0.25,
and `cases build` picked cutoffs months before the data and stored 0 cases without a word. Each
command now refuses, naming the span and what to set. Real DuckDB, the real CLI, a real tiny model.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from assistant.cli import main
from assistant.commands.predictor import check_horizons_fit
from tools.case_build import check_cutoffs
from tools.cases import CaseMemoryError
from tools.data.store import EventStore
from tools.predictor.train import TrainConfig, train_predictor

SLICE = Path(__file__).resolve().parents[1] / "data" / "taobao_userbehavior_2h_users_sample.csv"


@pytest.fixture
def two_hour_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    monkeypatch.delenv("SHOPSIGHT_DB", raising=False)
    monkeypatch.delenv("SHOPSIGHT_HORIZONS_DAYS", raising=False)
    head = SLICE.read_text().splitlines()[::6]  # every 6th line: the whole two hours, 2,806 events
    (tmp_path / "slice.csv").write_text("\n".join(head) + "\n")
    assert main(["data", "import", str(tmp_path / "slice.csv"), "--format", "taobao", "--no-progress"]) == 0
    return tmp_path


def test_train_refuses_day_horizons_on_two_hours_before_training(two_hour_home):
    with pytest.raises(SystemExit) as exc:
        main(["predictor", "train", "--quiet"])
    message = str(exc.value)
    assert "the events span 2 h" in message and "7 and 30 days (SHOPSIGHT_HORIZONS_DAYS)" in message
    assert "at least 2 days of events" in message and "--horizon 15m 30m" in message
    assert not (two_hour_home / "models" / "predictor").exists()  # refused before any training


def test_score_refuses_a_checkpoint_whose_horizons_never_saw_a_label(two_hour_home):
    # A checkpoint trained before the check (straight through train_predictor) on the same two hours.
    with EventStore(two_hour_home / "shop.duckdb", read_only=True) as store:
        events = store.events_frame()
    config = TrainConfig(name="demo", horizons_days=(7, 30), d_model=8, n_heads=1, n_layers=1, epochs=1,
                         max_items=200, max_categories=50)
    train_predictor(events, events["ts"].max(), config, two_hour_home / "models" / "predictor" / "demo",
                    progress=False)
    with pytest.raises(SystemExit, match=r"was trained where the events span 2 h .* predictor train --no-resume"):
        main(["predictor", "score", "--quiet"])
    user = str(events["user_id"].iloc[0])
    with pytest.raises(SystemExit, match=r"was trained where the events span 2 h .* scoring or explaining"):
        main(["predictor", "explain", "--user", user])
    with EventStore(two_hour_home / "shop.duckdb", read_only=True) as store:
        assert store.summary()["tables"]["scores"] == 0  # no made-up probabilities were written


def test_made_up_scores_a_refused_checkpoint_stored_earlier_are_named_and_can_be_cleared(two_hour_home, capsys):
    """Round 8 report 7: a home scored before the check kept serving ~50 % priors, and no command removed them."""
    from tools.predictor.score import Predictor, score_store

    with EventStore(two_hour_home / "shop.duckdb", read_only=True) as store:
        events = store.events_frame()
    config = TrainConfig(name="demo", horizons_days=(7, 30), d_model=8, n_heads=1, n_layers=1, epochs=1,
                         max_items=200, max_categories=50)
    folder = two_hour_home / "models" / "predictor" / "demo"
    train_predictor(events, events["ts"].max(), config, folder, progress=False)
    with EventStore(two_hour_home / "shop.duckdb") as store:  # what `predictor score` did before the check
        score_store(store, Predictor.load(folder), events["ts"].max(), progress=False, earlier=False)
    with pytest.raises(SystemExit, match=r"the tools serve them until `shopsight predictor scores --clear`"):
        main(["predictor", "score", "--quiet"])
    # The tools no longer serve them as predictions (the Operations tab listed "0.00 orders at risk" from them).
    from assistant.config import Settings
    from assistant.workspace import Workspace

    with EventStore(two_hour_home / "shop.duckdb", read_only=True) as store:
        workspace = Workspace.open(Settings.from_env(), store=store)
        at_risk = workspace.call_tool("at_risk_users", horizon_days=7)
        segments = workspace.call_tool("segment_report")
    assert "trained on events spanning 2 h" in at_risk["error"] and "made-up prior" in at_risk["error"]
    assert "shopsight predictor scores --clear" in at_risk["hint"] and "made-up prior" in segments["error"]
    capsys.readouterr()
    assert main(["predictor", "scores"]) == 0
    out = capsys.readouterr().out
    assert "<- served" in out and "the served scores come from a checkpoint `predictor score` now refuses" in out
    assert main(["predictor", "scores", "--clear"]) == 0
    with EventStore(two_hour_home / "shop.duckdb", read_only=True) as store:
        assert store.summary()["tables"]["scores"] == 0


def test_cases_build_refuses_a_span_shorter_than_the_outcome_window(two_hour_home):
    with pytest.raises(SystemExit, match=r"the events span 2 h .*30-day outcome window after it"):
        main(["cases", "build", "--text-only", "--skip-reviews", "--no-progress"])
    with pytest.raises(SystemExit, match="cases need more than a day of events"):
        main(["cases", "build", "--horizons", "1", "--text-only", "--skip-reviews", "--no-progress"])


def test_case_cutoffs_before_the_first_event_are_refused_not_built_empty():
    events = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "behavior": ["buy", "view"],
                           "ts": pd.to_datetime(["2017-11-25 00:00:00", "2017-12-03 23:59:59"])})
    with pytest.raises(CaseMemoryError, match=r"cutoff 2017-10-01 23:59:59 is not after the first event"):
        check_cutoffs(events, [datetime(2017, 10, 1, 23, 59, 59)], (1,), CaseMemoryError)
    check_cutoffs(events, [datetime(2017, 11, 28)], (1, 3), CaseMemoryError)  # inside the span: fine


def test_fractional_or_malformed_horizon_settings_are_refused(two_hour_home, monkeypatch):
    monkeypatch.setenv("SHOPSIGHT_HORIZONS_DAYS", "0.5")
    with pytest.raises(SystemExit, match=r"SHOPSIGHT_HORIZONS_DAYS='0.5': give whole days .* e.g. 7,30"):
        main(["predictor", "train", "--quiet"])
    recipe = two_hour_home / "minutes.yaml"
    recipe.write_text("horizons_days: [0.0104166666666666, 0.0208333333333333]\n")
    monkeypatch.delenv("SHOPSIGHT_HORIZONS_DAYS")
    with pytest.raises(SystemExit, match=r"minutes.yaml: horizons .* are whole days; measure minute"):
        main(["predictor", "train", "--quiet", "--config", str(recipe)])


def test_a_nine_day_shop_is_told_which_whole_day_horizons_fit():
    first, end = pd.Timestamp("2017-11-25"), pd.Timestamp("2017-12-03 23:59:59")  # the real release's span
    with pytest.raises(SystemExit, match=r"span 9.0 days .* full 30-day window .* SHOPSIGHT_HORIZONS_DAYS=1,7"):
        check_horizons_fit(first, end, end, TrainConfig(horizons_days=(7, 30)))
    check_horizons_fit(first, end, end, TrainConfig(horizons_days=(1, 7)))  # what it suggests fits
    with pytest.raises(SystemExit, match="`cutoff_stride_days: 1`"):  # 5 days: the weekly stride is the problem
        check_horizons_fit(first, first + pd.Timedelta(days=5), first + pd.Timedelta(days=5),
                           TrainConfig(horizons_days=(7,)))


def test_bench_on_thirty_users_skips_the_churn_baselines_it_cannot_train_and_runs_the_rest(tmp_path, monkeypatch,
                                                                                        capsys):
    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    events = pd.read_csv(SLICE, header=None, names=["user", "item", "category", "behavior", "ts"])
    busiest = events["user"].value_counts().index[:30]
    events[events["user"].isin(busiest)].to_csv(tmp_path / "thirty.csv", header=False, index=False)
    assert main(["data", "import", str(tmp_path / "thirty.csv"), "--format", "taobao", "--no-progress"]) == 0
    out_dir = tmp_path / "bench"
    assert main(["bench", "run", "--format", "store", "--data", str(tmp_path / "shop.duckdb"), "--cutoff",
                 "2017-11-26T02:30:00", "--horizon", "15m", "30m", "--out", str(out_dir),
                 "--models", "logreg_rfm", "repeat_recency"]) == 0
    out = capsys.readouterr()
    said = out.out + out.err
    assert "30 users, 2 cutoffs (1 test), horizons 15m, 30m" in said
    assert "logreg_rfm SKIPPED: cannot train at" in said and "users active by then made no purchase" in said
    assert "(the 15m window before the cutoff)" in said and "0.0104" not in said
    manifest = yaml.safe_load((out_dir / "benchmark.yaml").read_text())
    assert manifest["skipped"] == ["logreg_rfm"] and manifest["failed"] == []
    assert list(out_dir.glob("repeat_recency/next_item__15m__*.csv"))  # the rest still ran


def test_data_info_says_behaviors_no_prices_and_that_the_span_is_short(two_hour_home, capsys):
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "events by behavior: view " in out and "prices: none (no amount column)" in out
    assert "the events span 2 h 10 min, less than the predictor's 30-day horizon" in out


def test_operations_tab_offers_the_configured_horizons_and_says_orders_and_the_time(two_hour_home, monkeypatch):
    import gradio as gr

    from app import build_app
    from assistant.config import Settings
    from assistant.ui_render import operations_summary
    from assistant.workspace import Workspace

    monkeypatch.setenv("SHOPSIGHT_HORIZONS_DAYS", "1,3")  # what `predictor train` suggests for a 9-day shop
    ws = Workspace.open(Settings.from_env(), lazy=True)
    try:
        radio = next(b for b in build_app(ws).blocks.values()
                     if isinstance(b, gr.Radio) and b.elem_id == "horizon")
        assert [value for _, value in radio.choices] == ["1", "3"] and radio.value == "1"
    finally:
        ws.store.close()
    text = operations_summary({"horizon_days": 1, "as_of": "2017-11-26T03:10:11", "currency": None,
                               "value_unit": "orders", "money_at_risk": 0.0})
    assert "**Expected orders at risk** (lapse within 1 days): 0.00 orders" in text and "Money" not in text
    assert "as of 2017-11-26 03:10 UTC" in text  # two hours of clicks are all one day: the time says when
    assert "as of 2026-06-30\n" in operations_summary({"as_of": "2026-06-30T00:00:00"}) + "\n"


def test_drill_down_shows_the_timeline_when_no_churn_model_can_exist(two_hour_home):
    import gradio as gr

    from app import drill_down_view
    from assistant.config import Settings
    from assistant.workspace import Workspace

    user = pd.read_csv(two_hour_home / "slice.csv", header=None)[0].value_counts().index[0]
    ws = Workspace.open(Settings.from_env(), lazy=True)  # no predictor: `predictor train` refuses 2 hours
    try:
        head, drivers, trend, timeline, _ = drill_down_view(ws, str(user), "7")
        assert head.startswith(f"### User {user}\n⚠ No churn prediction: ") and drivers.empty and trend.empty
        assert len(timeline) >= 2 and set(timeline["behavior"]) <= {"view", "cart", "fav", "buy"}
        with pytest.raises(gr.Error, match="nosuchuser"):  # an unknown id is still an error
            drill_down_view(ws, "nosuchuser", "7")
    finally:
        ws.store.close()


def test_a_thirty_customer_shop_trains_scores_and_says_why_there_is_no_auc(tmp_path, monkeypatch, capsys):
    """The other tiny shop: 30 CDNOW customers over 18 months (long enough, but 4 held-out users)."""
    cdnow = Path(__file__).resolve().parents[1] / ".cache/datasets/CDNOW_master.txt"
    if not cdnow.is_file():
        pytest.skip(f"{cdnow} missing: run `make data`")
    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    monkeypatch.delenv("SHOPSIGHT_HORIZONS_DAYS", raising=False)
    ids = [line.split()[0] if line.split() else "" for line in cdnow.read_text().splitlines()]
    lines = [line for line, uid in zip(cdnow.read_text().splitlines(), ids) if uid.isdigit() and int(uid) <= 30]
    (tmp_path / "cdnow_30.txt").write_text("\n".join(lines) + "\n")
    assert main(["data", "import", str(tmp_path / "cdnow_30.txt"), "--no-progress"]) == 0
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("d_model: 8\nn_heads: 1\nn_layers: 1\nepochs: 1\nhorizons_days: [7, 30]\n")
    assert main(["predictor", "train", "--quiet", "--config", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "churn AUC not measurable on 4 held-out users" in out and "churn AUC None" not in out
    assert main(["predictor", "score", "--quiet"]) == 0
    with EventStore(tmp_path / "shop.duckdb", read_only=True) as store:
        assert store.scores_frame(horizon_days=7)["user_id"].nunique() == 30


def test_a_recipe_without_horizons_takes_the_homes_setting(two_hour_home, monkeypatch):
    recipe = Path(__file__).resolve().parents[1] / "finetune" / "configs" / "predictor_taobao_2h.yaml"
    monkeypatch.setenv("SHOPSIGHT_HORIZONS_DAYS", "1,3")  # before: the recipe trained 7 and 30 regardless
    with pytest.raises(SystemExit, match=r"horizons are 1 and 3 days \(SHOPSIGHT_HORIZONS_DAYS\)"):
        main(["predictor", "train", "--quiet", "--config", str(recipe)])


def test_writing_while_an_ask_only_reads_the_store_does_not_blame_a_writer(two_hour_home):
    import subprocess
    import sys

    from tools.data.store_holder import StoreHeldError

    reader = ("import sys; from tools.data.store import EventStore; s = EventStore(sys.argv[1], read_only=True); "
              "print('ready', flush=True); sys.stdin.read()")
    root = Path(__file__).resolve().parents[1]
    holder = subprocess.Popen([sys.executable, "-c", reader, str(two_hour_home / "shop.duckdb")], cwd=root,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreHeldError) as exc:  # what `predictor score` met while a `shopsight ask` ran
            EventStore(two_hour_home / "shop.duckdb")
        message = str(exc.value)
        assert f"is open in process {holder.pid}" in message and "held for writing" not in message
        assert "even read-only" in message
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_without_a_churn_model_a_short_shop_is_not_told_to_train_one(two_hour_home):
    """The tools' error and the workspace's note name the span instead of `predictor train` (which refuses here)."""
    from assistant.config import Settings
    from assistant.workspace import PartUnavailable, Workspace
    from tools.catalog import build_tools
    from tools.catalog.context import ToolContext

    with EventStore(two_hour_home / "shop.duckdb", read_only=True) as store:
        tools = {f.__name__: f for f in build_tools(ToolContext(store=store))}
        result = tools["at_risk_users"](horizon_days=7)
        hint = str(result.get("hint") or result)
        assert "this shop's events span 2 h" in hint and "at least 2 days of events" in hint
        assert "predictor train" not in hint
        ws = Workspace.open(Settings.from_env(), store=store)
        with pytest.raises(PartUnavailable, match=r"events span 2 h .* no churn model to train here"):
            ws._load_predictor()
