"""The demo shop: a seeded grocery and pet-food shop with a documented latent process and an oracle.

    shop = generate_shop(n_users=5000, seed=0)
    shop.events, shop.reviews, shop.items, shop.users          # canonical frames (tools.data.schema)
    shop.true_churn_probability(DEMO_CUTOFFS[0], 30)           # exact P(no buy in (c, c+30d])
    load_demo_shop(store)                                      # into an EventStore, idempotent

The process is described in docs/demo_shop.md and in `synth_process`; catalog text in
`synth_catalog`; the day-by-day simulation in `synth_sessions`; review texts in `synth_reviews`.
Run `python -m tools.data.synth --users 5000` for a summary with timings.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from tools.data.synth_catalog import Catalog, build_catalog, segment_preferences
from tools.data.synth_process import ProcessConfig, UserParams, churn_probability, draw_user_params
from tools.data.synth_reviews import draw_reviews
from tools.data.synth_sessions import BEHAVIOR_CODES, DAY, simulate

if TYPE_CHECKING:  # the store is another room's module; only its interface is used here
    from tools.data.store import EventStore, ImportReport

DEMO_START = datetime(2026, 1, 1)  # naive UTC, like every timestamp in the store
DEMO_END = datetime(2026, 7, 1)
DEMO_CUTOFFS: list[datetime] = [datetime(2026, 4, 1), datetime(2026, 5, 1), datetime(2026, 6, 1)]
DEMO_HORIZONS_DAYS = (7, 30)
N_DAYS = (DEMO_END - DEMO_START).days  # 181
ORACLE_METHOD = "exact closed form: exp(-sum of daily order hazards along the no-order engagement path)"


def _naive_utc(value: datetime | pd.Timestamp | str) -> datetime:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(timezone.utc).tz_localize(None)
    return ts.to_pydatetime()


@dataclass
class DemoShop:
    """A generated shop: canonical frames, the hidden truth behind them, and the churn oracle."""

    events: pd.DataFrame
    reviews: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    experiences: pd.DataFrame  # hidden truth: one row per bought line, late / poor_quality / review_id
    seed: int
    config: ProcessConfig
    catalog: Catalog = field(repr=False)
    params: UserParams = field(repr=False)
    engagement: np.ndarray = field(repr=False)  # (N_DAYS + 1, n_users): e at each day's midnight
    _first_sec: np.ndarray = field(repr=False)  # first event of each user, seconds since DEMO_START
    _oracle: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.users)

    def _day_index(self, cutoff: datetime | pd.Timestamp | str) -> int:
        c = _naive_utc(cutoff)
        if c != datetime(c.year, c.month, c.day):
            raise ValueError(f"cutoff {c.isoformat()} is not a UTC midnight; the demo shop's latent state "
                             "is known at day boundaries: pass e.g. datetime(2026, 4, 1)")
        day = (c - DEMO_START).days
        if not 1 <= day <= N_DAYS:
            raise ValueError(f"cutoff {c.date()} is outside the demo shop ({DEMO_START.date()} .. "
                             f"{DEMO_END.date()}]; use one of DEMO_CUTOFFS")
        return day

    def population(self, cutoff: datetime | pd.Timestamp | str) -> np.ndarray:
        """Indices of users with at least one event at or before the cutoff (docs/benchmark.md P(c))."""
        return np.flatnonzero(self._first_sec <= self._day_index(cutoff) * DAY)

    def true_churn_probability(self, cutoff: datetime | pd.Timestamp | str, horizon_days: int) -> pd.DataFrame:
        """The true P(no buy in (cutoff, cutoff + H]) of every user of P(cutoff), given the latent state.

        Exact, not sampled: see docs/demo_shop.md ("The oracle").

        Args:
            cutoff: A UTC midnight in (DEMO_START, DEMO_END].
            horizon_days: H in whole days (may reach past DEMO_END: the process is defined there).

        Returns:
            Columns user_id, p_churn; one row per user with an event at or before the cutoff.
        """
        if int(horizon_days) != horizon_days or horizon_days < 1:
            raise ValueError(f"horizon_days={horizon_days!r}: pass a positive whole number of days, e.g. 7 or 30")
        day = self._day_index(cutoff)
        users = self.population(cutoff)
        p = churn_probability(self.params, self.engagement[day, users], users, DEMO_START, day,
                              int(horizon_days), self.config)
        return pd.DataFrame({"user_id": self.users["user_id"].to_numpy()[users], "p_churn": p})

    def churn_labels(self, cutoff: datetime | pd.Timestamp | str, horizon_days: int) -> pd.DataFrame:
        """Realized labels as docs/benchmark.md defines them: churned = no buy in (cutoff, cutoff + H]."""
        users = self.population(cutoff)  # also validates the cutoff
        c = _naive_utc(cutoff)
        ev = self.events
        window = (ev["behavior"] == "buy") & (ev["ts"] > c) & (ev["ts"] <= c + timedelta(days=horizon_days))
        buyers = set(ev.loc[window, "user_id"])
        ids = self.users["user_id"].to_numpy()[users]
        return pd.DataFrame({"user_id": ids, "churned": [uid not in buyers for uid in ids]})

    def engagement_at(self, cutoff: datetime | pd.Timestamp | str) -> pd.DataFrame:
        """Latent engagement of every user of P(cutoff) at the cutoff (for explanations, debugging)."""
        day = self._day_index(cutoff)
        users = self.population(cutoff)
        return pd.DataFrame({"user_id": self.users["user_id"].to_numpy()[users],
                             "engagement": self.engagement[day, users].astype(float)})

    def oracle_frame(self) -> pd.DataFrame:
        """The oracle at every documented cutoff and horizon: user_id, cutoff, horizon_days, p_churn."""
        if self._oracle is None:
            parts = []
            for cutoff in DEMO_CUTOFFS:
                for h in DEMO_HORIZONS_DAYS:
                    part = self.true_churn_probability(cutoff, h)
                    part.insert(1, "cutoff", pd.Timestamp(cutoff))
                    part.insert(2, "horizon_days", h)
                    parts.append(part)
            self._oracle = pd.concat(parts, ignore_index=True)
        return self._oracle.copy()

    def write_oracle(self, path: str | Path) -> Path:
        """Write `oracle_frame()` as Parquet, and beside it a YAML of how it was made."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        self.oracle_frame().to_parquet(tmp, index=False)
        tmp.replace(path)  # never leave a half-written oracle where a benchmark would read it
        meta = {"generator": "tools.data.synth", "seed": self.seed, "n_users": self.n_users,
                "n_items": len(self.items), "method": ORACLE_METHOD,
                "cutoffs": [c.isoformat() for c in DEMO_CUTOFFS], "horizons_days": list(DEMO_HORIZONS_DAYS),
                "demo_start": DEMO_START.isoformat(), "demo_end": DEMO_END.isoformat(),
                "process": self.config.to_dict()}
        path.with_suffix(".yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        return path

    def summary(self) -> dict[str, Any]:
        """Counts, span and churn base rates at the documented cutoffs."""
        rates = {}
        for cutoff in DEMO_CUTOFFS:
            for h in DEMO_HORIZONS_DAYS:
                labels = self.churn_labels(cutoff, h)
                rates[f"{cutoff.date()}@{h}d"] = round(float(labels["churned"].mean()), 4)
        return {"users": self.n_users, "items": len(self.items), "events": len(self.events),
                "events_by_behavior": self.events["behavior"].value_counts().to_dict(),
                "reviews": len(self.reviews), "late_orders_lines": int(self.experiences["late"].sum()),
                "poor_quality_lines": int(self.experiences["poor_quality"].sum()),
                "span": [str(self.events["ts"].min()), str(self.events["ts"].max())], "churn_base_rate": rates}


def _strings(codes: np.ndarray, names: np.ndarray) -> pd.Series:
    # Categorical -> str is far faster than boxing millions of Python strings one by one.
    return pd.Series(pd.Categorical.from_codes(codes, categories=names)).astype("str")


def generate_shop(n_users: int = 5000, n_items: int = 2000, seed: int = 0, progress: bool = True,
                  config: ProcessConfig | None = None) -> DemoShop:
    """Generate the demo shop (same arguments -> identical frames).

    Args:
        n_users: Number of users; events scale with it (~60 per user).
        n_items: Number of items over the 40 fixed categories.
        seed: Seed of every draw.
        progress: Show a progress bar over the simulated days.
        config: Process constants; the documented defaults when None.
    """
    if n_users < 1:
        raise ValueError(f"n_users={n_users}: pass at least 1 user")
    cfg = config or ProcessConfig()
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    catalog = build_catalog(n_items, rngs[0], cfg.bad_item_share, cfg.poor_prob_normal, cfg.poor_prob_bad)
    params = draw_user_params(n_users, N_DAYS, cfg, rngs[1])
    pref = segment_preferences(params.segment, rngs[2])
    sim = simulate(params, catalog, pref, cfg, DEMO_START, N_DAYS, rngs[3], progress=progress)

    user_ids = np.array([str(i + 1) for i in range(n_users)], dtype=object)
    item_ids = catalog.items["item_id"].to_numpy(dtype=object)
    cat_ids = catalog.categories["category_id"].to_numpy(dtype=object)
    start = np.datetime64(DEMO_START, "s")
    is_buy = sim.ev_behavior == BEHAVIOR_CODES.index("buy")
    events = pd.DataFrame({
        "user_id": _strings(sim.ev_user, user_ids),
        "ts": (start + sim.ev_sec.astype("timedelta64[s]")).astype("datetime64[us]"),
        "behavior": _strings(sim.ev_behavior.astype(np.int64), np.array(BEHAVIOR_CODES, dtype=object)),
        "item_id": _strings(sim.ev_item, item_ids),
        "category_id": _strings(catalog.item_cat[sim.ev_item], cat_ids),
        "quantity": sim.ev_qty.astype(np.int32),
        "amount": np.where(is_buy, np.round(catalog.item_price[sim.ev_item] * sim.ev_qty, 2), np.nan),
    })

    existing_signup = rngs[1].integers(1, 365 * DAY, n_users)  # customers since some time in 2025
    signup_sec = np.where(params.existing, -existing_signup, sim.signup_sec)
    segments = np.array(list(cfg.segment_shares), dtype=object)
    users = pd.DataFrame({"user_id": _strings(np.arange(n_users), user_ids),
                          "signup_ts": (start + signup_sec.astype("timedelta64[s]")).astype("datetime64[us]"),
                          "segment": _strings(params.segment, segments)})

    buys = pd.DataFrame({"line": np.arange(len(sim.buy_user)), "user": sim.buy_user, "item": sim.buy_item,
                         "sec": sim.buy_sec, "late": sim.buy_late, "poor": sim.buy_poor})
    raw = draw_reviews(buys, catalog.cat_is_pet[catalog.item_cat], cfg, rngs[4], N_DAYS * DAY)
    review_ids = np.array([f"R{i:07d}" for i in range(1, len(raw) + 1)], dtype=object)
    reviews = pd.DataFrame({
        "review_id": _strings(np.arange(len(raw)), review_ids),
        "user_id": _strings(raw["user"].to_numpy(), user_ids),
        "item_id": _strings(raw["item"].to_numpy(), item_ids),
        "ts": (start + raw["sec"].to_numpy().astype("timedelta64[s]")).astype("datetime64[us]"),
        "rating": raw["rating"].astype(np.int32).to_numpy(),
        "title": raw["title"].astype("str").to_numpy(), "text": raw["text"].astype("str").to_numpy(),
        "helpful_votes": raw["helpful_votes"].astype(np.int32).to_numpy(),
        "total_votes": raw["total_votes"].astype(np.int32).to_numpy(),
    })

    review_of_line = np.full(len(buys), None, dtype=object)
    review_of_line[raw["line"].to_numpy()] = review_ids
    aspect_of_line = np.full(len(buys), None, dtype=object)
    aspect_of_line[raw["line"].to_numpy()] = raw["aspect"].to_numpy()
    experiences = pd.DataFrame({
        "user_id": _strings(sim.buy_user, user_ids),
        "ts": (start + sim.buy_sec.astype("timedelta64[s]")).astype("datetime64[us]"),
        "item_id": _strings(sim.buy_item, item_ids),
        "category_id": _strings(catalog.item_cat[sim.buy_item], cat_ids),
        "quantity": sim.buy_qty.astype(np.int32), "late": sim.buy_late, "poor_quality": sim.buy_poor,
        "review_id": review_of_line, "review_aspect": aspect_of_line,
    })

    first_sec = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_sec, sim.ev_user, sim.ev_sec)
    return DemoShop(events=events, reviews=reviews, items=catalog.items[["item_id", "category_id", "name", "price"]]
                    .copy(), users=users, experiences=experiences, seed=seed, config=cfg, catalog=catalog,
                    params=params, engagement=sim.engagement, _first_sec=first_sec)


def load_demo_shop(store: "EventStore", n_users: int = 5000, seed: int = 0, progress: bool = False
                   ) -> "ImportReport":
    """Generate the demo shop and import it into `store` as one source (re-running adds nothing).

    The store deduplicates by `source_name`, which names the seed and the size, so a second
    call with the same arguments imports nothing, and another size lands as another source.
    """
    shop = generate_shop(n_users=n_users, seed=seed, progress=progress)
    return store.import_frames(source_name=f"demo-shop:seed={seed}:users={n_users}", events=shop.events,
                               reviews=shop.reviews, items=shop.items, users=shop.users)


def main(argv: list[str] | None = None) -> None:
    """Generate the demo shop, print its summary and timing, optionally write the oracle."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oracle", type=Path, help="write the oracle Parquet (and its YAML) here")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    shop = generate_shop(n_users=args.users, n_items=args.items, seed=args.seed)
    seconds = time.perf_counter() - t0
    print(yaml.safe_dump({"generation_seconds": round(seconds, 2), **shop.summary()}, sort_keys=False))
    if args.oracle:
        print(f"oracle written to {shop.write_oracle(args.oracle)}")


if __name__ == "__main__":
    main()
