"""Calibration and batch scoring: a trained checkpoint -> per-user probabilities and rankings.

    predictor = Predictor.load(folder)
    predictor.score_users(events, cutoff)      # user_id, horizon_days, p_churn, p_buy, p_cart, top_items, ...
    score_store(store, predictor, cutoff)      # the same, written to the store's `scores` table

Calibration (Platt = temperature + bias on the logit, or isotonic) is fitted per horizon on the
held-out users at the latest cutoff whose horizon window lies inside the training past, or
(calibrate_on: pooled) on every labelled rolling cutoff, then checked out of time against maps that
follow a drifting base rate (tools/predictor/calibration.py).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from tools.predictor.calibration import apply_calibration, choose_pooled_map, fit_platt
from tools.predictor.candidates import N_SOFTMAX, RankStats, ranking_names
from tools.predictor.checkpoint import load_checkpoint
from tools.predictor.churn_select import TRANSFORMER, apply_churn_choice
from tools.predictor.data import (BEHAVIORS, N_RESERVED, EventArrays, Examples, PredictorError, collate,
                                  cutoff_seconds, examples_at, length_batches, prepare_events, to_seconds,
                                  validate_events)
from tools.predictor.rerank import FIELDS, rank_with_blend

log = logging.getLogger(__name__)
MIN_KNOWN_ITEMS = 0.05  # below this share of known item ids, the events come from another dataset
MIN_DISTINCT_FOR_CHECK = 20


# ---- calibration --------------------------------------------------------------------------------
def _isotonic(z: np.ndarray, y: np.ndarray) -> dict:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4).fit(z, y)
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def fit_calibration(model, arrays: EventArrays, val: Examples, cfg, label_end: int, device,
                    train: Examples | None = None) -> dict:
    """Per horizon: fit the map on labelled examples inside the past; report their AUC/ECE.

    `cfg.calibrate_on` = "val": the held-out users at the latest labelled cutoff; "all": training
    users too (10x more users, so less noise in the map; fine for a model small next to its data,
    as on CDNOW); "pooled": every labelled example at every rolling cutoff (held-out and training
    users). A map fitted on one cutoff also learns that window's base rate, which drifts with the
    season (measured on CDNOW: mean test ECE 0.0174/0.0126 at 30/90 days with the latest cutoff's
    map, 0.0113/0.0103 with the pooled one); the model is trained on the pooled cutoffs, so the
    map is fitted on the same mixture of windows. With Platt, a map that follows the windows' drift
    (a time trend, or recency weights) replaces the pooled one when it is better calibrated out of
    time on the newest windows, judged as far ahead as it is used (`calibration.choose_pooled_map`;
    the record in `<key>_drift`).
    """
    from sklearn.metrics import roc_auc_score

    if cfg.calibrate_on in ("all", "pooled") and train is not None:
        pick = lambda ex: np.flatnonzero(ex.mask.sum(1) > 0)  # noqa: E731  (only labelled examples)
        a, b = val.subset(pick(val)), train.subset(pick(train))
        val = Examples(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in
                         ("user_rows", "ends", "cutoffs", "features", "buy", "cart", "mask")))
    out = {"method": cfg.calibration, "fitted_on": cfg.calibrate_on, "horizons_days": list(cfg.horizons_days),
           "buy": [], "cart": [], "validation": []}
    raw = predict_examples(model, arrays, val, cfg.max_len, device, top_k=0)
    for j, h in enumerate(cfg.horizons_days):
        labelled = val.mask[:, j] > 0
        if not labelled.any():
            out["buy"].append(None), out["cart"].append(None), out["validation"].append(None)
            continue
        latest = labelled & (val.cutoffs == val.cutoffs[labelled].max())
        if cfg.calibrate_on == "pooled":
            latest = labelled
        entry = {"cutoff": str(pd.Timestamp(int(val.cutoffs[latest].max()), unit="s")), "n": int(latest.sum())}
        if cfg.calibrate_on == "pooled":
            entry["first_cutoff"] = str(pd.Timestamp(int(val.cutoffs[latest].min()), unit="s"))
        for key in ("buy", "cart"):
            z, y = raw[f"{key}_logits"][latest, j].astype(float), getattr(val, key)[latest, j].astype(float)
            fitted = None
            if cfg.calibration != "none" and 0 < y.sum() < len(y):
                fit = fit_platt if cfg.calibration == "platt" else _isotonic
                if _beats_raw(z, y, fit):
                    fitted = fit(z, y)
                entry[f"{key}_calibrated"] = fitted is not None
                if cfg.calibrate_on == "pooled" and cfg.calibration == "platt":
                    fitted, entry[f"{key}_drift"] = choose_pooled_map(z, y, val.cutoffs[latest], label_end, fitted)
            out[key].append(fitted)
            p = apply_calibration(z, fitted)
            if key == "buy" and 0 < y.sum() < len(y):
                entry.update(churn_auc=round(float(roc_auc_score(1 - y, 1 - p)), 4),
                             churn_base_rate=round(float(1 - y.mean()), 4),
                             ece_in_sample=round(_ece(1 - y, 1 - p), 4))
        out["validation"].append(entry)
    return out


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _beats_raw(z: np.ndarray, y: np.ndarray, fit) -> bool:
    """2-fold check on the validation users: does the calibration map beat the raw model out of sample?

    The model is trained with log loss over many cutoffs and is often calibrated already; a map
    fitted on a few thousand validation users can add more noise than it removes (measured on
    CDNOW: ECE 0.0125 with the map vs 0.0033 without), so it is kept only when it helps.
    """
    fold = np.arange(len(y)) % 2 == 0
    if min(y[fold].sum(), y[~fold].sum(), (1 - y[fold]).sum(), (1 - y[~fold]).sum()) < 5:
        return False
    cal = raw = 0.0
    for a, b in ((fold, ~fold), (~fold, fold)):
        cal += _log_loss(y[b], apply_calibration(z[b], fit(z[a], y[a])))
        raw += _log_loss(y[b], apply_calibration(z[b], None))
    return cal < raw


def _ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(y[idx == b].mean() - p[idx == b].mean()) * (idx == b).mean()
                     for b in range(bins) if (idx == b).any()))


# ---- batched forward ------------------------------------------------------------------------------
def _to_tensors(batch: dict, device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.asarray(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f" else np.int64)).to(device)
            for k, v in batch.items()}


def predict_examples(model, arrays: EventArrays, ex: Examples, max_len: int, device, top_k: int = 10,
                     batch_size: int = 1024, progress: bool = False) -> dict[str, np.ndarray]:
    """Run `model.predict` over all examples in length-sorted batches; outputs in example order."""
    model.eval()
    lengths = np.minimum(ex.ends - arrays.offsets[ex.user_rows], max_len)
    outs: dict[str, np.ndarray] = {}
    batches = length_batches(lengths, batch_size, None)
    with torch.inference_mode():
        for idx in tqdm(batches, desc="scoring", unit="batch", disable=not progress, leave=False):
            pred = model.predict(_to_tensors(collate(arrays, ex, idx, max_len), device), top_k=top_k)
            for k, v in pred.items():
                v = v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy()
                if k not in outs:
                    outs[k] = np.zeros((len(ex),) + v.shape[1:], dtype=v.dtype)
                outs[k][idx] = v
    return outs


# ---- the predictor -------------------------------------------------------------------------------
class Predictor:
    """A trained, calibrated checkpoint that scores users as of any cutoff."""

    def __init__(self, model, vocab, calibration: dict, config: dict, folder: Path, device: str = "cpu"):
        self.model, self.vocab, self.calibration, self.config = model.to(device), vocab, calibration, config
        self.folder, self.device = Path(folder), torch.device(device)
        self.version: str = config["version"]
        self.horizons_days: tuple[int, ...] = tuple(config["train"]["horizons_days"])
        self.max_len: int = int(config["model"]["max_len"])
        self.last_info: dict = {}
        # The candidate blend chosen on the training's validation cutoff (rerank.py); None = softmax only.
        self.ranking: dict | None = config.get("ranking")
        self._item_ids = np.array(vocab.items, dtype=object)
        self._cat_ids = np.array(vocab.categories, dtype=object)

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "Predictor":
        """Load and verify a checkpoint folder (refuses corrupted or mismatched files)."""
        model, vocab, calibration, config = load_checkpoint(Path(folder))
        return cls(model, vocab, calibration, config, folder, device)

    # -- input checks shared by score_users, user_vectors and explain_user
    def prepare(self, events: pd.DataFrame, cutoff: datetime, users=None) -> tuple[EventArrays, Examples, dict]:
        """Arrays and one example per requested user as of `cutoff`, with clear errors for bad input."""
        events = validate_events(events)
        cutoff_s = cutoff_seconds(cutoff)
        ts = to_seconds(events["ts"])
        if len(ts) == 0 or ts.min() > cutoff_s:
            first = events["ts"].min() if len(ts) else "none"
            raise PredictorError(f"cutoff {cutoff} is before any data (first event: {first}); choose a later cutoff")
        past = events[ts <= cutoff_s]
        # Judged only on enough distinct items: one user's few (maybe new) items prove nothing.
        if (self.vocab.items and past["item_id"].nunique() >= MIN_DISTINCT_FOR_CHECK
                and self.vocab.known_fraction(past["item_id"]) < MIN_KNOWN_ITEMS):
            raise PredictorError(
                f"vocabulary mismatch: checkpoint {self.folder} ({self.version}, trained on dataset "
                f"{self.vocab.dataset!r}) knows under {MIN_KNOWN_ITEMS:.0%} of these events' item ids; it belongs to "
                "another dataset. Train one on this data with `shopsight predictor train`")
        if users is not None:
            users = [str(u) for u in ([users] if isinstance(users, str) else users)]
            present = set(pd.unique(past["user_id"].astype(str)))
            unknown = [u for u in users if u not in present]
            if unknown:
                raise PredictorError(
                    f"unknown user id(s) {unknown[:5]}{' ...' if len(unknown) > 5 else ''}: no events at or before "
                    f"{cutoff}. List valid ids with EventStore.active_users(since, until) or `shopsight data info`")
            past = past[past["user_id"].astype(str).isin(set(users))]
        arrays = prepare_events(past, self.vocab)
        ex = examples_at(arrays, cutoff_s)
        n_events = ex.ends - arrays.offsets[ex.user_rows]
        info = {"cutoff": str(cutoff), "users": len(ex), "truncated_users": int((n_events > self.max_len).sum()),
                "max_len": self.max_len, "longest_history": int(n_events.max()) if len(ex) else 0,
                "after_all_data": bool(cutoff_s - int(ts.max()) > 86_400)}
        if info["truncated_users"]:
            log.info("%d user(s) have more than %d events before %s: the model reads the most recent %d "
                        "(RFM features still count the whole history)", info["truncated_users"], self.max_len,
                        cutoff, self.max_len)
        self.last_info = info
        return arrays, ex, info

    def predict_raw(self, arrays: EventArrays, ex: Examples, top_k: int = 10, progress: bool = False) -> dict:
        """Model outputs with calibrated, horizon-monotone `p_buy` / `p_cart` (n, H)."""
        raw = predict_examples(self.model, arrays, ex, self.max_len, self.device, top_k=top_k, progress=progress)
        for key in ("buy", "cart"):
            cols = [apply_calibration(raw[f"{key}_logits"][:, j].astype(float), self.calibration[key][j])
                    for j in range(len(self.horizons_days))]
            raw[f"p_{key}"] = np.maximum.accumulate(np.stack(cols, axis=1), axis=1)  # P(within 7d) <= P(30d)
        return raw

    def score_users(self, events: pd.DataFrame, cutoff: datetime, users=None, top_k: int = 10,
                    progress: bool = False) -> pd.DataFrame:
        """Scores for every user with events at or before `cutoff` (or the given `users`).

        Returns one row per user and horizon: user_id, horizon_days, p_churn, p_buy, p_cart,
        (p_churn is the churn model chosen on validation, config.yaml `churn`; p_churn_network the
        Transformer's own), top_items, top_categories (space-separated ids, best first), top_item_probs,
        top_category_probs (space-separated, same order), next_behavior (most likely).
        """
        arrays, ex, _ = self.prepare(events, cutoff, users)
        blend = bool(self.ranking and top_k)
        raw = self.predict_raw(arrays, ex, top_k=max(top_k, N_SOFTMAX) if blend else top_k, progress=progress)
        p_churn_network = 1.0 - raw["p_buy"]
        self._ship_chosen_churn(raw, events, cutoff, arrays.user_ids[ex.user_rows])
        if blend:
            self._rerank(raw, events, cutoff, arrays, ex, users, top_k)
        user_ids = arrays.user_ids[ex.user_rows]
        # After the blend, names come with the ids (raw ids past the vocabulary have no vocab name).
        items = raw.get("items_names") or _join(self._item_ids, raw.get("items"), N_RESERVED)
        cats = raw.get("categories_names") or _join(self._cat_ids, raw.get("categories"), N_RESERVED)
        item_p = _join_probs(raw.get("items_probs"))
        cat_p = _join_probs(raw.get("categories_probs"))
        # Only behaviors the shop records: on an orders-only shop (CDNOW) the untrained view / cart outputs
        # would otherwise read as "most likely adding to cart" (new_user_trial.md, Round 8).
        recorded = np.isin(np.array(BEHAVIORS), events["behavior"].unique())
        behavior_probs = np.where(recorded, raw["behavior_probs"], -np.inf) if recorded.any() else raw["behavior_probs"]
        behaviors = np.array(BEHAVIORS, dtype=object)[behavior_probs.argmax(1)]
        frames = []
        for j, h in enumerate(self.horizons_days):
            frames.append(pd.DataFrame({
                "user_id": user_ids, "horizon_days": h, "p_churn": 1.0 - raw["p_buy"][:, j], "p_buy": raw["p_buy"][:, j],
                "p_cart": raw["p_cart"][:, j], "p_churn_network": p_churn_network[:, j], "top_items": items,
                "top_categories": cats, "top_item_probs": item_p, "top_category_probs": cat_p, "next_behavior": behaviors}))
        return pd.concat(frames, ignore_index=True)

    def _ship_chosen_churn(self, raw: dict, events: pd.DataFrame, cutoff, user_ids: np.ndarray) -> None:
        """Replace `p_buy` by 1 - p_churn of the churn model chosen on validation (config.yaml `churn`).

        The network's own churn probability stays in the `p_churn_network` column.
        """
        choices = (self.config.get("churn") or {}).get("horizons") or []
        if not any(c.get("chosen", TRANSFORMER) != TRANSFORMER for c in choices):
            return
        events = validate_events(events)
        self.last_info["churn_models"] = {}
        for j, choice in enumerate(choices[:len(self.horizons_days)]):
            fitted = (self.calibration.get("churn_baselines") or [{}] * len(choices))[j]
            p, why = apply_churn_choice(choice, fitted, events, cutoff, user_ids,
                                        -raw["buy_logits"][:, j].astype(float), 1.0 - raw["p_buy"][:, j])
            raw["p_buy"][:, j] = 1.0 - p
            self.last_info["churn_models"][self.horizons_days[j]] = why or choice.get("chosen")
        raw["p_buy"] = np.maximum.accumulate(raw["p_buy"], axis=1)  # P(buy within 7d) <= P(within 30d)

    def _rerank(self, raw: dict, events: pd.DataFrame, cutoff, arrays: EventArrays, ex: Examples, users,
                 top_k: int) -> None:
        """Replace the softmax top-k in `raw` by the blend's ranking (own history, co-occurrence, popularity, softmax).

        `*_probs` then hold each id's share of the blended score (not a probability of the next event).
        """
        cutoff_s = cutoff_seconds(cutoff)
        full = arrays
        if users is not None:  # co-occurrence and popularity come from every user's events
            events = validate_events(events)
            full = prepare_events(events[to_seconds(events["ts"]) <= cutoff_s], self.vocab)
        for name, kind in FIELDS:
            n_ids, n_known = (self.vocab.n_items, len(self.vocab.items)) if kind == "item" else \
                (self.vocab.n_categories, len(self.vocab.categories))
            if name not in self.ranking or n_known < 1:
                continue
            stats = RankStats.build(full, cutoff_s, kind, n_ids, n_known, int(self.ranking["pop_window_s"]))
            ids, share = rank_with_blend(self.ranking[name], stats, arrays, ex, raw.get(name), raw.get(name + "_probs"),
                                         top_k)
            # Short lists (a tiny catalog) keep the softmax's next ids after the blend's.
            fallback = raw[name][:, :top_k] if name in raw else np.zeros((len(ex), 0), dtype=np.int64)
            raw[name] = _fill_ids(ids, fallback, top_k)
            raw[name + "_probs"] = np.where(raw[name] == ids[:, :raw[name].shape[1]], share[:, :raw[name].shape[1]], 0.0)
            known = self._item_ids if kind == "item" else self._cat_ids
            raw[name + "_names"] = ranking_names(arrays, kind, known, n_ids, raw[name])

    def user_vectors(self, events: pd.DataFrame, cutoff: datetime, users=None) -> tuple[list[str], np.ndarray]:
        """One L2-normalized behavior vector per user (the last position's state), for the case memory."""
        arrays, ex, _ = self.prepare(events, cutoff, users)
        vec = predict_examples(self.model, arrays, ex, self.max_len, self.device, top_k=0)["vector"]
        vec = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-9)
        return [str(u) for u in arrays.user_ids[ex.user_rows]], vec.astype(np.float32)


def _fill_ids(ids: np.ndarray, fallback: np.ndarray, k: int) -> np.ndarray:
    """Rows of `ids` (-1 = empty) topped up with `fallback` ids not already listed; (n, k') with k' <= k."""
    width = min(k, max(int((ids >= 0).sum(1).max()) if len(ids) else 0, fallback.shape[1]))
    out = ids[:, :width].copy()
    for r in np.flatnonzero((out < 0).any(axis=1)):  # rare: fewer candidates than k
        row = [i for i in ids[r] if i >= 0]
        seen = set(row)
        row = (row + [i for i in fallback[r] if i not in seen])[:width]
        out[r] = -1
        out[r, :len(row)] = row
    return out


def _join(ids: np.ndarray, idx: np.ndarray | None, offset: int) -> list[str]:
    if idx is None or idx.shape[1] == 0:
        return [""] * (0 if idx is None else len(idx))
    names = ids[np.maximum(idx - offset, 0)]
    return [" ".join(n for n, i in zip(row, irow) if i >= offset) for row, irow in zip(names, idx)]


def _join_probs(p: np.ndarray | None) -> list[str]:
    if p is None or p.shape[1] == 0:
        return [""] * (0 if p is None else len(p))
    return [" ".join(f"{x:.4f}" for x in row) for row in p]


def score_store(store, predictor: Predictor, cutoff: datetime, progress: bool = True,
                earlier: bool = True) -> pd.DataFrame:
    """Score every user of the store as of `cutoff` and replace the `scores` rows (store.replace_scores).

    `earlier`: also write each horizon H's scores as of cutoff - H and the earlier windows (only the
    customers who could lapse then: `lifecycle.lapse_population`), the rows at_risk_users
    recalibrates P(lapse) on (tools/catalog/users.py::lapse_probabilities); stored here, a question
    reads them instead of loading the predictor (torch: ~5 s and ~350 MB of a cold ask).
    Every row is computed first and written in one transaction that also deletes the rows of any
    other checkpoint: an interrupted run leaves the old scores whole, and a finished one leaves no
    earlier checkpoint's scores to be served beside (or instead of) this one's.
    Returns the rows as of `cutoff`.
    """
    from tools.data.schema import SCORE_COLUMNS

    events = store.events_frame(until=pd.Timestamp(cutoff).to_pydatetime())

    def scored_at(day, horizons=None, users=None) -> pd.DataFrame:
        past = events[events["ts"] <= pd.Timestamp(day)]
        past = past if users is None else past[past["user_id"].isin(users)]
        frame = predictor.score_users(past, day, top_k=1 if horizons else 10, progress=progress and not horizons)
        if horizons:
            frame = frame[frame["horizon_days"].isin(horizons)]
        frame["cutoff"] = pd.Timestamp(day)
        frame["model_version"] = predictor.version
        return frame[list(SCORE_COLUMNS)]

    scores = scored_at(cutoff)
    from tools.predictor.lifecycle import calibration_windows, lapse_population

    frames = [scores]
    for h in predictor.horizons_days if earlier else ():
        for day in calibration_windows(events, cutoff, int(h)):  # c - H, c - H - 14 d, ...: the map's windows
            frames.append(scored_at(day, [h], lapse_population(events, day, int(h))))
    store.replace_scores(pd.concat(frames, ignore_index=True), drop_other_versions=True)
    return scores
