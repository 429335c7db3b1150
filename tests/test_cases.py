"""Case memory over a real Chroma (PersistentClient and a real `chroma run` server).

Exact results are asserted with a deterministic hashing embedding function (langchain-chroma
style); one test loads the real packaged MiniLM to check the offline embedding function.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from tools.case_snapshots import case_id, default_cutoffs, outcomes, snapshot_features, snapshot_phrase
from tools.cases import TEXT_COLLECTION, CaseMemory, CaseMemoryError, make_client


@register_embedding_function
class HashingEmbedding(EmbeddingFunction[Documents]):
    """Bag of words hashed into 64 dims, L2-normalized: same text, same vector, every run."""

    def __init__(self, dims: int = 64) -> None:
        self.dims = dims

    def __call__(self, input: Documents) -> Embeddings:
        out = []
        for text in input:
            v = np.zeros(self.dims, dtype=np.float32)
            for word in re.findall(r"\w+", text.lower()):
                v[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dims] += 1.0
            out.append(v / max(np.linalg.norm(v), 1e-9))
        return out

    @staticmethod
    def name() -> str:
        return "test-hashing"

    def get_config(self) -> dict:
        return {"dims": self.dims}

    @staticmethod
    def build_from_config(config: dict) -> "HashingEmbedding":
        return HashingEmbedding(config["dims"])


class FeatureVectors:
    """A scripted predictor exposing the contract's `user_vectors` (numbers from the user's events),
    standing in where the real checkpoint is not what the test is about."""

    def user_vectors(self, events, cutoff, users=None):
        feats = snapshot_features(events, cutoff, users)
        vec = np.stack([feats["n_events"], feats["n_orders"], feats["days_since_last_event"] + 1.0,
                        feats["spend"] / 10.0], axis=1).astype(np.float32)
        return list(feats.index), vec


def _events() -> pd.DataFrame:
    rows = []
    t0 = datetime(2024, 1, 1)

    def add(user, day, behavior, item, cat, amount=None):
        rows.append((user, t0 + pd.Timedelta(days=day), behavior, item, cat, 1, amount))

    # u1 buys often (before and after the cutoffs); u2 bought once then went quiet; u3 only browses.
    for d in (1, 5, 10, 20, 35, 41, 50, 62, 70):
        add("u1", d, "view", "i1", "c1")
        add("u1", d, "buy", "i1", "c1", 10.0)
    add("u2", 2, "view", "i2", "c2")
    add("u2", 3, "buy", "i2", "c2", 25.0)
    for d in (4, 9, 33):
        add("u3", d, "view", "i3", "c2")
    add("u4", 45, "buy", "i4", "c3", 5.0)  # appears only after the first cutoff
    add("u3", 90, "view", "i3", "c2")  # the last event: sets the data's end
    return pd.DataFrame(rows, columns=["user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"])


C1, C2 = datetime(2024, 1, 31, 23, 59, 59), datetime(2024, 2, 20, 23, 59, 59)


def test_snapshot_features_and_outcomes_read_the_right_windows():
    ev = _events()
    f = snapshot_features(ev, C1)
    assert list(f.index) == ["u1", "u2", "u3"]  # u4 has no event by C1
    assert f.loc["u1", "n_orders"] == 4 and f.loc["u1", "spend"] == 40.0
    assert f.loc["u2", "days_since_last_buy"] == 27 and f.loc["u3", "days_since_last_buy"] == -1
    o = outcomes(ev, C1, (7, 30), f.index)
    assert o.loc["u1", "churned_7d"] == False and o.loc["u1", "buys_30d"] == 3  # days 35, 41, 50 (not 62)
    assert o.loc["u1", "spend_30d"] == 30.0
    assert bool(o.loc["u2", "churned_30d"]) and bool(o.loc["u3", "churned_7d"])
    assert o.loc["u1", "bought_items"] == "i1"


def test_build_is_incremental_and_reopens(tmp_path):
    ev = _events()
    mem = CaseMemory(path=tmp_path / "chroma", text_embedding=HashingEmbedding())
    first = mem.build(ev, [C1], (7, 30), predictor=FeatureVectors(), progress=False)
    assert first["text_added"] == 3 and first["vectors_added"] == 3 and first["text_skipped"] == 0
    again = mem.build(ev, [C1, C2], (7, 30), predictor=FeatureVectors(), progress=False)
    assert again["text_skipped"] == 3 and again["text_added"] == 4  # C2 adds u1..u4
    assert mem.by_text.count() == 7 and mem.by_vector.count() == 7
    assert sorted(mem.by_text.get(include=[])["ids"]) == sorted(
        [case_id(u, C1) for u in ("u1", "u2", "u3")] + [case_id(u, C2) for u in ("u1", "u2", "u3", "u4")])
    info = mem.info()
    assert info["snapshots_by_cutoff"] == {pd.Timestamp(C1).isoformat(): 3, pd.Timestamp(C2).isoformat(): 4}

    # Reopening with no embedding function given rebuilds the registered one from Chroma's config.
    reopened = make_client(tmp_path / "chroma").get_collection(TEXT_COLLECTION)
    assert reopened.query(query_texts=["anything"], n_results=1)["ids"][0]


def test_build_refuses_a_cutoff_whose_outcome_is_unknown(tmp_path):
    mem = CaseMemory(path=tmp_path / "c", text_embedding=HashingEmbedding())
    with pytest.raises(CaseMemoryError, match="outcome window ends after the last event"):
        mem.build(_events(), [datetime(2024, 3, 15)], (7, 30), progress=False)
    assert mem.by_text.count() == 0  # nothing half-written


def test_text_search_is_exact_and_excludes_the_user(tmp_path):
    ev = _events()
    mem = CaseMemory(path=tmp_path / "c", text_embedding=HashingEmbedding())
    mem.build(ev, [C1, C2], (7, 30), progress=False)
    # The collection embeds each case's phrase (words, counts in bands); the document keeps the numbers.
    feats = snapshot_features(ev, C1, ["u2"])
    res = mem.search_text(snapshot_phrase(feats.iloc[0]), k=1, horizon_days=30)
    assert res["cases"][0]["case_id"] == case_id("u2", C1)
    assert res["cases"][0]["similarity"] > 0.85  # stored: the normalised sum of its parts, not the joined text
    assert res["cases"][0]["churned"] is True and res["outcomes"] == {
        "n_snapshots": 1, "churned": 1, "retained": 0, "churn_rate": 1.0, "horizon_days": 30, "came_back": 0,
        "came_back_share": 0.0, "median_days_to_return": None, "days_to_return_known": 0, "came_back_case_ids": []}
    by_user = mem.search_user("u2", ev, C2, k=3, horizon_days=30)
    assert by_user["method"] == "text" and all(c["user_id"] != "u2" for c in by_user["cases"])


def test_vector_search_uses_the_predictor_vectors(tmp_path):
    ev = _events()
    mem = CaseMemory(path=tmp_path / "c", text_embedding=HashingEmbedding())
    mem.build(ev, [C1], (7, 30), predictor=FeatureVectors(), progress=False)
    _, vecs = FeatureVectors().user_vectors(ev, C1, ["u1"])
    res = mem.search_vector(vecs[0], k=1)
    assert res["method"] == "user_vector" and res["cases"][0]["case_id"] == case_id("u1", C1)
    assert res["cases"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="user vectors"):
        mem.by_vector.query(query_texts=["text is not allowed here"], n_results=1)


class VersionedVectors(FeatureVectors):
    def __init__(self, version: str, scale: float = 1.0):
        self.version, self.scale = version, scale

    def user_vectors(self, events, cutoff, users=None):
        got, vec = super().user_vectors(events, cutoff, users)
        return got, vec * self.scale + np.arange(vec.shape[1], dtype=np.float32) * (self.scale - 1)


def test_vectors_of_another_predictor_are_replaced_not_mixed(tmp_path):
    ev = _events()
    mem = CaseMemory(path=tmp_path / "c", text_embedding=HashingEmbedding())
    mem.build(ev, [C1], (7, 30), predictor=VersionedVectors("v1"), progress=False)
    assert mem.vector_version() == "v1" and mem.by_vector.count() == 3
    # A retrained model's vectors live in another space: a user search must not mix them.
    assert mem.search_user("u1", ev, C2, k=2, predictor=VersionedVectors("v2", 3.0))["method"] == "text"
    again = mem.build(ev, [C1], (7, 30), predictor=VersionedVectors("v2", 3.0), progress=False)
    assert again["vectors_added"] == 3 and any("replaced" in n for n in again["notes"])
    assert again["text_skipped"] == 3 and again["text_added"] == 0  # texts do not depend on the model
    assert mem.vector_version() == "v2" and mem.by_vector.count() == 3
    assert CaseMemory(path=tmp_path / "c", text_embedding=HashingEmbedding()).vector_version() == "v2"
    assert mem.search_user("u1", ev, C2, k=2, predictor=VersionedVectors("v2", 3.0))["method"] == "user_vector"


def test_saved_analyst_case_is_found_and_not_duplicated(tmp_path):
    mem = CaseMemory(path=tmp_path / "c", text_embedding=HashingEmbedding())
    text = "Loyal coffee buyer stopped ordering after a late delivery complaint"
    a = mem.save_case(text, outcome="retained after a voucher", title="late delivery")
    b = mem.save_case(text, outcome="retained after a voucher", title="late delivery")
    assert a == b and mem.by_text.count() == 1
    hit = mem.search_text("late delivery complaint coffee", k=1)["cases"][0]
    assert hit["case_id"] == a and hit["outcome"] == "retained after a voucher"
    with pytest.raises(CaseMemoryError, match="outcome"):
        mem.save_case("text", outcome=" ")


def test_default_cutoffs_leave_a_full_horizon():
    cuts = default_cutoffs(datetime(2024, 4, 1), (7, 30), n=3)
    assert cuts[-1] == datetime(2024, 3, 1, 23, 59, 59) and cuts[0] == datetime(2024, 1, 1, 23, 59, 59)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_server_is_used_when_a_url_is_given(tmp_path):
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = _free_port()
    cmd = [chroma, "run", "--path", str(tmp_path / "srv"), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                make_client(url=url).heartbeat()
                break
            except Exception:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.3)
        mem = CaseMemory(url=url, text_embedding=HashingEmbedding())
        assert mem.build(_events(), [C1], (7, 30), progress=False)["text_added"] == 3
        again = CaseMemory(url=url, text_embedding=HashingEmbedding())  # a second client, same server
        assert again.build(_events(), [C1], (7, 30), progress=False)["text_added"] == 0
        assert again.search_text("Customer u1", k=1)["cases"][0]["case_id"].endswith("@20240131T235959Z")
        assert not (tmp_path / "chroma").exists()  # the server's folder, not a local one
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_packaged_minilm_embeds_offline():
    from tools.embeddings import MINILM_DIMS, MiniLMEmbedding, minilm_folder

    assert (minilm_folder() / "model.safetensors").exists()
    ef = MiniLMEmbedding()
    a, b, c = ef(["The coffee arrived late and cold", "Delivery was slow, coffee was cold", "I love this dog toy"])
    assert len(a) == MINILM_DIMS
    assert float(np.dot(a, b)) > float(np.dot(a, c))
    assert MiniLMEmbedding.build_from_config(ef.get_config()).get_config() == ef.get_config()


def test_cli_build_is_incremental_and_info_reports(tmp_path, monkeypatch, capsys):
    store_module = pytest.importorskip("tools.data.store", reason="the event store (data room) is not written yet")
    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    monkeypatch.setenv("SHOPSIGHT_DB", str(tmp_path / "shop.duckdb"))
    monkeypatch.setenv("SHOPSIGHT_CHROMA_PATH", str(tmp_path / "chroma"))
    with store_module.EventStore(tmp_path / "shop.duckdb") as store:
        report = store.import_frames("test", events=_events())
        assert report.rows_imported == len(_events()), report.problems[:3]
    from assistant.cli import main

    assert main(["cases", "build", "--cutoffs", "2024-01-31", "--text-only", "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert '"text_added": 3' in first
    assert main(["cases", "build", "--cutoffs", "2024-01-31", "2024-02-20", "--text-only", "--no-progress"]) == 0
    second = capsys.readouterr().out
    assert '"text_added": 4' in second and '"text_skipped": 3' in second
    assert main(["cases", "info"]) == 0
    info = capsys.readouterr().out
    assert '"text_cases": 7' in info and "2024-01-31T23:59:59" in info
    with pytest.raises(SystemExit, match="outcome window ends after the last event"):
        main(["cases", "build", "--cutoffs", "2024-03-20", "--text-only", "--no-progress"])
    with pytest.raises(SystemExit, match="is not a date"):
        main(["cases", "build", "--cutoffs", "yesterday", "--text-only"])


def test_cli_build_without_progress_draws_no_bar_not_even_the_embedders_loading_one(tmp_path, monkeypatch, capsys):
    """`cases build --no-progress` printed transformers' "Loading weights" bar when it loaded MiniLM."""
    import tools.embeddings
    from transformers.utils import logging as transformers_logging

    from tools.data.store import EventStore

    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    monkeypatch.setenv("SHOPSIGHT_DB", str(tmp_path / "shop.duckdb"))
    monkeypatch.setenv("SHOPSIGHT_CHROMA_PATH", str(tmp_path / "chroma"))
    monkeypatch.setattr(tools.embeddings, "_MODELS", {})  # loaded here, not by an earlier test in this process
    with EventStore(tmp_path / "shop.duckdb") as store:
        store.import_frames("test", events=_events())
    from assistant.cli import main

    bars_on = transformers_logging.is_progress_bar_enabled()
    capsys.readouterr()
    assert main(["cases", "build", "--cutoffs", "2024-01-31", "--text-only", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert tools.embeddings._MODELS, "the build did not load the embedder: the check below would prove nothing"
    assert "Loading weights" not in err and "it/s]" not in err, err
    assert transformers_logging.is_progress_bar_enabled() == bars_on  # other loads keep their bars


def test_case_text_carries_profile_and_complaints(tmp_path):
    reviews = pd.DataFrame([{"review_id": "r1", "user_id": "u2", "item_id": "i2", "ts": datetime(2024, 1, 6),
                             "rating": 1, "title": "Late", "text": "The parcel arrived two weeks late."}])
    mem = CaseMemory(path=tmp_path / "c", text_embedding=HashingEmbedding())
    mem.build(_events(), [C1], (7, 30), progress=False, reviews=reviews)
    doc = mem.get_case(case_id("u2", C1))["text"]
    assert doc.startswith("A new customer who complained about delivery in a 1-star review. Customer u2")
    assert "Wrote 1 review(s) (mean 1.0 stars); the last one 1 stars about delivery." in doc
    hit = mem.search_text("a customer who complained about delivery", k=1)["cases"][0]
    assert hit["case_id"] == case_id("u2", C1) and hit["churned"] is True
    u3 = mem.get_case(case_id("u3", C1))["text"]
    assert u3.startswith("A browser who never bought. Customer u3 as of 2024-01-31")


def test_demo_counts_the_case_memory_built_only_when_finished_for_the_current_predictor(tmp_path):
    from assistant.commands.demo import _cases_built, _mark_cases_built
    from assistant.config import Settings

    settings = Settings(home=tmp_path, chroma_path=tmp_path / "chroma", models_dir=tmp_path / "models")
    settings.predictor_dir.mkdir(parents=True)
    (settings.predictor_dir / "config.yaml").write_text("version: v1\n")
    mem = CaseMemory(path=settings.chroma_path, text_embedding=HashingEmbedding())
    mem.build(_events(), [C1], (7, 30), predictor=VersionedVectors("v1"), progress=False)
    assert not _cases_built(settings)  # cases, but no finished build: one stopped midway is completed
    _mark_cases_built(settings)  # the demo's job writes it after the build returned
    assert _cases_built(settings) and "predictor v1" in (tmp_path / "stamps" / "cases_built").read_text()
    (settings.predictor_dir / "config.yaml").write_text("version: v2\n")  # retrained
    assert not _cases_built(settings)  # `shopsight cases build` runs and replaces the vectors


def test_similar_cases_are_distinct_customers(tmp_path):
    """u1 has a snapshot at both cutoffs; asking for 3 cases must give 3 people, u1 once (nearest)."""
    ev = _events()
    mem = CaseMemory(path=tmp_path / "c", text_embedding=HashingEmbedding())
    mem.build(ev, [C1, C2], (7, 30), predictor=FeatureVectors(), progress=False)
    # The collection embeds a case's phrase (tools/case_build.py), so u1's phrase at C1 finds it first.
    from tools.case_snapshots import snapshot_features, snapshot_phrase

    phrase = snapshot_phrase(snapshot_features(ev, C1, users=["u1"]).iloc[0])
    res = mem.search_text(phrase, k=3, horizon_days=7)
    users = [c["user_id"] for c in res["cases"]]
    assert len(users) == 3 and len(set(users)) == 3 and users[0] == "u1"
    assert res["cases"][0]["case_id"] == case_id("u1", C1)
    assert res["outcomes"]["n_snapshots"] == 3
    _, vecs = FeatureVectors().user_vectors(ev, C2, ["u1"])
    by_vector = mem.search_vector(vecs[0], k=4)
    assert sorted(c["user_id"] for c in by_vector["cases"]) == ["u1", "u2", "u3", "u4"]


def test_outcomes_say_who_came_back_and_after_how_many_days(tmp_path):
    """u1 buys again 4 days after C1 and 11 days after C2; u2, u3 and u4 do not buy within 30 days."""
    ev = _events()
    o = outcomes(ev, C1, (7, 30), pd.Index(["u1", "u2", "u3"]))
    assert o["days_to_return"].tolist() == [4.0, -1.0, -1.0]
    mem = CaseMemory(path=tmp_path / "c", text_embedding=HashingEmbedding())
    mem.build(ev, [C1, C2], (7, 30), progress=False)
    res = mem.search_text(snapshot_phrase(snapshot_features(ev, C2, ["u4"]).iloc[0]), k=4, horizon_days=30)
    by_user = {c["user_id"]: c for c in res["cases"]}
    assert sorted(by_user) == ["u1", "u2", "u3", "u4"]
    u1 = by_user["u1"]
    assert u1["churned"] is False and u1["days_to_return"] == {
        pd.Timestamp(C1).isoformat(): 4.0, pd.Timestamp(C2).isoformat(): 11.0}[u1["cutoff"]]
    assert by_user["u2"]["days_to_return"] is None
    assert res["outcomes"] == {
        "n_snapshots": 4, "churned": 3, "retained": 1, "churn_rate": 0.75, "horizon_days": 30, "came_back": 1,
        "came_back_share": 0.25, "median_days_to_return": u1["days_to_return"], "days_to_return_known": 1,
        "came_back_case_ids": [u1["case_id"]]}
    # Within 7 days u1 came back after C1 (day 4) but not after C2 (day 11): the days follow the horizon.
    week = mem.search_text("Customer u1", k=4, horizon_days=7)["outcomes"]
    assert week["horizon_days"] == 7 and week["came_back"] + week["churned"] == week["n_snapshots"]


def test_a_memory_of_the_older_case_format_is_rewritten_once(tmp_path):
    """Snapshots stored flat, before days_to_return (case format 1), are rewritten by the next build."""
    ev = _events()
    mem = CaseMemory(path=tmp_path / "c", text_embedding=HashingEmbedding())
    old_id = case_id("u1", C1)
    mem.by_text.upsert(ids=[old_id], documents=["Customer u1 as of 2024-01-31"], embeddings=[np.ones(64) / 8.0],
                       metadatas=[{"kind": "snapshot", "user_id": "u1", "cutoff": pd.Timestamp(C1).isoformat(),
                                   "horizons_days": "7 30", "churned_30d": False, "buys_30d": 3, "spend_30d": 30.0}])
    assert mem.get_case(old_id)["metadata"]["buys_30d"] == 3  # the old format reads as it is
    rewritten = mem.build(ev, [C1], (7, 30), progress=False)
    assert rewritten["text_added"] == 3 and rewritten["text_skipped"] == 0
    assert any("rewritten in format" in note for note in rewritten["notes"])
    assert mem.get_case(old_id)["metadata"]["days_to_return"] == 4.0
    assert mem.build(ev, [C1], (7, 30), progress=False)["text_added"] == 0  # once
