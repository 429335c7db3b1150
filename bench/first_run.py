"""First run in minutes: time each phase of `shopsight demo` from an empty home, then from a set-up one.

Starts the real command (the page first, the rest as background jobs), and records, in seconds
from the start: the page answering; each background job done (from <home>/jobs/state.json); the
headline question answered in the page by the real agent (headless chromium, as
tests/test_app_browser.py drives it) once the predictor, the scores and the chat model are there;
everything built. Then stops it and starts it again on the same home: the page answering.

    .venv/bin/python bench/first_run.py                       # a fresh temporary home, 5,000 users
    .venv/bin/python bench/first_run.py --skip-question --home /tmp/first-run-home
    .venv/bin/python bench/first_run.py --link-models ~/.shopsight/models   # reuse converted chat models

The baseline beside it is the order before the background jobs (commit 3ffcc01): the page came
only after every step, so its "page answering" is this run's "everything built" plus the
set-up home's page time (the same steps, the same machine, the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Which users will churn this week, and why?"
CHROMIUM = "/usr/bin/chromium"


def page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def jobs(home: Path) -> dict:
    try:
        return json.loads((home / "jobs" / "state.json").read_text())["jobs"]
    except (OSError, ValueError, KeyError):
        return {}


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"])


def screenshots(url: str, folder: Path) -> list[Path]:
    """The workspace while jobs run: the banner on the Ask tab, then the Data & models panel."""
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    shots = [folder / "first_run_banner.png", folder / "first_run_data_panel.png"]
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url, wait_until="domcontentloaded")
        page.locator("#banner").get_by_text("not ready yet").first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots[0]))
        page.get_by_role("tab", name="Data & models").click()
        page.locator("#data-panel").get_by_text("Being built in the background").wait_for(timeout=60_000)
        page.screenshot(path=str(shots[1]), full_page=True)
        browser.close()
    return shots


def ask_in_browser(url: str, question: str, timeout_s: float) -> str:
    """Type the question in the workspace, wait for the answer's evidence line; the chat's text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("#question textarea")
        page.locator("#question textarea").fill(question)
        page.locator("#question textarea").press("Enter")
        page.locator("#chat").get_by_text("Evidence:").first.wait_for(timeout=timeout_s * 1000)
        text = page.locator("#chat").inner_text()
        browser.close()
    return text


def start(home: Path, port: int, users: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SHOPSIGHT_HOME": str(home), "SHOPSIGHT_PORT": str(port)}
    with open(log, "a") as fh:
        return subprocess.Popen([sys.executable, "-m", "assistant.cli", "demo", "--users", str(users)], cwd=ROOT,
                                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=None, help="an empty folder (default: a temporary one)")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--port", type=int, default=7871)
    parser.add_argument("--skip-question", action="store_true")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="save the workspace while the jobs run here (e.g. docs/screenshots)")
    parser.add_argument("--only-screenshots", action="store_true", help="stop after the screenshots")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    parser.add_argument("--link-models", type=Path, default=None,
                        help="link the chat-model caches of this models folder into the new home "
                             "(skips the conversion; the table says so)")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="first-run-"))
    if home.exists() and any(home.iterdir()):
        raise SystemExit(f"{home} is not empty: give an empty folder (the first run starts from nothing)")
    home.mkdir(parents=True, exist_ok=True)
    if args.link_models:
        (home / "models").mkdir()
        for folder in args.link_models.iterdir():
            if folder.is_dir() and folder.name != "predictor" and not folder.name.startswith("."):
                (home / "models" / folder.name).symlink_to(folder.resolve())
    url = f"http://127.0.0.1:{args.port}/"
    log = home.parent / f"{home.name}.log"
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    proc = start(home, args.port, args.users, log)
    asked = args.skip_question
    try:
        while time.perf_counter() - t0 < args.timeout:
            now = time.perf_counter() - t0
            if "page answering" not in marks and page_answers(url):
                marks["page answering"] = now
                print(f"{now:7.1f} s  page answering", flush=True)
                if args.screenshots:
                    shots = screenshots(url, args.screenshots)
                    print(f"{time.perf_counter() - t0:7.1f} s  screenshots: {', '.join(map(str, shots))}",
                          flush=True)
                    if args.only_screenshots:
                        return 0
            state = jobs(home)
            for name, job in state.items():
                key = f"{job['label']} done"
                if job.get("status") == "done" and key not in marks:
                    marks[key] = now
                    print(f"{now:7.1f} s  {key}", flush=True)
                if job.get("status") == "failed":
                    raise SystemExit(f"{job['label']} failed: {job.get('message')} (log: {log})")
            ready = state and all(state[n]["status"] == "done" for n in ("predictor", "scores", "llm") if n in state)
            if not asked and "page answering" in marks and ready:
                asked = True
                answer = ask_in_browser(url, QUESTION, timeout_s=600)
                marks["headline question answered"] = time.perf_counter() - t0
                print(f"{marks['headline question answered']:7.1f} s  headline question answered:\n"
                      f"{answer[-600:]}", flush=True)
            if state and all(j["status"] == "done" for j in state.values()) and asked:
                marks["everything built"] = time.perf_counter() - t0
                break
            if proc.poll() is not None:
                raise SystemExit(f"shopsight demo ended (exit {proc.returncode}); log: {log}")
            time.sleep(0.5)
        else:
            raise SystemExit(f"not done in {args.timeout:.0f} s; log: {log}")
    finally:
        stop(proc)
    t1 = time.perf_counter()
    proc = start(home, args.port, args.users, log)
    try:
        while not page_answers(url):
            if proc.poll() is not None or time.perf_counter() - t1 > 300:
                raise SystemExit(f"the second start did not serve the page; log: {log}")
            time.sleep(0.2)
        warm = time.perf_counter() - t1
    finally:
        stop(proc)
    models = f"chat model caches linked from {args.link_models}" if args.link_models else "chat model converted"
    print(f"\nhome {home} ({args.users:,} users; {models}); log {log}\n")
    print("| phase (seconds from `shopsight demo`) | page first (this checkout) | page last (3ffcc01 order) |")
    print("|---|---|---|")
    everything = marks.get("everything built")
    print(f"| page answering, empty home | {marks.get('page answering', float('nan')):.1f} | "
          f"{(everything or float('nan')) + warm:.1f} (derived) |")
    for key, value in marks.items():
        if key != "page answering":
            print(f"| {key} | {value:.1f} | |")
    print(f"| page answering, set-up home | {warm:.1f} | {warm:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
