"""Background jobs (tools/jobs.py): order, skipping, progress, failure, interruption, the home lock,
and the "not ready yet" result a tool returns while its part is being built."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from tools.jobs import (AlreadyRunning, HomeLock, Job, JobRunner, estimate, finished_marker, read_state, readiness,
                        status_lines)

ROOT = Path(__file__).resolve().parents[1]


def _job(name, log, done=False, fail=None, gate=None, fraction=None):
    def run(report):
        if fraction is not None:
            report(fraction)
        if gate is not None:
            gate.wait(10)
        if fail:
            raise SystemExit(fail)
        log.append(name)
    return Job(name, f"making the {name}", done=lambda: done, run=run, expected_s=30)


def test_jobs_run_in_order_skip_done_ones_and_record_their_time(tmp_path):
    log = []
    runner = JobRunner(tmp_path, [_job("a", log), _job("b", log, done=True), _job("c", log)], echo=None)
    assert [j["status"] for j in read_state(tmp_path)["jobs"].values()] == ["pending"] * 3
    assert readiness("a", tmp_path)["error"] == "not ready yet: making the a starts after the steps before it"
    assert runner.run() and log == ["a", "c"]  # b was done already
    assert all(j["status"] == "done" for j in read_state(tmp_path)["jobs"].values())
    assert readiness("a", tmp_path) is None and status_lines(tmp_path) == {}
    assert finished_marker(tmp_path) == "a b c"
    history = JobRunner(tmp_path, [_job("a", log)], echo=None).jobs[0].expected_s
    assert history < 30  # the measured time replaces the guess for the next ETA


def test_a_running_job_reports_percent_and_time_left(tmp_path):
    gate, lines = threading.Event(), []
    runner = JobRunner(tmp_path, [_job("predictor", [], gate=gate, fraction=0.4)], echo=lines.append,
                       echo_every_s=0)
    runner.start()
    try:
        for _ in range(100):
            ready = readiness("predictor", tmp_path)
            if ready and ready["not_ready"]["percent"] == 40:
                break
            time.sleep(0.05)
        assert ready["not_ready"]["status"] == "running" and ready["not_ready"]["percent"] == 40
        assert ready["error"].startswith("not ready yet: making the predictor, 40 %, about ")
        assert ready["error"].endswith(" s left") and "hint" in ready
    finally:
        gate.set()
        assert runner.wait(10)
    assert any("40 %" in line for line in lines) and lines[-1].endswith("s")  # echoed in the terminal
    assert readiness("predictor", tmp_path) is None


def test_a_failed_job_blocks_the_later_ones_with_its_message(tmp_path):
    log = []
    runner = JobRunner(tmp_path, [_job("a", log, fail="no events: import data first"), _job("b", log)], echo=None)
    assert not runner.run() and log == [] and runner.failed == "a"
    state = read_state(tmp_path)["jobs"]
    assert state["a"]["status"] == "failed" and state["a"]["message"] == "no events: import data first"
    assert state["b"]["status"] == "blocked"
    assert "no events: import data first" in readiness("a", tmp_path)["error"]


def test_a_restart_killed_before_its_checks_keeps_the_parts_already_done(tmp_path):
    """`make run` on a set-up home, stopped at once: what was built stays ready for `shopsight ask`."""
    log = []
    assert JobRunner(tmp_path, [_job("predictor", log), _job("cases", log)], echo=None).run()
    code = "from tools.jobs import JobRunner, Job; JobRunner({!r}, [Job(n, n, lambda: True, lambda report: None) " \
           "for n in ('predictor', 'cases', 'llm')], echo=None)"  # constructed, killed before run()
    subprocess.run([sys.executable, "-c", code.format(str(tmp_path))], cwd=ROOT, check=True)
    assert readiness("predictor", tmp_path) is None and readiness("cases", tmp_path) is None
    assert readiness("llm", tmp_path)["not_ready"]["status"] == "interrupted"  # never built: still said


def test_a_job_left_running_by_a_dead_process_reads_as_interrupted(tmp_path):
    JobRunner(tmp_path, [_job("cases", [])], echo=None)._update("cases", status="running", fraction=0.3)
    code = "from tools.jobs import JobRunner, Job; r = JobRunner({!r}, [Job('cases', 'building the case memory', " \
           "lambda: False, lambda report: None)], echo=None); r._update('cases', status='running', fraction=0.3)"
    subprocess.run([sys.executable, "-c", code.format(str(tmp_path))], cwd=ROOT, check=True)
    ready = readiness("cases", tmp_path)  # the process that wrote "running" has exited
    assert ready["not_ready"]["status"] == "interrupted" and ready["not_ready"]["percent"] == 30
    assert "make run" in ready["hint"]


def test_estimate_uses_reported_progress_else_the_expected_time():
    assert estimate(30, 0.5, 100) == (0.5, 30)
    assert estimate(30, None, 100) == (0.3, 70)
    assert estimate(300, None, 100)[0] == 0.95  # never 100 % before it is done


def test_home_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    with HomeLock(tmp_path, url="http://127.0.0.1:7999"):
        with pytest.raises(AlreadyRunning, match=r"pid \d+\) is running on this home, its workspace is at "
                                                 r"http://127.0.0.1:7999"):
            HomeLock(tmp_path).acquire()
    HomeLock(tmp_path).acquire().release()  # released: free again


def test_a_second_demo_on_one_home_says_the_first_is_running_with_its_port(tmp_path):
    env = {**os.environ, "SHOPSIGHT_HOME": str(tmp_path), "SHOPSIGHT_PORT": "7931"}
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from tools.jobs import HomeLock; "
                               "lock = "
                               f"HomeLock({str(tmp_path)!r}, url='http://127.0.0.1:7931').acquire(); "
                               "print('locked', flush=True); time.sleep(60)"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run([sys.executable, "-m", "assistant.cli", "demo"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert f"another `shopsight demo` (pid {holder.pid}) is running on this home, its workspace is at " \
               "http://127.0.0.1:7931" in second.stdout
        assert not (tmp_path / "shop.duckdb").exists()  # it touched nothing
    finally:
        holder.kill()
        holder.wait()


def test_a_tool_whose_part_is_being_built_says_not_ready_yet(tmp_path, monkeypatch):
    from tools.catalog import ToolContext, build_tools
    from tools.data.store import EventStore

    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    events = pd.DataFrame({"user_id": ["u1", "u1"], "ts": [datetime(2024, 1, 1), datetime(2024, 1, 5)],
                           "behavior": ["view", "buy"], "item_id": ["i1", "i1"], "category_id": ["c1", "c1"],
                           "quantity": [1, 1], "amount": [None, 5.0]})
    with EventStore(tmp_path / "shop.duckdb") as store:
        store.import_frames("jobs-test", events=events)
        tools = {fn.__name__: fn for fn in build_tools(ToolContext(store=store, audit_path=tmp_path / "audit.jsonl"))}
        assert "not ready" not in tools["explain_user"](user_id="u1")["error"]  # no job: the usual error
        runner = JobRunner(tmp_path, [Job("predictor", "training the predictor", lambda: False, lambda r: None)],
                           echo=None)
        runner._update("predictor", status="running", fraction=0.4, eta_s=70)
        result = tools["explain_user"](user_id="u1")
        assert result["error"] == "not ready yet: training the predictor, 40 %, about 70 s left"
        assert result["not_ready"] == {"part": "predictor", "job": "training the predictor", "status": "running",
                                       "percent": 40, "eta_s": 70}
        assert "error" not in tools["user_history"](user_id="u1")  # a tool that needs no job still answers
