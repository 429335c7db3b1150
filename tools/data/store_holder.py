"""Who holds the event store when DuckDB refuses to open it, said so that the user can act.

DuckDB lets one process open a file for writing and then refuses every other process, readers
included; its error names the holder's pid ("Conflicting lock is held in ... (PID 1234)").
`shopsight demo` records its workspace URL in the home's lock file (`tools/jobs.py`, HomeLock);
a bare `shopsight app` shows its port on its command line (default 7860). The error carries
that URL (`StoreHeldError.workspace_url`), so `shopsight ask` can put its question to the running
workspace instead (assistant/commands/ask_workspace.py).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tools import paths
from tools.data.schema import StoreError

_PID = re.compile(r"\(PID (\d+)\)")
DEMO_LOCK = Path("jobs") / "demo.lock"  # tools/jobs.py: LOCK_FILE under jobs_dir(home)


def holder_pid(message: str) -> int | None:
    """The pid DuckDB names in its lock error, if any."""
    found = _PID.search(message)
    return int(found.group(1)) if found else None


def _command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # not Linux, or the process is gone
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _demo_url(pid: int, home: Path) -> str | None:
    try:
        lock = json.loads((home / DEMO_LOCK).read_text() or "{}")
    except (OSError, ValueError):
        return None
    return lock.get("url") if lock.get("pid") == pid else None


def _app_url(argv: list[str]) -> str | None:
    """The workspace URL of a `shopsight app` / `shopsight demo` / `python app.py` command line."""
    words = [Path(a).name for a in argv]
    if not ({"app", "demo", "app.py"} & set(words)):
        return None

    def option(name: str, env: str, default: str) -> str:
        if name in argv[:-1]:
            return argv[argv.index(name) + 1]
        return os.environ.get(env) or default

    return f"http://{option('--host', 'SHOPSIGHT_HOST', '127.0.0.1')}:{option('--port', 'SHOPSIGHT_PORT', '7860')}"


class StoreHeldError(StoreError):
    """Another process holds the event store; `workspace_url` is set when that process is a running
    ShopSight workspace (its chat can answer instead)."""

    def __init__(self, message: str, workspace_url: str | None = None):
        super().__init__(message)
        self.workspace_url = workspace_url


def held_store_error(path: str, duckdb_message: str, home: Path | None = None, writing: bool = False
                     ) -> StoreHeldError:
    """The error for a store another process holds: who holds it, where its workspace is, what to do."""
    pid = holder_pid(duckdb_message)
    if pid is None:
        return StoreHeldError(
            f"cannot open the event store {path}: another process holds it for writing ({duckdb_message}). "
            "Wait for it to finish (an import, `shopsight demo`), or stop it, then re-run this command.")
    argv = _command_line(pid)
    url = _demo_url(pid, Path(home) if home else paths.shopsight_home()) or _app_url(argv)
    shown = " ".join(" ".join((Path(a).name if i < 2 else a).split())[:40] for i, a in enumerate(argv[:8]))
    who = f"process {pid}" + (f", `{shown}`" if shown else "")
    if url:
        return StoreHeldError(
            f"the event store {path} is held by the running ShopSight workspace at {url} ({who}); "
            f"DuckDB lets no other process read it meanwhile. Ask your question in the workspace at {url}, "
            "or stop it (Ctrl+C in its terminal) and re-run this command.", workspace_url=url)
    if writing:  # the holder may only be reading (a `shopsight ask`): "held for writing" would be wrong
        return StoreHeldError(
            f"the event store {path} is open in {who}; DuckDB lets no process write to a file another "
            "process has open, even read-only. Wait for that process to finish, or stop it, then re-run this command.")
    return StoreHeldError(
        f"the event store {path} is held for writing by {who}; DuckDB lets no other process read it "
        "meanwhile. Wait for that process to finish, or stop it, then re-run this command.")
