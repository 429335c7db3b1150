"""A small synthetic shop for the predictor tests (the demo generator is another room's)."""

from __future__ import annotations

import numpy as np
import pandas as pd

CUTOFF = pd.Timestamp("2024-03-31 23:59:59")


def make_shop(n_users: int = 60, n_items: int = 40, days: int = 120, seed: int = 0) -> pd.DataFrame:
    """A small shop: each user favours one category, revisits items, and may stop (churn) early."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    rows = []
    for u in range(n_users):
        fav = u % 5
        stop = days if rng.random() < 0.6 else rng.integers(10, days)
        t = float(rng.uniform(0, 5))
        while t < stop:
            item = fav * (n_items // 5) + int(rng.integers(0, n_items // 5))
            behavior = rng.choice(["view", "cart", "fav", "buy"], p=[0.6, 0.15, 0.05, 0.2])
            rows.append((f"u{u:03d}", start + pd.Timedelta(days=t), behavior, f"i{item:03d}", f"c{fav}",
                         1, float(5 + item) if behavior == "buy" else np.nan))
            t += float(rng.exponential(3.0 if u % 2 else 8.0))
    return pd.DataFrame(rows, columns=["user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"])
