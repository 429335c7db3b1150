"""Benchmark: how fast the workspace answers, on a machine where `make run` was already done once.

Three measurements, printed as one markdown table (ours beside the eager-loading baseline):

1. Startup: `shopsight demo` in a subprocess (every step finds its work done, then the app
   starts) until the page answers (HTTP 200 on `/` and on `/config`). The baseline is an
   eager start: the same plus loading the chat model before serving (measured in step 2).
2. Questions with the default model (SHOPSIGHT_MODEL, qwen2.5-coder-0.5b): time from the
   question to the first visible step (the first tool call), to the first streamed answer
   token and to the final answer; median of N questions, through the same `Workspace` /
   agent code the UI runs.
3. Responsiveness: the at-risk view's latency through the real server (gradio_client), idle
   and while a chat answer is being generated on the same server.

    SHOPSIGHT_HOME=... .venv/bin/python bench/app_latency.py [--questions 10] [--skip-startup]

Times on a shared CPU are noisy; the table says how many runs each number is from.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "Which users will churn this week, and why?",
    "Who are the 10 highest-value customers at risk in the next 30 days?",
    "Show churn rates by tenure segment for 30 days.",
    "What do customers complain about most in their reviews?",
    "Which customers are most likely to stop buying this month?",
    "Compare churn across value bands for the next 7 days.",
    "List the 5 users most at risk this week.",
    "What will user 1 buy next?",
    "Show the recent history of user 2.",
    "Summarize the reviews of the whole shop.",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, deadline: float) -> float | None:
    """Seconds (perf_counter) when `url` first answers 200, or None at the deadline."""
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.1)
    return None


def measure_startup(timeout_s: float = 180.0) -> dict:
    """`shopsight demo` on a set-up home until the page answers; the process is stopped after."""
    port = free_port()
    env = dict(os.environ, SHOPSIGHT_PORT=str(port), PYTHONUNBUFFERED="1")
    shopsight = str(Path(sys.executable).with_name("shopsight"))
    start = time.perf_counter()
    proc = subprocess.Popen([shopsight, "demo", "--users", os.environ.get("BENCH_DEMO_USERS", "5000")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        page = wait_http(f"http://127.0.0.1:{port}/", start + timeout_s)
        config = wait_http(f"http://127.0.0.1:{port}/config", start + timeout_s) if page else None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    if page is None:
        raise SystemExit("the page never answered; output of `shopsight demo`:\n" + "".join(lines[-30:]))
    return {"page_s": page - start, "config_s": (config or page) - start, "log": "".join(lines)}


def measure_questions(ws, n: int) -> list[dict]:
    """First step, first token and answer times of n questions (each a fresh conversation)."""
    rows = []
    for question in (QUESTIONS * ((n // len(QUESTIONS)) + 1))[:n]:
        start = time.perf_counter()
        first_step = first_token = answer = None
        tools: list[str] = []
        for event in ws.run_agent(question):
            now = time.perf_counter() - start
            if event.type == "tool_call":
                tools.append(event.get("name"))
                first_step = first_step if first_step is not None else now
            elif event.type == "token" and first_token is None:
                first_token = now
            elif event.type == "answer":
                answer = now
        rows.append({"question": question, "first_step_s": first_step, "first_token_s": first_token,
                     "answer_s": answer, "tools": tools})
        print(f"  {answer:6.1f} s  {','.join(tools) or '-':30s} {question}", file=sys.stderr, flush=True)
    return rows


def measure_responsiveness(ws, n_calls: int = 3) -> dict:
    """The at-risk view's latency through the real server, idle and while a chat runs."""
    import app
    from gradio_client import Client

    port = free_port()
    demo = app.launch(ws, port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)

        def view_latency() -> float:
            t0 = time.perf_counter()
            client.predict("7", "p_churn", "", 25, api_name="/at_risk")
            return time.perf_counter() - t0

        view_latency()  # warm the tool caches
        idle = [view_latency() for _ in range(n_calls)]
        job = Client(f"http://127.0.0.1:{port}/", verbose=False).submit(
            QUESTIONS[0], [], api_name="/ask")
        time.sleep(1.0)  # the chat is now generating
        busy = []
        while len(busy) < n_calls and not job.done():
            busy.append(view_latency())
        chat_running = not job.done()
        job.result(timeout=600)
        return {"idle_s": statistics.median(idle), "busy_s": statistics.median(busy) if busy else None,
                "busy_n": len(busy), "chat_still_running": chat_running}
    finally:
        demo.close()


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--skip-responsiveness", action="store_true")
    args = parser.parse_args(argv)

    from assistant.config import Settings
    from assistant.workspace import Workspace

    settings = Settings.from_env()
    rows: list[tuple[str, str, str, str]] = []
    startup = None
    if not args.skip_startup:
        print("startup: shopsight demo until the page answers ...", file=sys.stderr, flush=True)
        startup = measure_startup()
        print(f"  page answers after {startup['page_s']:.1f} s", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    ws = Workspace.open(settings)
    open_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ws.chat_model()
    llm_s = time.perf_counter() - t0
    print(f"  Workspace.open {open_s:.1f} s, chat model load {llm_s:.1f} s", file=sys.stderr, flush=True)
    if startup:
        rows.append(("`make run` (set up) -> page answers (HTTP 200 /)", fmt(startup["page_s"]),
                     fmt(startup["page_s"] + llm_s), "1 run; target < 30 s; baseline = eager LLM load first"))
        rows.append(("`make run` (set up) -> /config answers", fmt(startup["config_s"]),
                     fmt(startup["config_s"] + llm_s), "1 run"))
    rows.append(("Workspace.open (store, predictor, case memory)", fmt(open_s), fmt(open_s), "in-process, 1 run"))
    rows.append((f"chat model load ({settings.model}), on the first question", fmt(llm_s), "at startup",
                 "lazy in ours"))
    print(f"questions: {args.questions} with {settings.model} ...", file=sys.stderr, flush=True)
    results = measure_questions(ws, args.questions)
    for key, label in (("first_step_s", "question -> first visible step (tool call)"),
                       ("first_token_s", "question -> first streamed answer token"),
                       ("answer_s", "question -> final answer")):
        values = [r[key] for r in results if r[key] is not None]
        rows.append((label, fmt(statistics.median(values)) if values else "n/a", "same",
                     f"median of {len(values)} (min {fmt(min(values)) if values else 'n/a'}, "
                     f"max {fmt(max(values)) if values else 'n/a'})"))
    if not args.skip_responsiveness:
        resp = measure_responsiveness(ws)
        print(f"  responsiveness {resp}", file=sys.stderr, flush=True)
        rows.append(("at-risk view latency, idle", fmt(resp["idle_s"]), "-", "median of 3, through the server"))
        rows.append(("at-risk view latency while a chat generates", fmt(resp["busy_s"]), "-",
                     f"median of {resp['busy_n']}; chat still running after: {resp['chat_still_running']}"))
    print(f"\n### Workspace latency ({settings.model}, home {settings.home}; shared CPU, noisy)\n")
    print("| measurement | ours (lazy) | baseline (eager) | runs / note |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
