"""Predictor checkpoints: model.safetensors + config.yaml + vocab.json + calibration.json.

config.yaml is the resolved training and model config plus the sha256 of every other file,
written last: a folder whose files do not match it (truncated, bit-flipped, swapped in from
another run) is refused with a message that says what to do. Nothing is encoded in file names.
config.yaml also records the per-user feature names the model was trained on: a checkpoint made
by code that computed other features is *stale* and is refused before any weights are read
(`stale_reason`), so a change of `FEATURE_NAMES` never surfaces as a shape error deep in torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tools.paths import file_sha256 as sha256_file
from tools.predictor.data import FEATURE_NAMES, PredictorError, Vocab
from tools.predictor.model import BehaviorTransformer, ModelConfig

FILES = ("model.safetensors", "vocab.json", "calibration.json")
RETRAIN_HINT = "retrain with `shopsight predictor train` (or `python -m finetune.predictor --config ...`)"


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temp file in the same folder, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def save_weights(path: Path, model: torch.nn.Module) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp)
    os.replace(tmp, path)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise PredictorError(f"{path}: the checkpoint file is corrupted or not safetensors ({exc}); "
                             f"{RETRAIN_HINT}") from exc


def save_checkpoint(folder: Path, model: BehaviorTransformer, vocab: Vocab, calibration: dict,
                    meta: dict) -> dict:
    """Write the four files; return the config dict written to config.yaml."""
    folder = Path(folder)
    save_weights(folder / "model.safetensors", model)
    atomic_write(folder / "vocab.json", vocab.to_json())
    atomic_write(folder / "calibration.json", json.dumps(calibration, indent=1))
    files = {name: sha256_file(folder / name) for name in FILES}
    config = dict(meta, model=model.cfg.to_dict(), files=files,
                  version=f"{meta.get('name', 'predictor')}-{files['model.safetensors'][:12]}")
    atomic_write(folder / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    return config


def stale_reason(config: dict) -> str | None:
    """Why a checkpoint's recorded inputs differ from the features this code computes; None when they match."""
    trained = config.get("feature_names")
    n_trained = (config.get("model") or {}).get("n_features")
    if trained is None:  # older configs: only the count is known
        if n_trained is None or int(n_trained) == len(FEATURE_NAMES):
            return None
        return f"it was trained on {n_trained} per-user features, this code computes {len(FEATURE_NAMES)}"
    if list(trained) == list(FEATURE_NAMES):
        return None
    new = [f for f in FEATURE_NAMES if f not in trained]
    gone = [f for f in trained if f not in FEATURE_NAMES]
    detail = ", ".join(part for part in (f"new: {new}" if new else "", f"no longer computed: {gone}" if gone else "")
                       if part) or "same names, another order"
    return (f"it was trained on {len(trained)} per-user features, this code computes {len(FEATURE_NAMES)} "
            f"({detail})")


def checkpoint_problem(folder: Path) -> str | None:
    """Cheap check (config.yaml only, no weights): why `folder` cannot serve predictions, or None.

    For callers that decide whether to retrain (`shopsight demo`); `load_checkpoint` still
    verifies every file.
    """
    config_path = Path(folder) / "config.yaml"
    if not config_path.is_file():
        return f"{folder}: no predictor checkpoint here (config.yaml missing)"
    try:
        config = yaml.safe_load(config_path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        return f"{config_path}: unreadable checkpoint config ({exc})"
    if not isinstance(config, dict):
        return f"{config_path}: unreadable checkpoint config (not a mapping)"
    reason = stale_reason(config)
    return f"{config_path}: stale checkpoint: {reason}" if reason else None


def load_checkpoint(folder: Path) -> tuple[BehaviorTransformer, Vocab, dict, dict]:
    """Load and verify a checkpoint folder -> (model in eval mode, vocab, calibration, config)."""
    folder = Path(folder)
    config_path = folder / "config.yaml"
    if not config_path.exists():
        raise PredictorError(f"{folder}: no predictor checkpoint here (config.yaml missing); {RETRAIN_HINT}")
    try:
        config = yaml.safe_load(config_path.read_text())
        files = config["files"]
        model_cfg = ModelConfig(**config["model"])
    except (yaml.YAMLError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise PredictorError(f"{config_path}: unreadable checkpoint config ({exc}); {RETRAIN_HINT}") from exc
    reason = stale_reason(config)
    if reason:
        raise PredictorError(f"{config_path}: stale checkpoint: {reason}; {RETRAIN_HINT} "
                             "(add --no-resume so the old run's last/ folder is not continued)")
    for name in FILES:
        path = folder / name
        if not path.exists():
            raise PredictorError(f"{path}: missing from the checkpoint; {RETRAIN_HINT}")
        if sha256_file(path) != files.get(name):
            raise PredictorError(f"{path}: corrupted or from another run (sha256 differs from config.yaml); "
                                 f"{RETRAIN_HINT}")
    try:
        vocab = Vocab.from_json((folder / "vocab.json").read_text())
        calibration = json.loads((folder / "calibration.json").read_text())
    except (ValueError, KeyError) as exc:
        raise PredictorError(f"{folder}: unreadable vocab.json or calibration.json ({exc}); {RETRAIN_HINT}") from exc
    if (vocab.n_items, vocab.n_categories) != (model_cfg.n_items, model_cfg.n_categories):
        raise PredictorError(f"{folder / 'vocab.json'}: vocabulary mismatch ({vocab.n_items} items, "
                             f"{vocab.n_categories} categories) with the model ({model_cfg.n_items}, "
                             f"{model_cfg.n_categories}); the files come from different datasets; {RETRAIN_HINT}")
    model = BehaviorTransformer(model_cfg)
    state = load_weights(folder / "model.safetensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise PredictorError(f"{folder / 'model.safetensors'}: weights do not fit config.yaml ({exc}); "
                             f"{RETRAIN_HINT}") from exc
    model.eval()
    return model, vocab, calibration, config
