"""Training loop of the behavior Transformer: CPU, one GPU, or `accelerate launch` on many.

    train_predictor(events, cutoff, TrainConfig(...), out_dir) -> Predictor

Only events with `ts <= cutoff` are read. Examples come from rolling cutoffs
`c_k = cutoff - k * stride` (or from `rolling_start_days_before_end` days before the last event);
horizon H is labelled at c_k only when `c_k + H <= label_end`
(the last event at or before the cutoff), next-event targets likewise. A fixed share of users
(hashed, so the split is stable) is held out: their loss drives early stopping and their scores
at the latest labelled cutoff fit the calibration. AdamW, warm-up + cosine, gradient clipping,
seeded batches; `out_dir/last/` holds what `resume=True` needs to continue after a crash.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm

from tools.predictor import checkpoint as ckpt
from tools.predictor.churn_select import select_churn_models
from tools.predictor.data import (DAY, FEATURE_NAMES, EventArrays, Examples, PredictorError, build_vocab,
                                  collate, cutoff_seconds, length_batches, normalize_horizon, prepare_events, to_seconds, training_examples,
                                  validate_events)
from tools.predictor.model import BehaviorTransformer, ModelConfig, cosine_lr

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved resolved in config.yaml beside the weights."""

    name: str = "predictor"
    horizons_days: tuple[int, ...] = (7, 30)
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.1
    attention_dropout: float | None = None  # None = dropout (model.ModelConfig.attention_dropout)
    max_items: int = 20_000
    max_categories: int = 2_000
    item_hash_buckets: int = 64
    category_hash_buckets: int = 16
    n_cutoffs: int = 8  # rolling cutoffs for training examples
    cutoff_stride_days: float = 7.0
    # 0: the newest rolling cutoff is the cutoff itself (its examples carry next-event targets).
    # D > 0: it lies D days before the last event, so the freshest D-day window is labelled; with
    # D = the shortest horizon and a stride dividing the horizons' differences, every horizon's
    # freshest window is (CDNOW: 30 and 15 -> windows ending at the last event for 30 and 90 days).
    rolling_start_days_before_end: float = 0.0
    val_fraction: float = 0.1
    max_train_examples: int = 400_000  # subsample beyond this (seeded) to bound CPU time
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.01
    epochs: int = 10
    warmup_steps: int = 100
    patience: int = 2
    grad_clip: float = 1.0
    seed: int = 0
    item_loss_positions: int = 8
    wide: bool = False  # linear features -> hazards path beside the Transformer (wide & deep)
    copy_prior: bool = True  # repeat boost starts at 0.5 log(#ids) (model.ModelConfig.copy_prior)
    loss_weights: dict = field(default_factory=lambda: {"buy": 1.0, "cart": 0.5, "next_item": 1.0,
                                                        "next_category": 0.5, "next_behavior": 0.2})
    calibration: str = "platt"  # platt | isotonic | none
    calibrate_on: str = "val"  # val (held-out users) | all (+ training users) | pooled (all labelled cutoffs)
    device: str = "auto"  # auto | cpu | cuda
    # torch CPU threads. 1 by default: this model's matrices are too small to split, and on a
    # shared or busy machine extra threads spin-wait (measured 4x slower per matmul with 2 threads).
    num_threads: int = 1

    def __post_init__(self) -> None:
        if any(not float(h) > 0 for h in self.horizons_days):
            raise ValueError(f"horizons_days={self.horizons_days}: give positive days in increasing order, e.g. [7, 30]")
        self.horizons_days = tuple(normalize_horizon(h) for h in self.horizons_days)
        if not self.horizons_days or any(h <= 0 for h in self.horizons_days) or \
                list(self.horizons_days) != sorted(set(self.horizons_days)):
            raise ValueError(f"horizons_days={self.horizons_days}: give positive days in increasing order, e.g. [7, 30]")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.rolling_start_days_before_end < 0 or self.cutoff_stride_days <= 0:
            raise ValueError(f"rolling_start_days_before_end={self.rolling_start_days_before_end}, cutoff_stride_days="
                             f"{self.cutoff_stride_days}: give days >= 0 and a stride > 0, e.g. 30 and 15")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction={self.val_fraction}: choose a share in (0, 0.5), e.g. 0.1")
        if self.calibration not in ("platt", "isotonic", "none"):
            raise ValueError(f"calibration={self.calibration!r}: choose platt, isotonic or none")
        if self.calibrate_on not in ("val", "all", "pooled"):
            raise ValueError(f"calibrate_on={self.calibrate_on!r}: choose val, all or pooled")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r}: choose auto, cpu or cuda")
        unknown = set(self.loss_weights) - {"buy", "cart", "next_item", "next_category", "next_behavior"}
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs={self.epochs}, batch_size={self.batch_size}: both must be >= 1")
        if unknown:
            raise ValueError(f"loss_weights has unknown keys {sorted(unknown)}")

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        """Fields from a mapping; a recipe's `run:` section (read by finetune.predictor) is ignored."""
        raw = {k: v for k, v in raw.items() if k != "run"}
        names = {f.name for f in fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**raw)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["horizons_days"] = list(self.horizons_days)
        return out


def _val_users(user_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    hashed = pd.util.hash_array(np.asarray(user_ids, dtype=object), hash_key=f"shopsight{seed:07d}"[:16])
    return (hashed % np.uint64(10_000)) < np.uint64(int(fraction * 10_000))


def _to_tensors(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in batch.items():
        arr = np.asarray(v)
        out[k] = torch.from_numpy(arr.astype(np.float32) if arr.dtype.kind == "f" else arr.astype(np.int64)).to(device)
    return out


def device_name_hint(cfg: TrainConfig) -> str:
    return "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"


def _resolve_device(cfg: TrainConfig) -> str:
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise PredictorError("device=cuda but torch sees no CUDA device; use device: cpu or auto")
    return cfg.device


def _label_end(events: pd.DataFrame, cutoff: datetime) -> tuple[pd.DataFrame, int, int]:
    cutoff_s = cutoff_seconds(cutoff)
    ts = to_seconds(events["ts"])
    if len(ts) == 0 or ts.min() > cutoff_s:
        first = events["ts"].min() if len(ts) else "no events at all"
        raise PredictorError(f"cutoff {cutoff} is before any data (first event: {first}); choose a later cutoff")
    past = events[ts <= cutoff_s]
    label_end = int(ts[ts <= cutoff_s].max())
    if cutoff_s - label_end > DAY:
        warnings.warn(f"cutoff {cutoff} is after all data (last event {past['ts'].max()}); labels end at the "
                      "last event so that missing data is not read as churn", stacklevel=3)
    return past, cutoff_s, label_end


def rolling_cutoffs(first_s: int, cutoff_s: int, label_end_s: int, cfg: TrainConfig) -> list[int]:
    """The training cutoffs c_k (unix seconds), newest first, none before the first event."""
    stride = int(cfg.cutoff_stride_days * DAY)
    newest = cutoff_s if cfg.rolling_start_days_before_end <= 0 else \
        label_end_s - int(cfg.rolling_start_days_before_end * DAY)
    return [newest - k * stride for k in range(cfg.n_cutoffs) if newest - k * stride >= first_s]


def unlabelled_horizons(first, cutoff, label_end, cfg: TrainConfig) -> list:
    """The horizons of `cfg` that no training cutoff can label (`c_k + H <= label_end`).

    Training would still run (next-event targets need no window), but the churn / buy / cart heads
    of such a horizon never see a label: their probabilities are the untrained prior (about 0.5),
    not a prediction. A 7-day horizon on 2 hours of events is the case this guards.
    """
    first_s, cutoff_s, label_end_s = (cutoff_seconds(t) for t in (first, cutoff, label_end))
    cutoffs = rolling_cutoffs(first_s, cutoff_s, label_end_s, cfg)
    return [h for h in cfg.horizons_days if not any(c + round(float(h) * DAY) <= label_end_s for c in cutoffs)]


def build_datasets(events: pd.DataFrame, cutoff: datetime, cfg: TrainConfig):
    """Vocab, arrays, train/validation examples, all from events at or before `cutoff`."""
    past, cutoff_s, label_end = _label_end(validate_events(events), cutoff)
    vocab = build_vocab(past, cfg.max_items, cfg.max_categories, cfg.item_hash_buckets, cfg.category_hash_buckets)
    arrays = prepare_events(past, vocab)
    cutoffs = rolling_cutoffs(int(arrays.ts.min()), cutoff_s, label_end, cfg)
    ex = training_examples(arrays, label_end, cutoffs, cfg.horizons_days)
    if len(vocab.items) < 2:  # one item (CDNOW): examples without horizon labels teach nothing
        ex = ex.subset(np.flatnonzero(ex.mask.sum(1) > 0))
    if len(ex) == 0:
        raise PredictorError(f"no training example has a labelled horizon: the data before {cutoff} spans less than "
                             f"the shortest horizon ({cfg.horizons_days[0]} days); use a later cutoff or shorter horizons")
    is_val = _val_users(arrays.user_ids, cfg.val_fraction, cfg.seed)[ex.user_rows]
    train, val = ex.subset(np.flatnonzero(~is_val)), ex.subset(np.flatnonzero(is_val))
    if len(train) > cfg.max_train_examples:
        keep = np.random.default_rng(cfg.seed).choice(len(train), cfg.max_train_examples, replace=False)
        train = train.subset(np.sort(keep))
    return vocab, arrays, train, val, cutoff_s, label_end


def _evaluate(model: BehaviorTransformer, arrays: EventArrays, ex: Examples, cfg: TrainConfig, label_end: int,
              device: torch.device) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for idx in length_batches(ex.ends - arrays.offsets[ex.user_rows], 1024, None):
            b = _to_tensors(collate(arrays, ex, idx, cfg.max_len, label_end), device)
            total += model(b, cfg.loss_weights)["loss"].item() * len(idx)
            n += len(idx)
    model.train()
    return total / max(n, 1)


def train_predictor(events: pd.DataFrame, cutoff: datetime, config: TrainConfig, out_dir: Path,
                    progress: bool = True, resume: bool = True):
    """Train, early-stop, calibrate and save a predictor; return it loaded from `out_dir`.

    Args:
        events: canonical events (any span: only `ts <= cutoff` is read).
        cutoff: "now" for training; labels come from windows that end at or before it.
        config: the recipe (`TrainConfig`).
        out_dir: checkpoint folder (model.safetensors, config.yaml, vocab.json, calibration.json).
        progress: show tqdm bars.
        resume: continue from `out_dir/last/` when it holds a run of the same config and data.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs  # here: scoring must not pay for it

    from tools.predictor.rerank import fit_ranking
    from tools.predictor.score import Predictor, fit_calibration, predict_examples

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    torch.manual_seed(config.seed)
    if config.num_threads and device_name_hint(config) == "cpu":
        torch.set_num_threads(config.num_threads)
    device_name = _resolve_device(config)
    # Heads with loss weight 0 (next item on CDNOW) get no gradient: DDP must be told.
    acc = Accelerator(cpu=device_name == "cpu",
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    device = acc.device
    vocab, arrays, train, val, cutoff_s, label_end = build_datasets(events, cutoff, config)
    mcfg = ModelConfig(n_items=vocab.n_items, n_categories=vocab.n_categories, n_known_items=len(vocab.items),
                       n_known_categories=len(vocab.categories), n_features=len(FEATURE_NAMES),
                       n_horizons=len(config.horizons_days), d_model=config.d_model, n_layers=config.n_layers,
                       n_heads=config.n_heads, dropout=config.dropout, attention_dropout=config.attention_dropout,
                       max_len=config.max_len,
                       item_loss_positions=config.item_loss_positions, wide=config.wide,
                       copy_prior=config.copy_prior)
    model = BehaviorTransformer(mcfg)
    model.set_feature_stats(torch.from_numpy(train.features.mean(0)), torch.from_numpy(train.features.std(0)))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    model, opt = acc.prepare(model, opt)
    raw_model: BehaviorTransformer = acc.unwrap_model(model)

    lengths = train.ends - arrays.offsets[train.user_rows]
    steps_per_epoch = -(-len(train) // config.batch_size) // acc.num_processes
    total_steps = steps_per_epoch * config.epochs
    # The feature names too: weights saved by code with other features must not be resumed.
    run_id = {"train": config.to_dict(), "dataset": vocab.dataset, "cutoff": str(cutoff),
              "feature_names": list(FEATURE_NAMES)}
    state = {"epoch": 0, "step": 0, "best_val": float("inf"), "bad_epochs": 0, "history": [], "run": run_id}
    last_dir = out_dir / "last"
    if resume and (last_dir / "trainer_state.json").exists():
        saved = json.loads((last_dir / "trainer_state.json").read_text())
        if saved.get("run") != json.loads(json.dumps(run_id)):
            raise PredictorError(f"{last_dir}: holds a run with another config or dataset; pass resume=False "
                                 "(--no-resume) to start over, or choose another out_dir")
        raw_model.load_state_dict(ckpt.load_weights(last_dir / "model.safetensors"))
        opt.load_state_dict(torch.load(last_dir / "optimizer.pt", weights_only=True))
        torch.set_rng_state(torch.load(last_dir / "rng.pt", weights_only=True))
        state = saved
        log.info("resuming from %s at epoch %d", last_dir, state["epoch"])

    seen = 0
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.patience:
        epoch = state["epoch"]
        batches = length_batches(lengths, config.batch_size, np.random.default_rng(config.seed + epoch))
        batches = batches[acc.process_index::acc.num_processes][:steps_per_epoch]  # shard, equal counts
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not (progress and acc.is_main_process),
                   leave=False)
        for idx in bar:
            lr = cosine_lr(state["step"], total_steps, config.warmup_steps, config.lr)
            for group in opt.param_groups:
                group["lr"] = lr
            b = _to_tensors(collate(arrays, train, idx, config.max_len, label_end), device)
            losses = model(b, config.loss_weights)
            opt.zero_grad(set_to_none=True)
            acc.backward(losses["loss"])
            if config.grad_clip:
                acc.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            state["step"] += 1
            seen += len(idx)
            if state["step"] % 20 == 0:  # .item() is a device sync point: not every step
                bar.set_postfix(loss=f"{losses['loss'].item():.4f}", lr=f"{lr:.1e}")
        val_loss = _evaluate(raw_model, arrays, val, config, label_end, device)
        improved = val_loss < state["best_val"] - 1e-5
        state.update(epoch=epoch + 1, best_val=min(val_loss, state["best_val"]),
                     bad_epochs=0 if improved else state["bad_epochs"] + 1)
        state["history"].append({"epoch": epoch + 1, "val_loss": round(val_loss, 6), "lr": lr})
        if progress and acc.is_main_process:
            tqdm.write(f"epoch {epoch + 1}: val loss {val_loss:.5f}{' (best)' if improved else ''}")
        if acc.is_main_process:
            if improved:
                ckpt.save_weights(out_dir / "best.safetensors", raw_model)
            ckpt.save_weights(last_dir / "model.safetensors", raw_model)
            torch.save(opt.state_dict(), last_dir / "optimizer.pt")
            torch.save(torch.get_rng_state(), last_dir / "rng.pt")
            ckpt.atomic_write(last_dir / "trainer_state.json", json.dumps(state, indent=1))
        acc.wait_for_everyone()

    train_s = time.perf_counter() - t0
    raw_model.load_state_dict(ckpt.load_weights(out_dir / "best.safetensors"))
    raw_model.eval()
    calibration = fit_calibration(raw_model, arrays, val, config, label_end, device, train=train)
    t_churn = time.perf_counter()
    val_logits = predict_examples(raw_model, arrays, val, config.max_len, device, top_k=0)["buy_logits"]
    churn, calibration["churn_baselines"] = select_churn_models(
        _past_events(events, cutoff_s), pd.Timestamp(cutoff_s, unit="s").to_pydatetime(),
        arrays.user_ids[val.user_rows], val.cutoffs, val.buy, val.mask, val_logits, config.horizons_days)
    churn["seconds"] = round(time.perf_counter() - t_churn, 1)
    t_rank = time.perf_counter()
    ranking = fit_ranking(
        lambda a, ex, k: predict_examples(raw_model, a, ex, config.max_len, device, top_k=k), arrays, vocab,
        config.horizons_days, label_end, _val_users(arrays.user_ids, config.val_fraction, config.seed))
    ranking["seconds"] = round(time.perf_counter() - t_rank, 1)
    meta = {
        "name": config.name, "created_at": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds"),
        "dataset": vocab.dataset, "cutoff": str(cutoff), "label_end": str(pd.Timestamp(label_end, unit="s")),
        "train": config.to_dict(), "feature_names": list(FEATURE_NAMES),
        "feature_mean": raw_model.feat_mean.tolist(), "feature_std": raw_model.feat_std.tolist(),
        "data": {"users": int(arrays.n_users), "events": int(len(arrays.ts)), "train_examples": len(train),
                 "val_examples": len(val), "known_items": len(vocab.items), "known_categories": len(vocab.categories)},
        "training": {"epochs_run": state["epoch"], "best_val_loss": state["best_val"], "history": state["history"],
                     "seconds": round(train_s, 1), "examples_per_s": round(seen / max(train_s, 1e-9), 1),
                     "device": str(device), "processes": acc.num_processes,
                     "parameters": raw_model.num_parameters()},
        "ranking": ranking,
        "churn": churn,  # which churn model ships per horizon, and why (tools/predictor/churn_select.py)
    }
    if config.calibrate_on == "pooled":  # pooled or drift-aware map per horizon, and why (calibration.py)
        meta["calibration"] = {"horizons": [(v or {}).get("buy_drift") for v in calibration["validation"]]}
    if acc.is_main_process:
        ckpt.save_checkpoint(out_dir, raw_model, vocab, calibration, meta)
    acc.wait_for_everyone()
    return Predictor.load(out_dir, device=str(device))


def _past_events(events: pd.DataFrame, cutoff_s: int) -> pd.DataFrame:
    events = validate_events(events)
    return events[to_seconds(events["ts"]) <= cutoff_s].reset_index(drop=True)


def load_config_yaml(path: Path) -> dict:
    """Read a YAML recipe; errors name the file."""
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PredictorError(f"{path}: cannot read the YAML config ({exc})") from exc
