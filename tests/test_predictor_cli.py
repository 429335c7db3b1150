"""`shopsight predictor train|score|explain` on a real DuckDB store, and `python -m finetune.predictor`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from predictor_shop import CUTOFF, make_shop

CDNOW = Path(__file__).resolve().parents[1] / ".cache" / "datasets" / "CDNOW_master.txt"
TINY = {"max_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "n_cutoffs": 4, "cutoff_stride_days": 7,
        "batch_size": 64, "epochs": 1, "warmup_steps": 2, "max_items": 100, "max_categories": 20,
        "item_hash_buckets": 4, "category_hash_buckets": 2, "val_fraction": 0.25, "device": "cpu"}


@pytest.fixture()
def store_env(tmp_path, monkeypatch):
    from tools.data.store import EventStore

    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHOPSIGHT_DB", str(tmp_path / "shop.duckdb"))
    monkeypatch.setenv("SHOPSIGHT_PREDICTOR", "t")
    events = make_shop()
    events = events[events["ts"] <= CUTOFF].reset_index(drop=True)
    store = EventStore(tmp_path / "shop.duckdb")
    store.import_frames("test-shop", events=events)
    store.close()
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(TINY, horizons_days=[7, 30], run={"dataset": "ignored-here"})))
    return tmp_path, config


def test_cli_train_score_explain(store_env, capsys):
    from assistant.cli import main
    from tools.data.store import EventStore

    tmp_path, config = store_env
    assert main(["predictor", "train", "--config", str(config), "--quiet"]) == 0
    assert "sequences/s" in capsys.readouterr().out
    assert (tmp_path / "home" / "models" / "predictor" / "t" / "model.safetensors").exists()
    assert main(["predictor", "score", "--quiet"]) == 0
    assert "users/s" in capsys.readouterr().out
    store = EventStore(tmp_path / "shop.duckdb", read_only=True)
    scores = store.scores_frame()
    store.close()
    latest = scores[scores["cutoff"] == scores["cutoff"].max()]
    assert len(latest) == 2 * 60 and set(latest["horizon_days"]) == {7, 30}
    # Each horizon H also as of cutoff - H (P(lapse) is recalibrated on them without loading the model).
    back = scores[scores["cutoff"] < scores["cutoff"].max()].groupby("horizon_days")["cutoff"].max()
    assert {h: (scores["cutoff"].max() - c).days for h, c in back.items()} == {7: 7, 30: 30}
    assert main(["predictor", "explain", "--user", "u001", "--horizon", "30"]) == 0
    out = json.loads(capsys.readouterr().out)
    # Drivers under one point are left out (tools/predictor/explain.py): an empty list must say why.
    assert out["user_id"] == "u001"
    assert out["drivers"] or out["history"]["too_little"] or out["drivers_left_out"]
    with pytest.raises(SystemExit, match="unknown user"):
        main(["predictor", "explain", "--user", "nobody"])
    # `shopsight data info` lists no ids: the message shows real ones, or the one a typo meant.
    with pytest.raises(SystemExit, match=r"ids in this store look like 'u0"):
        main(["predictor", "explain", "--user", "nobody"])
    with pytest.raises(SystemExit, match=r"did you mean 'u001'\?"):
        main(["predictor", "explain", "--user", "U001"])


def test_cli_without_checkpoint_says_how_to_train(store_env):
    from assistant.cli import main

    with pytest.raises(SystemExit, match="shopsight predictor train"):
        main(["predictor", "score", "--quiet"])


def test_demo_retrains_a_stale_checkpoint_and_rescores(store_env):
    from assistant.cli import main
    from assistant.commands import demo
    from assistant.config import Settings

    tmp_path, config = store_env
    settings = Settings.from_env()
    assert not demo._predictor_ready(settings)
    assert "--no-resume" not in demo._train_argv(settings)  # nothing there yet: a crashed run may resume
    assert main(["predictor", "train", "--config", str(config), "--quiet"]) == 0
    assert main(["predictor", "score", "--quiet"]) == 0
    assert demo._predictor_ready(settings) and demo._scored(settings)

    # What a checkpoint trained before a change of FEATURE_NAMES records: other feature names.
    path = settings.predictor_dir / "config.yaml"
    fresh = path.read_text()
    old = yaml.safe_load(fresh)
    old["feature_names"] = old["feature_names"][:-1]
    path.write_text(yaml.safe_dump(old, sort_keys=False))
    with pytest.raises(SystemExit, match=r"stale checkpoint: .*new: \['log_n_carts'\]"):
        main(["predictor", "score", "--quiet"])
    assert not demo._predictor_ready(settings)
    argv = demo._train_argv(settings)
    assert argv[:2] == ["predictor", "train"] and argv[-1] == "--no-resume"
    assert main(["predictor", "train", "--config", str(config), "--quiet", "--no-resume"]) == 0
    assert demo._predictor_ready(settings)

    assert main(["predictor", "score", "--quiet"]) == 0
    assert demo._scored(settings)

    # Scores written by another model version do not count as done: the demo rescores.
    retrained = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(dict(retrained, version="t-another-model"), sort_keys=False))
    assert not demo._scored(settings)


@pytest.mark.skipif(not CDNOW.exists(), reason="CDNOW not fetched (make data)")
def test_finetune_script_on_a_cdnow_slice(tmp_path):
    from finetune.predictor import main

    lines = CDNOW.read_text().splitlines()
    sliced = tmp_path / "cdnow_slice.txt"
    sliced.write_text("\n".join(lines[:3001]) + "\n")  # customers 1..~1000, every purchase
    recipe = tmp_path / "recipe.yaml"
    fields = dict(TINY, loss_weights={"buy": 1.0, "cart": 0.0, "next_item": 0.0, "next_category": 0.0,
                                      "next_behavior": 0.0}, n_cutoffs=8, cutoff_stride_days=14)
    recipe.write_text(yaml.safe_dump(dict(fields, run={"dataset": "cdnow", "data": str(sliced),
                                                       "cutoffs": ["1997-09-30 23:59:59"]})))
    rows = main(recipe, tmp_path / "out", progress=False)
    assert [(r["horizon_days"], r["churn_n"]) for r in rows] == [(30, rows[0]["churn_n"]), (90, rows[0]["churn_n"])]
    assert all(0.5 < r["churn_auc"] <= 1.0 and r["sequences_per_s"] > 0 for r in rows)
    assert json.loads((tmp_path / "out" / "results.json").read_text())[0]["cutoff"].startswith("1997-09-30")


def test_recipes_are_valid_train_configs():
    from tools.predictor.train import TrainConfig

    root = Path(__file__).resolve().parents[1] / "finetune" / "configs"
    recipes = sorted(root.glob("predictor_*.yaml"))
    assert recipes
    for path in recipes:
        text = path.read_text()
        assert text.startswith("#") and "python -m finetune.predictor" in text  # header = launch command
        TrainConfig.from_dict(yaml.safe_load(text))


def test_ranking_targets_are_users_of_the_population_only(tmp_path):
    """A user whose first event is after the cutoff has no score: not a target (docs/benchmark.md)."""
    from finetune.predictor import evaluate_cutoff
    from tools.predictor.train import TrainConfig, train_predictor

    shop = make_shop()
    predictor = train_predictor(shop, CUTOFF, TrainConfig(**dict(TINY, epochs=1)), tmp_path / "ck", progress=False)
    newcomer = shop[shop["ts"] > CUTOFF].head(3).assign(user_id="brand-new-user", ts=CUTOFF + pd.Timedelta(hours=1))
    tasks = ("churn", "next_item", "next_category")
    base, _ = evaluate_cutoff(predictor, shop, CUTOFF, (7, 30), tasks)
    with_new, _ = evaluate_cutoff(predictor, pd.concat([shop, newcomer], ignore_index=True), CUTOFF, (7, 30), tasks)
    for a, b in zip(base, with_new):
        assert a["next_item_ndcg10"] == b["next_item_ndcg10"] and a["next_category_ndcg10"] == b["next_category_ndcg10"]
        assert a["churn_auc"] == b["churn_auc"] and a["next_category_ndcg10"] > 0  # else a miss could not show
