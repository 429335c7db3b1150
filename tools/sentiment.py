"""Review sentiment: a small bilingual classifier trained on star ratings.

Measured choice (bench/sentiment.py, numbers in its table): TF-IDF over character 1-4
grams plus word 1-2 grams, into a class-balanced logistic regression. Character n-grams
need no word segmentation, so the same model reads English and Chinese, and they survive
typos; the word bigrams catch negation ("not good"). It trains in seconds on a shop's own
ratings and scores thousands of reviews per second on one core, so every review can be
scored at import or on demand. Labels: ratings 1-2 negative, 4-5 positive, 3 left out.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_union

# Ratings that count as labels; 3 stars is mixed and teaches nothing about the two ends.
NEGATIVE_RATINGS = (1, 2)
POSITIVE_RATINGS = (4, 5)
MIN_PER_CLASS = 20  # fewer labelled reviews than this per class: fall back to the bundled corpora


@dataclass
class SentimentConfig:
    """What the classifier was built with; saved as config.yaml beside the weights."""

    char_ngrams: tuple[int, int] = (1, 4)
    word_ngrams: tuple[int, int] = (1, 2)
    max_features: int = 300_000
    min_df: int = 2
    C: float = 10.0
    seed: int = 0


def rating_labels(ratings) -> np.ndarray:
    """1 for positive ratings, 0 for negative, -1 for 3 stars or missing."""
    r = np.asarray([np.nan if v is None else v for v in ratings], dtype=float)
    labels = np.full(len(r), -1, dtype=int)
    labels[np.isin(r, POSITIVE_RATINGS)] = 1
    labels[np.isin(r, NEGATIVE_RATINGS)] = 0
    return labels


class SentimentModel:
    """P(positive) for review texts; `fit`, `predict_proba`, `save`, `load`."""

    def __init__(self, config: SentimentConfig | None = None) -> None:
        self.config = config or SentimentConfig()
        self.pipeline: Pipeline | None = None
        self.trained_on: dict = {}

    def _build(self, n_docs: int) -> Pipeline:
        c = self.config
        # min_df 2 on a tiny shop would leave no vocabulary: relax it when data is small.
        min_df = c.min_df if n_docs >= 200 else 1
        features = make_union(
            TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(c.char_ngrams), sublinear_tf=True,
                            min_df=min_df, max_features=c.max_features, lowercase=True),
            TfidfVectorizer(analyzer="word", ngram_range=tuple(c.word_ngrams), sublinear_tf=True,
                            min_df=min_df, max_features=c.max_features, token_pattern=r"(?u)\b\w+\b"),
        )
        clf = LogisticRegression(C=c.C, class_weight="balanced", max_iter=2000, random_state=c.seed)
        return Pipeline([("features", features), ("clf", clf)])

    def fit(self, texts: list[str], labels, source: str = "texts") -> "SentimentModel":
        """Train on texts with labels 1 (positive) / 0 (negative); rows labelled -1 are skipped.

        Raises:
            ValueError: fewer than MIN_PER_CLASS examples of either class.
        """
        labels = np.asarray(labels, dtype=int)
        keep = labels >= 0
        texts = [t or "" for t, k in zip(texts, keep) if k]
        y = labels[keep]
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        if min(n_pos, n_neg) < MIN_PER_CLASS:
            raise ValueError(f"{source}: {n_pos} positive and {n_neg} negative labelled reviews; "
                             f"need at least {MIN_PER_CLASS} of each (ratings 1-2 and 4-5)")
        self.pipeline = self._build(len(texts)).fit(texts, y)
        self.trained_on = {"source": source, "n_positive": n_pos, "n_negative": n_neg}
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """P(positive) per text, shape (n,)."""
        if self.pipeline is None:
            raise RuntimeError("SentimentModel.predict_proba before fit/load")
        if not len(texts):
            return np.zeros(0)
        return self.pipeline.predict_proba([t or "" for t in texts])[:, 1]

    def save(self, folder: Path, fingerprint: str = "") -> None:
        """Write model.pkl and config.yaml (written last, so a folder with it is complete)."""
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "model.pkl.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(self.pipeline, fh)
        tmp.replace(folder / "model.pkl")
        meta = {"config": asdict(self.config), "trained_on": self.trained_on, "fingerprint": fingerprint}
        (folder / "config.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))

    @classmethod
    def load(cls, folder: Path) -> tuple["SentimentModel", str]:
        """A saved model and the data fingerprint it was trained on.

        Raises:
            FileNotFoundError: no complete model in `folder`.
        """
        if not (folder / "config.yaml").exists() or not (folder / "model.pkl").exists():
            raise FileNotFoundError(f"{folder}: no saved sentiment model (config.yaml + model.pkl)")
        meta = yaml.safe_load((folder / "config.yaml").read_text())
        config = meta.get("config", {})
        for key in ("char_ngrams", "word_ngrams"):
            if key in config:
                config[key] = tuple(config[key])
        model = cls(SentimentConfig(**config))
        with open(folder / "model.pkl", "rb") as fh:
            # Our own file under the home folder, written by `save` above.
            model.pipeline = pickle.load(fh)
        model.trained_on = meta.get("trained_on", {})
        return model, meta.get("fingerprint", "")


def fingerprint_reviews(review_ids, ratings) -> str:
    """A short hash of which reviews (and ratings) a model was trained on: retrain when it changes."""
    h = hashlib.sha256()
    for rid, rating in zip(review_ids, ratings):
        h.update(f"{rid}:{rating};".encode())
    return h.hexdigest()[:16]
