"""Load test: N analysts asking at once, for a while, against the real app over HTTP.

Each session is its own `gradio_client.Client` (its own Gradio session) and does what the page
does when a question is sent: `/join_line` (the place in line the workspace shows above the
chat), then `/ask`, whose status it polls to see how long the question waited in the queue
before the model started on it. When one answer arrives the session asks its next question,
until the time is up; questions already asked are always waited for (every answer delivered).
Reports per session: questions, errors, latency median and p95 (send -> final answer), queue
wait median and p95, the largest place in line the user was shown. Writes
bench/results/load_app.md.

    SHOPSIGHT_HOME=... .venv/bin/python bench/load_app.py --sessions 8 --minutes 5   # starts the app
    .venv/bin/python bench/load_app.py --url http://127.0.0.1:7860/ --sessions 8 --minutes 5

Needs the demo shop (`shopsight demo --no-app`). Times on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.app_latency import QUESTIONS as LATENCY_QUESTIONS  # noqa: E402

# The analysts ask app_latency's opening questions, then two the tools cannot answer straight away.
QUESTIONS = [*LATENCY_QUESTIONS[:4], "Which categories sell best?", "What will user 1039 do next?"]
AHEAD_RE = re.compile(r"(\d+) questions? (?:is|are) ahead")


@dataclass
class SessionResult:
    """What one simulated analyst saw."""

    session: int
    latencies: list[float] = field(default_factory=list)  # send -> final answer, seconds
    waits: list[float] = field(default_factory=list)  # send -> the model starts on it
    places: list[int] = field(default_factory=list)  # questions ahead, as the page told the user
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def run_session(url: str, index: int, deadline: float, questions: list[str], result: SessionResult) -> None:
    """Ask questions one after another until `deadline` (time.monotonic); fill `result`."""
    from gradio_client import Client
    from gradio_client.utils import Status

    from assistant.commands.ask_workspace import last_chat

    client = Client(url, verbose=False)
    n = 0
    while time.monotonic() < deadline:
        question = questions[(index + n) % len(questions)]
        n += 1
        sent = time.monotonic()
        try:
            note = client.predict(question, api_name="/join_line")
            match = AHEAD_RE.search(str(note or ""))
            result.places.append(int(match.group(1)) if match else 0)
            job = client.submit(question, [], None, api_name="/ask")
            started = None
            while not job.done():
                code = job.status().code
                if started is None and code in (Status.PROCESSING, Status.ITERATING, Status.PROGRESS):
                    started = time.monotonic()
                time.sleep(0.1)
            outputs = job.outputs()
            job.result()  # raises when the server reported an error
            finished = time.monotonic()
            chat = last_chat(outputs)
            last = chat[-1] if chat else {}
            content = last.get("content") if isinstance(last, dict) else None
            if not content or (isinstance(last, dict) and last.get("role") != "assistant"):
                result.errors.append(f"q{n}: no answer in the chat")
                continue
            result.latencies.append(finished - sent)
            result.waits.append((started or finished) - sent)
        except Exception as exc:  # noqa: BLE001 - an error is what this script counts
            result.errors.append(f"q{n}: {type(exc).__name__}: {exc}"[:300])


def run_load(url: str, sessions: int, seconds: float, questions: list[str] = QUESTIONS) -> list[SessionResult]:
    """`sessions` threads asking for `seconds`; returns when every asked question is answered."""
    deadline = time.monotonic() + seconds
    results = [SessionResult(i) for i in range(sessions)]
    threads = [threading.Thread(target=run_session, args=(url, i, deadline, questions, results[i]), daemon=True)
               for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def table(results: list[SessionResult]) -> str:
    lines = ["| session | answers | errors | latency median s | latency p95 s | queue wait median s | "
             "queue wait p95 s | most questions ahead shown |", "|---|---|---|---|---|---|---|---|"]
    every = SessionResult(-1)
    for r in results:
        every.latencies += r.latencies
        every.waits += r.waits
        every.places += r.places
        every.errors += r.errors
    for r in results + [every]:
        name = "all" if r.session < 0 else str(r.session + 1)
        lines.append(f"| {name} | {len(r.latencies)} | {len(r.errors)} | "
                     f"{statistics.median(r.latencies) if r.latencies else float('nan'):.1f} | "
                     f"{percentile(r.latencies, 0.95):.1f} | "
                     f"{statistics.median(r.waits) if r.waits else float('nan'):.1f} | "
                     f"{percentile(r.waits, 0.95):.1f} | {max(r.places, default=0)} |")
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running app; default: start one on the demo shop here")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "load_app.md"))
    args = parser.parse_args()
    url, demo = args.url, None
    if url is None:
        import app
        from assistant.config import Settings
        from assistant.workspace import Workspace

        port = _free_port()
        workspace = Workspace.open(Settings.from_env())
        demo = app.launch(workspace, host="127.0.0.1", port=port, block=False)
        url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    results = run_load(url, args.sessions, args.minutes * 60)
    wall = time.perf_counter() - t0
    if demo is not None:
        demo.close()
    command = "SHOPSIGHT_HOME=... .venv/bin/python bench/load_app.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        "# Load: concurrent analysts against the real app (HTTP, gradio_client)", "",
        f"Command: `{command}`", "",
        f"{args.sessions} sessions asking for {args.minutes:g} min, then waiting for every asked question; "
        f"wall {wall:.0f} s.", "", table(results), "",
        "Errors: " + ("none" if not any(r.errors for r in results)
                      else "; ".join(e for r in results for e in r.errors[:3])), ""])
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
