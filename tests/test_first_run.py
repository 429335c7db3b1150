"""`shopsight demo` killed (-9) in each background phase, then started again: it resumes and
finishes with no duplicate scores or cases (the real command on a small demo shop, a tiny recipe,
the real packaged MiniLM for the case texts; the chat model is skipped)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
USERS = 200
TINY_RECIPE = {"name": "demo", "max_len": 16, "d_model": 16, "n_layers": 1, "n_heads": 2, "n_cutoffs": 4,
               "cutoff_stride_days": 7, "batch_size": 64, "epochs": 3, "patience": 3, "warmup_steps": 5,
               "val_fraction": 0.25, "max_items": 100, "max_categories": 40, "item_hash_buckets": 4,
               "category_hash_buckets": 2, "device": "cpu"}


def _job(home: Path, name: str) -> dict:
    try:
        return json.loads((home / "jobs" / "state.json").read_text())["jobs"].get(name, {})
    except (OSError, ValueError, KeyError):
        return {}


class Demo:
    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.recipe = tmp_path / "tiny.yaml"
        self.recipe.write_text(yaml.safe_dump(TINY_RECIPE))
        self.log = tmp_path / "demo.log"
        self.env = {**os.environ, "SHOPSIGHT_HOME": str(self.home), "SHOPSIGHT_DUCKDB_MEMORY": "256MB"}

    def start(self) -> subprocess.Popen:
        with open(self.log, "a") as log:
            return subprocess.Popen([sys.executable, "-m", "assistant.cli", "demo", "--no-app", "--skip-model",
                                     "--users", str(USERS), "--recipe", str(self.recipe)],
                                    cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill_when(self, ready, timeout: float = 600) -> None:
        proc = self.start()
        deadline = time.time() + timeout
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"the demo ended (exit {proc.returncode}) before the phase:\n"
                                     f"{self.log.read_text()[-3000:]}")
            if time.time() > deadline:
                proc.kill()
                raise AssertionError(f"the phase did not come in {timeout} s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_killed_in_each_phase_the_demo_resumes_and_builds_nothing_twice(tmp_path):
    from tools.data.store import EventStore

    demo = Demo(tmp_path)
    trainer_state = demo.home / "models" / "predictor" / "shop" / "last" / "trainer_state.json"
    # 1. training: after an epoch was saved for resuming
    demo.kill_when(lambda: _job(demo.home, "predictor").get("status") == "running" and trainer_state.is_file())
    # 2. scoring
    demo.kill_when(lambda: _job(demo.home, "scores").get("status") == "running")
    # 3. the case build: after its first cutoff was written
    demo.kill_when(lambda: _job(demo.home, "cases").get("status") == "running"
                   and _job(demo.home, "cases").get("fraction", 0) > 0)
    assert _job(demo.home, "cases").get("status") == "running"  # as the killed process left it
    # 4. to the end
    last = demo.start()
    assert last.wait(600) == 0, demo.log.read_text()[-3000:]
    assert {n: _job(demo.home, n)["status"] for n in ("predictor", "scores", "cases")} == \
        {"predictor": "done", "scores": "done", "cases": "done"}

    config = yaml.safe_load((demo.home / "models" / "predictor" / "shop" / "config.yaml").read_text())
    assert [h["epoch"] for h in config["training"]["history"]] == [1, 2, 3]  # each epoch once
    with EventStore(demo.home / "shop.duckdb", read_only=True) as store:
        scores = store.query("SELECT user_id, horizon_days, cutoff, count(*) AS n FROM scores "
                             "GROUP BY ALL HAVING count(*) > 1")
        n_scores = store.query("SELECT count(*) AS n FROM scores WHERE cutoff = (SELECT max(cutoff) FROM scores)"
                               )["n"].iloc[0]
        users = store.query("SELECT count(DISTINCT user_id) AS n FROM events")["n"].iloc[0]
    # One row per user and horizon at the cutoff (and each horizon's rows a horizon back, for P(lapse)).
    assert scores.empty and n_scores == users * 2
    from tools.cases import CaseMemory

    memory = CaseMemory(path=demo.home / "chroma")  # MiniLM: loaded only to embed, not to read
    ids = memory.by_text.get(include=[])["ids"]
    assert len(ids) == len(set(ids)) == memory.by_vector.count() > users  # three cutoffs, each case once
    info = memory.info()["snapshots_by_cutoff"]
    assert len(info) == 3  # the cutoffs the kill left unbuilt were completed
    again = subprocess.run([sys.executable, "-m", "assistant.cli", "demo", "--no-app", "--skip-model", "--users",
                            str(USERS), "--recipe", str(demo.recipe)], cwd=ROOT, env=demo.env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "started" not in again.stdout  # a finished home: nothing runs again
