"""A cold `shopsight ask`: wall, CPU and peak RSS of fresh processes, and where the time goes.

    SHOPSIGHT_HOME=<a set-up home> .venv/bin/python bench/cold_ask.py            # 2 runs, the headline question
    SHOPSIGHT_HOME=... .venv/bin/python bench/cold_ask.py --runs 3 --question "Why is user 1042 at risk?"

Each run is a fresh Python process running `shopsight ask --json` in-process (assistant.cli.main),
so its numbers are a real cold start: imports, the workspace, the chat model, the agent. The
first run of a new home also writes what later ones read (the persisted prompt head beside the
model, the tool prior's example vectors), so report the later runs. Printed per run: wall seconds,
CPU seconds (user + sys, what stays comparable on a busy machine), peak RSS, the load average;
seconds from the process start to each milestone (imports, each event of the stream, exit); each
llama.cpp prefill (tokens computed, kept in the KV cache, loaded from disk, seconds); the heavy
modules that were imported (torch, transformers, chromadb, sklearn, gradio).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Which users will churn this week and why?"
HEAVY = ("torch", "transformers", "chromadb", "sklearn", "gradio", "sentence_transformers", "scipy")


def child(question: str) -> int:
    """Run the ask in this process, stamping milestones (seconds since the process started) on stderr."""
    started = time.time() - time.monotonic() + _process_start_monotonic()
    import logging

    def stamp(what: str) -> None:
        print(f"@@ {time.time() - started:7.2f} {what}", file=sys.stderr, flush=True)

    stamp("python ready")
    sys.path.insert(0, str(ROOT))
    from assistant import cli

    stamp("cli imported")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("@@ prefill %(message)s"))
    engine_log = logging.getLogger("assistant.llm.llama_engine")
    engine_log.addHandler(handler)
    engine_log.setLevel(logging.DEBUG)

    class Stamped:
        """stdout that stamps each JSON event line as it is printed."""

        def write(self, text: str) -> int:
            for line in text.splitlines():
                if line.startswith("{"):
                    event = json.loads(line)
                    extra = {"tool_call": lambda e: e.get("name"), "tool_result": lambda e: e.get("name"),
                             "answer": lambda e: e.get("repair")}.get(event["type"], lambda e: "")(event)
                    if event["type"] != "token":
                        stamp(f"event {event['type']} {extra or ''}".rstrip())
            return len(text)

        def flush(self) -> None:
            pass

    real = sys.stdout
    sys.stdout = Stamped()
    try:
        code = cli.main(["ask", "--json", question])
    finally:
        sys.stdout = real
    stamp("done")
    print("@@ heavy " + " ".join(m for m in HEAVY if m in sys.modules), file=sys.stderr, flush=True)
    return code


def _process_start_monotonic() -> float:
    """time.monotonic() at this process's start (Linux: /proc/self/stat's start time), else now."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.monotonic() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic()


def run_once(question: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    wall = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", "--question", question], capture_output=True,
                          text=True, cwd=ROOT)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line[3:] for line in proc.stderr.splitlines() if line.startswith("@@ ")]
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "peak_rss_mb": after.ru_maxrss / 1024, "load_avg": load, "exit": proc.returncode, "marks": lines}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.question)
    flags = sorted(set(re.findall(r"\b(avx2|avx512_bf16|amx\w*)\b", Path("/proc/cpuinfo").read_text()))) \
        if Path("/proc/cpuinfo").exists() else []
    print(f"cold `shopsight ask {args.question!r}`; {os.cpu_count()} cores, flags: {' '.join(flags)}; "
          f"SHOPSIGHT_HOME={os.environ.get('SHOPSIGHT_HOME', '~/.shopsight')}")
    for run in range(1, args.runs + 1):
        # RUSAGE_CHILDREN's ru_maxrss is the largest child so far: runs are alike, so it is this run's.
        result = run_once(args.question)
        print(f"\nrun {run}: wall {result['wall_s']:.1f} s, cpu {result['cpu_s']:.1f} s, peak RSS "
              f"{result['peak_rss_mb']:.0f} MB, load average {result['load_avg']:.1f}, exit {result['exit']}")
        for mark in result["marks"]:
            print("  " + mark)
    return 0


if __name__ == "__main__":
    sys.exit(main())
