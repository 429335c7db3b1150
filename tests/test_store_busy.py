"""`shopsight ask` while another process holds the event store: a clear error naming the holder and
its workspace, never DuckDB's traceback. Two real processes on one real DuckDB file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tools.data.store import EventStore

ROOT = Path(__file__).resolve().parents[1]

# The holder: opens the store for writing (as `shopsight demo` keeps it open), optionally takes the
# demo's home lock with its URL, says "ready", then waits until its stdin closes.
HOLDER = r"""
import sys
from pathlib import Path
from tools.data.store import EventStore
from tools.jobs import HomeLock
home, url = Path(sys.argv[1]), sys.argv[2]
store = EventStore(home / "shop.duckdb")
lock = HomeLock(home, url=url).acquire() if url != "-" else None
print("ready", flush=True)
sys.stdin.read()
"""


def _home_with_store(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    with EventStore(home / "shop.duckdb") as store:
        store.import_frames("test", events=pd.DataFrame({
            "user_id": ["u1"], "ts": [pd.Timestamp("2024-01-02")], "behavior": ["buy"], "item_id": ["i1"],
            "category_id": ["c1"], "quantity": [1], "amount": [5.0]}))
    return home


def _env(home: Path) -> dict:
    return {**os.environ, "SHOPSIGHT_HOME": str(home), "SHOPSIGHT_DB": str(home / "shop.duckdb"),
            "PYTHONPATH": str(ROOT)}


def _ask_while_held(home: Path, url: str, *holder_args: str) -> tuple[int, str, int]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home), url, *holder_args], cwd=ROOT,
                              env=_env(home), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        asked = subprocess.run([sys.executable, "-m", "assistant.cli", "ask", "Which users will churn?"], cwd=ROOT,
                               env=_env(home), capture_output=True, text=True, timeout=120)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    return asked.returncode, asked.stdout + asked.stderr, holder.pid


def test_ask_while_the_demo_holds_the_store_names_its_workspace(tmp_path):
    home = _home_with_store(tmp_path)
    code, output, pid = _ask_while_held(home, "http://127.0.0.1:7911")
    assert code == 1 and "Traceback" not in output
    assert f"held by the running ShopSight workspace at http://127.0.0.1:7911 (process {pid}" in output
    assert "Ask your question in the workspace at http://127.0.0.1:7911, or stop it (Ctrl+C" in output


def test_ask_while_a_bare_app_holds_the_store_reads_the_port_from_its_command_line(tmp_path):
    home = _home_with_store(tmp_path)
    # No demo lock: a `shopsight app --port 7912` is recognised by its command line.
    code, output, pid = _ask_while_held(home, "-", "app", "--port", "7912")
    assert code == 1 and "Traceback" not in output
    assert "workspace at http://127.0.0.1:7912" in output and f"process {pid}" in output


def test_a_holder_that_is_not_a_workspace_is_named_by_pid(tmp_path):
    home = _home_with_store(tmp_path)
    code, output, pid = _ask_while_held(home, "-")
    assert code == 1 and "Traceback" not in output
    assert f"held for writing by process {pid}" in output and "Wait for that process to finish" in output


def test_readers_in_two_processes_share_the_store(tmp_path):
    """What `ask` now opens: read-only, so a second reader (another ask, a case build) is not refused."""
    home = _home_with_store(tmp_path)
    reader = "from tools.data.store import EventStore; import sys; " \
             "print(EventStore(sys.argv[1], read_only=True).time_span()[1])"
    with EventStore(home / "shop.duckdb", read_only=True):
        done = subprocess.run([sys.executable, "-c", reader, str(home / "shop.duckdb")], cwd=ROOT, env=_env(home),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "2024-01-02 00:00:00"



# The holder is a real workspace: the demo stack of tests/app_shop.py with its scripted analyst, launched
# as `make run` launches it (the store held for writing, the demo lock naming its URL).
WORKSPACE_HOLDER = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import app
from app_shop import scripted_analyst, stack_in_home
from assistant.workspace import Workspace
from tools.jobs import HomeLock
home, port = Path(sys.argv[1]), int(sys.argv[2])
with stack_in_home(home) as stack:
    chat = scripted_analyst()
    ws = Workspace.open(stack["settings"], store=stack["store"], predictor=stack["predictor"], cases=stack["cases"],
                        reviews=stack["reviews"], chat_model_factory=lambda: chat)
    lock = HomeLock(home, url=f"http://127.0.0.1:{port}").acquire()
    demo = app.launch(ws, host="127.0.0.1", port=port, auth=sys.argv[4], block=False)
    print("ready", flush=True)
    sys.stdin.read()
    demo.close()
"""


def test_ask_while_a_workspace_runs_is_answered_by_that_workspace(tmp_path):
    """`shopsight ask` beside `make run` with a login: the running workspace answers (its agent, its tools)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = tmp_path / "home"
    env = {**_env(home), "GRADIO_ANALYTICS_ENABLED": "False", "SHOPSIGHT_AUTH": "ana:s3cret"}
    holder = subprocess.Popen([sys.executable, "-c", WORKSPACE_HOLDER, str(home), str(port), str(ROOT / "tests"),
                               "ana:s3cret"],
                              cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        asked = subprocess.run([sys.executable, "-m", "assistant.cli", "ask", "Which users will churn this week?"],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        as_json = subprocess.run([sys.executable, "-m", "assistant.cli", "ask", "--json", "Which users churn?"],
                                 cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        wrong_login = subprocess.run([sys.executable, "-m", "assistant.cli", "ask", "Which users churn?"], cwd=ROOT,
                                     env={**env, "SHOPSIGHT_AUTH": "ana:wrong"}, capture_output=True, text=True,
                                     timeout=120)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert asked.returncode == 0, asked.stderr[-3000:]
    assert "asking it there" in asked.stderr and "-> at_risk_users(" in asked.stderr
    # The workspace's answer (its composer, over its own at_risk_users result), evidence links as plain labels.
    assert re.match(r"The customers with the most money at stake over the next 7 days are user \S+", asked.stdout)
    assert re.search(r"\*\*Evidence:\*\* user \S+ \(at_risk_users\)", asked.stdout)
    assert "Traceback" not in asked.stdout + asked.stderr and "#cite/" not in asked.stdout
    # --json needs the event stream of a local agent: the store's holder is named instead, as before.
    assert as_json.returncode == 1 and f"workspace at http://127.0.0.1:{port}" in as_json.stderr
    # A login the workspace refuses: the holder's message, and why asking it failed.
    assert wrong_login.returncode == 1 and "Traceback" not in wrong_login.stderr
    assert "asking the workspace directly failed" in wrong_login.stderr, wrong_login.stderr[-2000:]
