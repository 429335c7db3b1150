"""`shopsight models ...`: the packaged chat models.

    shopsight models list                 what is registered, installed (packages), joined and converted
    shopsight models install [NAME]       join chunks into the GGUF and check its sha256 (llama.cpp runs it as is)
    shopsight models install --transformers [NAME]   also convert once to bf16 safetensors (transformers engine)
    shopsight models info [NAME]          packages, checksum, GGUF and cache folders, architecture

`install` converts for the transformers engine too when SHOPSIGHT_ENGINE=transformers. It is safe
to re-run: a finished GGUF or cache is kept; an interrupted one is rebuilt.
"""

from __future__ import annotations

import argparse
import json

from assistant.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    from assistant.llm.registry import DEFAULT_MODEL, MODEL_REGISTRY

    parser = subparsers.add_parser("models", help="packaged chat models: list, install, info")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    lst = sub.add_parser("list", help="registered models and whether they are installed")
    lst.set_defaults(func=_list)
    install = sub.add_parser("install", help="install a packaged model (join its GGUF, check sha256)")
    install.add_argument("name", nargs="?", default=None, choices=list(MODEL_REGISTRY),
                         help=f"registry name (default: SHOPSIGHT_MODEL if packaged, else {DEFAULT_MODEL})")
    install.add_argument("--force", action="store_true", help="join (and convert) again even if done")
    install.add_argument("--transformers", action="store_true",
                         help="also convert to a bf16 safetensors cache for the transformers engine "
                              "(default when SHOPSIGHT_ENGINE=transformers)")
    install.add_argument("--no-progress", action="store_true")
    install.set_defaults(func=_install)
    info = sub.add_parser("info", help="details of one model")
    info.add_argument("name", nargs="?", default=None, choices=list(MODEL_REGISTRY))
    info.set_defaults(func=_info)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _default_name(name: str | None, settings: Settings) -> str:
    from assistant.llm.registry import DEFAULT_MODEL, MODEL_REGISTRY

    if name:
        return name
    return settings.model if settings.model in MODEL_REGISTRY else DEFAULT_MODEL


def _list(args: argparse.Namespace) -> int:
    from assistant.llm.registry import (DEFAULT_MODEL, MODEL_REGISTRY, cache_dir, gguf_path, gguf_ready, is_cached,
                                        packages_installed)

    settings = Settings.from_env()
    rows = [("name", "default", "packages", "GGUF", "bf16 cache", "size", "GGUF file")]
    for name, model in MODEL_REGISTRY.items():
        joined = gguf_ready(name, settings.models_dir)
        rows.append((
            name, "*" if name == DEFAULT_MODEL else "",
            "installed" if packages_installed(model) else "missing",
            "joined" if joined else "no",
            "yes" if is_cached(name, settings.models_dir) else "no",
            f"{model.size / 1e6:,.0f} MB GGUF",
            str(gguf_path(name, settings.models_dir)) if joined else f"(run: shopsight models install {name})",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    adapter = (f" with the LoRA adapter {settings.adapter} (SHOPSIGHT_ADAPTER; unset it to go back to the packaged "
               "weights)") if settings.adapter else ""
    print(f"\nin use: {settings.model}{adapter} on the {settings.engine} engine (SHOPSIGHT_MODEL, "
          "SHOPSIGHT_ENGINE); also "
          "accepted: a .gguf file, a local HF folder, a hub id in the local cache, or an http(s):// "
          "OpenAI-compatible server URL. The bf16 cache is made only for the transformers engine "
          f"({cache_dir('NAME', settings.models_dir)}).")
    _list_predictors(settings)
    return 0


def _list_predictors(settings: Settings) -> None:
    """The predictor checkpoints under models/predictor/, which one is in use, and why (its name's origin)."""
    import os

    import yaml

    from assistant.config import LEGACY_PREDICTOR_NAME, PREDICTOR_NAME
    from tools.predictor.checkpoint import checkpoint_problem

    root = settings.models_dir / "predictor"
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    print(f"\npredictor checkpoints ({root}):")
    if not folders:
        print(f"  none; `shopsight predictor train` writes {root / settings.predictor}")
    for folder in folders:
        problem = checkpoint_problem(folder)
        if problem:
            state = "not usable: " + problem.removeprefix(f"{folder}: ")
        else:
            config = yaml.safe_load((folder / "config.yaml").read_text())
            horizons = ", ".join(str(h) for h in (config.get("train") or {}).get("horizons_days", []))
            state = f"{config.get('version')}, trained up to {config.get('cutoff')}, horizons {horizons} days"
        used = "  <- in use" if folder.name == settings.predictor else ""
        print(f"  {folder.name}: {state}{used}")
    source = "SHOPSIGHT_PREDICTOR" if os.environ.get("SHOPSIGHT_PREDICTOR") else "default"
    print(f"in use: {settings.predictor} ({source})", end="")
    if settings.predictor == LEGACY_PREDICTOR_NAME and source == "default":
        print(f": this home was set up before checkpoints were named {PREDICTOR_NAME!r}; it keeps using "
              f"{LEGACY_PREDICTOR_NAME!r} until a checkpoint is trained into {root / PREDICTOR_NAME} "
              f"(`shopsight predictor train --name {PREDICTOR_NAME}`, then `shopsight predictor score`); docs/models.md")
    else:
        print()


def _install(args: argparse.Namespace) -> int:
    from assistant.llm.registry import ModelInstallError, ensure_gguf, ensure_model, is_cached

    settings = Settings.from_env()
    name = _default_name(args.name, settings)
    convert = args.transformers or settings.engine == "transformers"
    try:
        path = ensure_gguf(name, settings.models_dir, progress=not args.no_progress, force=args.force)
        print(f"ready: {path} (sha256 checked; the llama.cpp engine runs it as shipped)")
        if convert:
            if is_cached(name, settings.models_dir) and not args.force:
                print(f"bf16 cache already at {settings.models_dir / name}")
            else:
                folder = ensure_model(name, settings.models_dir, progress=not args.no_progress, force=args.force)
                print(f"ready: {folder} (bf16 safetensors for the transformers engine)")
    except ModelInstallError as exc:
        raise SystemExit(str(exc)) from None
    return 0


def _info(args: argparse.Namespace) -> int:
    from assistant.llm.registry import cache_dir, cache_info, get_packaged, gguf_path, gguf_ready, packages_installed

    settings = Settings.from_env()
    name = _default_name(args.name, settings)
    model = get_packaged(name)
    print(f"{name}: {model.description} ({model.license})")
    print(f"  packages ({'installed' if packages_installed(model) else 'missing'}): "
          f"{' '.join(model.packages)}")
    print(f"  joined GGUF: {model.size:,} bytes, sha256 {model.sha256}")
    gguf = gguf_path(name, settings.models_dir)
    print(f"  GGUF file: {gguf if gguf_ready(name, settings.models_dir) else 'not joined yet; run `shopsight models install ' + name + '`'}")
    print(f"  chat template renders tools: {'yes' if model.tools_in_template else 'no (instructions are added)'}")
    info = cache_info(name, settings.models_dir)
    if info is None:
        print(f"  bf16 cache (transformers engine only): not converted; run `shopsight models install --transformers {name}`")
        if not model.default_install:
            print(f"  (not installed by default: {model.pip_command()})")
        return 0
    folder = cache_dir(name, settings.models_dir)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    print(f"  cache: {folder} ({size / 1e6:,.0f} MB, {info.get('dtype')}, converted {info.get('converted_at')})")
    config = json.loads((folder / "config.json").read_text())
    print("  architecture: " + ", ".join(f"{k}={config.get(k)}" for k in (
        "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")))
    return 0
