"""`shopsight models ...`: the packaged chat models.

    shopsight models list                 what is registered, installed (packages) and converted
    shopsight models install [NAME]       join chunks, check sha256, convert once (default model)
    shopsight models info [NAME]          packages, checksum, cache folder, architecture

`install` is safe to re-run: a finished cache is kept; an interrupted one is rebuilt.
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
    install = sub.add_parser("install", help="install a packaged model (join, sha256, convert once)")
    install.add_argument("name", nargs="?", default=None, choices=list(MODEL_REGISTRY),
                         help=f"registry name (default: SHOPSIGHT_MODEL if packaged, else {DEFAULT_MODEL})")
    install.add_argument("--force", action="store_true", help="rebuild the cache even if it exists")
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
    from assistant.llm.registry import DEFAULT_MODEL, MODEL_REGISTRY, cache_dir, is_cached, packages_installed

    settings = Settings.from_env()
    rows = [("name", "default", "packages", "converted", "size", "cache folder")]
    for name, model in MODEL_REGISTRY.items():
        cached = is_cached(name, settings.models_dir)
        rows.append((
            name, "*" if name == DEFAULT_MODEL else "",
            "installed" if packages_installed(model) else "missing",
            "yes" if cached else "no",
            f"{model.size / 1e6:,.0f} MB GGUF",
            str(cache_dir(name, settings.models_dir)) if cached else f"(run: shopsight models install {name})",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    print(f"\nin use: {settings.model} (SHOPSIGHT_MODEL); also accepted: a local HF folder, a hub id in the "
          "local cache, or an http(s):// OpenAI-compatible server URL")
    return 0


def _install(args: argparse.Namespace) -> int:
    from assistant.llm.registry import ModelInstallError, ensure_model, is_cached

    settings = Settings.from_env()
    name = _default_name(args.name, settings)
    if is_cached(name, settings.models_dir) and not args.force:
        print(f"{name} is already installed at {settings.models_dir / name}")
        return 0
    try:
        folder = ensure_model(name, settings.models_dir, progress=not args.no_progress, force=args.force)
    except ModelInstallError as exc:
        raise SystemExit(str(exc)) from None
    print(f"ready: {folder}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from assistant.llm.registry import cache_dir, cache_info, get_packaged, packages_installed

    settings = Settings.from_env()
    name = _default_name(args.name, settings)
    model = get_packaged(name)
    print(f"{name}: {model.description} ({model.license})")
    print(f"  packages ({'installed' if packages_installed(model) else 'missing'}): "
          f"{' '.join(model.packages)}")
    print(f"  joined GGUF: {model.size:,} bytes, sha256 {model.sha256}")
    print(f"  chat template renders tools: {'yes' if model.tools_in_template else 'no (instructions are added)'}")
    info = cache_info(name, settings.models_dir)
    if info is None:
        print(f"  cache: not converted yet; run `shopsight models install {name}`")
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
