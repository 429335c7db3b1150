"""Predictor checkpoint names and the scores they leave in the store, through the real CLI and DuckDB.

A new home names its checkpoint `shop`; a home made before that keeps its `demo` one (found, listed,
scored with, never retrained behind the user's back). `predictor score` replaces an earlier
checkpoint's scores in one transaction; `predictor scores` says which checkpoint wrote the served
ones, and `--clear` deletes them; the tools say when the served scores are not the current checkpoint's.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from predictor_shop import CUTOFF, make_shop

TINY = {"max_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "n_cutoffs": 4, "cutoff_stride_days": 7,
        "batch_size": 64, "epochs": 1, "warmup_steps": 2, "max_items": 100, "max_categories": 20,
        "item_hash_buckets": 4, "category_hash_buckets": 2, "val_fraction": 0.25, "device": "cpu",
        "horizons_days": [7, 30]}


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A home with a small shop and no checkpoint; SHOPSIGHT_PREDICTOR unset (the default name is under test)."""
    from tools.data.store import EventStore

    home = tmp_path / "home"
    monkeypatch.setenv("SHOPSIGHT_HOME", str(home))
    monkeypatch.delenv("SHOPSIGHT_PREDICTOR", raising=False)
    monkeypatch.delenv("SHOPSIGHT_MODELS_DIR", raising=False)
    monkeypatch.delenv("SHOPSIGHT_DB", raising=False)
    events = make_shop()
    events = events[events["ts"] <= CUTOFF].reset_index(drop=True)
    home.mkdir()
    with EventStore(home / "shop.duckdb") as store:
        store.import_frames("test-shop", events=events)
    for name, extra in (("tiny", {}), ("tiny2", {"d_model": 8})):  # tiny2: other weights, another version
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(dict(TINY, **extra)))
    return home


def _stored(home) -> pd.DataFrame:
    from tools.data.store import EventStore

    with EventStore(home / "shop.duckdb", read_only=True) as store:
        return store.scores_frame()


def _version(folder) -> str:
    return yaml.safe_load((folder / "config.yaml").read_text())["version"]


def test_a_new_home_trains_and_serves_a_checkpoint_named_shop(home, capsys):
    from assistant.cli import main
    from assistant.config import Settings

    assert Settings.from_env().predictor_dir == home / "models" / "predictor" / "shop"
    assert main(["predictor", "train", "--config", str(home.parent / "tiny.yaml"), "--quiet"]) == 0
    folder = home / "models" / "predictor" / "shop"
    assert _version(folder).startswith("shop-") and not (home / "models" / "predictor" / "demo").exists()
    assert main(["predictor", "score", "--quiet"]) == 0
    assert set(_stored(home)["model_version"]) == {_version(folder)}
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"shop: {_version(folder)}" in out and "<- in use" in out and "in use: shop (default)" in out


def test_an_older_home_keeps_using_its_demo_checkpoint_until_one_named_shop_is_trained(home, capsys):
    from assistant.cli import main
    from assistant.config import Settings

    # A home set up before the rename: its checkpoint is models/predictor/demo.
    assert main(["predictor", "train", "--config", str(home.parent / "tiny.yaml"), "--name", "demo", "--quiet"]) == 0
    demo = home / "models" / "predictor" / "demo"
    assert Settings.from_env().predictor == "demo"  # found, with SHOPSIGHT_PREDICTOR unset
    before = (demo / "model.safetensors").read_bytes()
    assert main(["predictor", "score", "--quiet"]) == 0  # used as is: no retrain
    assert (demo / "model.safetensors").read_bytes() == before
    assert set(_stored(home)["model_version"]) == {_version(demo)}
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"demo: {_version(demo)}" in out and "<- in use" in out
    assert "in use: demo (default)" in out and "predictor train --name shop" in out
    # Retraining without a name stays in demo (and says how to move); a finished demo is continued, not replaced.
    assert main(["predictor", "train", "--config", str(home.parent / "tiny.yaml"), "--quiet"]) == 0
    assert "this home's checkpoint is still named 'demo'" in capsys.readouterr().out
    assert not (home / "models" / "predictor" / "shop").exists()
    before = (demo / "model.safetensors").read_bytes()

    # The move is the user's: train one named shop, then every command uses it; demo stays on disk.
    assert main(["predictor", "train", "--config", str(home.parent / "tiny.yaml"), "--name", "shop", "--quiet"]) == 0
    assert Settings.from_env().predictor == "shop"
    assert main(["predictor", "score", "--quiet"]) == 0
    assert set(_stored(home)["model_version"]) == {_version(home / "models" / "predictor" / "shop")}
    assert (demo / "model.safetensors").read_bytes() == before
    capsys.readouterr()
    main(["models", "list"])
    out = capsys.readouterr().out
    assert "in use: shop (default)" in out and f"demo: {_version(demo)}" in out


def test_the_default_name_reads_the_models_folder_in_use_not_the_homes_default(tmp_path, monkeypatch):
    """SHOPSIGHT_MODELS_DIR (or an override) pointing at an older home's models keeps its `demo` checkpoint."""
    from assistant.config import Settings

    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path / "new-home"))
    monkeypatch.delenv("SHOPSIGHT_PREDICTOR", raising=False)
    older = tmp_path / "older-home" / "models"
    (older / "predictor" / "demo").mkdir(parents=True)
    monkeypatch.setenv("SHOPSIGHT_MODELS_DIR", str(older))
    assert Settings.from_env().predictor == "demo"
    monkeypatch.delenv("SHOPSIGHT_MODELS_DIR")
    assert Settings.from_env().predictor == "shop"
    assert Settings.from_env(models_dir=older).predictor == "demo"
    monkeypatch.setenv("SHOPSIGHT_PREDICTOR", "mine")
    assert Settings.from_env(models_dir=older).predictor == "mine"  # a name the user sets is kept


def test_score_replaces_a_replaced_checkpoints_scores_and_the_tools_say_whose_they_serve(home, capsys, monkeypatch):
    from assistant.cli import main
    from assistant.config import Settings
    from assistant.workspace import Workspace
    from tools.data.store import EventStore

    monkeypatch.setenv("SHOPSIGHT_PREDICTOR", "shop")  # this test is about scores, not the default name
    assert main(["predictor", "train", "--config", str(home.parent / "tiny.yaml"), "--quiet"]) == 0
    assert main(["predictor", "score", "--quiet"]) == 0
    first = _version(home / "models" / "predictor" / "shop")
    assert main(["predictor", "train", "--config", str(home.parent / "tiny2.yaml"), "--no-resume", "--quiet"]) == 0
    second = _version(home / "models" / "predictor" / "shop")
    assert second != first

    # Retrained, not rescored: the tools serve the first checkpoint's scores and say so.
    with EventStore(home / "shop.duckdb", read_only=True) as store:
        workspace = Workspace.open(Settings.from_env(), store=store)
        result = workspace.call_tool("at_risk_users", horizon_days=7)
    assert result["model_version"] == first
    assert first in result["scores_checkpoint_note"] and second in result["scores_checkpoint_note"]
    assert "shopsight predictor score" in result["scores_checkpoint_note"]
    capsys.readouterr()
    assert main(["predictor", "scores"]) == 0
    out = capsys.readouterr().out
    assert f"current checkpoint: {second}" in out and f"{first}:" in out and "<- served" in out
    assert "not the current one" in out

    assert main(["predictor", "score", "--quiet"]) == 0
    assert f"deleted the scores of earlier checkpoints, no longer served: {first}" in capsys.readouterr().out
    assert set(_stored(home)["model_version"]) == {second}  # none of the first's rows, at any cutoff
    with EventStore(home / "shop.duckdb", read_only=True) as store:
        result = Workspace.open(Settings.from_env(), store=store).call_tool("at_risk_users", horizon_days=7)
    assert result["model_version"] == second and "scores_checkpoint_note" not in result


def test_scores_of_a_removed_checkpoint_are_named_and_cleared(home, capsys, monkeypatch):
    from assistant.cli import main
    from assistant.config import Settings
    from assistant.workspace import Workspace
    from tools.data.store import EventStore

    monkeypatch.setenv("SHOPSIGHT_PREDICTOR", "shop")  # this test is about scores, not the default name
    assert main(["predictor", "train", "--config", str(home.parent / "tiny.yaml"), "--quiet"]) == 0
    assert main(["predictor", "score", "--quiet"]) == 0
    version = _version(home / "models" / "predictor" / "shop")
    shutil.rmtree(home / "models" / "predictor" / "shop")
    with EventStore(home / "shop.duckdb", read_only=True) as store:
        result = Workspace.open(Settings.from_env(), store=store).call_tool("at_risk_users", horizon_days=7)
    assert result["model_version"] == version
    assert "no predictor checkpoint is loaded" in result["scores_checkpoint_note"]
    assert "shopsight predictor scores --clear" in result["scores_checkpoint_note"]
    capsys.readouterr()
    assert main(["predictor", "scores"]) == 0
    out = capsys.readouterr().out
    assert "current checkpoint: none" in out and f"{version}:" in out and "<- served" in out

    rows = len(_stored(home))
    assert main(["predictor", "scores", "--clear"]) == 0
    assert f"deleted {rows:,} stored scores" in capsys.readouterr().out
    assert _stored(home).empty
    with EventStore(home / "shop.duckdb", read_only=True) as store:
        result = Workspace.open(Settings.from_env(), store=store).call_tool("at_risk_users", horizon_days=7)
    assert "no churn model is available" in result["error"]


def _rows(version: str, cutoff: str, p_churn: float, users=("u001", "u002")) -> pd.DataFrame:
    return pd.DataFrame({"user_id": list(users), "cutoff": pd.Timestamp(cutoff), "horizon_days": 7,
                         "p_churn": p_churn, "p_buy": 1 - p_churn, "p_cart": 0.1, "top_items": "i001",
                         "top_categories": "c0", "model_version": version})


def test_a_failed_replacement_leaves_every_stored_score_whole(home):
    import duckdb

    from tools.data.store import EventStore

    with EventStore(home / "shop.duckdb") as store:
        store.replace_scores(_rows("old-1", "2024-03-31", 0.2))
        broken = pd.concat([_rows("new-2", "2024-03-31", 0.7), _rows("new-2", "2024-03-24", 0.7)])
        broken.loc[broken.index[-1], "p_churn"] = None  # NOT NULL: the insert fails after the deletes ran
        with pytest.raises(duckdb.ConstraintException):  # the database refuses it, after our column check
            store.replace_scores(broken, drop_other_versions=True)
        kept = store.scores_frame()
    assert set(kept["model_version"]) == {"old-1"} and len(kept) == 2


def test_tools_never_mix_two_checkpoints_scores_of_one_cutoff(home):
    """A store written before `predictor score` dropped a replaced checkpoint's rows holds both at one cutoff."""
    from assistant.workspace import DeferredPart
    from tools.catalog.context import ToolContext
    from tools.catalog.reads import scores
    from tools.data.store import EventStore

    with EventStore(home / "shop.duckdb") as store:
        store.replace_scores(_rows("old-1", "2024-03-31", 0.9, users=("u001", "u002", "u003")))
        store.replace_scores(_rows("new-2", "2024-03-31", 0.1))
        current = DeferredPart(lambda: None, known={"version": "new-2", "horizons_days": (7, 30)})
        ctx = ToolContext(store=store, predictor=current, cutoff=CUTOFF, audit_path=home / "audit.jsonl")
        frame, source = scores(ctx, 7)
        assert source["model_version"] == "new-2" and "scores_checkpoint_note" not in source
        assert sorted(frame.index) == ["u001", "u002"] and set(frame["p_churn"]) == {0.1}
        # Without a current checkpoint: one checkpoint's rows (the one with more), named in the note.
        ctx = ToolContext(store=store, predictor=None, cutoff=CUTOFF, audit_path=home / "audit.jsonl")
        frame, source = scores(ctx, 7)
    assert source["model_version"] == "old-1" and set(frame["model_version"]) == {"old-1"}
    assert "old-1" in source["scores_checkpoint_note"]
