"""The batched case build (tools/case_build.py): one embedding call per cutoff for distinct phrase parts,
progress per cutoff, and a failed write (a full disk, simulated with a file-size limit) that leaves
the memory exactly as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import pandas as pd

from test_cases import FeatureVectors, HashingEmbedding
from tools.case_snapshots import case_id, snapshot_batch
from tools.cases import CaseMemory, CaseMemoryError

ROOT = Path(__file__).resolve().parents[1]
CUTOFFS = [datetime(2024, 2, 1), datetime(2024, 3, 1), datetime(2024, 3, 15)]


def shop_events(n_users: int = 400, seed: int = 0) -> pd.DataFrame:
    """Random views and buys of `n_users` over 120 days: enough users for several write batches."""
    rng = np.random.default_rng(seed)
    n = 4 * n_users
    t0 = datetime(2024, 1, 1)
    return pd.DataFrame({
        "user_id": [f"u{i % n_users}" for i in range(n)],
        "ts": [t0 + pd.Timedelta(hours=int(h)) for h in rng.integers(0, 120 * 24, n)],
        "behavior": rng.choice(["view", "view", "buy"], n), "item_id": rng.choice(["i1", "i2", "i3", "i4"], n),
        "category_id": rng.choice(["tea", "coffee"], n), "quantity": 1, "amount": rng.uniform(1, 90, n).round(2)})


class CountingEmbedding(HashingEmbedding):
    """The test's hashing embedding, counting its calls and texts."""

    def __init__(self, dims: int = 64) -> None:
        super().__init__(dims)
        self.calls: list[int] = []

    def __call__(self, input):
        self.calls.append(len(input))
        return super().__call__(input)


def test_each_distinct_phrase_part_is_embedded_once_in_one_call_per_cutoff(tmp_path):
    events, ef = shop_events(), CountingEmbedding()
    mem = CaseMemory(path=tmp_path / "c", text_embedding=ef)
    seen = []
    report = mem.build(events, CUTOFFS, (7, 30), predictor=FeatureVectors(), progress=False,
                       on_progress=lambda done, total: seen.append((done, total)))
    phrases = {p for c in CUTOFFS for parts in snapshot_batch(events, c, (7, 30)).phrases for p in parts}
    assert report["phrases_embedded"] == len(phrases) == sum(ef.calls) < report["text_added"]
    assert len(ef.calls) <= len(CUTOFFS)  # one call per cutoff at most (none when all its phrases are known)
    total = report["text_added"]
    assert seen[-1] == (total, total) and len(seen) == len(CUTOFFS)
    assert mem.by_text.count() == total == mem.by_vector.count()
    # The stored embedding is the phrase's; the summary keeps the numbers, and the outcomes are all there.
    batch = snapshot_batch(events, CUTOFFS[0], (7, 30), users=["u7"])
    got = mem.by_text.get(ids=[case_id("u7", CUTOFFS[0])], include=["embeddings"])
    stored = mem.get_case(case_id("u7", CUTOFFS[0]))
    assert stored["text"] == batch.documents[0] and stored["metadata"] == batch.metadatas[0]
    # The vector collection holds the vector and the user id only: summaries and outcomes live once.
    assert mem.by_vector.get(ids=[case_id("u7", CUTOFFS[0])], include=["documents", "metadatas"]) == {
        **mem.by_vector.get(ids=[case_id("u7", CUTOFFS[0])], include=["documents", "metadatas"]),
        "documents": [None], "metadatas": [{"user_id": "u7"}]}
    parts = HashingEmbedding()(list(batch.phrases[0]))  # the normalised sum of its parts' vectors
    assert np.allclose(got["embeddings"][0], np.sum(parts, axis=0) / np.linalg.norm(np.sum(parts, axis=0)))
    again = mem.build(events, CUTOFFS, (7, 30), predictor=FeatureVectors(), progress=False)
    assert again["text_added"] == 0 and again["text_skipped"] == total and again["phrases_embedded"] == 0


LIMITED_BUILD = r"""
import json, resource, sys
from pathlib import Path
sys.path.insert(0, "tests")
from test_case_build import CUTOFFS, shop_events
from test_cases import FeatureVectors, HashingEmbedding
from tools.cases import CaseMemory, CaseMemoryError
folder = Path(sys.argv[1])
mem = CaseMemory(path=folder, text_embedding=HashingEmbedding())
# The disk "fills" 100 KB past the largest file: the next file that grows beyond it fails (EFBIG).
limit = max(f.stat().st_size for f in folder.rglob("*") if f.is_file()) + 100_000
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    mem.build(shop_events(800), CUTOFFS, (7, 30), predictor=FeatureVectors(), progress=False)
    print(json.dumps({"error": None}))
except CaseMemoryError as exc:
    print(json.dumps({"error": str(exc)}))
"""


FIRST_BUILD = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, "tests")
from test_case_build import CUTOFFS, shop_events
from test_cases import FeatureVectors, HashingEmbedding
from tools.cases import CaseMemory, CaseMemoryError
mem = CaseMemory(path=Path(sys.argv[1]), text_embedding=HashingEmbedding())
mem.build(shop_events(800), CUTOFFS[:1], (7, 30), predictor=FeatureVectors(), progress=False)
print(json.dumps({"text": sorted(mem.by_text.get(include=[])["ids"]),
                  "vector": sorted(mem.by_vector.get(include=[])["ids"])}))
"""


@pytest.mark.skip(reason="open finding: under load Chroma's SQLite writer can wait forever after a write "
                         "fails for lack of space instead of raising (seen 3 times in 8 runs), so this test "
                         "could hang CI; bench/results/first_run.md. A build now checks the free space before "
                         "it writes (test_a_disk_without_room_stops_the_build_before_it_writes); this test is "
                         "about a write that fails anyway")
def test_a_full_disk_during_the_build_is_a_clear_error_and_the_memory_is_as_before(tmp_path):
    folder = tmp_path / "chroma"
    # Each build runs in its own process: a Chroma client kept open here would hold the SQLite file
    # the limited build writes to, and the child would wait on it instead of meeting the full disk.
    first = subprocess.run([sys.executable, "-c", FIRST_BUILD, str(folder)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    before = json.loads(first.stdout.strip().splitlines()[-1])
    assert before["text"] and before["vector"]
    done = subprocess.run([sys.executable, "-c", LIMITED_BUILD, str(folder)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    error = json.loads(done.stdout.strip().splitlines()[-1])["error"]
    assert error and f"the case memory at {folder} could not be written" in error
    assert "removed again" in error and "Free disk space" in error
    after = CaseMemory(path=folder, text_embedding=HashingEmbedding())
    assert {"text": sorted(after.by_text.get(include=[])["ids"]),
            "vector": sorted(after.by_vector.get(include=[])["ids"])} == before
    assert after.search_text("a buyer of tea", k=2)["cases"]  # still searchable


def test_a_disk_without_room_stops_the_build_before_it_writes(tmp_path, monkeypatch):
    """The build checks the free space of the memory's disk before each write: asked for more room than the
    disk has (SHOPSIGHT_CASE_MIN_FREE_MB), it stops with the fix and writes nothing."""
    mem = CaseMemory(path=tmp_path / "c", text_embedding=HashingEmbedding())
    mem.build(shop_events(), CUTOFFS[:1], (7, 30), predictor=FeatureVectors(), progress=False)
    before = sorted(mem.by_text.get(include=[])["ids"])
    monkeypatch.setenv("SHOPSIGHT_CASE_MIN_FREE_MB", str(2**40))  # more than any disk has free
    with pytest.raises(CaseMemoryError, match=r"MB free; .* \(nothing was written\)\. Free disk space there"):
        mem.build(shop_events(), CUTOFFS, (7, 30), predictor=FeatureVectors(), progress=False)
    assert sorted(mem.by_text.get(include=[])["ids"]) == before
    monkeypatch.setenv("SHOPSIGHT_CASE_MIN_FREE_MB", "1")
    assert mem.build(shop_events(), CUTOFFS, (7, 30), predictor=FeatureVectors(), progress=False)["text_added"] > 0


def test_phrase_vectors_in_bf16_agree_with_fp32():
    """The build embeds phrase parts in bf16 where the CPU has it; searches embed queries in fp32."""
    from tools.case_build import bf16_where_native
    from tools.embeddings import MiniLMEmbedding

    phrases = ["A lapsed customer: one order, not bought for months, no visits last month, low spend.",
               "Mostly category 1042.", "A customer who complained about delivery in a 1-star review. Wrote one review."]
    ef = MiniLMEmbedding()
    full = np.asarray(ef(phrases))
    with bf16_where_native():
        half = np.asarray(ef(phrases))
    assert (full * half).sum(axis=1).min() > 0.999
