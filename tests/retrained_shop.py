"""A home whose predictor was retrained after its scores were written (tests of the scores note in the app).

`make_home` imports a small shop (predictor_shop.py) and writes two tiny training configs; `train` runs the
real `shopsight predictor train` (and `predictor score` when asked) and returns the checkpoint's version.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from predictor_shop import CUTOFF, make_shop

TINY = {"max_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "n_cutoffs": 4, "cutoff_stride_days": 7,
        "batch_size": 64, "epochs": 1, "warmup_steps": 2, "max_items": 100, "max_categories": 20,
        "item_hash_buckets": 4, "category_hash_buckets": 2, "val_fraction": 0.25, "device": "cpu",
        "horizons_days": [7, 30]}


def make_home(tmp_path: Path, monkeypatch) -> Path:
    """SHOPSIGHT_HOME with a shop and no checkpoint; the predictor is named `shop`; configs tiny and tiny2."""
    from tools.data.store import EventStore

    home = tmp_path / "home"
    monkeypatch.setenv("SHOPSIGHT_HOME", str(home))
    monkeypatch.setenv("SHOPSIGHT_PREDICTOR", "shop")
    for name in ("SHOPSIGHT_MODELS_DIR", "SHOPSIGHT_DB", "SHOPSIGHT_CHROMA_PATH"):
        monkeypatch.delenv(name, raising=False)
    events = make_shop()
    home.mkdir()
    with EventStore(home / "shop.duckdb") as store:
        store.import_frames("test-shop", events=events[events["ts"] <= CUTOFF].reset_index(drop=True))
    for name, extra in (("tiny", {}), ("tiny2", {"d_model": 8})):  # tiny2: other weights, another version
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(dict(TINY, **extra)))
    return home


def train(home: Path, config: str, score: bool) -> str:
    """Train the `shop` checkpoint from a fresh start with config `tiny` or `tiny2`; its version."""
    from assistant.cli import main

    assert main(["predictor", "train", "--config", str(home.parent / f"{config}.yaml"), "--no-resume", "--quiet"]) == 0
    if score:
        assert main(["predictor", "score", "--quiet"]) == 0
    return yaml.safe_load((home / "models" / "predictor" / "shop" / "config.yaml").read_text())["version"]
