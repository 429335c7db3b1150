"""Prediction files and truth files of the benchmark (docs/benchmark.md, "Prediction files on disk").

`OUT/<model>/<task>__<H>d__<cutoff>.csv` holds a model's predictions; `OUT/_truth/` holds the
labels of the same (task, H, cutoff) written by the runner, so `bench score OUT` needs nothing
but the folder. Files are written atomically (a `.part` file renamed into place): a killed run
never leaves half a file that a later `score` would read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

TASKS = ("churn", "next_item", "next_category")
TASK_COLUMN = {"churn": "p_churn", "next_item": "items", "next_category": "categories"}
TASK_FIELD = {"next_item": "item_id", "next_category": "category_id"}
TRUTH_DIR = "_truth"
MAX_LIST = 10
_NAME = re.compile(r"^(churn|next_item|next_category)__(\d+)([dhm])__(\d{8}T\d{6}Z)\.csv$")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60}


def cutoff_tag(cutoff: datetime) -> str:
    """`YYYYMMDDTHHMMSSZ` of a naive-UTC (or aware) cutoff."""
    if cutoff.tzinfo is not None:
        cutoff = pd.Timestamp(cutoff).tz_convert("UTC").tz_localize(None).to_pydatetime()
    return cutoff.strftime("%Y%m%dT%H%M%SZ")


def parse_cutoff_tag(tag: str) -> datetime:
    return datetime.strptime(tag, "%Y%m%dT%H%M%SZ")


def horizon_tag(horizon_days: float) -> str:
    """`30d` for whole days, `1h` for whole hours, `15m` for minutes (the file names' H)."""
    seconds = round(float(horizon_days) * 86_400)
    for unit, size in _UNIT_SECONDS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise ValueError(f"horizon {horizon_days} days is not a whole number of minutes")


def parse_horizon(text: str) -> int | float:
    """`30d` / `1h` / `15m` (or a bare number of days) -> days: an int when whole, else a fraction."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhm]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"horizon {text!r}: write a positive duration such as 30m, 1h, 1d or 30d")
    seconds = round(float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "d"])
    return seconds // 86_400 if seconds % 86_400 == 0 else seconds / 86_400


def file_name(task: str, horizon_days: float, cutoff: datetime) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    return f"{task}__{horizon_tag(horizon_days)}__{cutoff_tag(cutoff)}.csv"


def parse_file_name(name: str) -> tuple[str, int | float, datetime] | None:
    """(task, horizon in days, cutoff) of a prediction file name, or None for any other file."""
    match = _NAME.match(name)
    if not match:
        return None
    return match.group(1), parse_horizon(match.group(2) + match.group(3)), parse_cutoff_tag(match.group(4))


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    frame.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)


def write_churn(out_dir: Path, model: str, horizon_days: int, cutoff: datetime, frame: pd.DataFrame) -> Path:
    """Write `user_id,p_churn` (one row per user) for one model, horizon and cutoff."""
    bad = frame["p_churn"].isna() | (frame["p_churn"] < 0) | (frame["p_churn"] > 1)
    if bad.any():
        raise ValueError(f"model {model}: p_churn outside [0, 1] for user {frame['user_id'][bad].iloc[0]!r}")
    path = Path(out_dir) / model / file_name("churn", horizon_days, cutoff)
    _write_atomic(frame[["user_id", "p_churn"]].astype({"user_id": str, "p_churn": float}), path)
    return path


def _join_list(value: object) -> str:
    if isinstance(value, str):
        ids = value.split()
    elif value is None or (isinstance(value, float) and np.isnan(value)):
        ids = []
    else:
        ids = [str(v) for v in value]
    return " ".join(ids[:MAX_LIST])


def write_ranking(out_dir: Path, model: str, task: str, horizon_days: int, cutoff: datetime,
                  frame: pd.DataFrame) -> Path:
    """Write `user_id,items` (or `categories`) with up to 10 space-separated ids, best first.

    `frame` has `user_id` and the list column (a list of ids or a space-separated string).
    """
    column = TASK_COLUMN[task]
    out = pd.DataFrame({"user_id": frame["user_id"].astype(str), column: frame[column].map(_join_list)})
    path = Path(out_dir) / model / file_name(task, horizon_days, cutoff)
    _write_atomic(out, path)
    return path


# ---------------------------------------------------------------- truth


def population(events: pd.DataFrame, cutoff: datetime) -> pd.Index:
    """P(c): every user with at least one event at or before c, sorted."""
    return pd.Index(np.sort(events.loc[events["ts"] <= cutoff, "user_id"].unique()), name="user_id")


def churn_truth(events: pd.DataFrame, cutoff: datetime, horizon_days: int) -> pd.DataFrame:
    """`user_id,churn` over P(c): 1 when the user has no `buy` in (c, c + H]."""
    users = population(events, cutoff)
    end = cutoff + pd.Timedelta(days=horizon_days)
    window = events[(events["ts"] > cutoff) & (events["ts"] <= end) & (events["behavior"] == "buy")]
    bought = users.isin(window["user_id"].unique())
    return pd.DataFrame({"user_id": users.to_numpy(), "churn": (~bought).astype(np.int64)})


def ranking_truth(events: pd.DataFrame, cutoff: datetime, horizon_days: int, task: str) -> pd.DataFrame:
    """`user_id,target,known` for users of P(c) with an event in (c, c + H].

    The target is the item (category) of the first event after c; equal timestamps keep file
    order. `known` is 0 when the target was never seen at or before c (always a miss).
    """
    column = TASK_FIELD[task]
    users = population(events, cutoff)
    end = cutoff + pd.Timedelta(days=horizon_days)
    after = events[(events["ts"] > cutoff) & (events["ts"] <= end) & events["user_id"].isin(users)]
    after = after.sort_values("ts", kind="mergesort")  # stable: ties keep the file order
    first = after.drop_duplicates("user_id", keep="first")
    first = first[first[column].notna()]
    seen = set(events.loc[events["ts"] <= cutoff, column].dropna().unique())
    truth = pd.DataFrame({"user_id": first["user_id"].to_numpy(), "target": first[column].astype(str).to_numpy()})
    truth["known"] = truth["target"].isin(seen).astype(np.int64)
    return truth.sort_values("user_id", kind="mergesort").reset_index(drop=True)


def write_truth(out_dir: Path, events: pd.DataFrame, task: str, horizon_days: int, cutoff: datetime) -> Path:
    truth = churn_truth(events, cutoff, horizon_days) if task == "churn" \
        else ranking_truth(events, cutoff, horizon_days, task)
    path = Path(out_dir) / TRUTH_DIR / file_name(task, horizon_days, cutoff)
    _write_atomic(truth, path)
    return path


# ---------------------------------------------------------------- reading


def _read_csv(path: Path, header: list[str]) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(frame.columns) != header:
        raise ValueError(f"{path}:1: header is {','.join(frame.columns)!r}, expected {','.join(header)!r}. "
                         "Write the header exactly as docs/benchmark.md says.")
    duplicated = frame["user_id"].duplicated()
    if duplicated.any():
        i = int(np.argmax(duplicated.to_numpy()))
        raise ValueError(f"{path}:{i + 2} field 'user_id': user {frame['user_id'].iloc[i]!r} appears twice; "
                         "write one row per user")
    return frame


def read_churn(path: Path) -> pd.DataFrame:
    """A churn prediction file as `user_id` (str) and `p_churn` (float in [0, 1])."""
    frame = _read_csv(path, ["user_id", "p_churn"])
    p = pd.to_numeric(frame["p_churn"], errors="coerce")
    bad = p.isna() | (p < 0) | (p > 1)
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise ValueError(f"{path}:{i + 2} field 'p_churn': {frame['p_churn'].iloc[i]!r} is not a probability "
                         "in [0, 1]; write a number such as 0.73")
    frame["p_churn"] = p.astype(float)
    return frame


def read_ranking(path: Path, task: str) -> pd.DataFrame:
    """A ranking file as `user_id` and a list column of at most 10 ids."""
    column = TASK_COLUMN[task]
    frame = _read_csv(path, ["user_id", column])
    lists = frame[column].str.split()
    too_long = lists.map(len) > MAX_LIST
    if too_long.any():
        i = int(np.argmax(too_long.to_numpy()))
        raise ValueError(f"{path}:{i + 2} field '{column}': {len(lists.iloc[i])} ids; write at most {MAX_LIST}, "
                         "best first, separated by spaces")
    frame[column] = lists
    return frame


def read_truth(out_dir: Path, task: str, horizon_days: int, cutoff: datetime) -> pd.DataFrame:
    path = Path(out_dir) / TRUTH_DIR / file_name(task, horizon_days, cutoff)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing truth file; re-run `shopsight bench run` into this folder")
    return pd.read_csv(path, dtype={"user_id": str, "target": str}, keep_default_na=False)


def model_dirs(out_dir: Path) -> Iterable[Path]:
    """Model folders of a benchmark folder (every subfolder but `_truth` and other `_` folders)."""
    return sorted(p for p in Path(out_dir).iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
