"""`shopsight bench`: write prediction files for every model (`run`) and score a folder (`score`).

    shopsight bench run --dataset cdnow --data .cache/datasets/CDNOW_master.txt --out runs/cdnow
    shopsight bench run --dataset demo --out runs/demo --models oracle recency popularity
    shopsight bench run --data data/taobao_userbehavior_2h_users_sample.csv --format taobao \
        --cutoff 2017-11-26T02:40:00 --horizon 15m 30m --out runs/taobao_2h      # your data, your cutoffs
    shopsight bench score runs/cdnow
    shopsight bench run --dataset cdnow --data .cache/datasets/CDNOW_master.txt --out runs/clv \
        --models bgnbd_gg run_rate clv_combined            # only the clv task (tools.predictor.bench_clv)

The protocol is docs/benchmark.md; the code is `tools.predictor.bench`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


# Recipes shipped in the repository (finetune/configs/predictor_<dataset>.yaml), used by default.
RECIPES = Path(__file__).resolve().parents[2] / "finetune" / "configs"


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmark the predictor and the baselines (docs/benchmark.md)")
    sub = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")

    run = sub.add_parser("run", help="write prediction files of every model for one dataset")
    run.add_argument("--dataset", default=None, choices=("cdnow", "taobao", "demo"),
                     help="a named dataset with its protocol cutoffs (docs/benchmark.md); or give --cutoff and --horizon")
    run.add_argument("--format", dest="fmt", default=None, choices=("taobao", "cdnow", "instacart", "store"),
                     help="how to read --data with your own --cutoff (store = a .duckdb made by `shopsight data import`)")
    run.add_argument("--cutoff", nargs="+", default=None, metavar="ISO",
                     help="your own test cutoff(s), UTC, e.g. 2017-11-26T02:40:00 (needs --data and --horizon)")
    run.add_argument("--horizon", nargs="+", default=None, metavar="H",
                     help="your own horizon(s): 30m, 1h, 1d, 30d (with --cutoff)")
    run.add_argument("--data", type=Path, default=None,
                     help="CDNOW_master.txt, a Taobao UserBehavior CSV, or a .duckdb store (not needed for demo)")
    run.add_argument("--out", type=Path, required=True, help="benchmark folder to write (OUT/<model>/<file>.csv)")
    run.add_argument("--models", nargs="+", default=None,
                     help="models to run (default: every model that applies to the dataset)")
    run.add_argument("--n-users", type=int, default=5000, help="demo shop size (default 5000)")
    run.add_argument("--seed", type=int, default=0, help="demo shop seed (default 0)")
    run.add_argument("--transformer-config", type=Path, default=None,
                     help="YAML of TrainConfig fields for the transformer (horizons come from the dataset); "
                          "default finetune/configs/predictor_<dataset>.yaml when present")
    run.add_argument("--resume", action="store_true", help="skip a model's cutoff whose files all exist")
    run.add_argument("--no-score", action="store_true", help="do not print the score table at the end")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)

    score = sub.add_parser("score", help="score a benchmark folder: one markdown table, models side by side")
    score.add_argument("folder", type=Path)
    score.set_defaults(func=_score)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _run(args: argparse.Namespace) -> int:
    import yaml

    from tools.predictor.bench import MODELS, run_benchmark, score_directory
    from tools.predictor.bench_clv import CLV_MODELS, run_clv_for

    clv_models = [m for m in args.models or CLV_MODELS if m in CLV_MODELS]  # the clv task: bench_clv.py
    churn_models = None if args.models is None else [m for m in args.models if m not in CLV_MODELS]
    if churn_models == []:  # only clv models asked for
        return run_clv_for(args.dataset, args.data, args.out, clv_models, args.n_users, args.seed, args.resume,
                           score=not args.no_score)
    args.models = churn_models
    unknown = [m for m in args.models or [] if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from: {', '.join(MODELS)}")
    from assistant.commands.cutoffs import parse_cutoff
    from tools.predictor.bench_files import parse_horizon

    config = None
    cutoffs = horizons = None
    if args.cutoff or args.horizon:
        if not (args.cutoff and args.horizon and args.data):
            raise SystemExit("own cutoffs need all of --data FILE, --cutoff ISO and --horizon H (e.g. 1h, 1d, 30d)")
        try:
            cutoffs = [parse_cutoff(c, "--cutoff") for c in args.cutoff]
            horizons = [parse_horizon(h) for h in args.horizon]
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    elif args.dataset is None:
        raise SystemExit("pass --dataset cdnow|taobao|demo, or --data FILE --format ... --cutoff ISO --horizon H")
    recipe_name = args.dataset or args.fmt
    if args.transformer_config is None and recipe_name and (args.models is None or "transformer" in args.models):
        recipe = RECIPES / f"predictor_{recipe_name}.yaml"
        if recipe.is_file():  # the predictor room's tuned recipe for this dataset
            print(f"transformer recipe: {recipe} (pass --transformer-config to choose another)")
            args.transformer_config = recipe
    if args.transformer_config is not None:
        if not args.transformer_config.is_file():
            raise SystemExit(f"{args.transformer_config}: no such file (--transformer-config takes a YAML file)")
        config = yaml.safe_load(args.transformer_config.read_text()) or {}
        if not isinstance(config, dict):
            raise SystemExit(f"{args.transformer_config}: expected a mapping of TrainConfig fields")
    try:
        manifest = run_benchmark(args.dataset, args.data, args.out, models=args.models, n_users=args.n_users,
                                 seed=args.seed, transformer_config=config, resume=args.resume,
                                 progress=not args.quiet, fmt=args.fmt, cutoffs=cutoffs, horizons_days=horizons)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(str(exc)) from None
    if not args.no_score:
        print(score_directory(args.out))
    run_clv_for(args.dataset, args.data, args.out, clv_models, args.n_users, args.seed, args.resume,
                score=not args.no_score)
    return 1 if manifest.get("failed") else 0


def _score(args: argparse.Namespace) -> int:
    from tools.predictor.bench_clv import clv_only, clv_score_table, has_clv_files
    from tools.predictor.bench_score import score_directory

    try:
        if not clv_only(args.folder):
            print(score_directory(args.folder))
        if has_clv_files(args.folder):
            print(clv_score_table(args.folder))
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(str(exc)) from None
    return 0
