"""The benchmark's datasets: read straight into canonical event frames, with their cutoffs.

A benchmark must not depend on the state of someone's event store, so each dataset has a
direct reader here (`read_cdnow`, `read_taobao`, the demo generator). A path ending in
`.duckdb` is read through the event store instead (`EventStore.events_frame`), for shops
whose data was imported with `shopsight data import`.

Every frame keeps the source's row order (the protocol breaks ties of equal timestamps by
file order) and has the canonical columns of `tools.data.schema.EVENT_COLUMNS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from tools.data.schema import BEHAVIORS, EVENT_COLUMNS
from tools.paths import file_sha256

DATASETS = ("cdnow", "taobao", "demo")
FORMATS = ("taobao", "cdnow", "instacart", "store")  # --format of `bench run --data FILE --cutoff ISO --horizon H`
CANONICAL = list(EVENT_COLUMNS)

# Taobao UserBehavior: the release covers 2017-11-25 .. 2017-12-03 Beijing time (UTC+8).
TAOBAO_START = datetime(2017, 11, 24, 16, 0, 0)  # 2017-11-25 00:00 Beijing, as naive UTC
TAOBAO_END = datetime(2017, 12, 3, 16, 0, 0)  # end of 2017-12-03 Beijing (exclusive)
TAOBAO_BEHAVIORS = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"}


@dataclass
class BenchData:
    """One dataset ready for the benchmark: events, cutoffs, horizons and where it came from."""

    name: str
    events: pd.DataFrame
    cutoffs: list[datetime]  # test cutoffs (naive UTC)
    horizons_days: tuple[int, ...]
    tasks: tuple[str, ...]  # subset of churn, next_item, next_category
    source: str
    info: dict = field(default_factory=dict)  # rows read, dropped, sha256, ... (saved in the manifest)
    demo_shop: object | None = None  # the DemoShop, for the oracle

    def validation_cutoff(self, cutoff: datetime) -> datetime:
        """The validation cutoff of a test cutoff: c - max(H), so every horizon's labels are known at c."""
        return cutoff - timedelta(days=max(self.horizons_days))


def _fail(path: Path, line_no: int, field_name: str, problem: str, fix: str) -> None:
    raise ValueError(f"{path}:{line_no} field '{field_name}': {problem}. {fix}")


def read_cdnow(path: str | Path) -> pd.DataFrame:
    """CDNOW_master.txt (whitespace: `customer_id yyyymmdd quantity amount`) as canonical events.

    Each row is one `buy` of item `cd` at 00:00 UTC of its date; an optional header line is
    skipped. A malformed row raises ValueError naming the file, line and field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. Fetch CDNOW with `make data` (it lands in .cache/datasets/).")
    raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, skip_blank_lines=False, engine="python",
                      names=["customer_id", "date", "quantity", "amount"])
    line_no = np.arange(1, len(raw) + 1)
    first = str(raw.iloc[0, 0]) if len(raw) else ""
    keep = raw["customer_id"].notna().to_numpy().copy()
    if len(raw) and not first.isdigit():  # a header line such as `customer_id date number_of_cds dollar_value`
        keep[0] = False
    raw, line_no = raw[keep], line_no[keep]
    fix = "CDNOW rows are `customer_id yyyymmdd quantity amount`; fix or delete that line."
    if raw.empty:
        raise ValueError(f"{path}: no data rows. {fix}")
    ts = pd.to_datetime(raw["date"], format="%Y%m%d", errors="coerce")
    quantity = pd.to_numeric(raw["quantity"], errors="coerce")
    amount = pd.to_numeric(raw["amount"], errors="coerce")
    for name, bad in (("date", ts.isna()), ("quantity", quantity.isna() | (quantity % 1 != 0)),
                      ("amount", amount.isna())):
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            _fail(path, int(line_no[i]), name, f"cannot read {raw[name].iloc[i]!r}", fix)
    return pd.DataFrame({
        "user_id": raw["customer_id"].astype(str).to_numpy(),
        "ts": ts.to_numpy().astype("datetime64[us]"),
        "behavior": "buy",
        "item_id": "cd",
        "category_id": None,
        "quantity": quantity.astype(np.int64).to_numpy(),
        "amount": amount.astype(np.float64).to_numpy(),
    })[CANONICAL].reset_index(drop=True)


def read_taobao(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Taobao UserBehavior CSV (no header: user,item,category,behavior,unix seconds) as canonical events.

    Keeps rows inside 2017-11-25 .. 2017-12-03 Beijing time as the release describes and counts
    the rest in `info["rows_dropped_outside_window"]`. `pv` becomes `view`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. Pass the UserBehavior.csv (or a sample of it) with --data.")
    raw = pd.read_csv(path, header=None, dtype=str, skip_blank_lines=False,
                      names=["user_id", "item_id", "category_id", "behavior", "timestamp"])
    line_no = np.arange(1, len(raw) + 1)
    keep = raw["user_id"].notna().to_numpy()
    raw, line_no = raw[keep], line_no[keep]
    fix = "UserBehavior rows are `user_id,item_id,category_id,pv|cart|fav|buy,unix_seconds` with no header."
    if raw.empty:
        raise ValueError(f"{path}: no data rows. {fix}")
    seconds = pd.to_numeric(raw["timestamp"], errors="coerce")
    behavior = raw["behavior"].map(TAOBAO_BEHAVIORS)
    for name, bad in (("item_id", raw["item_id"].isna()), ("behavior", behavior.isna()),
                      ("timestamp", seconds.isna())):
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            _fail(path, int(line_no[i]), name, f"cannot read {raw[name].iloc[i]!r}", fix)
    ts = pd.to_datetime(seconds.astype(np.int64), unit="s")
    inside = ((ts >= TAOBAO_START) & (ts < TAOBAO_END)).to_numpy()
    events = pd.DataFrame({
        "user_id": raw["user_id"].to_numpy(),
        "ts": ts.to_numpy().astype("datetime64[us]"),
        "behavior": behavior.to_numpy(),
        "item_id": raw["item_id"].to_numpy(),
        "category_id": raw["category_id"].to_numpy(),
        "quantity": 1,
        "amount": np.nan,
    })[inside].reset_index(drop=True)
    return events[CANONICAL], {"rows_read": int(len(raw)), "rows_dropped_outside_window": int((~inside).sum())}


def read_instacart(path: str | Path) -> pd.DataFrame:
    """The Instacart orders sample (`user_id, order_number, order_hour_of_day, days_since_prior_order,
    product_id, add_to_cart_order, ...`) as canonical `buy` events.

    The release has no dates: each user's first order is placed on 2017-01-01 and later orders at
    the cumulative `days_since_prior_order`, at their `order_hour_of_day`; lines of one order keep
    their `add_to_cart_order` (file order breaks the equal timestamps). Aisles are not in the
    sample, so there are no categories.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. Fetch it with `make data` (it lands in .cache/datasets/).")
    df = pd.read_csv(path, dtype={"product_id": str, "user_id": str})
    missing = {"user_id", "order_number", "order_hour_of_day", "days_since_prior_order", "product_id",
               "add_to_cart_order"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}:1: missing column(s) {sorted(missing)}; this is not the Instacart orders layout")
    df = df.sort_values(["user_id", "order_number", "add_to_cart_order"], kind="mergesort")
    orders = df.drop_duplicates(["user_id", "order_number"])[["user_id", "order_number", "days_since_prior_order"]]
    orders["day"] = orders["days_since_prior_order"].fillna(0).groupby(orders["user_id"]).cumsum()
    df = df.merge(orders[["user_id", "order_number", "day"]], on=["user_id", "order_number"], how="left")
    ts = pd.Timestamp("2017-01-01") + pd.to_timedelta(df["day"], unit="D") + \
        pd.to_timedelta(df["order_hour_of_day"], unit="h")
    return pd.DataFrame({"user_id": df["user_id"].to_numpy(), "ts": ts.to_numpy().astype("datetime64[us]"),
                         "behavior": "buy", "item_id": df["product_id"].to_numpy(), "category_id": None,
                         "quantity": 1, "amount": np.nan})[CANONICAL]


def read_store(path: str | Path) -> pd.DataFrame:
    """Every event of a ShopSight DuckDB store, via `EventStore.events_frame` (read-only)."""
    from tools.data.store import EventStore  # imported lazily: the store is optional for the benchmark

    store = EventStore(path, read_only=True)
    try:
        return store.events_frame()[CANONICAL].reset_index(drop=True)
    finally:
        store.close()


def _cdnow_data(path: Path) -> BenchData:
    events = read_store(path) if path.suffix == ".duckdb" else read_cdnow(path)
    cutoffs = [datetime(1997, 9, 30, 23, 59, 59), datetime(1997, 12, 31, 23, 59, 59),
               datetime(1998, 3, 31, 23, 59, 59)]
    # Every CDNOW item is `cd` and there are no categories: rankings would be trivial.
    return BenchData("cdnow", events, cutoffs, (30, 90), ("churn",), str(path), {"rows_read": int(len(events))})


def _taobao_data(path: Path) -> BenchData:
    if path.suffix == ".duckdb":
        events, info = read_store(path), {}
        inside = (events["ts"] >= TAOBAO_START) & (events["ts"] < TAOBAO_END)
        info = {"rows_read": int(len(events)), "rows_dropped_outside_window": int((~inside).sum())}
        events = events[inside].reset_index(drop=True)
    else:
        events, info = read_taobao(path)
    cutoffs = [datetime(2017, 12, 1, 16, 0, 0)]  # 2017-12-02 00:00 Beijing
    return BenchData("taobao", events, cutoffs, (1, 2), ("churn", "next_item", "next_category"), str(path), info)


def _demo_data(n_users: int, seed: int, progress: bool) -> BenchData:
    from tools.data import synth  # lazily: the generator is another room's module

    shop = synth.generate_shop(n_users=n_users, seed=seed, progress=progress)
    events = shop.events[CANONICAL].copy()
    events["ts"] = pd.to_datetime(events["ts"]).astype("datetime64[us]")
    return BenchData("demo", events.reset_index(drop=True), list(synth.DEMO_CUTOFFS),
                     tuple(synth.DEMO_HORIZONS_DAYS), ("churn", "next_item", "next_category"),
                     f"tools.data.synth.generate_shop(n_users={n_users}, seed={seed})",
                     {"rows_read": int(len(events)), "n_users": n_users, "seed": seed}, demo_shop=shop)


def load_bench_data(dataset: str, data_path: str | Path | None = None, n_users: int = 5000, seed: int = 0,
                    progress: bool = True) -> BenchData:
    """Load one benchmark dataset with its protocol cutoffs and horizons (docs/benchmark.md).

    Args:
        dataset: `cdnow`, `taobao` or `demo`.
        data_path: the raw file (CDNOW_master.txt, UserBehavior.csv) or a `.duckdb` event store;
            ignored for `demo`, which is generated in process so the oracle is known.
        n_users: demo shop size.
        seed: demo shop seed.
        progress: show the generator's progress bar.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if dataset == "demo":
        data = _demo_data(n_users, seed, progress)
    else:
        if data_path is None:
            hint = "--data .cache/datasets/CDNOW_master.txt (run `make data` first)" if dataset == "cdnow" \
                else "--data PATH/UserBehavior.csv"
            raise ValueError(f"dataset {dataset!r} needs a data file: pass {hint}")
        path = Path(data_path)
        data = _cdnow_data(path) if dataset == "cdnow" else _taobao_data(path)
        if path.is_file():
            data.info["sha256"] = file_sha256(path)
    _check_events(data)
    return data


def load_custom_data(data_path: str | Path, fmt: str, cutoffs: list[datetime], horizons_days: list[float]) -> BenchData:
    """Any shop's file at the caller's own cutoffs and horizons (`bench run --data F --format X --cutoff C --horizon H`).

    Args:
        data_path: a Taobao UserBehavior CSV, a CDNOW file, or a `.duckdb` store made by `shopsight data import`.
        fmt: `taobao`, `cdnow`, `instacart` or `store`.
        cutoffs: test cutoffs (naive UTC); each needs its validation cutoff c - max(H) inside the data.
        horizons_days: horizons in days (fractions allowed: 1 h = 1/24).
    Raises ValueError naming the cutoff, the horizon and the data's first / last timestamps.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(data_path)
    if fmt == "store" or path.suffix == ".duckdb":
        events, info = read_store(path), {}
        info["rows_read"] = int(len(events))
    elif fmt in ("cdnow", "instacart"):
        events = read_cdnow(path) if fmt == "cdnow" else read_instacart(path)
        info = {"rows_read": int(len(events))}
    else:
        events, info = read_taobao(path)
    if events.empty:
        raise ValueError(f"{path}: no events to benchmark")
    horizons = tuple(sorted(set(horizons_days)))
    tasks = ["churn"]
    if events["item_id"].nunique() > 1:
        tasks.append("next_item")
    if events["category_id"].notna().any() and events["category_id"].nunique() > 1:
        tasks.append("next_category")
    first, last = events["ts"].min(), events["ts"].max()
    for cutoff in cutoffs:
        if not first <= pd.Timestamp(cutoff) < last:
            raise ValueError(f"{path}: cutoff {cutoff.isoformat()} lies outside the data ({first} .. {last}); "
                             "choose a cutoff between the first and the last timestamp")
        end = pd.Timestamp(cutoff) + pd.Timedelta(days=max(horizons))
        if end > last:
            raise ValueError(f"{path}: horizon {_h(max(horizons))} after cutoff {cutoff.isoformat()} ends at {end}, past "
                             f"the last timestamp {last}; choose a cutoff at or before "
                             f"{last - pd.Timedelta(days=max(horizons))} or a shorter horizon")
        val = pd.Timestamp(cutoff) - pd.Timedelta(days=max(horizons))
        if val <= first:
            raise ValueError(f"{path}: the validation cutoff {val} (cutoff - {_h(max(horizons))}) is not after the first "
                             f"timestamp {first}; choose a later cutoff or a shorter horizon")
    data = BenchData(path.stem, events, sorted(cutoffs), horizons, tuple(tasks), str(path), info)
    if path.is_file():
        data.info["sha256"] = file_sha256(path)
    _check_events(data)
    return data


def _h(days: float) -> str:
    from tools.predictor.bench_files import horizon_tag  # the file names' spelling: 30m, 1h, 2d

    return horizon_tag(days)


def _check_events(data: BenchData) -> None:
    events = data.events
    if events.empty:
        raise ValueError(f"{data.source}: no events left to benchmark")
    unknown = set(events["behavior"].unique()) - set(BEHAVIORS)
    if unknown:
        raise ValueError(f"{data.source}: unknown behaviors {sorted(unknown)}; expected {BEHAVIORS}")
    first, last = events["ts"].min(), events["ts"].max()
    for cutoff in data.cutoffs:
        if not first <= cutoff < last:
            raise ValueError(f"{data.source}: cutoff {cutoff} lies outside the data ({first} .. {last}); "
                             "pass the whole dataset, not a slice of it")
    data.info.update({"events": int(len(events)), "users": int(events["user_id"].nunique()),
                      "first_ts": str(first), "last_ts": str(last)})
    short = [f"data ends at {last}, before {c} + {max(data.horizons_days)} d: churn labels of that window "
             "read the missing days as 'no buy'" for c in data.cutoffs
             if last < c + timedelta(days=max(data.horizons_days) - 1)]
    if short:
        data.info["warnings"] = short
