"""The case memory: past customers, what they looked like and what then happened, in Chroma.

Two collections hold the same snapshots (`tools.case_snapshots`), keyed `user@cutoff`:
- `cases_by_vector`: the predictor's user vector (supplied directly, cosine space), so
  "customers like this one" means "customers the model sees alike"; it stores the vector and
  the user id only (a search reads the document and outcomes from the text collection by id);
- `cases_by_text`: a one-line description embedded by an explicit offline embedding
  function (all-MiniLM-L6-v2 from its package), with the document and the outcomes as
  metadata; it also holds cases analysts saved.

`build` is incremental: ids that are already stored are skipped, re-runs add nothing twice; the
batched writer is `tools/case_build.py`, the text collection embeds
`snapshot_phrase_parts` (the normalised sum of the parts' vectors).
A Chroma server is used when a URL is given (HttpClient), a local folder otherwise
(PersistentClient). A server and a PersistentClient must not share one folder.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import chromadb
import numpy as np
import pandas as pd
from chromadb.config import Settings as ChromaSettings

from tools import paths
from tools.case_snapshots import review_facts, snapshot_features, snapshot_phrase
from tools.embeddings import MiniLMEmbedding, PrecomputedEmbedding

VECTOR_COLLECTION = "cases_by_vector"
TEXT_COLLECTION = "cases_by_text"
# How a snapshot is stored; older snapshots are rewritten by the next build. 2: days_to_return in the
# outcomes, and the summary and outcomes packed into one JSON field (`pack_snapshot`).
CASE_FORMAT = "2"
FILTERED_FIELDS = ("kind", "user_id", "cutoff")  # searched or counted by Chroma, so kept as metadata keys


class CaseMemoryError(Exception):
    """A case memory request that cannot be honoured; the message says the fix."""


def make_client(path: str | Path | None = None, url: str | None = None) -> Any:
    """HttpClient for `url` (http://host:port), else a PersistentClient on `path` (default home folder)."""
    settings = ChromaSettings(anonymized_telemetry=False)
    if url:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if not parsed.hostname:
            raise CaseMemoryError(f"chroma url {url!r}: expected http://host:port (SHOPSIGHT_CHROMA_URL)")
        return chromadb.HttpClient(host=parsed.hostname, port=parsed.port or 8000, ssl=parsed.scheme == "https",
                                   settings=settings)
    folder = Path(path) if path else paths.default_chroma_path()
    folder.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(folder), settings=settings)


def pack_snapshot(metadata: dict, summary: str) -> dict:
    """A snapshot's Chroma metadata: the filtered fields as keys, the rest and its summary in one JSON string.

    Chroma writes one row per metadata key and indexes documents for full-text search; one JSON
    field and no document halved the text collection's write cost (bench/results/first_run.md).
    """
    packed = {k: metadata[k] for k in FILTERED_FIELDS}
    packed["case"] = json.dumps({**{k: v for k, v in metadata.items() if k not in FILTERED_FIELDS},
                                 "summary": summary}, separators=(",", ":"))
    return packed


def unpack_case(document: str | None, metadata: dict | None) -> tuple[str, dict]:
    """(summary text, flat metadata) of a stored case, packed (`pack_snapshot`) or not (analyst cases,
    snapshots of case format 1)."""
    metadata = dict(metadata or {})
    if "case" not in metadata:
        return document or "", metadata
    fields = json.loads(metadata.pop("case"))
    summary = fields.pop("summary", document or "")
    return summary, {**metadata, **fields}


DISTINCT_POOL_FACTOR = 4  # neighbours fetched per case asked for, so repeats of one customer can be skipped


def _chunks(seq: list, size: int) -> Iterable[list]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


class CaseMemory:
    """Past cases in Chroma, searchable by predictor user vector and by text."""

    def __init__(self, path: str | Path | None = None, url: str | None = None, text_embedding: Any = None,
                 client: Any = None) -> None:
        self.client = client or make_client(path, url)
        self.location = url or str(Path(path) if path else paths.default_chroma_path())
        # A fresh configuration dict per call: chroma writes the embedding function into it.
        self.text_embedding = text_embedding or MiniLMEmbedding()
        self.by_text = self.client.get_or_create_collection(
            TEXT_COLLECTION, embedding_function=self.text_embedding,
            configuration={"hnsw": {"space": "cosine"}})
        self.by_vector = self.client.get_or_create_collection(
            VECTOR_COLLECTION, embedding_function=PrecomputedEmbedding(),
            configuration={"hnsw": {"space": "cosine"}})

    # ----------------------------------------------------------------- building
    def build(self, events: pd.DataFrame, cutoffs: list[datetime], horizons_days: tuple[int, ...] = (7, 30),
              predictor: Any = None, progress: bool = True, reviews: pd.DataFrame | None = None,
              on_progress: Callable[[int, int], None] | None = None) -> dict:
        """Add the snapshots of every user at each cutoff; skip those already stored.

        Args:
            events: canonical events (all of them: outcomes read the window after each cutoff).
            cutoffs: past cutoffs; each needs `cutoff + max(horizons_days)` inside the data.
            horizons_days: outcome windows stored with every case.
            predictor: a `Predictor` for the vector collection; None stores text only.
            progress: show a tqdm bar.
            reviews: canonical reviews; what a user wrote by the cutoff goes into the case text.
            on_progress: called with (cases done, cases to do) after each cutoff.

        Returns:
            {"cutoffs": [...], "text_added", "text_skipped", "vectors_added", "vectors_skipped",
             "phrases_embedded", "seconds", "notes"}.

        Raises:
            CaseMemoryError: a cutoff whose outcome window runs past the last event, or a write that
                failed (full disk; what this run added is removed again).
        """
        from tools.case_build import build_cases  # the fast batched writer (tools/case_build.py)

        return build_cases(self, events, cutoffs, horizons_days, predictor=predictor, reviews=reviews,
                           progress=progress, on_progress=on_progress, error=CaseMemoryError)

    def texts_need_rewrite(self, report: dict) -> bool:
        """True when the text collection holds snapshots written before this code's `CASE_FORMAT`
        (their outcomes lack fields, e.g. days_to_return): the build then rewrites them (same ids)."""
        stored = (self.by_text.metadata or {}).get("case_format")
        if stored == CASE_FORMAT:
            return False
        if not self.by_text.get(where={"kind": "snapshot"}, limit=1, include=[])["ids"]:
            self.mark_texts_current()  # nothing old to rewrite: an interrupted first build resumes as usual
            return False
        report["notes"].append(f"snapshots of case format {stored or 1} rewritten in format {CASE_FORMAT} "
                               "(outcomes gained days_to_return)")
        return True

    def mark_texts_current(self) -> None:
        """Record that the text collection's snapshots are in this code's `CASE_FORMAT`."""
        self.by_text.modify(metadata={**(self.by_text.metadata or {}), "case_format": CASE_FORMAT})

    def vector_version(self) -> str | None:
        """The predictor version whose user vectors the vector collection holds (None: unknown)."""
        return (self.by_vector.metadata or {}).get("predictor_version")

    def retire_stale_vectors(self, version: str | None, report: dict) -> None:
        """Drop vectors a different predictor wrote: its space is not this one's, so they are rebuilt."""
        stored = self.vector_version()
        if not version or not stored or stored == str(version) or self.by_vector.count() == 0:
            return
        report["notes"].append(f"user vectors of predictor {stored} replaced by vectors of {version}")
        self.client.delete_collection(VECTOR_COLLECTION)
        self.by_vector = self.client.get_or_create_collection(
            VECTOR_COLLECTION, embedding_function=PrecomputedEmbedding(), configuration={"hnsw": {"space": "cosine"}})

    def save_case(self, text: str, outcome: str, user_id: str | None = None, title: str = "",
                  analyst: str = "") -> str:
        """Store a resolved case an analyst wrote; the same text saved twice keeps one id.

        Returns:
            The case id (`analyst:<hash of text>`).
        """
        if not text or not text.strip():
            raise CaseMemoryError("save_case: the case text is empty; describe the customer and situation")
        if not outcome or not outcome.strip():
            raise CaseMemoryError("save_case: say what happened (outcome), e.g. 'retained after a 10% voucher'")
        cid = "analyst:" + hashlib.sha256(text.strip().encode()).hexdigest()[:12]
        meta = {"kind": "analyst", "outcome": outcome.strip(), "title": title, "analyst": analyst,
                "user_id": user_id or "", "saved_at": datetime.now(timezone.utc).replace(tzinfo=None).isoformat()}
        self.by_text.upsert(ids=[cid], documents=[text.strip()], metadatas=[meta])
        return cid

    # ---------------------------------------------------------------- searching
    @staticmethod
    def _format(res: dict, horizon_days: int | None) -> list[dict]:
        out = []
        for cid, dist, stored_doc, stored_meta in zip(res["ids"][0], res["distances"][0], res["documents"][0],
                                                      res["metadatas"][0]):
            doc, meta = unpack_case(stored_doc, stored_meta)
            item = {"case_id": cid, "similarity": round(1.0 - float(dist), 4), "kind": meta.get("kind")}
            if meta.get("kind") == "analyst":
                item.update(title=meta.get("title", ""), outcome=meta.get("outcome", ""), text=doc[:300])
            else:
                item.update(user_id=meta.get("user_id"), cutoff=meta.get("cutoff"), summary=doc)
                h = horizon_days if horizon_days and f"churned_{horizon_days}d" in meta else None
                if h is None:  # the longest stored horizon
                    hs = [int(x) for x in str(meta.get("horizons_days", "")).split() if x.isdigit()]
                    h = max(hs) if hs else None
                if h is not None:
                    item.update(horizon_days=h, churned=bool(meta[f"churned_{h}d"]), buys_after=meta[f"buys_{h}d"],
                                spend_after=meta[f"spend_{h}d"], days_to_return=_days_to_return(meta, h))
                item.update(bought_categories=meta.get("bought_categories", ""),
                            bought_items=meta.get("bought_items", ""))
            out.append(item)
        return out

    @staticmethod
    def _pool(collection, k: int) -> int:
        """How many neighbours to fetch so that k distinct customers usually remain: one customer
        has a snapshot per cutoff, so the nearest k are often the same person at several dates."""
        return max(1, min(k * DISTINCT_POOL_FACTOR, collection.count()))

    @staticmethod
    def _outcome_summary(cases: list[dict]) -> dict:
        """Counts over the returned snapshots: how many churned, and how many came back (bought again
        within the horizon) after how many days, with the ids of those who came back (for citations)."""
        snaps = [c for c in cases if c.get("kind") == "snapshot" and "churned" in c]
        if not snaps:
            return {"n_snapshots": 0}
        churned = sum(c["churned"] for c in snaps)
        back = [c for c in snaps if not c["churned"]]
        days = [c["days_to_return"] for c in back if c.get("days_to_return") is not None]
        horizons = sorted({c["horizon_days"] for c in snaps})
        return {"n_snapshots": len(snaps), "churned": churned, "retained": len(snaps) - churned,
                "churn_rate": round(churned / len(snaps), 3),
                "horizon_days": horizons[0] if len(horizons) == 1 else None,  # None: cases of mixed horizons
                "came_back": len(back), "came_back_share": round(len(back) / len(snaps), 3),
                # None when no one came back, or when the cases predate the stored days (rebuild to fill).
                "median_days_to_return": round(float(np.median(days)), 1) if days else None,
                "days_to_return_known": len(days),
                "came_back_case_ids": [c["case_id"] for c in back]}

    def search_text(self, text: str, k: int = 5, horizon_days: int | None = None,
                    exclude_user: str | None = None) -> dict:
        """Cases (snapshots and analyst cases) whose description is nearest to `text`."""
        if self.by_text.count() == 0:
            raise CaseMemoryError("the case memory is empty: build it with `shopsight cases build`")
        where = {"user_id": {"$ne": exclude_user}} if exclude_user else None
        res = self.by_text.query(query_texts=[text], n_results=self._pool(self.by_text, k), where=where,
                                 include=["documents", "metadatas", "distances"])
        cases = _distinct_customers(self._format(res, horizon_days), k)
        return {"method": "text", "cases": cases, "outcomes": self._outcome_summary(cases)}

    def search_vector(self, vector, k: int = 5, horizon_days: int | None = None,
                      exclude_user: str | None = None) -> dict:
        """Snapshots whose predictor user vector is nearest (cosine) to `vector`."""
        if self.by_vector.count() == 0:
            raise CaseMemoryError("no user vectors stored: run `shopsight cases build` with a trained predictor")
        where = {"user_id": {"$ne": exclude_user}} if exclude_user else None
        res = self.by_vector.query(query_embeddings=[np.asarray(vector, dtype=np.float32)],
                                   n_results=self._pool(self.by_vector, k), where=where, include=["distances"])
        # The vector collection stores vectors and user ids only; documents and outcomes live once,
        # in the text collection, under the same ids.
        ids, distances = res["ids"][0], res["distances"][0]
        texts = self.by_text.get(ids=ids, include=["documents", "metadatas"])
        found = dict(zip(texts["ids"], zip(texts["documents"], texts["metadatas"])))
        rows = [(i, d, *found[i]) for i, d in zip(ids, distances) if i in found]
        joined = {"ids": [[r[0] for r in rows]], "distances": [[r[1] for r in rows]],
                  "documents": [[r[2] for r in rows]], "metadatas": [[r[3] for r in rows]]}
        cases = _distinct_customers(self._format(joined, horizon_days), k)
        return {"method": "user_vector", "cases": cases, "outcomes": self._outcome_summary(cases)}

    def search_user(self, user_id: str, events: pd.DataFrame, cutoff: datetime, k: int = 5,
                    horizon_days: int | None = None, predictor: Any = None,
                    reviews: pd.DataFrame | None = None) -> dict:
        """Past cases like this user now: by the predictor's vector when available, else by text.

        The user's own past snapshots are left out: "customers like them" means other customers.
        """
        current = getattr(predictor, "version", None)
        stale = bool(current) and self.vector_version() not in (None, str(current))
        if predictor is not None and self.by_vector.count() > 0 and not stale:  # stale vectors: search by text
            got, vectors = predictor.user_vectors(events, cutoff, users=[user_id])
            if len(got):
                return self.search_vector(vectors[0], k, horizon_days, exclude_user=user_id)
        feats = snapshot_features(events, cutoff, users=[user_id])
        if not len(feats):
            raise CaseMemoryError(f"user {user_id} has no events on or before {pd.Timestamp(cutoff):%Y-%m-%d}")
        revs = review_facts(reviews, cutoff, {user_id})
        # The phrase, not the full text: it is what the collection embeds (tools/case_build.py).
        text = snapshot_phrase(feats.iloc[0], revs.loc[user_id] if user_id in revs.index else None)
        return self.search_text(text, k, horizon_days, exclude_user=user_id)

    def get_case(self, case_id: str) -> dict | None:
        """One stored case by id: {case_id, text, metadata} (metadata flat: outcomes as keys), or None."""
        got = self.by_text.get(ids=[str(case_id)], include=["documents", "metadatas"])
        if not got["ids"]:
            return None
        text, metadata = unpack_case(got["documents"][0], got["metadatas"][0])
        return {"case_id": got["ids"][0], "text": text, "metadata": metadata}

    def info(self) -> dict:
        """Counts and cutoffs stored (for `shopsight cases info`)."""
        metas = []
        total = self.by_text.count()
        for offset in range(0, total, 5000):
            metas += self.by_text.get(include=["metadatas"], limit=5000, offset=offset)["metadatas"]
        cutoffs = pd.Series([m.get("cutoff") for m in metas if m.get("kind") == "snapshot"]).value_counts()
        return {"location": self.location, "text_cases": total, "vector_cases": self.by_vector.count(),
                "analyst_cases": sum(1 for m in metas if m.get("kind") == "analyst"),
                "snapshots_by_cutoff": {str(k): int(v) for k, v in sorted(cutoffs.items())}}


def _days_to_return(meta: dict, horizon_days: int) -> float | None:
    """Days from the snapshot to the first purchase after it, when that fell within `horizon_days`
    (None: no purchase within it, or a case stored before the build recorded the days)."""
    days = meta.get("days_to_return")
    if not isinstance(days, (int, float)) or days < 0 or days > horizon_days:
        return None
    return float(days)


def _distinct_customers(cases: list[dict], k: int) -> list[dict]:
    """The first k cases, nearest first, with each customer's nearest snapshot only.

    "4 of 5 similar customers churned" must count five people, not one person at two cutoffs.
    Analyst cases (no user) are kept as they come.
    """
    seen: set[str] = set()
    kept: list[dict] = []
    for case in cases:
        user = case.get("user_id") if case.get("kind") == "snapshot" else None
        if user:
            if user in seen:
                continue
            seen.add(user)
        kept.append(case)
        if len(kept) == k:
            break
    return kept
