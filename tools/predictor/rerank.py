"""Fit and apply the next-item / next-category blend of `tools.predictor.candidates`.

    ranking = fit_ranking(model, arrays, vocab, cfg, label_end, is_val_user, device)   # train.py, saved in config.yaml
    ids, weights = rank_with_blend(ranking["items"], arrays, ex, raw, vocab, field="item", cutoff_s=c)  # score.py

The validation cutoffs are `v = label_end - max(H)`, `v - H/2` and `v - H` (inside the training
past). Their population is the *held-out* users (never trained on) with an event at or before v
and a next event in `(v, min(v + max H, label_end)]`; their first such event is the target, as in
docs/benchmark.md. Generators' statistics (co-occurrence, popularity) read only events at or before v.
"""

from __future__ import annotations

import numpy as np

from tools.predictor.candidates import (GENERATORS, HALF_LIVES, MIN_TARGETS, N_SOFTMAX, CandidateTable, RankStats,
                                        fit_blend, generator_scores, ranking_ids)
from tools.predictor.data import DAY, N_RESERVED, EventArrays, Examples, examples_at, horizon_seconds

FIELDS = (("items", "item"), ("categories", "category"))
N_VALIDATION_CUTOFFS = 3
# Too few validation targets to choose: rank the user's own recent ids first, then popular ones
# (the `repeat_recency` baseline), which is the safest generator on real shops.
FALLBACK_WEIGHTS = [10.0, 0.0, 0.1, 0.0]


def _sizes(vocab, kind: str) -> tuple[int, int]:
    return (vocab.n_items, len(vocab.items)) if kind == "item" else (vocab.n_categories, len(vocab.categories))


def _targets(arrays: EventArrays, ex: Examples, until_s: int, kind: str, n_ids: int,
             n_known: int) -> tuple[np.ndarray, np.ndarray]:
    """Per example: ranking id (`ranking_ids`: raw ids outside the vocabulary too) of the first event after
    its cutoff and at or before `until_s` (-1 = none)."""
    user_end = arrays.offsets[ex.user_rows + 1]
    has = (ex.ends < user_end)
    nxt = np.where(has, ex.ends, 0)
    has &= arrays.ts[nxt] <= until_s
    ids, ok, _ = ranking_ids(arrays, kind, n_ids, N_RESERVED, N_RESERVED + n_known)
    return has, np.where(ok[nxt], ids[nxt], -1)


def fit_ranking(predict, arrays: EventArrays, vocab, horizons_days, label_end: int, is_val_user: np.ndarray) -> dict:
    """Choose the blend for items and categories on the validation cutoff; a dict for config.yaml.

    Args:
        predict: `(arrays, examples, top_k) -> model outputs` (items, items_probs, categories, ...).
        arrays: every event at or before the training cutoff.
        vocab: the checkpoint's vocabulary.
        horizons_days: the model's horizons; the longest sets the validation window.
        label_end: last event time (seconds) at or before the training cutoff.
        is_val_user: (n_users,) bool, the held-out users.
    """
    h = int(horizon_seconds(horizons_days).max())
    rows = np.flatnonzero(is_val_user)
    # Validation cutoffs v, v - H/2, v - H (those with data before them): more targets, less noise.
    cutoffs = [label_end - h - k * (h // 2) for k in range(N_VALIDATION_CUTOFFS)]
    cutoffs = [v for v in cutoffs if v > arrays.ts.min()]
    pop_window = max(h, DAY)  # as the popularity baseline: the last day, topped up by all-time counts
    out = {"validation_cutoffs_s": [int(v) for v in cutoffs], "pop_window_s": pop_window,
           "generators": list(GENERATORS)}
    examples = [examples_at(arrays, v, rows) for v in cutoffs] if len(rows) else []
    raws = [predict(arrays, ex, N_SOFTMAX) if len(ex) else None for ex in examples]
    for name, kind in FIELDS:
        n_ids, n_known = _sizes(vocab, kind)
        if n_known < 2:
            out[name] = _fallback(0, "fewer than 2 known ids: nothing to rank")
            continue
        parts, n_targets = [], 0
        for v, ex, raw in zip(cutoffs, examples, raws):
            if raw is None:
                continue
            has, targets = _targets(arrays, ex, min(v + h, label_end), kind, n_ids, n_known)
            if not has.any():
                continue
            sub = ex.subset(np.flatnonzero(has))
            stats = RankStats.build(arrays, v, kind, n_ids, n_known, pop_window)
            soft_ids, soft_p = raw[name][has], raw[name + "_probs"][has]
            parts.append(({hl: CandidateTable.build(generator_scores(stats, arrays, sub, soft_ids, soft_p, hl), stats)
                           for hl in HALF_LIVES}, targets[has]))
            n_targets += int(has.sum())
        if n_targets < MIN_TARGETS:
            out[name] = _fallback(n_targets, f"only {n_targets} held-out users act after the validation cutoffs "
                                  f"(< {MIN_TARGETS}): too few to choose a blend")
            continue
        best = fit_blend(parts, has_softmax=True)
        best["n_targets"] = n_targets
        best["reason"] = _reason(best)
        out[name] = best
    return out


def _fallback(n: int, reason: str) -> dict:
    return {"weights": FALLBACK_WEIGHTS, "own_half_life": HALF_LIVES[0], "n_targets": n, "ndcg": None,
            "alone": {}, "reason": f"fallback to own recent ids then popular ones: {reason}"}


def _reason(best: dict) -> str:
    w = dict(zip(GENERATORS, best["weights"]))
    used = ", ".join(f"{g} x{w[g]:g}" for g in GENERATORS if w[g])
    alone = best["alone"]
    if not w["softmax"]:
        return (f"the Transformer's softmax does not help on the validation cutoff (alone NDCG@10 "
                f"{alone.get('softmax', 0):.3f}, best blend {best['ndcg']:.3f}): ranking by {used}")
    return f"blend {used}: validation NDCG@10 {best['ndcg']:.3f} (alone: " + \
        ", ".join(f"{g} {v:.3f}" for g, v in alone.items()) + ")"


def rank_with_blend(blend: dict, stats: RankStats, arrays: EventArrays, ex: Examples, soft_ids: np.ndarray | None,
                    soft_probs: np.ndarray | None, k: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) ranked ids (`ranking_ids`: vocab ids, or raw ids past the vocabulary; -1 pads) and their share
    of the blended score, in chunks of users."""
    weights = np.asarray(blend["weights"], dtype=float)
    ids_out = np.full((len(ex), k), -1, dtype=np.int64)
    share = np.zeros((len(ex), k))
    for start in range(0, len(ex), chunk):
        idx = np.arange(start, min(start + chunk, len(ex)))
        part = ex.subset(idx)
        si = None if soft_ids is None else soft_ids[idx]
        sp_ = None if soft_probs is None else soft_probs[idx]
        table = CandidateTable.build(generator_scores(stats, arrays, part, si, sp_, blend["own_half_life"]), stats)
        ranked = table.rank(weights, k)
        total = np.maximum((table.scores @ weights).sum(axis=1, keepdims=True), 1e-12)
        s = table.scores @ weights
        pos = np.argsort(-np.where(table.ids >= 0, s + table.tie, -np.inf), axis=1, kind="stable")[:, :ranked.shape[1]]
        ids_out[idx, :ranked.shape[1]] = ranked
        share[idx, :ranked.shape[1]] = np.take_along_axis(s, pos, axis=1) / total * (ranked >= 0)
    return ids_out, share
