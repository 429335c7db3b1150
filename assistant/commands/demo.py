"""`shopsight demo`: everything `make run` does after the install, each step skipped when done.

1. generate and import the demo shop        (`shopsight data generate`)
2. train the behavior Transformer           (`shopsight predictor train`)
3. score every user as of the last event    (`shopsight predictor score`)
4. build the memory of past cases           (`shopsight cases build`)
5. install the default chat model           (`shopsight models install`)
6. start the workspace                      (`shopsight app`)

Each step runs the same command a user would type, so `make run` exercises the real paths;
a re-run finds the finished steps and goes straight to the app.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="set up the demo shop end to end and start the workspace")
    parser.add_argument("--users", type=int, default=5000, help="demo shop size (default 5000 users)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-app", action="store_true", help="prepare everything, do not start the app")
    parser.add_argument("--skip-model", action="store_true", help="do not install the chat model")
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


def _train_argv(settings) -> list[str]:
    # A stale checkpoint's last/ holds weights of the old feature set: start over, do not resume it.
    stale = (settings.predictor_dir / "config.yaml").exists()
    return ["predictor", "train", *_recipe(), *(["--no-resume"] if stale else [])]


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


def _cases_built(settings) -> bool:
    # A re-run should not pay for importing chromadb: a stamp written after a finished build,
    # trusted while the Chroma folder it describes is still there and the predictor that wrote
    # its user vectors is still the current one (a retrained model's vectors are rebuilt).
    version = _predictor_version(settings)
    stamp = f"the case memory was built (predictor {version}); delete this file to check again\n"
    if not settings.chroma_url and _cases_stamp(settings).is_file() and \
            (settings.chroma_path / "chroma.sqlite3").is_file():
        if _cases_stamp(settings).read_text() == stamp:
            return True
    from tools.cases import TEXT_COLLECTION, VECTOR_COLLECTION, make_client

    if not settings.chroma_url and not settings.chroma_path.exists():
        return False
    client = make_client(settings.chroma_path, settings.chroma_url or None)
    names = {getattr(c, "name", c) for c in client.list_collections()}
    built = TEXT_COLLECTION in names and client.get_collection(TEXT_COLLECTION).count() > 0
    if built and VECTOR_COLLECTION in names and version is not None:
        stored = (client.get_collection(VECTOR_COLLECTION).metadata or {}).get("predictor_version")
        built = stored == version  # vectors of another predictor (or of unknown version): rebuild them
    if built and not settings.chroma_url:
        _cases_stamp(settings).parent.mkdir(parents=True, exist_ok=True)
        _cases_stamp(settings).write_text(stamp)
    return built


def _recipe() -> list[str]:
    """The predictor room's recipe for the demo shop, when the checkout has it (else TrainConfig defaults)."""
    recipe = Path(__file__).resolve().parents[2] / "finetune" / "configs" / "predictor_demo.yaml"
    return ["--config", str(recipe)] if recipe.is_file() else []


def _model_ready(settings) -> bool:
    from assistant.llm.registry import MODEL_REGISTRY, is_cached

    # A folder, hub id or server URL is the user's own choice: nothing for the demo to install.
    return settings.model not in MODEL_REGISTRY or is_cached(settings.model, settings.models_dir)


def run(args: argparse.Namespace) -> int:
    from assistant.cli import main as shopsight
    from assistant.config import Settings

    settings = Settings.from_env()
    steps = [
        ("demo shop", lambda: _demo_loaded(settings, args.users, args.seed),
         ["data", "generate", "--users", str(args.users), "--seed", str(args.seed)]),
        ("predictor", lambda: _predictor_ready(settings), lambda: _train_argv(settings)),
        ("scores", lambda: _scored(settings), ["predictor", "score"]),
        ("case memory", lambda: _cases_built(settings), ["cases", "build"]),
    ]
    if not args.skip_model:
        steps.append(("chat model", lambda: _model_ready(settings), ["models", "install"]))
    for number, (label, done, argv) in enumerate(steps, 1):
        prefix = f"[{number}/{len(steps) + 1}] {label}"
        if done():
            print(f"{prefix}: ready")
            continue
        argv = argv() if callable(argv) else argv  # decided after done(): it may depend on what is there
        print(f"{prefix}: shopsight {' '.join(argv)}", flush=True)
        start = time.perf_counter()
        code = shopsight(argv)
        if code:
            print(f"{prefix} failed (exit {code}); fix the message above and re-run `make run`")
            return code
        print(f"{prefix}: done in {time.perf_counter() - start:.1f} s", flush=True)
    if args.no_app:
        return 0
    print(f"[{len(steps) + 1}/{len(steps) + 1}] workspace", flush=True)
    return shopsight(["app"])
