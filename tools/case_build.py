"""Building the case memory fast: every cutoff's snapshots, texts, outcomes and vectors in batches.

The search side lives in `tools/cases.py`; this module only writes. Per cutoff:
1. one lookup of which ids are stored already (incremental: re-runs add nothing twice);
2. snapshot features, outcomes and texts for all missing users in one vectorised pass
   (`tools.case_snapshots.snapshot_batch`);
3. one embedding call for the distinct phrase parts not embedded yet in this run (a few hundred
   for thousands of customers, see `snapshot_phrase_parts`; a case's vector is the normalised
   sum of its parts'; bf16 where the CPU has it), one `predictor.user_vectors` call for all users,
   torch on one thread;
4. Chroma upserts of up to `MAX_WRITE` rows with the embeddings passed in: the text collection
   (its summary and outcomes packed into the metadata, `tools.cases.pack_snapshot`), then the
   vector collection (the vector and user_id only).
Steps 2-3 of the next cutoff run in a second thread while this cutoff is written.

A write that fails (a full disk) removes what this run had added and raises `CaseMemoryError`
naming the folder and the fix.

    from tools.case_build import build_cases
    report = build_cases(memory, events, cutoffs, (7, 30), predictor=predictor,
                         on_progress=lambda done, total: print(done, total))
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from tools.case_snapshots import case_id, snapshot_batch
from tools.cases import pack_snapshot
from tools.spans import span_words

MAX_WRITE = 5000  # rows per Chroma call (Chroma's own limit is larger; bounded memory per call)
# Room a write needs: measured 5.6 KB per case over both collections (the demo shop's 12,117 cases
# took 68 MB), taken 3x; plus SHOPSIGHT_CASE_MIN_FREE_MB (default 64) for SQLite's journal and
# Chroma's compaction. Chroma's SQLite writer could wait forever after running out of space
# (tests/test_case_build.py), so a build stops before it would.
BYTES_PER_CASE = 16_000


def _stored(collection, ids: list[str], size: int) -> set[str]:
    have: set[str] = set()
    for start in range(0, len(ids), size):
        have.update(collection.get(ids=ids[start:start + size], include=[])["ids"])
    return have


def check_cutoffs(events: pd.DataFrame, cutoffs: list[datetime], horizons_days: tuple[int, ...],
                  error: type[Exception]) -> None:
    """Every cutoff needs its longest outcome window inside the data; `error` says which cutoffs fit."""
    if events is None or not len(events):
        raise error("no events to build cases from: import data first (shopsight data import / demo)")
    first, last = pd.Timestamp(events["ts"].min()), pd.Timestamp(events["ts"].max())
    longest = max(horizons_days)
    if not cutoffs or last - first <= pd.Timedelta(days=longest):
        raise error(
            f"the events span {span_words((last - first).total_seconds())} ({first} .. {last}): a case needs "
            f"history before its cutoff and its {longest}-day outcome window after it, so there is no cutoff to "
            "build cases at; "
            + ("choose shorter horizons that fit (--horizons, or SHOPSIGHT_HORIZONS_DAYS, in whole days) or import "
               "a longer history" if last - first > pd.Timedelta(days=1) else
               "outcome windows are whole days, so cases need more than a day of events: import a longer history"))
    for c in cutoffs:
        if pd.Timestamp(c) <= first:
            raise error(f"cutoff {pd.Timestamp(c):%Y-%m-%d %H:%M:%S} is not after the first event ({first}): no "
                        f"customer has a history there; pick cutoffs from {first:%Y-%m-%d} to "
                        f"{last - pd.Timedelta(days=longest):%Y-%m-%d} (--cutoffs YYYY-MM-DD ...)")
        if pd.Timestamp(c) + pd.Timedelta(days=longest) > last:
            raise error(
                f"cutoff {pd.Timestamp(c):%Y-%m-%d %H:%M:%S}: its {longest}-day outcome window ends after the "
                f"last event ({last:%Y-%m-%d}); pick cutoffs on or before "
                f"{last - pd.Timedelta(days=longest):%Y-%m-%d} (--cutoffs YYYY-MM-DD ...)")


def build_cases(memory: Any, events: pd.DataFrame, cutoffs: list[datetime], horizons_days: tuple[int, ...],
                predictor: Any = None, reviews: pd.DataFrame | None = None, progress: bool = True,
                on_progress: Callable[[int, int], None] | None = None, error: type[Exception] = RuntimeError
                ) -> dict:
    """Add the missing snapshots of every user at each cutoff to `memory` (a CaseMemory).

    Returns:
        {"cutoffs", "text_added", "text_skipped", "vectors_added", "vectors_skipped", "notes",
         "phrases_embedded", "seconds"}.
    """
    start = time.perf_counter()
    check_cutoffs(events, cutoffs, horizons_days, error)
    report = {"cutoffs": [pd.Timestamp(c).isoformat() for c in cutoffs], "text_added": 0, "text_skipped": 0,
              "vectors_added": 0, "vectors_skipped": 0, "phrases_embedded": 0, "notes": []}
    if predictor is None:
        report["notes"].append("no predictor given: only the text collection was built "
                               "(train one with `shopsight predictor train`, then re-run)")
    else:
        memory.retire_stale_vectors(getattr(predictor, "version", None), report)
    rewrite_texts = memory.texts_need_rewrite(report)
    write = min(MAX_WRITE, int(getattr(memory.client, "get_max_batch_size", lambda: MAX_WRITE)()))
    plan = []  # (cutoff, users to build, missing text ids, missing vector ids)
    for c in cutoffs:
        users = sorted(events.loc[events["ts"] <= pd.Timestamp(c), "user_id"].astype(str).unique())
        ids = [case_id(u, c) for u in users]
        todo_text = set(ids) if rewrite_texts else set(ids) - _stored(memory.by_text, ids, write)
        todo_vec = set(ids) - _stored(memory.by_vector, ids, write) if predictor is not None else set()
        report["text_skipped"] += len(ids) - len(todo_text)
        report["vectors_skipped"] += len(ids) - len(todo_vec) if predictor is not None else 0
        plan.append((c, [u for u, i in zip(users, ids) if i in todo_text or i in todo_vec], todo_text, todo_vec))
    plan = [step for step in plan if step[1]]
    _check_room(memory, sum(len(step[1]) for step in plan), error, "nothing was written")
    total = sum(len(users) for _, users, _, _ in plan)
    bar = tqdm(total=total, desc="cases", unit="case", disable=not progress)
    phrase_vectors: dict[str, np.ndarray] = {}
    added: list[tuple[Any, list[str]]] = []  # what this run wrote, removed again if a write fails

    def prepare(step: tuple) -> _Prepared:
        return _prepare(step, memory, events, horizons_days, predictor, reviews, phrase_vectors, report)

    def write_rows(collection: Any, ids: list[str], embeddings: list, metadatas: list[dict]) -> None:
        for s in range(0, len(ids), write):
            part = slice(s, s + write)
            added.append((collection, ids[part]))
            collection.upsert(ids=ids[part], embeddings=embeddings[part], metadatas=metadatas[part])

    done = 0
    try:
        # The next cutoff's snapshots, phrase vectors and user vectors are computed in a second thread
        # while this one writes the current cutoff (Chroma's writer releases the GIL); the writes
        # themselves stay in one thread, one collection after the other: a writer running beside a
        # failed one kept writing after the failure (tests/test_case_build.py).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="case-build") as pool, _torch_threads(1):
            upcoming = pool.submit(prepare, plan[0]) if plan else None
            for number in range(len(plan)):
                ready = upcoming.result()
                upcoming = pool.submit(prepare, plan[number + 1]) if number + 1 < len(plan) else None
                try:
                    _check_room(memory, ready.n_users, error,
                                f"the {done:,} cases this run wrote before are kept; a re-run adds the rest")
                    write_rows(memory.by_text, ready.text_ids, ready.text_vectors, ready.metadatas)
                    # The vector collection keeps only what its search filters on: the document and the
                    # outcomes are read from the text collection by id (tools/cases.py, search_vector).
                    write_rows(memory.by_vector, ready.vector_ids, ready.user_vectors,
                               [{"user_id": u} for u in ready.vector_users])
                except BaseException:
                    if upcoming is not None:
                        upcoming.cancel()
                    raise
                report["text_added"] += len(ready.text_ids)
                report["vectors_added"] += len(ready.vector_ids)
                done += ready.n_users
                bar.update(ready.n_users)
                if on_progress:
                    on_progress(done, total)
        if predictor is not None and getattr(predictor, "version", None):
            memory.by_vector.modify(metadata={"predictor_version": str(predictor.version)})
        memory.mark_texts_current()
    except Exception as exc:
        if isinstance(exc, error) or not _is_write_failure(exc):
            raise
        removed = _roll_back(added)
        raise error(
            f"the case memory at {memory.location} could not be written ({type(exc).__name__}: {exc}); "
            f"{removed} case(s) this run had added were removed again. "
            "Free disk space there (or set SHOPSIGHT_HOME to a disk with room) and re-run "
            "`shopsight cases build`") from exc
    finally:
        bar.close()
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report


@dataclass
class _Prepared:
    """One cutoff's rows, ready to write: the text collection's and the vector collection's."""

    n_users: int
    text_ids: list[str]
    text_vectors: list[np.ndarray]
    metadatas: list[dict]  # packed: the summary rides in the metadata (tools/cases.py, pack_snapshot)
    vector_ids: list[str]
    vector_users: list[str]
    user_vectors: list[np.ndarray]


def _prepare(step: tuple, memory: Any, events: pd.DataFrame, horizons_days: tuple[int, ...], predictor: Any,
             reviews: pd.DataFrame | None, phrase_vectors: dict[str, np.ndarray], report: dict) -> _Prepared:
    """Snapshots, outcomes and texts of one cutoff; one embedding call for the phrase parts not embedded
    yet in this run (`phrase_vectors` is filled); one `predictor.user_vectors` call for its users."""
    cutoff, users, todo_text, todo_vec = step
    batch = snapshot_batch(events, cutoff, horizons_days, users=users, reviews=reviews)
    text_rows = [k for k, i in enumerate(batch.ids) if i in todo_text]
    new_phrases = sorted({part for k in text_rows for part in batch.phrases[k]} - phrase_vectors.keys())
    if new_phrases:
        with bf16_where_native():
            vectors = memory.text_embedding(new_phrases)
        phrase_vectors.update(zip(new_phrases, (np.asarray(v, dtype=np.float32) for v in vectors)))
        report["phrases_embedded"] += len(new_phrases)
    vec_rows, by_user = [], {}
    if todo_vec:
        vec_rows = [k for k, i in enumerate(batch.ids) if i in todo_vec]
        got, vectors = predictor.user_vectors(events, cutoff, users=[batch.users[k] for k in vec_rows])
        by_user = {u: np.asarray(v, dtype=np.float32) for u, v in zip(got, vectors)}
        vec_rows = [k for k in vec_rows if batch.users[k] in by_user]
    return _Prepared(
        n_users=len(users), text_ids=[batch.ids[k] for k in text_rows],
        text_vectors=[_sum_normalised([phrase_vectors[p] for p in batch.phrases[k]]) for k in text_rows],
        metadatas=[pack_snapshot(batch.metadatas[k], batch.documents[k]) for k in text_rows],
        vector_ids=[batch.ids[k] for k in vec_rows], vector_users=[batch.users[k] for k in vec_rows],
        user_vectors=[by_user[batch.users[k]] for k in vec_rows])


@contextmanager
def bf16_where_native():
    """Torch matmuls in bf16 meanwhile, where the CPU has bf16 instructions (avx512_bf16, AMX); elsewhere
    nothing changes (emulated bf16 is slower). MiniLM's phrase vectors then cost 1.75 instead of 3.12
    CPU-s for the demo shop's 460 parts and agree with fp32 to a cosine of 0.99998 or more
    (bench/results/first_run.md); queries stay fp32."""
    import torch

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        yield
        return
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yield


@contextmanager
def _torch_threads(n: int):
    """Torch on `n` threads meanwhile: the build's two threads (compute, Chroma writes) already fill two
    cores, and torch's own pool spinning beside them cost 2.8x the CPU of one thread when measured
    (bench/results/first_run.md)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_room(memory: Any, cases: int, error: type[Exception], kept: str) -> None:
    """Stop with `error` before writing `cases` cases to a local folder without room for them."""
    folder = Path(str(memory.location))
    if not cases or not folder.is_dir():  # a Chroma server: its disk is not ours to see
        return
    free = shutil.disk_usage(folder).free
    need = cases * BYTES_PER_CASE + int(float(os.environ.get("SHOPSIGHT_CASE_MIN_FREE_MB", "64")) * 2**20)
    if free < need:
        raise error(f"the disk holding the case memory at {folder} has {free / 2**20:,.0f} MB free; {cases:,} "
                    f"more cases need about {need / 2**20:,.0f} MB ({kept}). Free disk space there (or set "
                    "SHOPSIGHT_HOME to a disk with room) and re-run `shopsight cases build`")


def _sum_normalised(vectors: list[np.ndarray]) -> np.ndarray:
    total = np.sum(vectors, axis=0)
    return (total / max(float(np.linalg.norm(total)), 1e-9)).astype(np.float32)


def _is_write_failure(exc: BaseException) -> bool:
    """A full disk or a file-size limit, however the storage layer words it."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return isinstance(exc, OSError) or any(word in text for word in (
        "disk", "full", "no space", "too large", "file size", "readonly", "read-only", "i/o error"))


def _roll_back(added: list[tuple[Any, list[str]]]) -> int:
    removed = 0
    for collection, ids in reversed(added):
        try:
            collection.delete(ids=ids)
            removed += len(ids)
        except Exception:  # noqa: BLE001 - best effort: the error raised next names the fix either way
            pass
    return removed
