"""The behavior Transformer: leakage, overfitting, checkpoints, explanations, bad input.

Tiny real models on small synthetic shops built here (the demo generator is another room's);
each training run takes a second or two on 2 CPU cores.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from predictor_shop import CUTOFF, make_shop
from tools.predictor.checkpoint import checkpoint_problem, sha256_file
from tools.predictor.data import PredictorError, build_vocab, collate, examples_at, prepare_events, cutoff_seconds
from tools.predictor.explain import MIN_EVENTS, explain_user
from tools.predictor.model import BehaviorTransformer, ModelConfig
from tools.predictor.score import Predictor
from tools.predictor.train import TrainConfig, build_datasets, train_predictor

def tiny_config(**overrides) -> TrainConfig:
    base = dict(horizons_days=(7, 30), max_len=16, d_model=16, n_layers=1, n_heads=2, n_cutoffs=6,
                cutoff_stride_days=7, batch_size=64, epochs=2, warmup_steps=5, lr=3e-3, val_fraction=0.25,
                max_items=100, max_categories=20, item_hash_buckets=4, category_hash_buckets=2, device="cpu")
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def shop() -> pd.DataFrame:
    return make_shop()


@pytest.fixture(scope="module")
def trained(shop, tmp_path_factory) -> Predictor:
    return train_predictor(shop, CUTOFF, tiny_config(), tmp_path_factory.mktemp("ckpt"), progress=False)


def perturb_future(events: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """Rewrite everything after CUTOFF: new items, behaviors, amounts, extra users and events."""
    rng = np.random.default_rng(seed)
    past = events[events["ts"] <= CUTOFF]
    future = events[events["ts"] > CUTOFF].copy()
    future["item_id"] = [f"x{rng.integers(0, 9)}" for _ in range(len(future))]
    future["behavior"] = "buy"
    future["amount"] = 999.0
    extra = past.sample(50, random_state=seed).assign(ts=CUTOFF + pd.Timedelta(hours=1))
    return pd.concat([past, future.iloc[::2], extra], ignore_index=True)


# ---- leakage -----------------------------------------------------------------------------------
def test_future_events_cannot_change_predictions(shop, trained):
    before = trained.score_users(shop, CUTOFF)
    after = trained.score_users(perturb_future(shop), CUTOFF)
    pd.testing.assert_frame_equal(before, after, check_exact=True)
    ids_a, vec_a = trained.user_vectors(shop, CUTOFF)
    ids_b, vec_b = trained.user_vectors(perturb_future(shop, seed=2), CUTOFF)
    assert ids_a == ids_b and np.array_equal(vec_a, vec_b)


def test_future_events_cannot_change_training(shop, trained, tmp_path):
    """Same seed, same past, different future -> bit-identical weights (labels only from the past)."""
    other = train_predictor(perturb_future(shop), CUTOFF, tiny_config(), tmp_path, progress=False)
    assert sha256_file(tmp_path / "model.safetensors") == sha256_file(trained.folder / "model.safetensors")
    assert other.calibration == trained.calibration


def test_labels_come_only_from_windows_inside_the_past(shop):
    from tools.predictor.train import build_datasets

    cfg = tiny_config()
    _, _, train, val, cutoff_s, label_end = build_datasets(shop, CUTOFF, cfg)
    for ex in (train, val):
        for j, h in enumerate(cfg.horizons_days):
            labelled = ex.mask[:, j] > 0
            assert (ex.cutoffs[labelled] + h * 86_400 <= label_end).all()
    assert label_end <= cutoff_s


# ---- the model learns ----------------------------------------------------------------------------
def test_rolling_cutoffs_can_start_at_the_freshest_labelled_window(shop):
    day = 86_400
    _, _, train, val, cutoff_s, label_end = build_datasets(shop, CUTOFF, tiny_config())
    cuts = np.concatenate([train.cutoffs, val.cutoffs])
    assert cuts.max() == cutoff_s  # default: the grid starts at the cutoff (next-event targets there)
    cfg = tiny_config(rolling_start_days_before_end=7, cutoff_stride_days=23 / 3)  # 7 + 3 strides = 30
    _, _, train, val, _, label_end = build_datasets(shop, CUTOFF, cfg)
    cuts = np.concatenate([train.cutoffs, val.cutoffs])
    mask = np.concatenate([train.mask, val.mask])
    assert cuts.max() == label_end - 7 * day
    for j, h in enumerate((7, 30)):  # each horizon's newest labelled window ends at the last event
        assert cuts[mask[:, j] > 0].max() + h * day == label_end
    with pytest.raises(ValueError, match="rolling_start_days_before_end"):
        tiny_config(rolling_start_days_before_end=-1)


def test_tiny_model_overfits_20_sequences():
    torch.manual_seed(0)
    rows = []
    for u in range(20):  # each user walks a fixed cycle of 4 items of its own
        for t in range(12):
            rows.append((f"u{u}", pd.Timestamp("2024-01-01") + pd.Timedelta(hours=t), "view",
                         f"i{u}_{t % 4}", f"c{u % 3}", 1, np.nan))
    events = pd.DataFrame(rows, columns=["user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"])
    vocab = build_vocab(events, 1000, 100, 4, 2)
    arrays = prepare_events(events, vocab)
    ex = examples_at(arrays, cutoff_seconds("2024-01-01 05:30"))  # 6 events each; the 7th is the target
    cfg = ModelConfig(n_items=vocab.n_items, n_categories=vocab.n_categories, n_known_items=len(vocab.items),
                      n_known_categories=len(vocab.categories), n_features=ex.features.shape[1], n_horizons=1,
                      d_model=32, n_layers=2, n_heads=2, dropout=0.0, max_len=16, item_loss_positions=16, wide=True)
    model = BehaviorTransformer(cfg)
    batch = {k: torch.from_numpy(np.asarray(v)).to(torch.float32 if np.asarray(v).dtype.kind == "f" else torch.long)
             for k, v in collate(arrays, ex, np.arange(len(ex)), 16, label_end=10**12).items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = model(batch)["loss"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first
    model.eval()
    top = model.predict(batch, top_k=1)["items"][:, 0].numpy()
    want = batch["next_item"][torch.arange(20), batch["lengths"] - 1].numpy()
    assert (top == want).sum() >= 19


def test_probabilities_are_calibrated_shape_and_monotone(shop, trained):
    scores = trained.score_users(shop, CUTOFF)
    assert set(scores["horizon_days"]) == {7, 30}
    assert scores["p_churn"].between(0, 1).all() and np.allclose(scores["p_churn"] + scores["p_buy"], 1.0)
    wide = scores.pivot(index="user_id", columns="horizon_days", values="p_buy")
    assert (wide[30] >= wide[7]).all()  # buying within 30 days is never less likely than within 7
    first = scores.iloc[0]
    assert len(first["top_items"].split()) == 10 and len(first["top_item_probs"].split()) == 10
    assert trained.config["training"]["epochs_run"] >= 1 and len(trained.calibration["buy"]) == 2


def test_pooled_calibration_uses_every_labelled_cutoff_inside_the_past(shop, trained, tmp_path):
    cfg = tiny_config(calibrate_on="pooled", epochs=1)
    pooled = train_predictor(shop, CUTOFF, cfg, tmp_path / "a", progress=False)
    again = train_predictor(perturb_future(shop), CUTOFF, cfg, tmp_path / "b", progress=False)
    assert pooled.calibration == again.calibration  # the future cannot move the map
    for j, h in enumerate((7, 30)):
        entry, latest_only = pooled.calibration["validation"][j], trained.calibration["validation"][j]
        first, last = pd.Timestamp(entry["first_cutoff"]), pd.Timestamp(entry["cutoff"])
        assert first < last if h == 7 else first <= last  # 7 days: several windows fit in this shop's past
        assert pd.Timestamp(entry["cutoff"]) + pd.Timedelta(days=h) <= pd.Timestamp(CUTOFF)
        assert entry["n"] > latest_only["n"]  # more windows and the training users too
        # The pooled map was checked out of time against drift-aware ones; the choice and why are recorded.
        assert entry["buy_drift"]["why"] and pooled.config["calibration"]["horizons"][j] == entry["buy_drift"]
        assert "buy_drift" not in latest_only  # calibrate_on: val fits the newest window only: nothing to check
    with pytest.raises(ValueError, match="pooled"):
        tiny_config(calibrate_on="latest")


# ---- checkpoints ---------------------------------------------------------------------------------
def test_checkpoint_round_trip_and_files(shop, trained):
    folder = trained.folder
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
        "best.safetensors", "calibration.json", "config.yaml", "model.safetensors", "vocab.json"]
    again = Predictor.load(folder)
    assert again.version == trained.version
    pd.testing.assert_frame_equal(again.score_users(shop, CUTOFF), trained.score_users(shop, CUTOFF))


def test_refuses_events_from_another_dataset(trained):
    other = make_shop(seed=5).assign(item_id=lambda d: "z" + d["item_id"])
    with pytest.raises(PredictorError, match="vocabulary mismatch"):
        trained.score_users(other, CUTOFF)


def test_refuses_vocab_from_another_checkpoint(trained, tmp_path):
    bigger = make_shop(n_items=80, seed=3)
    other = train_predictor(bigger, CUTOFF, tiny_config(epochs=1), tmp_path / "b", progress=False)
    mixed = tmp_path / "mixed"
    shutil.copytree(trained.folder, mixed)
    shutil.copy(other.folder / "vocab.json", mixed / "vocab.json")
    with pytest.raises(PredictorError, match="vocab.json"):
        Predictor.load(mixed)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_refuses_corrupted_checkpoint(trained, tmp_path, damage):
    folder = tmp_path / "c"
    shutil.copytree(trained.folder, folder)
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 3]
    else:
        data = bytearray(b"not a checkpoint")
    path.write_bytes(bytes(data))
    with pytest.raises(PredictorError, match="corrupted"):
        Predictor.load(folder)


def _with_recorded_features(trained, folder: Path, edit) -> Path:
    """A copy of the checkpoint whose config.yaml records what older code would have recorded."""
    shutil.copytree(trained.folder, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    edit(config)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def test_stale_checkpoint_features_are_a_clear_error(trained, tmp_path):
    assert checkpoint_problem(trained.folder) is None

    def renamed(config):  # trained when the last feature had another name
        config["feature_names"] = config["feature_names"][:-1] + ["log_old_feature"]
    old = _with_recorded_features(trained, tmp_path / "old", renamed)
    problem = checkpoint_problem(old)
    assert "stale checkpoint" in problem and "log_old_feature" in problem and "log_n_carts" in problem
    with pytest.raises(PredictorError, match=r"stale checkpoint: .*no longer computed: \['log_old_feature'\].*"
                                             r"shopsight predictor train.*--no-resume"):
        Predictor.load(old)

    def count_only(config):  # configs that record only the model's input width
        del config["feature_names"]
        config["model"]["n_features"] = 12
    older = _with_recorded_features(trained, tmp_path / "older", count_only)
    with pytest.raises(PredictorError, match="trained on 12 per-user features"):
        Predictor.load(older)


def test_missing_checkpoint_says_how_to_train(tmp_path):
    with pytest.raises(PredictorError, match="shopsight predictor train"):
        Predictor.load(tmp_path)


def test_resume_finished_run_and_refuse_other_config(shop, trained, tmp_path):
    folder = tmp_path / "r"
    shutil.copytree(trained.folder, folder)
    again = train_predictor(shop, CUTOFF, tiny_config(), folder, progress=False, resume=True)
    assert sha256_file(folder / "model.safetensors") == sha256_file(trained.folder / "model.safetensors")
    assert again.config["training"]["epochs_run"] == trained.config["training"]["epochs_run"]
    with pytest.raises(PredictorError, match="another config"):
        train_predictor(shop, CUTOFF, tiny_config(d_model=32), folder, progress=False, resume=True)


# ---- explanations --------------------------------------------------------------------------------
def _explainable_user(shop) -> str:
    """A user with a purchase and enough events for the explanation to name reasons."""
    counts = shop.groupby("user_id")["behavior"].agg(events="size", buys=lambda b: int((b == "buy").sum()))
    return str(counts[(counts["buys"] > 0) & (counts["events"] >= MIN_EVENTS)].index[0])


def test_explanation_structure(shop, trained):
    user = _explainable_user(shop)
    reviews = pd.DataFrame({"review_id": ["r1", "r2"], "user_id": [user, user], "item_id": ["i001", "i002"],
                            "ts": [CUTOFF - pd.Timedelta(days=3), CUTOFF + pd.Timedelta(days=3)], "rating": [2, 5]})
    out = explain_user(trained, shop, user, CUTOFF, 30, reviews=reviews, min_effect=0.0)
    json.dumps(out)  # JSON-able all the way down
    assert out["user_id"] == user and 0 <= out["p_churn"] <= 1
    kinds = {d["type"] for d in out["drivers"]}
    assert kinds == {"event", "feature"}
    for d in out["drivers"]:
        assert d["type"] in d and isinstance(d["effect"], float)
        # In the predictor's units: the probability without the driver, and the change it makes.
        assert d["p_churn_without"] == pytest.approx(out["p_churn"] - d["effect"], abs=2e-4)
        assert d["change"].startswith("30-day churn probability ")
    facts = out["facts"]
    assert facts["last_review"]["rating"] == 2  # the review after the cutoff is not read
    assert len(facts["events_per_week_last_8"]) == 8 and facts["trend"] in ("rising", "falling", "flat")
    score = trained.score_users(shop, CUTOFF, users=[user])
    # The drivers explain the network; when a baseline was chosen to ship churn, its p differs (churn_select.py).
    assert out["p_churn"] == round(float(score.loc[score["horizon_days"] == 30, "p_churn_network"].iloc[0]), 4)
    with pytest.raises(PredictorError, match="horizon_days=5"):
        explain_user(trained, shop, user, CUTOFF, 5)


# ---- bad input -----------------------------------------------------------------------------------
def test_unknown_user_is_a_clear_error(shop, trained):
    with pytest.raises(PredictorError, match="unknown user.*active_users"):
        trained.score_users(shop, CUTOFF, users=["nobody"])


def test_one_event_user(shop, trained):
    one = pd.DataFrame({"user_id": ["solo"], "ts": [CUTOFF - pd.Timedelta(days=2)], "behavior": ["view"],
                        "item_id": ["i001"], "category_id": ["c0"], "quantity": [1], "amount": [np.nan]})
    events = pd.concat([shop, one], ignore_index=True)
    scores = trained.score_users(events, CUTOFF, users=["solo"])
    assert len(scores) == 2 and scores["p_churn"].between(0, 1).all()
    out = explain_user(trained, events, "solo", CUTOFF, 7)
    assert out["facts"]["events_total"] == 1 and out["facts"]["days_since_last_buy"] is None
    # One view and no purchase: no reasons of its own to name, and the result says so.
    assert out["drivers"] == [] and "no purchase yet" in out["history"]["too_little"]


def test_negligible_drivers_are_left_out(shop, trained):
    user = _explainable_user(shop)
    every = explain_user(trained, shop, user, CUTOFF, 7, min_effect=0.0)
    cut = sorted(abs(d["effect"]) for d in every["drivers"])[len(every["drivers"]) // 2]
    kept = explain_user(trained, shop, user, CUTOFF, 7, min_effect=cut)
    assert kept["drivers"] and all(abs(d["effect"]) >= cut for d in kept["drivers"])
    assert len(kept["drivers"]) < len(every["drivers"])
    none = explain_user(trained, shop, user, CUTOFF, 7, min_effect=1.01)
    assert none["drivers"] == [] and "none of this user's events" in none["drivers_left_out"]


def test_100k_event_user_is_truncated_and_says_so(shop, trained, caplog):
    n = 100_000
    heavy = pd.DataFrame({"user_id": "heavy", "ts": CUTOFF - pd.to_timedelta(np.arange(n)[::-1] * 60, unit="s"),
                          "behavior": "view", "item_id": "i003", "category_id": "c0", "quantity": 1, "amount": np.nan})
    events = pd.concat([shop, heavy], ignore_index=True)
    with caplog.at_level(logging.INFO, logger="tools.predictor.score"):
        scores = trained.score_users(events, CUTOFF, users=["heavy", "u001"])
    assert len(scores) == 4 and "most recent 16" in caplog.text
    assert trained.last_info["truncated_users"] >= 1 and trained.last_info["longest_history"] == n
    out = explain_user(trained, events, "heavy", CUTOFF, 7, max_events=3)
    assert out["history"]["truncated"] and out["history"]["events_total"] == n


def test_cutoff_before_and_after_all_data(shop, trained, tmp_path):
    with pytest.raises(PredictorError, match="before any data"):
        trained.score_users(shop, "2023-01-01")
    with pytest.raises(PredictorError, match="before any data"):
        train_predictor(shop, "2023-01-01", tiny_config(), tmp_path / "x", progress=False)
    late = pd.Timestamp("2026-01-01")
    scores = trained.score_users(shop, late)
    assert trained.last_info["after_all_data"] and scores["user_id"].nunique() == shop["user_id"].nunique()
    with pytest.warns(UserWarning, match="after all data"):
        train_predictor(shop, late, tiny_config(epochs=1), tmp_path / "late", progress=False)


def test_bad_event_frames_name_the_field(trained, shop):
    with pytest.raises(PredictorError, match="'behavior'"):
        trained.score_users(shop.assign(behavior="click"), CUTOFF)
    with pytest.raises(PredictorError, match="missing column"):
        trained.score_users(shop.drop(columns=["item_id"]), CUTOFF)
    with pytest.raises(PredictorError, match="'ts'"):
        trained.score_users(shop.assign(ts=shop["ts"].astype(str)), CUTOFF)
    with pytest.raises(ValueError, match="increasing order"):
        tiny_config(horizons_days=(30, 7))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_code_on_cuda(shop, tmp_path):
    predictor = train_predictor(shop, CUTOFF, tiny_config(device="cuda"), tmp_path, progress=False)
    assert predictor.config["training"]["device"].startswith("cuda")
    on_cpu = Predictor.load(tmp_path)  # a CUDA-trained checkpoint loads and scores on CPU
    a, b = predictor.score_users(shop, CUTOFF), on_cpu.score_users(shop, CUTOFF)
    assert np.allclose(a["p_churn"], b["p_churn"], atol=1e-4)


def test_churn_choice_takes_the_best_and_breaks_ties_toward_the_network_then_the_simpler():
    """The rule of tools/predictor/churn_select.py on labels and logits made here (2,000 users)."""
    from tools.predictor.churn_select import _choose, fit_platt

    rng = np.random.default_rng(0)
    signal = rng.normal(size=2000)
    y = (signal + rng.normal(size=2000) > 0).astype(np.int64)
    noise = rng.normal(size=2000)
    clear = _choose({"transformer": noise, "logreg_rfm": signal, "recency": 0.3 * signal + noise}, y)
    assert clear["chosen"] == "logreg_rfm" and clear["candidates"]["transformer"]["auc"] < 0.55
    assert not clear["candidates"]["transformer"]["tie"]
    # Equal rankings: a tie the network is part of, and the network ships (the shop trained it) ...
    tied = _choose({"transformer": signal + 1e-9 * noise, "lightgbm": signal, "recency": 2 * signal}, y)
    assert tied["chosen"] == "transformer" and tied["candidates"]["transformer"]["tie"]
    assert tied["candidates"]["ensemble"]["fold_gain_vs_pick"] == 0  # averaging equal rankings gains nothing
    # ... a tie among baselines the network lost to goes to the simpler one.
    lost = _choose({"transformer": noise, "lightgbm": signal, "recency": 2 * signal}, y)
    assert lost["chosen"] == "recency" and not lost["candidates"]["transformer"]["tie"]
    # A calibration map never reverses the ranking it was chosen for.
    assert fit_platt(-signal, y)["a"] > 0


def test_models_that_validation_cannot_tell_apart_ship_as_the_mean_of_their_calibrated_probabilities(shop):
    """Three models tied within one paired SE, each with its own heavy-tailed errors (2,000 users made here):
    the old rule shipped one of them (the network, part of the tie); the mean of their calibrated
    probabilities ranks better than each, and better than the stack (a linear fit on logits, which the
    outliers pull), so it ships; the app scores it from the members' maps (apply_churn_choice)."""
    from tools.predictor.baselines import apply_churn_baseline
    from tools.predictor.calibration import logit
    from tools.predictor.churn_select import (ENSEMBLE, ENSEMBLE_MIN_GAIN, _choose, apply_churn_choice,
                                              fit_chosen_baselines)

    rng = np.random.default_rng(0)
    signal = rng.normal(size=2000)
    y = (signal + rng.normal(size=2000) > 0).astype(np.int64)
    logits = {name: signal + 0.5 * rng.standard_cauchy(size=2000) for name in ("transformer", "recency", "lightgbm")}
    choice = _choose(logits, y)
    cand = choice["candidates"]
    assert all(cand[n]["tie"] for n in logits) and choice["pick"] == "transformer"  # the old rule's ship
    assert choice["chosen"] == ENSEMBLE and cand[ENSEMBLE]["models"] == ["recency", "lightgbm", "transformer"]
    assert cand[ENSEMBLE]["auc"] > max(cand[n]["auc"] for n in (*logits, "stack")) + ENSEMBLE_MIN_GAIN
    assert cand[ENSEMBLE]["fold_gain_vs_pick"] > max(ENSEMBLE_MIN_GAIN, cand[ENSEMBLE]["se_vs_pick"])

    # What ships: each member's map applied to its own score at the cutoff, averaged (score_users uses this path).
    shipped = {"chosen": ENSEMBLE, "horizon_days": 30.0, "reason": "",
               "ensemble": {"models": ["recency", "transformer"],
                            "platt": {"recency": {"a": 1.2, "b": -0.3}, "transformer": {"a": 0.8, "b": 0.1}}}}
    fitted = fit_chosen_baselines(shipped, shop, CUTOFF)
    assert list(fitted) == ["recency"]  # the network's member needs no baseline parameters
    users = np.array(sorted(shop.loc[shop["ts"] <= CUTOFF, "user_id"].unique()))
    z_net = rng.normal(size=len(users))
    p, why = apply_churn_choice(shipped, fitted, shop, CUTOFF, users, z_net, np.full(len(users), 0.5))
    recency = apply_churn_baseline(fitted["recency"], shop, CUTOFF).set_index("user_id")["p_churn"].reindex(users)
    expected = (1 / (1 + np.exp(-(1.2 * logit(recency.to_numpy()) - 0.3))) + 1 / (1 + np.exp(-(0.8 * z_net + 0.1)))) / 2
    assert why is None and np.allclose(p, expected)
