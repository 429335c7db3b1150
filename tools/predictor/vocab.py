"""Item and category vocabularies: the most frequent ids, then hashed buckets for the rest.

Layout of an id space: 0 pad, 1 none/unknown, then the known ids, then `hash_buckets` buckets
that absorb every id outside the vocabulary, so a catalog of millions fits in memory and an item
first seen after training still lands on a stable (shared) embedding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PAD, NONE = 0, 1  # reserved ids of the item and category vocabularies
N_RESERVED = 2


def _stable_hash(values: pd.Series, buckets: int) -> np.ndarray:
    # pandas' hash uses a fixed key, so the same id lands in the same bucket in every process.
    return (pd.util.hash_array(values.astype(str).to_numpy(dtype=object)) % np.uint64(buckets)).astype(np.int64)


@dataclass
class Vocab:
    """Item and category vocabularies: the most frequent ids, then hashed buckets for the rest.

    Layout of an id space: 0 pad, 1 none/unknown, then `len(known)` known ids, then `hash_buckets`
    buckets that absorb every id outside the vocabulary (so a catalog of millions fits in memory).
    """

    items: list[str]
    categories: list[str]
    item_hash_buckets: int = 64
    category_hash_buckets: int = 16
    dataset: str = ""  # a fingerprint of the training data, to refuse other datasets' events
    _item_index: dict = field(default_factory=dict, repr=False)
    _cat_index: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._item_index = {v: i + N_RESERVED for i, v in enumerate(self.items)}
        self._cat_index = {v: i + N_RESERVED for i, v in enumerate(self.categories)}

    @property
    def n_items(self) -> int:
        return N_RESERVED + len(self.items) + self.item_hash_buckets

    @property
    def n_categories(self) -> int:
        return N_RESERVED + len(self.categories) + self.category_hash_buckets

    def _encode(self, values: pd.Series, index: dict, n_known: int, buckets: int) -> np.ndarray:
        values = values.astype("string")
        codes, uniques = pd.factorize(values)  # encode each distinct id once
        mapped = np.array([index.get(u, -1) for u in uniques], dtype=np.int64)
        unknown = mapped < 0
        if unknown.any():
            mapped[unknown] = N_RESERVED + n_known + _stable_hash(pd.Series(uniques[unknown]), buckets)
        out = np.full(len(values), NONE, dtype=np.int64)
        ok = codes >= 0
        out[ok] = mapped[codes[ok]]
        return out

    def encode_items(self, values: pd.Series) -> np.ndarray:
        return self._encode(values, self._item_index, len(self.items), self.item_hash_buckets)

    def encode_categories(self, values: pd.Series) -> np.ndarray:
        return self._encode(values, self._cat_index, len(self.categories), self.category_hash_buckets)

    def known_fraction(self, item_ids: pd.Series) -> float:
        """Share of distinct item ids that the vocabulary knows (a low share = another dataset)."""
        uniques = pd.unique(item_ids.astype(str))
        return float(np.mean([u in self._item_index for u in uniques])) if len(uniques) else 1.0

    def to_json(self) -> str:
        return json.dumps({
            "dataset": self.dataset, "items": self.items, "categories": self.categories,
            "item_hash_buckets": self.item_hash_buckets, "category_hash_buckets": self.category_hash_buckets,
        })

    @classmethod
    def from_json(cls, text: str) -> "Vocab":
        raw = json.loads(text)
        return cls(items=list(raw["items"]), categories=list(raw["categories"]),
                   item_hash_buckets=int(raw["item_hash_buckets"]),
                   category_hash_buckets=int(raw["category_hash_buckets"]), dataset=raw.get("dataset", ""))


def build_vocab(events: pd.DataFrame, max_items: int, max_categories: int,
                item_hash_buckets: int = 64, category_hash_buckets: int = 16) -> Vocab:
    """The `max_items` most frequent items (ties by id, so it is deterministic) and categories."""
    def top(col: pd.Series, k: int) -> list[str]:
        counts = col.dropna().astype(str).value_counts()
        frame = pd.DataFrame({"id": counts.index.astype(str), "n": counts.to_numpy()})
        frame = frame.sort_values(["n", "id"], ascending=[False, True], kind="mergesort")
        return frame["id"].iloc[:k].tolist()

    items = top(events["item_id"], max_items)
    cats = top(events["category_id"], max_categories) if "category_id" in events else []
    fingerprint = f"{len(events)}ev:{events['user_id'].nunique()}u:{','.join(items[:5])}"
    return Vocab(items, cats, item_hash_buckets, category_hash_buckets, dataset=fingerprint)
