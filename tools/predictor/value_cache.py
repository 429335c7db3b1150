"""Customer values saved by `shopsight predictor score`, so the tools need not refit them.

`clv.customer_value` fits gradient-boosted trees over BG/NBD, Gamma-Gamma and RFM at the cutoff:
10-18 s on CDNOW's 23,570 customers (bench/results/new_user_trial.md, Round 9b). The tools used to
fit it on their first value question in every process: the Operations tab's first view and every
cold `shopsight ask` paid it. `predictor score` (a command that writes) now saves the frame beside
the store; the tools (read-only) use it only when it was fitted on exactly the events they read and
by the value code they run, else they fit it themselves, as before.

The key: the cutoff, the horizon, the events up to the cutoff (their count and the sum of their
row hashes, one DuckDB scan: 14 ms on CDNOW) and a hash of the value model's source files, so an
import, a new cutoff or a code change can never serve an old value.

Usage:
    save_values(store, cutoff, horizon_days, frame, notes)   # after fitting (predictor score)
    cached = load_values(store, cutoff, horizon_days)         # (frame, notes) or None
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

import pandas as pd

CACHE_DIR_NAME = "value_cache"  # beside the store file: a derived copy, safe to delete


def _code_hash() -> str:
    from tools.predictor import baselines, bench_clv, clv

    digest = hashlib.sha256()
    for module in (clv, bench_clv, baselines):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def values_key(store, cutoff: datetime, horizon_days: int) -> str:
    """What a saved frame must match: cutoff, horizon, the events up to the cutoff, the value code."""
    count, total = store._one("SELECT count(*), sum(hash(e)::HUGEINT) FROM events e WHERE ts <= $c",
                              {"c": pd.Timestamp(cutoff).to_pydatetime()})
    raw = f"{pd.Timestamp(cutoff).isoformat()}|{int(horizon_days)}|{count}|{total}|{_code_hash()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def _paths(store, key: str) -> tuple[Path, Path] | None:
    if not store.path or store.path == ":memory:":
        return None
    folder = Path(store.path).parent / CACHE_DIR_NAME
    return folder / f"{key}.parquet", folder / f"{key}.json"


def save_values(store, cutoff: datetime, horizon_days: int, frame: pd.DataFrame, notes: dict) -> Path | None:
    """Write the frame and its notes atomically (a reader never sees half a file); older keys are removed."""
    paths = _paths(store, values_key(store, cutoff, horizon_days))
    if paths is None:
        return None
    table, meta = paths
    table.parent.mkdir(parents=True, exist_ok=True)
    for path, write in ((table, lambda p: frame.to_parquet(p, index=False)),
                        (meta, lambda p: p.write_text(json.dumps(notes, default=str)))):
        partial = path.with_name(path.name + ".partial")
        write(partial)
        os.replace(partial, path)
    for old in table.parent.iterdir():  # the tools read one horizon (reads.VALUE_HORIZON_DAYS): one frame
        if old.stem != table.stem and old.suffix in (".parquet", ".json"):
            old.unlink(missing_ok=True)
    return table


def load_values(store, cutoff: datetime, horizon_days: int) -> tuple[pd.DataFrame, dict] | None:
    """The saved (frame, notes) for exactly these events, cutoff, horizon and code; None otherwise."""
    paths = _paths(store, values_key(store, cutoff, horizon_days))
    if paths is None or not all(p.exists() for p in paths):
        return None
    table, meta = paths
    try:
        return pd.read_parquet(table), json.loads(meta.read_text())
    except (OSError, ValueError):  # a damaged copy is refitted, never trusted
        return None
