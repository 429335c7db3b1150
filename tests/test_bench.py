"""The benchmark protocol end to end: file names, headers, missing users, truth, scoring, the CLI."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from assistant.cli import main as shopsight
from tools.predictor.bench import run_benchmark
from tools.predictor.bench_datasets import read_cdnow, read_taobao
from tools.predictor.bench_files import (churn_truth, cutoff_tag, file_name, parse_file_name, ranking_truth,
                                         read_churn, read_ranking)
from tools.predictor.bench_score import score_directory, score_long
from tools.predictor.metrics import best_f1_threshold, churn_metrics, threshold_metrics

ROOT = Path(__file__).resolve().parents[1]
CDNOW = ROOT / ".cache/datasets/CDNOW_master.txt"
CUTOFF_TAGS = ["19970930T235959Z", "19971231T235959Z", "19980331T235959Z"]
VALIDATION_TAGS = ["19970702T235959Z", "19971002T235959Z"]  # c - 90 d; the third is 19971231T235959Z


@pytest.fixture(scope="module")
def cdnow_slice(tmp_path_factory) -> Path:
    """The real CDNOW file cut to its first 1,000 customer ids (header kept)."""
    if not CDNOW.is_file():
        pytest.skip(f"{CDNOW} missing: run `make data`")
    lines = CDNOW.read_text().splitlines()
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.strip() and int(ln.split()[0]) <= 1000]
    path = tmp_path_factory.mktemp("data") / "cdnow_slice.txt"
    path.write_text("\n".join(keep) + "\n")
    return path


@pytest.fixture(scope="module")
def cdnow_run(cdnow_slice, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "cdnow"
    run_benchmark("cdnow", cdnow_slice, out, models=["recency", "bgnbd", "logreg_rfm"], progress=False,
                  say=lambda _: None)
    return out


def test_file_names_follow_the_protocol():
    c = datetime(1997, 9, 30, 23, 59, 59)
    assert file_name("churn", 30, c) == "churn__30d__19970930T235959Z.csv"
    assert parse_file_name("next_item__2d__20171201T160000Z.csv") == ("next_item", 2, datetime(2017, 12, 1, 16))
    assert parse_file_name("notes.txt") is None
    assert cutoff_tag(pd.Timestamp("2017-12-02 00:00", tz="Asia/Shanghai").to_pydatetime()) == "20171201T160000Z"


def test_run_writes_every_file_with_the_protocol_header(cdnow_run, cdnow_slice):
    events = read_cdnow(cdnow_slice)
    for model in ("recency", "bgnbd", "logreg_rfm"):
        names = sorted(p.name for p in (cdnow_run / model).iterdir())
        expected = sorted(f"churn__{h}d__{t}.csv" for h in (30, 90) for t in CUTOFF_TAGS + VALIDATION_TAGS)
        assert names == expected
        for name in names:
            path = cdnow_run / model / name
            assert path.read_text().splitlines()[0] == "user_id,p_churn"
            pred = read_churn(path)
            cutoff = parse_file_name(name)[2]
            # One row per user of P(c), ids exactly as in the source ("00001").
            assert sorted(pred["user_id"]) == sorted(events.loc[events["ts"] <= cutoff, "user_id"].unique())
    manifest = yaml.safe_load((cdnow_run / "benchmark.yaml").read_text())
    assert manifest["test_cutoffs"] == CUTOFF_TAGS
    assert manifest["validation_cutoffs"]["19980331T235959Z"] == "19971231T235959Z"
    assert not list(cdnow_run.rglob("*.part"))  # atomic writes left nothing behind


def test_truth_matches_the_protocol_definition(cdnow_slice):
    events = read_cdnow(cdnow_slice)
    c = datetime(1997, 12, 31, 23, 59, 59)
    truth = churn_truth(events, c, 30).set_index("user_id")["churn"]
    buyers = set(events.loc[(events["ts"] > c) & (events["ts"] <= datetime(1998, 1, 30, 23, 59, 59)), "user_id"])
    assert truth.sum() == len(truth) - len(buyers & set(truth.index))
    assert all(truth[u] == 0 for u in buyers)


def test_score_equals_metrics_computed_directly(cdnow_run):
    long = score_long(cdnow_run)
    got = long[(long["model"] == "bgnbd") & (long["horizon_days"] == 30)]
    truth = pd.read_csv(cdnow_run / "_truth" / "churn__30d__19971231T235959Z.csv", dtype={"user_id": str})
    pred = read_churn(cdnow_run / "bgnbd" / "churn__30d__19971231T235959Z.csv")
    merged = truth.merge(pred, on="user_id")
    expected = churn_metrics(merged["churn"], merged["p_churn"])
    val_t = pd.read_csv(cdnow_run / "_truth" / "churn__30d__19971002T235959Z.csv", dtype={"user_id": str})
    val = val_t.merge(read_churn(cdnow_run / "bgnbd" / "churn__30d__19971002T235959Z.csv"), on="user_id")
    expected.update(threshold_metrics(merged["churn"], merged["p_churn"],
                                      best_f1_threshold(val["churn"], val["p_churn"])))
    at_c = got[got["cutoff"] == "1997-12-31T23:59:59"].set_index("metric")["value"]
    for metric in ("auc", "ap", "brier", "ece", "base_rate", "n", "accuracy", "recall", "f1", "threshold"):
        assert at_c[metric] == pytest.approx(expected[metric]), metric
    assert at_c["missing"] == 0


def test_missing_users_count_as_one_half(cdnow_run, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(cdnow_run, out)
    path = out / "recency" / "churn__90d__19970930T235959Z.csv"
    pred = read_churn(path)
    truth = pd.read_csv(out / "_truth" / path.name, dtype={"user_id": str})
    # Drop the users the model is most sure about: skipping them must not help.
    dropped = pred.sort_values("p_churn").iloc[::3]
    pred.drop(dropped.index).to_csv(path, index=False)
    filled = truth.merge(pred.drop(dropped.index), on="user_id", how="left")["p_churn"].fillna(0.5)
    long = score_long(out)
    row = long[(long["model"] == "recency") & (long["horizon_days"] == 90) & (long["cutoff"] == "1997-09-30T23:59:59")]
    row = row.set_index("metric")["value"]
    assert row["missing"] == len(dropped)
    assert row["auc"] == pytest.approx(churn_metrics(truth["churn"], filled)["auc"])
    # A model with no file at all for a cutoff it covers elsewhere scores as all p = 0.5.
    (out / "recency" / "churn__30d__19980331T235959Z.csv").unlink()
    long = score_long(out)
    row = long[(long["model"] == "recency") & (long["horizon_days"] == 30) & (long["cutoff"] == "1998-03-31T23:59:59")]
    assert row.set_index("metric")["value"]["auc"] == pytest.approx(0.5)


@pytest.mark.parametrize("content, message", [
    ("user,p_churn\n1,0.5\n", r":1: header is 'user,p_churn'"),
    ("user_id,p_churn\n1,0.5\n1,0.4\n", r":3 field 'user_id': user '1' appears twice"),
    ("user_id,p_churn\n1,0.5\n2,1.7\n", r":3 field 'p_churn': '1.7' is not a probability"),
    ("user_id,p_churn\n1,\n", r":2 field 'p_churn'"),
])
def test_bad_prediction_files_name_file_line_and_field(tmp_path, content, message):
    path = tmp_path / "churn__30d__19970930T235959Z.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_churn(path)


def test_ranking_file_refuses_more_than_ten_ids(tmp_path):
    path = tmp_path / "next_item__1d__20171201T160000Z.csv"
    path.write_text("user_id,items\n1," + " ".join(str(i) for i in range(11)) + "\n2,\n")
    with pytest.raises(ValueError, match=r":2 field 'items': 11 ids"):
        read_ranking(path, "next_item")


# ---------------------------------------------------------------- Taobao format


def _taobao_csv(path: Path, n_users: int = 150, seed: int = 0) -> Path:
    """A small file in the UserBehavior format: real format, made-up shoppers with habits."""
    rng = np.random.default_rng(seed)
    start = int(pd.Timestamp("2017-11-24T16:00Z").timestamp())
    rows = []
    for user in range(1, n_users + 1):
        favourite = rng.integers(0, 30, size=3)
        activity = rng.uniform(0.2, 3.0)  # sessions per day: heavy users keep buying
        for day in range(9):
            for _ in range(rng.poisson(activity)):
                t = start + day * 86400 + int(rng.integers(0, 86400 - 200))
                for k in range(int(rng.integers(1, 5))):
                    item = int(favourite[rng.integers(0, 3)] if rng.random() < 0.6 else rng.integers(0, 200))
                    behavior = rng.choice(["pv", "pv", "pv", "cart", "fav", "buy"])
                    rows.append(f"{user},{item},{item % 12},{behavior},{t + 30 * k}")
    rows.append(f"1,5,5,pv,{start - 3600}")  # 2017-11-24 23:00 Beijing: outside the release window
    path.write_text("\n".join(rows) + "\n")
    return path


def test_taobao_reader_keeps_the_release_window(tmp_path):
    path = tmp_path / "ub.csv"
    path.write_text("1,10,7,pv,1511544070\n1,11,7,buy,1511561733\n2,10,7,pv,1511500000\n")
    events, info = read_taobao(path)
    assert info == {"rows_read": 3, "rows_dropped_outside_window": 1}
    assert events["behavior"].tolist() == ["view", "buy"]
    assert events["ts"].iloc[0] == pd.Timestamp("2017-11-24 17:21:10")
    path.write_text("1,10,7,pv,1511544070\n1,11,7,click,1511561733\n")
    with pytest.raises(ValueError, match=r"ub.csv:2 field 'behavior': cannot read 'click'"):
        read_taobao(path)


def test_taobao_run_writes_rankings_and_scores_them(tmp_path):
    data = _taobao_csv(tmp_path / "UserBehavior.csv")
    out = tmp_path / "taobao"
    run_benchmark("taobao", data, out, models=["recency", "popularity", "repeat_recency", "markov"],
                  progress=False, say=lambda _: None)
    for task, header in (("next_item", "user_id,items"), ("next_category", "user_id,categories")):
        for h in (1, 2):
            path = out / "markov" / f"{task}__{h}d__20171201T160000Z.csv"
            assert path.read_text().splitlines()[0] == header
            assert read_ranking(path, task)[header.split(",")[1]].map(len).max() <= 10
    events, _ = read_taobao(data)
    truth = ranking_truth(events, datetime(2017, 12, 1, 16), 1, "next_item")
    assert len(truth) > 50
    table = score_directory(out)
    assert "| next_category | 2d | NDCG@10 |" in table and "repeat_recency" in table
    long = score_long(out).set_index(["model", "task", "horizon_days", "metric"])["value"]
    # Shoppers with favourites: their own items beat what was popular yesterday.
    assert long[("repeat_recency", "next_item", 1, "hr")] > long[("popularity", "next_item", 1, "hr")]
    manifest = yaml.safe_load((out / "benchmark.yaml").read_text())
    assert manifest["dataset_info"]["rows_dropped_outside_window"] == 1


# ---------------------------------------------------------------- runner behaviour


def test_transformer_is_skipped_with_a_note_when_not_importable(cdnow_slice, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tools.predictor.train", None)  # as if the module were not written yet
    notes = []
    manifest = run_benchmark("cdnow", cdnow_slice, tmp_path / "b", models=["transformer"],
                             progress=False, say=notes.append)
    assert any("transformer skipped: tools.predictor.train is not importable" in n for n in notes)
    assert manifest["notes"] and not (tmp_path / "b" / "transformer").exists()
    assert "transformer skipped" in score_directory(tmp_path / "b")


def test_transformer_through_the_contract(tmp_path):
    pytest.importorskip("tools.predictor.train")
    data = _taobao_csv(tmp_path / "UserBehavior.csv", n_users=80)
    config = {"run": {"dataset": "taobao"},  # a recipe's own section: the runner must ignore it
              "epochs": 1, "d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 8, "n_cutoffs": 4,
              "cutoff_stride_days": 1, "batch_size": 128, "warmup_steps": 2, "num_threads": 1,
              "calibrate_on": "pooled"}
    manifest = run_benchmark("taobao", data, tmp_path / "t", models=["transformer"], transformer_config=config,
                             progress=False, say=lambda _: None)
    assert "transformer" in manifest["models"], manifest.get("notes")
    # The pooled churn map was checked out of time against drift-aware ones: the table says which shipped, and why.
    assert any(n.startswith("transformer calibration 1d at 20171201T160000Z: ") and n.endswith(("kept", "ships"))
               for n in manifest["notes"]), manifest["notes"]
    folder = tmp_path / "t" / "transformer"
    # Churn at the test cutoff and its validation cutoff (c - 2 d); rankings at the test cutoff only.
    assert sorted(p.name for p in folder.glob("churn__*.csv")) == [
        "churn__1d__20171129T160000Z.csv", "churn__1d__20171201T160000Z.csv",
        "churn__2d__20171129T160000Z.csv", "churn__2d__20171201T160000Z.csv"]
    items = read_ranking(folder / "next_item__1d__20171201T160000Z.csv", "next_item")
    assert items["items"].map(len).max() == 10
    table = score_directory(tmp_path / "t")
    assert "| churn | 2d | ROC-AUC |" in table and "| next_category | 1d | NDCG@10 |" in table


def test_resume_skips_done_files_and_other_data_is_refused(cdnow_slice, cdnow_run, tmp_path):
    path = cdnow_run / "recency" / "churn__30d__19970930T235959Z.csv"
    before = path.stat().st_mtime_ns
    run_benchmark("cdnow", cdnow_slice, cdnow_run, models=["recency"], resume=True, progress=False,
                  say=lambda _: None)
    assert path.stat().st_mtime_ns == before
    other = tmp_path / "other.txt"
    other.write_text("\n".join(cdnow_slice.read_text().splitlines()[:-50]) + "\n")
    with pytest.raises(ValueError, match="holds a benchmark of other data"):
        run_benchmark("cdnow", other, cdnow_run, models=["recency"], progress=False, say=lambda _: None)


def test_cdnow_reader_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text(" customer_id  date number_of_cds  dollar_value\n 00001 19970101  1   11.77\n"
                    " 00002 19971332  1   12.00\n")
    with pytest.raises(ValueError, match=r"bad.txt:3 field 'date': cannot read '19971332'"):
        read_cdnow(path)


def test_demo_shop_writes_the_oracle(tmp_path):
    synth = pytest.importorskip("tools.data.synth")
    out = tmp_path / "demo"
    run_benchmark("demo", None, out, models=["oracle", "popularity"], n_users=300, progress=False,
                  say=lambda _: None)
    cutoffs = {cutoff_tag(c) for c in synth.DEMO_CUTOFFS}
    oracle_files = {parse_file_name(p.name)[2] for p in (out / "oracle").iterdir()}
    assert cutoffs <= {cutoff_tag(c) for c in oracle_files}  # test cutoffs, plus validation ones
    table = score_directory(out)
    header = table.splitlines()[0]
    assert header.index("oracle") < header.index("popularity")
    assert "| next_item | 7d | HR@10 |" in table


def test_cli_run_and_score(cdnow_slice, tmp_path, capsys):
    out = tmp_path / "cli"
    assert shopsight(["bench", "run", "--dataset", "cdnow", "--data", str(cdnow_slice), "--out", str(out),
                      "--models", "recency", "--quiet"]) == 0
    assert "| churn | 90d | ROC-AUC |" in capsys.readouterr().out
    assert shopsight(["bench", "score", str(out)]) == 0
    assert "| task | H | metric | recency |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="needs a data file"):
        shopsight(["bench", "run", "--dataset", "cdnow", "--out", str(out)])
    with pytest.raises(SystemExit, match="unknown model"):
        shopsight(["bench", "run", "--dataset", "cdnow", "--data", str(cdnow_slice), "--out", str(out),
                   "--models", "gpt5"])
    with pytest.raises(SystemExit, match="not a benchmark folder"):
        shopsight(["bench", "score", str(tmp_path)])


def test_a_store_imported_with_the_cdnow_importer_gives_the_same_files(cdnow_slice, cdnow_run, tmp_path):
    store_mod = pytest.importorskip("tools.data.store")
    db = tmp_path / "shop.duckdb"
    store = store_mod.EventStore(db)
    store.import_file(cdnow_slice, fmt="cdnow", progress=False)
    store.close()
    out = tmp_path / "via_store"
    run_benchmark("cdnow", db, out, models=["recency"], progress=False, say=lambda _: None)
    for name in ("churn__30d__19971231T235959Z.csv", "churn__90d__19970702T235959Z.csv"):
        pd.testing.assert_frame_equal(read_churn(out / "recency" / name), read_churn(cdnow_run / "recency" / name))
        assert (out / "_truth" / name).read_text() == (cdnow_run / "_truth" / name).read_text()


def test_the_runner_hands_models_nothing_after_the_cutoff(cdnow_slice, cdnow_run, tmp_path):
    # Cut the data's future short: every prediction file must stay byte-identical (only truth changes).
    lines = cdnow_slice.read_text().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.split()[1] <= "19980415"]
    short = tmp_path / "short.txt"
    short.write_text("\n".join(kept) + "\n")
    out = tmp_path / "short"
    said = []
    run_benchmark("cdnow", short, out, models=["recency", "bgnbd"], progress=False, say=said.append)
    assert any(s.startswith("warning: data ends at 1998-04-15") for s in said)  # labels of 1998-03-31 are cut
    for model in ("recency", "bgnbd"):
        for path in (cdnow_run / model).iterdir():
            assert (out / model / path.name).read_bytes() == path.read_bytes(), (model, path.name)
