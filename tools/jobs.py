"""Background jobs of a home folder: resumable steps with progress, one lock per home, readiness.

`shopsight demo` imports the shop, serves the workspace, and builds the rest behind it as jobs
(the predictor, the scores, the chat model, the case memory). Each job's state lives in
`<home>/jobs/state.json` (written atomically), so the workspace banner, the Data & models panel
and the tools read it, from this process or another. A job resumes rather than restarts because
each one checks what is done first: the trainer continues from its last epoch, scores replace
their rows, the case build skips stored ids, the model install renames a finished folder.

    runner = JobRunner(home, [Job("predictor", "training the predictor", done=is_trained, run=train)])
    runner.start()                 # a thread; runner.wait() blocks until every job ended
    readiness("predictor")         # None when ready; else {"error": "not ready yet: ...", "not_ready": {...}}
    with HomeLock(home, url="http://127.0.0.1:7860"):   # AlreadyRunning when another process holds it
        ...
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tools import paths

STATE_FILE = "state.json"
FINISHED_FILE = "finished"  # changes only when a job ends: a cheap "reload the parts?" signal
HISTORY_FILE = "history.json"  # seconds each job took last time: the ETA before a job reports progress
LOCK_FILE = "demo.lock"
# Which job provides the part a tool needs (the tools of tools/catalog/ by name).
TOOL_PARTS = {"at_risk_users": "scores", "segment_report": "scores", "explain_user": "predictor",
              "predict_next": "predictor", "similar_cases": "cases"}


def jobs_dir(home: Path | None = None) -> Path:
    return Path(home or paths.shopsight_home()) / "jobs"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Job:
    """One resumable step.

    Attributes:
        name: the part it provides ("predictor", "scores", "llm", "cases").
        label: what it does, for people ("training the predictor").
        done: True when its result is already there (then it is skipped).
        run: does the work; gets `report(fraction)` to call with 0..1 as it goes. Raise to fail
            (SystemExit's message is shown as is).
        expected_s: a guess of its length, used for the ETA until it reports progress (the last
            run's measured time replaces it).
        probe: optional, polled each second: the fraction done read from the job's own files.
    """

    name: str
    label: str
    done: Callable[[], bool]
    run: Callable[[Callable[[float], None]], Any]
    expected_s: float = 60.0
    probe: Callable[[], float | None] | None = None


@dataclass
class JobRunner:
    """Runs jobs one after another in a thread, writing their state each second and echoing progress."""

    home: Path
    jobs: list[Job]
    echo: Callable[[str], None] | None = print
    echo_every_s: float = 15.0
    on_finished: list[Callable[[str], None]] = field(default_factory=list)
    _state: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    failed: str | None = None

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        history = _read_json(jobs_dir(self.home) / HISTORY_FILE, {})
        for job in self.jobs:
            job.expected_s = float(history.get(job.name, job.expected_s))
        # A job done by an earlier start stays done until `run` checks it again: a restart killed
        # before that check (Ctrl+C right after `make run`) left every part "interrupted at 0 %"
        # and `shopsight ask` refused a home whose predictor, scores and cases were all there.
        before = _read_json(jobs_dir(self.home) / STATE_FILE, {}).get("jobs", {})
        self._state = {"pid": os.getpid(), "jobs": {
            job.name: dict(before[job.name]) if (before.get(job.name) or {}).get("status") == "done" else
            {"label": job.label, "status": "pending", "fraction": 0.0, "eta_s": round(job.expected_s)}
            for job in self.jobs}}
        self._save()

    # ------------------------------------------------------------------ running
    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name="shopsight-jobs", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the jobs ended; True when every one succeeded."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.failed is None

    def run(self) -> bool:
        """Run every job not done yet, in order; stop at the first failure (later ones depend on it)."""
        for number, job in enumerate(self.jobs):
            if self._done(job):
                self._update(job.name, status="done", fraction=1.0, eta_s=0, message="ready")
                self._finished(job.name)
                continue
            if not self._run_one(job):
                for later in self.jobs[number + 1:]:
                    self._update(later.name, status="blocked", message=f"waits for {job.label}, which failed")
                return False
        return True

    def _done(self, job: Job) -> bool:
        try:
            return bool(job.done())
        except Exception as exc:  # noqa: BLE001 - a check that cannot tell: run the job (it resumes)
            self._say(f"{job.label}: could not check whether it is done ({type(exc).__name__}: {exc}); running it")
            return False

    def _run_one(self, job: Job) -> bool:
        started = time.time()
        reported: dict[str, float] = {}
        self._update(job.name, status="running", started_at=started, fraction=0.0,
                     eta_s=round(job.expected_s), message="")
        self._say(f"{job.label}: started in the background")
        stop = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(job, started, reported, stop), daemon=True)
        ticker.start()
        try:
            job.run(lambda fraction: reported.__setitem__("fraction", max(0.0, min(1.0, float(fraction)))))
        except BaseException as exc:  # noqa: BLE001 - SystemExit carries a command's message for people
            stop.set()
            message = str(exc.code) if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
            self.failed = job.name
            self._update(job.name, status="failed", message=message, eta_s=None)
            self._say(f"{job.label} failed: {message}; fix it and re-run `make run` (it resumes)")
            return False
        stop.set()
        ticker.join()
        seconds = time.time() - started
        self._update(job.name, status="done", fraction=1.0, eta_s=0, seconds=round(seconds, 1), message="ready")
        history = _read_json(jobs_dir(self.home) / HISTORY_FILE, {})
        _write_json(jobs_dir(self.home) / HISTORY_FILE, {**history, job.name: round(seconds, 1)})
        self._say(f"{job.label}: done in {seconds:.0f} s")
        self._finished(job.name)
        return True

    def _tick(self, job: Job, started: float, reported: dict, stop: threading.Event) -> None:
        last_echo, shown = time.time(), 0.0
        while not stop.wait(1.0):
            elapsed = time.time() - started
            fraction = reported.get("fraction")
            if job.probe is not None:
                try:
                    probed = job.probe()
                except Exception:  # noqa: BLE001 - a half-written file is read again next second
                    probed = None
                if probed is not None:
                    fraction = max(fraction or 0.0, probed)
            fraction, eta = estimate(elapsed, fraction, job.expected_s)
            shown = max(shown, fraction)  # a probe that lags the time-based guess must not move it back
            fraction = shown
            self._update(job.name, fraction=round(fraction, 3), eta_s=eta)
            if self.echo and time.time() - last_echo >= self.echo_every_s:
                last_echo = time.time()
                self._say(describe(job.label, fraction, eta))

    # ------------------------------------------------------------------ state
    def _update(self, name: str, **changes: Any) -> None:
        with self._lock:
            self._state["jobs"][name].update(changes, updated_at=time.time())
            self._save()

    def _save(self) -> None:
        _write_json(jobs_dir(self.home) / STATE_FILE, self._state)

    def _finished(self, name: str) -> None:
        path = jobs_dir(self.home) / FINISHED_FILE
        done = [n for n, s in self._state["jobs"].items() if s["status"] == "done"]
        path.write_text(" ".join(done))
        for callback in self.on_finished:
            callback(name)

    def _say(self, text: str) -> None:
        if self.echo:
            self.echo(f"  [background] {text}")


def estimate(elapsed: float, fraction: float | None, expected_s: float) -> tuple[float, int]:
    """(fraction done, seconds left): from reported progress when there is some, else from the expected time."""
    if fraction and fraction > 0.02:
        return fraction, max(1, round(elapsed * (1 - fraction) / fraction))
    guess = min(elapsed / max(expected_s, 1.0), 0.95)
    return max(fraction or 0.0, guess), max(1, round(expected_s - elapsed))


def describe(label: str, fraction: float, eta_s: int | None) -> str:
    """'training the predictor, 40 %, about 70 s left'."""
    left = f", about {eta_s} s left" if eta_s else ""
    return f"{label}, {100 * fraction:.0f} %{left}"


# ---------------------------------------------------------------------- reading, from anywhere
def read_state(home: Path | None = None) -> dict:
    """The jobs' state; a job left "running" by a process that is gone reads as "interrupted"."""
    state = _read_json(jobs_dir(home) / STATE_FILE, {"jobs": {}})
    if not _alive(state.get("pid")):
        for job in state.get("jobs", {}).values():
            if job.get("status") in ("running", "pending", "blocked"):
                job["status"] = "interrupted"
    return state


def finished_marker(home: Path | None = None) -> str:
    """Changes exactly when a job ends (the workspace reloads its parts then)."""
    try:
        return (jobs_dir(home) / FINISHED_FILE).read_text()
    except OSError:
        return ""


def readiness(part: str, home: Path | None = None) -> dict | None:
    """None when `part` is ready (or no job builds it); else a structured "not ready yet" result.

    The result has the tool-error shape ({"error", "hint"}) the agent and the UI already show,
    plus `not_ready` = {part, job, status, percent, eta_s}.
    """
    job = read_state(home).get("jobs", {}).get(part)
    if not job or job.get("status") == "done":
        return None
    status = job.get("status")
    percent = round(100 * float(job.get("fraction") or 0.0))
    if status == "running":
        message = "not ready yet: " + describe(job["label"], percent / 100, job.get("eta_s"))
        hint = "ask again when it is done; the banner of the workspace shows the progress"
    elif status == "pending":
        message = f"not ready yet: {job['label']} starts after the steps before it"
        hint = "ask again in a few minutes; the banner of the workspace shows the progress"
    elif status == "interrupted":
        message = f"not ready: {job['label']} was interrupted at {percent} %"
        hint = "run `make run` (or `shopsight demo`) again: it resumes where it stopped"
    else:  # failed / blocked
        message = f"not available: {job['label']} {status}: {job.get('message', '')}".rstrip(": ")
        hint = "see the terminal of `make run` for the message, fix it and run `make run` again"
    return {"error": message, "hint": hint, "not_ready": {
        "part": part, "job": job["label"], "status": status, "percent": percent, "eta_s": job.get("eta_s")}}


def not_ready_for_tool(tool_name: str, home: Path | None = None) -> dict | None:
    """The "not ready yet" result for a tool whose part is still being built (None otherwise)."""
    part = TOOL_PARTS.get(tool_name)
    return readiness(part, home) if part else None


def status_lines(home: Path | None = None) -> dict[str, str]:
    """Part -> one line, for each job not done: the banner and the Data & models panel show them."""
    state = read_state(home).get("jobs", {})
    return {name: readiness(name, home)["error"] for name, job in state.items() if job.get("status") != "done"}


# ---------------------------------------------------------------------- one demo per home
class AlreadyRunning(Exception):
    """Another process holds this home's lock; `pid` and `url` say which and where."""

    def __init__(self, pid: int | None, url: str | None, lock_path: Path) -> None:
        where = f", its workspace is at {url}" if url else ""
        super().__init__(f"another `shopsight demo` (pid {pid or '?'}) is running on this home{where}; open that, "
                         f"or stop it (Ctrl+C) before starting another (lock: {lock_path})")
        self.pid, self.url = pid, url


class HomeLock:
    """An exclusive lock on a home (fcntl.flock: the kernel drops it when the process dies, even by kill -9)."""

    def __init__(self, home: Path | None = None, url: str | None = None) -> None:
        self.path = jobs_dir(home) / LOCK_FILE
        self.url = url
        self._fh = None

    def acquire(self) -> "HomeLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = _read_lock_text(fh.read())
            fh.close()
            raise AlreadyRunning(holder.get("pid"), holder.get("url"), self.path) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "url": self.url, "since": time.time()}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "HomeLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_lock_text(text: str) -> dict:
    try:
        return json.loads(text) or {}
    except ValueError:
        return {}
