"""Runs the demo shop day by day: sessions, funnels (view -> fav / cart -> buy), order outcomes.

Vectorized over users and sessions (numpy); the only Python loops are over days (~181) and
over view positions inside a session (<= max_views). The latent rules live in `synth_process`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from tqdm.auto import tqdm

from tools.data.synth_catalog import Catalog
from tools.data.synth_process import (ProcessConfig, UserParams, buy_session_prob, late_probability,
                                      season)

BEHAVIOR_CODES = ("view", "cart", "fav", "buy")  # event behavior code -> canonical name
DAY = 86_400
# Session start hour weights (UTC), 0..22: quiet nights, lunch and evening peaks. Sessions last
# under an hour, so starting before 23:00 keeps every event inside its day.
_HOUR_WEIGHTS = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 4.5, 4, 4, 4.5, 5, 5.5,
                          6, 6.5, 5.5, 3.5])


@dataclass
class SimResult:
    """Raw simulation output; `synth` turns it into canonical frames."""

    engagement: np.ndarray  # (n_days + 1, n_users) float32: e at the start of each day
    signup_sec: np.ndarray  # (n_users,) seconds since DEMO_START of new users' signup
    ev_user: np.ndarray
    ev_sec: np.ndarray  # seconds since DEMO_START
    ev_behavior: np.ndarray  # index into BEHAVIOR_CODES
    ev_item: np.ndarray
    ev_qty: np.ndarray
    buy_user: np.ndarray  # one row per bought line (also present in ev_* as a "buy")
    buy_sec: np.ndarray
    buy_item: np.ndarray
    buy_qty: np.ndarray
    buy_late: np.ndarray  # bool: the order arrived late
    buy_poor: np.ndarray  # bool: this line was poor quality


class _State:
    """What the shop remembers about each user between sessions."""

    def __init__(self, n_users: int, n_cat: int):
        self.last_cat = np.full(n_users, -1, dtype=np.int64)  # category the last session ended in
        self.last_buy_cat = np.full(n_users, -1, dtype=np.int64)
        self.last_bought = np.full((n_users, n_cat), -1, dtype=np.int32)  # last item bought per category


def _complement(cat: np.ndarray, comp: np.ndarray, n_comp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pick = np.floor(rng.random(len(cat)) * n_comp[cat]).astype(np.int64)
    return comp[cat, pick]


def simulate(params: UserParams, catalog: Catalog, pref: np.ndarray, cfg: ProcessConfig, start: datetime,
             n_days: int, rng: np.random.Generator, progress: bool = True) -> SimResult:
    """Simulate every user over `n_days` days from `start` (see synth_process for the rules)."""
    n_users, n_cat = pref.shape
    pref_cum = np.cumsum(pref, axis=1).astype(np.float32)
    comp_lists = catalog.categories["complements"].tolist()
    n_comp = np.array([len(c) for c in comp_lists])
    comp = np.array([c + [c[0]] * (n_comp.max() - len(c)) for c in comp_lists])
    state = _State(n_users, n_cat)
    e = params.init.astype(np.float64).copy()
    engagement = np.empty((n_days + 1, n_users), dtype=np.float32)
    engagement[0] = e
    hour_p = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()
    signup_of_day = rng.integers(0, 70_000, n_users)
    signup_sec = params.signup_day * DAY + signup_of_day
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("u", "s", "b", "i", "q", "seq")}
    buys: dict[str, list[np.ndarray]] = {k: [] for k in ("u", "s", "i", "q", "late", "poor")}

    def sample_pref(users: np.ndarray) -> np.ndarray:
        r = rng.random(len(users), dtype=np.float32)
        return np.minimum((pref_cum[users] < r[:, None]).sum(axis=1), n_cat - 1)

    def choose_item(cat: np.ndarray, users: np.ndarray) -> np.ndarray:
        # Repeat the user's last item of this category (staples) or draw by popularity.
        last = state.last_bought[users, cat]
        repeat = (last >= 0) & (rng.random(len(users)) < params.repeat[users])
        drawn = np.searchsorted(catalog.cat_item_cdf, cat + rng.random(len(users)), side="right")
        return np.where(repeat, last, np.minimum(drawn, len(catalog.item_cat) - 1))

    for d in tqdm(range(n_days), desc="demo shop days", disable=not progress):
        active = params.signup_day <= d
        lam = np.where(active, params.rate * season(start, d, cfg) * e, 0.0)
        pi = buy_session_prob(params, e)
        n_buy = rng.poisson(lam * pi)
        n_browse = rng.poisson(lam * (1.0 - pi))
        forced = np.flatnonzero(~params.existing & (params.signup_day == d))  # the signup visit
        ids = np.arange(n_users)
        users = np.concatenate([np.repeat(ids, n_buy), np.repeat(ids, n_browse), forced])
        is_buy = np.concatenate([np.ones(n_buy.sum(), bool), np.zeros(n_browse.sum(), bool),
                                 rng.random(len(forced)) < pi[forced]])
        n_s = len(users)
        if n_s == 0:  # a quiet day (tiny shops): only the decay acts
            e = np.where(active, params.floor + (e - params.floor) * params.decay, e)
            engagement[d + 1] = e
            continue
        start_sec = rng.choice(23, size=n_s, p=hour_p) * 3600 + rng.integers(1, 3600, n_s)  # never at midnight
        start_sec[n_s - len(forced):] = signup_of_day[forced] + rng.integers(60, 600, len(forced))
        # Other sessions of a user on signup day come after the signup (still before 23:00).
        joining = ~params.existing[users] & (params.signup_day[users] == d)
        joining[n_s - len(forced):] = False
        low = signup_of_day[users[joining]] + 60
        start_sec[joining] = low + (rng.random(joining.sum()) * (82_800 - low)).astype(np.int64)
        start_sec += d * DAY

        # --- views: category and item per position -------------------------------------
        n_views = 1 + np.minimum(rng.poisson(cfg.views_mean, n_s), cfg.max_views - 1)
        width = int(n_views.max())
        items = np.full((n_s, width), -1, dtype=np.int64)
        cat = np.empty(n_s, dtype=np.int64)
        for j in range(width):
            r = rng.random(n_s)
            if j == 0:
                cat = sample_pref(users)
                lc, lb = state.last_cat[users], state.last_buy_cat[users]
                cont = (r < cfg.continue_prob) & (lc >= 0)
                after = (r >= cfg.continue_prob) & (r < cfg.continue_prob + cfg.after_buy_prob) & (lb >= 0)
                cat = np.where(cont, lc, cat)
                cat = np.where(after, _complement(np.maximum(lb, 0), comp, n_comp, rng), cat)
                item = choose_item(cat, users)
            else:
                prev = items[:, j - 1]
                stay = r < cfg.stay_prob
                to_comp = (r >= cfg.stay_prob) & (r < cfg.stay_prob + cfg.complement_prob)
                new_cat = np.where(stay, cat, sample_pref(users))
                new_cat = np.where(to_comp, _complement(cat, comp, n_comp, rng), new_cat)
                item = choose_item(new_cat, users)
                partner = to_comp & (rng.random(n_s) < 0.5) & (prev >= 0)
                item = np.where(partner, catalog.item_pair[np.maximum(prev, 0)], item)
                cat = catalog.item_cat[item]
            live = n_views > j
            items[live, j] = item[live]
        valid = items >= 0

        # --- funnel: fav, cart, buy --------------------------------------------------------
        p_cart = np.where(is_buy, cfg.cart_prob_buying, cfg.cart_prob_browsing) * params.cart_bias[users]
        cart = valid & (rng.random((n_s, width)) < np.minimum(p_cart, 0.95)[:, None])
        cart[is_buy & ~cart.any(axis=1), 0] = True  # an order needs something in the cart
        fav = valid & (rng.random((n_s, width)) < cfg.fav_prob)
        bought = cart & is_buy[:, None] & (rng.random((n_s, width)) < cfg.checkout_prob)
        first_cart = np.argmax(cart, axis=1)
        rows = np.flatnonzero(is_buy & ~bought.any(axis=1))
        bought[rows, first_cart[rows]] = True
        for j in range(1, width):  # one order line per item
            bought[:, j] &= ~((items[:, :j] == items[:, j:j + 1]) & bought[:, :j]).any(axis=1)

        gaps = 35 + np.minimum(rng.exponential(40.0, (n_s, width)), 200.0).astype(np.int64)
        gaps[:, 0] = 0
        view_sec = start_sec[:, None] + np.cumsum(gaps, axis=1)
        fav_sec = view_sec + rng.integers(3, 15, (n_s, width))
        cart_sec = view_sec + rng.integers(16, 30, (n_s, width))
        last_view = np.where(valid, view_sec, 0).max(axis=1)
        buy_sec = last_view[:, None] + 40 + np.arange(width)[None, :]
        uu = np.broadcast_to(users[:, None], (n_s, width))
        pos = np.broadcast_to(np.arange(width)[None, :], (n_s, width))
        qty = 1 + (rng.random((n_s, width)) < 0.25) + (rng.random((n_s, width)) < 0.07)
        for code, mask, secs, seq in ((0, valid, view_sec, pos * 4), (2, fav, fav_sec, pos * 4 + 1),
                                      (1, cart, cart_sec, pos * 4 + 2), (3, bought, buy_sec, 100 + pos)):
            # Compact dtypes: at 100,000 users these lists hold ~6M rows each.
            out["u"].append(uu[mask].astype(np.int32))
            out["s"].append(secs[mask].astype(np.int32))  # < 2^31 s after DEMO_START
            out["b"].append(np.full(mask.sum(), code, dtype=np.int8))
            out["i"].append(items[mask].astype(np.int32))
            out["q"].append(np.where(code == 3, qty, 1)[mask].astype(np.int8))
            out["seq"].append(seq[mask].astype(np.int16))

        # --- order outcomes and the engagement update -----------------------------------------
        late_order = is_buy & (rng.random(n_s) < late_probability(start, d, cfg))
        b_user, b_item = uu[bought], items[bought]
        b_late = np.broadcast_to(late_order[:, None], (n_s, width))[bought]
        b_poor = rng.random(len(b_item)) < catalog.item_poor_prob[b_item]
        poor_order = np.zeros(n_s, bool)
        np.logical_or.at(poor_order, np.broadcast_to(np.arange(n_s)[:, None], (n_s, width))[bought], b_poor)
        for key, value in (("u", b_user), ("s", buy_sec[bought]), ("i", b_item), ("q", qty[bought]),
                           ("late", b_late), ("poor", b_poor)):
            buys[key].append(value)
        n_late = np.bincount(users[late_order], minlength=n_users)
        n_poor = np.bincount(b_user[b_poor], minlength=n_users)
        n_good = np.bincount(users[is_buy & ~late_order & ~poor_order], minlength=n_users)
        e = e * cfg.late_mult ** n_late * cfg.poor_mult ** n_poor
        e = 1.0 - (1.0 - e) * (1.0 - cfg.renewal) ** n_good
        e = np.where(active, params.floor + (e - params.floor) * params.decay, e)
        engagement[d + 1] = e

        # --- what the shop remembers for tomorrow ---------------------------------------------
        last_pos = n_views - 1
        state.last_cat[users] = catalog.item_cat[items[np.arange(n_s), last_pos]]
        state.last_bought[b_user, catalog.item_cat[b_item]] = b_item
        if len(b_user):
            state.last_buy_cat[b_user] = catalog.item_cat[b_item]

    cat_all = {k: np.concatenate(v) if v else np.empty(0, np.int64) for k, v in out.items()}
    cat_buy = {k: np.concatenate(v) if v else np.empty(0, np.int64) for k, v in buys.items()}
    order = np.lexsort((cat_all["seq"], cat_all["u"], cat_all["s"]))
    return SimResult(engagement=engagement, signup_sec=signup_sec,
                     ev_user=cat_all["u"][order], ev_sec=cat_all["s"][order], ev_behavior=cat_all["b"][order],
                     ev_item=cat_all["i"][order], ev_qty=cat_all["q"][order],
                     buy_user=cat_buy["u"], buy_sec=cat_buy["s"], buy_item=cat_buy["i"], buy_qty=cat_buy["q"],
                     buy_late=cat_buy["late"].astype(bool), buy_poor=cat_buy["poor"].astype(bool))
