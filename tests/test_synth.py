"""The demo shop: canonical frames, determinism, funnels, learnable structure, and the churn oracle."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from tools.data.schema import BEHAVIORS, EVENT_COLUMNS, ITEM_COLUMNS, REVIEW_COLUMNS, USER_COLUMNS
from tools.data.synth import (DEMO_CUTOFFS, DEMO_END, DEMO_HORIZONS_DAYS, DEMO_START, N_DAYS, generate_shop,
                              load_demo_shop)
from tools.data.synth_process import UserParams
from tools.data.synth_reviews import mentions
from tools.data.synth_sessions import simulate


@pytest.fixture(scope="module")
def shop():
    return generate_shop(n_users=2000, n_items=600, seed=3, progress=False)


@pytest.fixture(scope="module")
def small():
    return generate_shop(n_users=150, n_items=120, seed=11, progress=False)


def test_frames_have_canonical_columns_and_valid_values(shop):
    for frame, columns in ((shop.events, EVENT_COLUMNS), (shop.reviews, REVIEW_COLUMNS),
                           (shop.items, ITEM_COLUMNS), (shop.users, USER_COLUMNS)):
        assert list(frame.columns) == list(columns)
    ev = shop.events
    assert set(ev["behavior"].unique()) == set(BEHAVIORS)
    assert ev["ts"].min() > DEMO_START and ev["ts"].max() < DEMO_END
    assert ev["ts"].is_monotonic_increasing
    assert ev[["user_id", "item_id", "category_id"]].notna().all().all()
    assert set(ev["item_id"]) <= set(shop.items["item_id"]) and set(ev["user_id"]) <= set(shop.users["user_id"])
    item_cat = shop.items.set_index("item_id")["category_id"]
    assert (ev["category_id"].to_numpy() == item_cat.loc[ev["item_id"]].to_numpy()).all()
    buys = ev[ev["behavior"] == "buy"]
    price = shop.items.set_index("item_id")["price"].loc[buys["item_id"]].to_numpy()
    np.testing.assert_allclose(buys["amount"].to_numpy(), np.round(price * buys["quantity"].to_numpy(), 2))
    assert ev.loc[ev["behavior"] != "buy", "amount"].isna().all()
    assert shop.items["item_id"].is_unique and shop.users["user_id"].is_unique and shop.reviews["review_id"].is_unique
    assert shop.items["price"].gt(0).all() and shop.items["category_id"].nunique() == 40
    assert shop.reviews["rating"].between(1, 5).all() and shop.reviews["text"].str.len().gt(20).all()
    assert (shop.reviews["ts"] < DEMO_END).all()
    first = ev.groupby("user_id")["ts"].min()
    assert (shop.users.set_index("user_id")["signup_ts"].loc[first.index] < first).all()
    assert set(shop.users["segment"]) >= {"dog_household", "cat_household", "snacker"}


def test_same_seed_same_frames_other_seed_other_frames(small):
    again = generate_shop(n_users=150, n_items=120, seed=11, progress=False)
    for name in ("events", "reviews", "items", "users", "experiences"):
        pd.testing.assert_frame_equal(getattr(small, name), getattr(again, name))
    pd.testing.assert_frame_equal(small.oracle_frame(), again.oracle_frame())
    other = generate_shop(n_users=150, n_items=120, seed=12, progress=False)
    assert len(other.events) != len(small.events) or not other.events.equals(small.events)


def test_every_buy_follows_a_cart_and_a_view_of_the_same_item(shop):
    ev = shop.events
    buys = ev[ev["behavior"] == "buy"][["user_id", "item_id", "ts"]]
    for step in ("cart", "view"):
        prior = ev[ev["behavior"] == step][["user_id", "item_id", "ts"]].rename(columns={"ts": "ts_prior"})
        joined = buys.merge(prior, on=["user_id", "item_id"])
        ok = joined[(joined["ts_prior"] < joined["ts"]) & (joined["ts"] - joined["ts_prior"] < pd.Timedelta("2h"))]
        assert len(ok.drop_duplicates(["user_id", "item_id", "ts"])) == len(buys.drop_duplicates())
    counts = ev["behavior"].value_counts()
    assert counts["view"] > counts["cart"] > counts["buy"] > counts["fav"] > 0


def test_next_purchase_is_learnable_from_history(shop):
    buys = shop.events[shop.events["behavior"] == "buy"].sort_values(["user_id", "ts"], kind="stable")
    seen_item: set[tuple[str, str]] = set()
    seen_cat: set[tuple[str, str]] = set()
    buyers: set[str] = set()
    repeat_item = repeat_cat = total = 0
    for user, item, cat in zip(buys["user_id"], buys["item_id"], buys["category_id"]):
        if user in buyers:  # a later purchase: did the history predict it?
            total += 1
            repeat_item += (user, item) in seen_item
            repeat_cat += (user, cat) in seen_cat
        buyers.add(user)
        seen_item.add((user, item))
        seen_cat.add((user, cat))
    # Chance of hitting a random one of 40 categories / 600 items is far below these shares.
    assert repeat_cat / total > 0.5 and repeat_item / total > 0.2
    # Item-to-item: consecutive views in a session jump to a complement category far above chance.
    comps = shop.catalog.categories.set_index("category_id")["complements"]
    ids = shop.catalog.categories["category_id"].tolist()
    views = shop.events[shop.events["behavior"] == "view"].sort_values(["user_id", "ts"], kind="stable")
    same_user = views["user_id"].to_numpy()[1:] == views["user_id"].to_numpy()[:-1]
    close = np.diff(views["ts"].to_numpy()).astype("timedelta64[s]").astype(int) < 300
    a, b = views["category_id"].to_numpy()[:-1], views["category_id"].to_numpy()[1:]
    pairs = same_user & close & (a != b)
    hit = np.mean([ids.index(y) in comps[x] for x, y in zip(a[pairs], b[pairs])])
    assert hit > 0.25  # each category has 1-3 complements out of 39 others


def test_bad_experiences_are_visible_in_reviews_and_hurt_engagement(shop):
    exp = shop.experiences
    reviewed = exp[exp["review_id"].notna()].merge(shop.reviews, on="review_id", suffixes=("", "_r"))
    assert reviewed["rating"][reviewed["late"] | reviewed["poor_quality"]].mean() < 2.6
    assert reviewed["rating"][~reviewed["late"] & ~reviewed["poor_quality"]].mean() > 4.2
    late_only = reviewed[reviewed["late"] & ~reviewed["poor_quality"]]
    assert np.mean([mentions(t, "delivery") or mentions(t, "service") for t in late_only["text"]]) > 0.8
    # Reviews are likelier after a bad experience (so explanations can find them).
    bad = exp["late"] | exp["poor_quality"]
    assert exp.loc[bad, "review_id"].notna().mean() > 3 * exp.loc[~bad, "review_id"].notna().mean()
    # The March carrier disruption: late orders then, and lower engagement on April 1st for those hit.
    march = exp[(exp["ts"] >= "2026-03-09") & (exp["ts"] < "2026-03-30")]
    assert march["late"].mean() > 0.25 > exp[exp["ts"] < "2026-03-01"]["late"].mean()
    hit = set(march.loc[march["late"], "user_id"])
    eng = shop.engagement_at(datetime(2026, 3, 30)).set_index("user_id")["engagement"]
    spared = set(march["user_id"]) - hit
    assert eng.loc[list(hit)].mean() < eng.loc[list(spared)].mean()
    # What an analyst sees: March buyers who left a 1-2 star review by April 1st are at higher risk.
    cutoff = DEMO_CUTOFFS[0]
    p = shop.true_churn_probability(cutoff, 30).set_index("user_id")["p_churn"]
    rev = shop.reviews
    unhappy = set(rev.loc[(rev["ts"] >= "2026-03-01") & (rev["ts"] < cutoff) & (rev["rating"] <= 2), "user_id"])
    march_buyers = set(march["user_id"])
    assert len(unhappy & march_buyers) > 20
    assert p.loc[list(unhappy & march_buyers)].mean() > p.loc[list(march_buyers - unhappy)].mean() + 0.05


def test_oracle_is_calibrated_and_discriminates(shop):
    for cutoff in DEMO_CUTOFFS:
        for h in DEMO_HORIZONS_DAYS:
            p = shop.true_churn_probability(cutoff, h)
            y = shop.churn_labels(cutoff, h)
            assert (p["user_id"].to_numpy() == y["user_id"].to_numpy()).all()
            assert p["p_churn"].between(0, 1).all()
            n = len(p)
            se = np.sqrt(p["p_churn"].mean() * (1 - p["p_churn"].mean()) / n)
            assert abs(p["p_churn"].mean() - y["churned"].mean()) < 4 * se + 0.005, (cutoff, h)
            assert roc_auc_score(y["churned"], p["p_churn"]) > 0.8, (cutoff, h)
            bins = np.minimum((p["p_churn"].to_numpy() * 10).astype(int), 9)
            ece = sum(abs(p["p_churn"][bins == b].mean() - y["churned"][bins == b].mean()) * (bins == b).sum()
                      for b in np.unique(bins)) / n
            assert ece < 0.05, (cutoff, h, ece)
    # The population is exactly docs/benchmark.md's P(c): users with an event at or before the cutoff.
    c = DEMO_CUTOFFS[0]
    expected = set(shop.events.loc[shop.events["ts"] <= c, "user_id"])
    assert set(shop.true_churn_probability(c, 7)["user_id"]) == expected


def test_closed_form_oracle_matches_simulated_futures(shop):
    """Replay the real simulator from the cutoff state, 300 futures per user, and compare."""
    cutoff, horizon, reps = DEMO_CUTOFFS[0], 30, 300
    day = (cutoff - DEMO_START).days
    users = shop.population(cutoff)[:300]
    idx = np.repeat(users, reps)
    p = shop.params
    future = UserParams(segment=p.segment[idx], existing=np.ones(len(idx), bool), signup_day=np.zeros(len(idx), int),
                        rate=p.rate[idx], buy=p.buy[idx], decay=p.decay[idx], floor=p.floor[idx],
                        init=shop.engagement[day, idx].astype(float), repeat=p.repeat[idx],
                        cart_bias=p.cart_bias[idx])
    pref = np.full((len(idx), len(shop.catalog.categories)), 1 / len(shop.catalog.categories))
    sim = simulate(future, shop.catalog, pref, shop.config, cutoff, horizon, np.random.default_rng(99),
                   progress=False)
    bought = np.zeros(len(idx), bool)
    bought[sim.buy_user] = True
    mc = 1 - bought.reshape(len(users), reps).mean(axis=1)
    exact = shop.true_churn_probability(cutoff, horizon).set_index("user_id")["p_churn"]
    exact = exact.loc[shop.users["user_id"].to_numpy()[users]].to_numpy()
    # The mean over 300 users x 300 futures has sd ~0.0013: a 1% error in the formula shows up.
    sd_mean = np.sqrt((exact * (1 - exact) / reps).sum()) / len(users)
    assert abs(mc.mean() - exact.mean()) < 4 * sd_mean
    assert np.abs(mc - exact).max() < 0.12  # 300 futures: sd <= 0.029 per user
    assert np.corrcoef(mc, exact)[0, 1] > 0.97


def test_bad_cutoffs_and_horizons_are_refused_with_a_hint(small):
    with pytest.raises(ValueError, match="midnight"):
        small.true_churn_probability(datetime(2026, 4, 1, 12), 7)
    with pytest.raises(ValueError, match="DEMO_CUTOFFS"):
        small.true_churn_probability(datetime(2025, 4, 1), 7)
    with pytest.raises(ValueError, match="positive whole number"):
        small.true_churn_probability(DEMO_CUTOFFS[0], 0)
    with pytest.raises(ValueError, match="n_items"):
        generate_shop(n_users=10, n_items=5, progress=False)
    # A timezone-aware cutoff is the same instant in UTC.
    aware = pd.Timestamp("2026-04-01T00:00:00Z")
    pd.testing.assert_frame_equal(small.true_churn_probability(aware, 7),
                                  small.true_churn_probability(DEMO_CUTOFFS[0], 7))


def test_oracle_frame_and_file(small, tmp_path):
    frame = small.oracle_frame()
    assert list(frame.columns) == ["user_id", "cutoff", "horizon_days", "p_churn"]
    assert set(zip(frame["cutoff"], frame["horizon_days"])) == {
        (pd.Timestamp(c), h) for c in DEMO_CUTOFFS for h in DEMO_HORIZONS_DAYS}
    for c in DEMO_CUTOFFS:
        assert pd.Timestamp(c) + pd.Timedelta(days=max(DEMO_HORIZONS_DAYS)) <= pd.Timestamp(DEMO_END)
    path = small.write_oracle(tmp_path / "oracle" / "demo.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame, check_dtype=False)
    meta = yaml.safe_load(path.with_suffix(".yaml").read_text())
    assert meta["seed"] == 11 and meta["n_users"] == 150 and "exact" in meta["method"]
    assert meta["process"] == yaml.safe_load(yaml.safe_dump(dataclasses.asdict(small.config)))
    assert N_DAYS == 181


def test_load_demo_shop_is_idempotent(tmp_path):
    store_mod = pytest.importorskip("tools.data.store", reason="the event store room has not landed yet")
    store = store_mod.EventStore(tmp_path / "shop.duckdb")
    try:
        load_demo_shop(store, n_users=120, seed=5)
        events = store.events_frame()
        load_demo_shop(store, n_users=120, seed=5)  # the same source again: nothing is added
        assert store.events_frame().shape == events.shape
        shop = generate_shop(n_users=120, seed=5, progress=False)
        assert len(events) == len(shop.events)
        assert len(store.reviews_frame()) == len(shop.reviews)
        assert len(store.users_frame()) == 120 and len(store.items_frame()) == len(shop.items)
        cols = ["user_id", "ts", "behavior", "item_id", "category_id", "quantity"]

        def canon(frame: pd.DataFrame) -> pd.DataFrame:
            frame = frame[cols].astype({"ts": "datetime64[us]", "quantity": "int64"})
            return frame.astype({c: "str" for c in cols if c not in ("ts", "quantity")}).sort_values(cols,
                                                                                                 ignore_index=True)

        pd.testing.assert_frame_equal(canon(events), canon(shop.events))
    finally:
        store.close()
