"""Concurrent analysts over HTTP (bench/load_app.py against the real app with a scripted model),
and the place in line the workspace shows (assistant/ui_queue.py)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.ui_queue import AnswerLine  # noqa: E402


def test_answer_line_counts_places_and_timings():
    line = AnswerLine()
    assert line.note(line.join()).startswith("Your question is next")
    assert line.join() == 1 and line.join() == 2
    line.start()
    assert "3 questions are ahead" in line.note(line.join())  # 2 waiting + 1 running
    line.finish(10.0)
    line.start()
    line.finish(30.0)
    median, p95 = line.timings()
    assert (median, p95) == (20.0, 30.0)
    assert "20 s (median), 30 s (p95)" in line.note(1) and "1 question is ahead" in line.note(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import app
    from app_shop import scripted_analyst, stack_in_home
    from assistant.workspace import Workspace

    chat = scripted_analyst(delay_s=0.3)
    with stack_in_home(tmp_path_factory.mktemp("home")) as stack:
        ws = Workspace.open(stack["settings"], store=stack["store"], predictor=stack["predictor"],
                            cases=stack["cases"], reviews=stack["reviews"], chat_model_factory=lambda: chat)
        port = _free_port()
        demo = app.launch(ws, host="127.0.0.1", port=port, block=False)
        yield f"http://127.0.0.1:{port}/", chat
        demo.close()


def test_three_sessions_at_once_all_answered_in_line(server):
    from bench.load_app import run_load, table

    url, chat = server
    results = run_load(url, sessions=3, seconds=12, questions=["Which users will churn this week?",
                                                              "Show churn rates by tenure segment for 30 days."])
    assert [r.errors for r in results] == [[], [], []], table(results)
    assert all(r.latencies for r in results)
    assert chat.max_running == 1  # one model run at a time
    assert max(p for r in results for p in r.places) >= 1  # someone was told they were waiting
    assert max(w for r in results for w in r.waits) > 0.2  # and did wait in the queue
    assert "| all |" in table(results)
