"""`shopsight demo`: everything `make run` does after the install; the page first, the rest behind it.

1. generate and import the demo shop        (`shopsight data generate`), in the foreground: seconds
2. start the workspace                      (`shopsight app`), while background jobs (tools/jobs.py) run:
   - train the behavior Transformer         (`shopsight predictor train`)
   - score every user as of the last event  (`shopsight predictor score`)
   - install the default chat model         (`shopsight models install`)
   - build the memory of past cases         (`shopsight cases build`)

Each job runs the same code a user would type, checks what is done first, and resumes after an
interruption (Ctrl+C, kill -9): the trainer continues from its last epoch, scores replace their
rows, stored cases are skipped. Progress shows in the terminal, the workspace banner and the
Data & models panel; a tool whose part is not ready says "not ready yet: ..., 40 %, about 70 s left".
One demo per home: a second one says where the first one's workspace is. `--no-app` runs the jobs
in the foreground and returns.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="set up the demo shop end to end and start the workspace")
    parser.add_argument("--users", type=int, default=5000, help="demo shop size (default 5000 users)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-app", action="store_true", help="prepare everything, do not start the app")
    parser.add_argument("--skip-model", action="store_true", help="do not install the chat model")
    parser.add_argument("--recipe", type=Path, default=None,
                        help="predictor recipe (default finetune/configs/predictor_demo.yaml when present)")
    parser.set_defaults(func=run)


def _demo_loaded(settings, users: int, seed: int) -> bool:
    from tools.data.store import EventStore

    if not settings.db_path.exists():
        return False
    with EventStore(settings.db_path, read_only=True) as store:
        log = store.query("SELECT source_file FROM import_log")
    return f"demo-shop:seed={seed}:users={users}" in set(log["source_file"])


def _predictor_ready(settings) -> bool:
    """A checkpoint whose recorded features match this code; a stale one is reported and retrained."""
    from tools.predictor.checkpoint import checkpoint_problem

    problem = checkpoint_problem(settings.predictor_dir)
    if problem and (settings.predictor_dir / "config.yaml").exists():
        print(f"  {problem}: retraining it")
    return problem is None


def _train_argv(settings, recipe: Path | None = None) -> list[str]:
    # A stale checkpoint's last/ holds weights of the old feature set: start over, do not resume it.
    stale = (settings.predictor_dir / "config.yaml").exists()
    return ["predictor", "train", *_recipe(recipe), *(["--no-resume"] if stale else [])]


def _predictor_version(settings) -> str | None:
    import yaml

    config_path = settings.predictor_dir / "config.yaml"
    return (yaml.safe_load(config_path.read_text()) or {}).get("version") if config_path.is_file() else None


def _scored(settings) -> bool:
    from tools.data.store import EventStore

    # Scores count only when the current checkpoint wrote them (a retrained model rescores).
    version = _predictor_version(settings)
    with EventStore(settings.db_path, read_only=True) as store:
        cutoff = store.time_span()[1]
        scores = store.scores_frame(cutoff=cutoff)
    return bool(len(scores)) and version in set(scores["model_version"])


def _cases_stamp(settings) -> Path:
    return settings.home / "stamps" / "cases_built"


def _cases_stamp_text(settings) -> str:
    return f"the case memory was built (predictor {_predictor_version(settings)}); delete this file to check again\n"


def _cases_built(settings) -> bool:
    """True after a build that finished (a stamp written last), for the current predictor's vectors.

    Cases alone do not say the build finished: one stopped midway (Ctrl+C, kill -9) holds some
    cutoffs, and the next run completes it (the build skips stored ids). A retrained predictor's
    vectors are rebuilt. A Chroma server keeps no local folder: its build re-checks the ids (quick).
    """
    if settings.chroma_url:
        return False
    stamp = _cases_stamp(settings)
    return stamp.is_file() and (settings.chroma_path / "chroma.sqlite3").is_file() and \
        stamp.read_text() == _cases_stamp_text(settings)


def _mark_cases_built(settings) -> None:
    _cases_stamp(settings).parent.mkdir(parents=True, exist_ok=True)
    _cases_stamp(settings).write_text(_cases_stamp_text(settings))


def _recipe_path(given: Path | None = None) -> Path | None:
    """The predictor room's recipe for the demo shop, when the checkout has it (else TrainConfig defaults)."""
    recipe = given or Path(__file__).resolve().parents[2] / "finetune" / "configs" / "predictor_demo.yaml"
    return recipe if recipe.is_file() else None


def _recipe(given: Path | None = None) -> list[str]:
    recipe = _recipe_path(given)
    return ["--config", str(recipe)] if recipe else []


def _training_progress(settings, recipe: Path | None) -> float | None:
    """Epochs finished / epochs planned, read from the trainer's resume state (tools/predictor/train.py)."""
    import json

    import yaml

    state_file = settings.predictor_dir / "last" / "trainer_state.json"
    path = _recipe_path(recipe)
    if not state_file.is_file() or path is None:
        return None
    epochs = int((yaml.safe_load(path.read_text()) or {}).get("epochs", 0)) or None
    return min(json.loads(state_file.read_text())["epoch"] / epochs, 0.97) if epochs else None


def _model_ready(settings) -> bool:
    from assistant.llm.registry import MODEL_REGISTRY, is_cached

    # A folder, hub id or server URL is the user's own choice: nothing for the demo to install.
    return settings.model not in MODEL_REGISTRY or is_cached(settings.model, settings.models_dir)


def _call(argv: list[str]) -> None:
    """Run a `shopsight` command in this process; a non-zero exit is a failure with its code."""
    from assistant.cli import main as shopsight

    code = shopsight(argv)
    if code:
        raise SystemExit(f"`shopsight {' '.join(argv)}` failed (exit {code}); see the message above")


def _build_cases(settings, report) -> None:
    from assistant.commands.cases import build_case_memory

    # The last fifth is the review analysis that follows the cases (its model trains in seconds).
    build_case_memory(settings, progress=False, on_progress=lambda done, total: report(0.8 * done / max(total, 1)))
    _mark_cases_built(settings)


def demo_jobs(settings, args: argparse.Namespace) -> list:
    """The background jobs of the demo, in the order the first question needs them."""
    from tools.jobs import Job

    recipe = getattr(args, "recipe", None)
    jobs = [
        Job("predictor", "training the predictor", lambda: _predictor_ready(settings),
            lambda report: _call([*_train_argv(settings, recipe), "--quiet"]), expected_s=120,
            probe=lambda: _training_progress(settings, recipe)),
        Job("scores", "scoring every user", lambda: _scored(settings),
            lambda report: _call(["predictor", "score", "--quiet"]), expected_s=15),
    ]
    if not args.skip_model:
        jobs.append(Job("llm", "preparing the chat model", lambda: _model_ready(settings),
                        lambda report: _call(["models", "install", "--no-progress"]), expected_s=70))
    jobs.append(Job("cases", "building the case memory", lambda: _cases_built(settings),
                    lambda report: _build_cases(settings, report), expected_s=60))
    return jobs


def run(args: argparse.Namespace) -> int:
    from assistant.config import Settings
    from tools.data.store import EventStore
    from tools.jobs import AlreadyRunning, HomeLock, JobRunner

    settings = Settings.from_env()
    url = None if args.no_app else f"http://{settings.host}:{settings.port}"
    try:
        lock = HomeLock(settings.home, url=url).acquire()  # released by the OS when this process ends
    except AlreadyRunning as exc:
        print(f"shopsight demo: {exc}")
        return 1
    prefix = "[1/2] demo shop"
    if _demo_loaded(settings, args.users, args.seed):
        print(f"{prefix}: ready")
    else:
        argv = ["data", "generate", "--users", str(args.users), "--seed", str(args.seed)]
        print(f"{prefix}: shopsight {' '.join(argv)}", flush=True)
        start = time.perf_counter()
        try:
            _call(argv)
        except SystemExit as exc:
            print(f"{prefix} failed: {exc}; fix the message above and re-run `make run`")
            return 1
        print(f"{prefix}: done in {time.perf_counter() - start:.1f} s", flush=True)
    # One read-write connection held for the whole process: the jobs' read-only stores and the
    # workspace's store then share one database (DuckDB refuses mixed modes on one file otherwise).
    keeper = EventStore(settings.db_path)
    runner = JobRunner(settings.home, demo_jobs(settings, args), echo=lambda line: print(line, flush=True))
    try:
        if args.no_app:
            return 0 if runner.run() else 1
        # The jobs start once the page answers: their first checks (torch imports) would slow its start.
        threading.Thread(target=lambda: (_wait_for_page(url), runner.run()), name="shopsight-jobs",
                         daemon=True).start()
        print(f"[2/2] workspace at {url}; the rest is built behind it (progress below and in the banner)",
              flush=True)
        return _call_app()
    finally:
        keeper.close()
        lock.release()


def _wait_for_page(url: str, timeout_s: float = 120.0) -> None:
    """Until the workspace answers (or the timeout: the jobs then start anyway)."""
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:  # a login page (SHOPSIGHT_AUTH) answers too
            return
        except OSError:
            time.sleep(0.25)


def _call_app() -> int:
    from assistant.cli import main as shopsight

    return shopsight(["app"])
