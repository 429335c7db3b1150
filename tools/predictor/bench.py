"""The benchmark runner: every model writes prediction files for every cutoff of a dataset.

`run_benchmark("cdnow", ".cache/datasets/CDNOW_master.txt", "runs/cdnow")` writes
`OUT/<model>/<task>__<H>d__<cutoff>.csv` exactly as docs/benchmark.md says, the truth of each
file under `OUT/_truth/`, and `OUT/benchmark.yaml` (dataset, cutoffs, models, notes, timings).
`tools.predictor.bench_score.score_directory(OUT)` turns the folder into one markdown table.

Besides each test cutoff c, every model also predicts at its validation cutoff v = c - max(H),
whose labels are all known at c: the scorer picks the F1-maximizing threshold there.
Each model sees only `events[ts <= cutoff]` for a prediction at `cutoff`.
"""

from __future__ import annotations

import platform
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from tools.predictor.baselines import CHURN_BASELINES, TooLittleData
from tools.predictor.baselines_rank import RANKING_BASELINES
from tools.predictor.bench_datasets import BenchData, load_bench_data, load_custom_data
from tools.predictor.bench_files import (TASK_COLUMN, TASK_FIELD, cutoff_tag, file_name, horizon_tag, write_churn,
                                         write_ranking, write_truth)
from tools.predictor.bench_score import score_directory  # noqa: F401  (the contract's entry point)

MANIFEST = "benchmark.yaml"
TRANSFORMER = "transformer"
TRANSFORMER_NETWORK = "transformer_network"  # written by the transformer run, not a model of its own
ORACLE = "oracle"
MODELS = (*CHURN_BASELINES, *RANKING_BASELINES, TRANSFORMER, ORACLE)


def all_cutoffs(data: BenchData) -> list[datetime]:
    """Test cutoffs and their validation cutoffs, sorted, without duplicates."""
    return sorted(set(data.cutoffs) | {data.validation_cutoff(c) for c in data.cutoffs})


def _fingerprint(data: BenchData) -> dict:
    return {"dataset": data.name, "source": data.source, "sha256": data.info.get("sha256"),
            "rows_read": data.info.get("rows_read"), "events": data.info.get("events"),
            "cutoffs": [c.isoformat() for c in data.cutoffs], "horizons_days": list(data.horizons_days)}


def _load_manifest(out_dir: Path) -> dict | None:
    path = out_dir / MANIFEST
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _save_manifest(out_dir: Path, manifest: dict) -> None:
    tmp = out_dir / (MANIFEST + ".part")
    tmp.write_text(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
    tmp.replace(out_dir / MANIFEST)


class _Runner:
    """Holds the dataset and the output folder while the models write their files."""

    def __init__(self, data: BenchData, out_dir: Path, resume: bool, progress: bool, say: Callable[[str], None]):
        self.data, self.out_dir, self.resume, self.progress, self.say = data, out_dir, resume, progress, say
        self.cutoffs = all_cutoffs(data)
        self.rank_tasks = [t for t in data.tasks if t != "churn"]
        self.info_notes: list[str] = []  # what a model that ran wants the table to say (how it ranked)

    def past(self, cutoff: datetime) -> pd.DataFrame:
        """A new frame of the events at or before `cutoff`: all a model gets to see."""
        events = self.data.events
        return events[events["ts"] <= cutoff].reset_index(drop=True)

    def done(self, model: str, names: list[str]) -> bool:
        return self.resume and all((self.out_dir / model / n).is_file() for n in names)

    def write_truths(self) -> None:
        for c in self.cutoffs:
            for h in self.data.horizons_days:
                write_truth(self.out_dir, self.data.events, "churn", h, c)
        for c in self.data.cutoffs:
            for task in self.rank_tasks:
                for h in self.data.horizons_days:
                    write_truth(self.out_dir, self.data.events, task, h, c)

    def run_churn_baseline(self, model: str) -> None:
        fn = CHURN_BASELINES[model]
        for c in tqdm(self.cutoffs, desc=model, disable=not self.progress, leave=False):
            if self.done(model, [file_name("churn", h, c) for h in self.data.horizons_days]):
                continue
            past = self.past(c)
            for h in self.data.horizons_days:
                write_churn(self.out_dir, model, h, c, fn(past, c, h))

    def run_ranking_baseline(self, model: str) -> None:
        fn = RANKING_BASELINES[model]
        for c in tqdm(self.data.cutoffs, desc=model, disable=not self.progress, leave=False):
            names = [file_name(t, h, c) for t in self.rank_tasks for h in self.data.horizons_days]
            if self.done(model, names):
                continue
            past = self.past(c)
            for task in self.rank_tasks:
                ranked = fn(past, c, TASK_FIELD[task])
                # A next-H ranking does not depend on H for these baselines: one list, one file per H.
                frame = pd.DataFrame({"user_id": ranked["user_id"], TASK_COLUMN[task]: ranked["items"]})
                for h in self.data.horizons_days:
                    write_ranking(self.out_dir, model, task, h, c, frame)

    def run_oracle(self) -> None:
        shop = self.data.demo_shop
        for c in self.cutoffs:
            for h in self.data.horizons_days:
                write_churn(self.out_dir, ORACLE, h, c, shop.true_churn_probability(c, h))

    def run_transformer(self, config: dict | None) -> str | None:
        """Train one predictor per cutoff (labels only from ts <= cutoff) and write its files.

        Returns a note when the transformer cannot run (module not importable yet).
        """
        try:
            from tools.predictor.train import TrainConfig, train_predictor
        except ImportError as exc:  # another room's module: skip it, say so, keep the baselines
            return f"transformer skipped: tools.predictor.train is not importable ({exc})"
        raw = dict(config or {})
        raw.pop("run", None)  # a finetune/configs recipe's own section, not TrainConfig fields
        raw["horizons_days"] = list(self.data.horizons_days)
        notes = []
        shortest = min(self.data.horizons_days)
        if float(raw.get("cutoff_stride_days", TrainConfig.cutoff_stride_days)) > shortest:
            # A recipe made for days (stride 1 d) on data of hours would leave one rolling cutoff.
            raw["cutoff_stride_days"] = shortest
            notes.append(f"transformer: rolling cutoffs every {horizon_tag(shortest)} (the recipe's stride is longer "
                         "than the shortest horizon)")
        cfg = TrainConfig.from_dict(raw)
        for c in tqdm(self.cutoffs, desc=TRANSFORMER, disable=not self.progress, leave=False):
            names = [file_name("churn", h, c) for h in self.data.horizons_days]
            if c in self.data.cutoffs:
                names += [file_name(t, h, c) for t in self.rank_tasks for h in self.data.horizons_days]
            if self.done(TRANSFORMER, names):
                continue
            past = self.past(c)
            folder = self.out_dir / "_checkpoints" / TRANSFORMER / cutoff_tag(c)
            # Without --resume a re-run retrains from scratch (the recipe may have changed).
            predictor = train_predictor(past, c, cfg, folder, progress=self.progress, resume=self.resume)
            if c in self.data.cutoffs:
                notes += _ranking_notes(predictor.config.get("ranking") or {}, c, self.rank_tasks)
                notes += _churn_notes(predictor.config.get("churn") or {}, c)
                notes += _calibration_notes(predictor.config.get("calibration") or {}, c, self.data.horizons_days)
            scores = predictor.score_users(past, c)
            for h in self.data.horizons_days:
                part = scores[scores["horizon_days"] == h]
                write_churn(self.out_dir, TRANSFORMER, h, c, part[["user_id", "p_churn"]])
                # The network's own churn probability beside the shipped one (they differ when a baseline won).
                network = part[["user_id", "p_churn_network"]].rename(columns={"p_churn_network": "p_churn"})
                write_churn(self.out_dir, TRANSFORMER_NETWORK, h, c, network)
                if c in self.data.cutoffs:
                    for task in self.rank_tasks:
                        source = "top_items" if task == "next_item" else "top_categories"
                        frame = pd.DataFrame({"user_id": part["user_id"], TASK_COLUMN[task]: part[source].fillna("")})
                        write_ranking(self.out_dir, TRANSFORMER, task, h, c, frame)
        self.info_notes = notes
        return None


def _ranking_notes(ranking: dict, cutoff: datetime, tasks: list[str]) -> list[str]:
    """One line per ranking task: how the transformer's list was chosen on its validation cutoff."""
    out = []
    for task, key in (("next_item", "items"), ("next_category", "categories")):
        if task in tasks and ranking.get(key):
            out.append(f"transformer {task} at {cutoff_tag(cutoff)}: {ranking[key]['reason']} "
                       f"(n={ranking[key].get('n_targets')})")
    return out


def _calibration_notes(calibration: dict, cutoff: datetime, horizons_days) -> list[str]:
    """One line per horizon: the pooled or a drift-aware churn map, chosen out of time inside the past."""
    return [f"transformer calibration {horizon_tag(h)} at {cutoff_tag(cutoff)}: {record['why']}"
            for h, record in zip(horizons_days, calibration.get("horizons", [])) if record]


def _churn_notes(churn: dict, cutoff: datetime) -> list[str]:
    """One line per horizon: which churn model the transformer column ships, chosen on its validation cutoff."""
    return [f"transformer churn {horizon_tag(c['horizon_days'])} at {cutoff_tag(cutoff)}: {c['reason']}"
            for c in churn.get("horizons", [])]


def applicable_models(data: BenchData) -> list[str]:
    """Models that make sense for a dataset: ranking baselines need ranking tasks, the oracle a generator."""
    models = list(CHURN_BASELINES)
    if len(data.tasks) > 1:
        models += list(RANKING_BASELINES)
    models.append(TRANSFORMER)
    if data.demo_shop is not None:
        models.append(ORACLE)
    return models


def run_benchmark(dataset: str | None, data_path: str | Path | None, out_dir: str | Path,
                  models: list[str] | None = None, n_users: int = 5000, seed: int = 0,
                  transformer_config: dict | None = None, resume: bool = False, progress: bool = True,
                  say: Callable[[str], None] = print, *, fmt: str | None = None,
                  cutoffs: list[datetime] | None = None, horizons_days: list[float] | None = None) -> dict:
    """Write every model's prediction files and the truth for one dataset; return the manifest.

    Args:
        dataset: `cdnow`, `taobao` or `demo` (their protocol cutoffs), or None with `cutoffs` and `horizons_days`.
        data_path: raw file or `.duckdb` store (not needed for `demo`).
        out_dir: the benchmark folder; re-running into it with the same data replaces files.
        models: subset of `MODELS` (default: every model that applies to the dataset).
        n_users: demo shop size.
        seed: demo shop seed.
        transformer_config: `TrainConfig` fields for the transformer (horizons come from the dataset).
        resume: skip a model's cutoff when all its files are already there.
        progress: tqdm bars.
        say: where progress lines go.
        fmt: with `cutoffs`: `taobao`, `cdnow` or `store` (default: the dataset's name, `store` for .duckdb).
        cutoffs: your own test cutoffs (naive UTC) instead of the dataset's protocol cutoffs.
        horizons_days: your own horizons in days (1 h = 1/24), required with `cutoffs`.
    """
    out_dir = Path(out_dir)
    if cutoffs:
        if not horizons_days:
            raise ValueError("own cutoffs need own horizons: pass --horizon (e.g. 1h, 1d, 30d) with --cutoff")
        if data_path is None:
            raise ValueError("own cutoffs need a data file: pass --data FILE --format taobao|cdnow|store")
        fmt = fmt or ("store" if str(data_path).endswith(".duckdb") else dataset)
        if fmt is None:
            raise ValueError("pass --format taobao|cdnow|store for your --data file")
        data = load_custom_data(data_path, fmt, list(cutoffs), list(horizons_days))
    else:
        if dataset is None:
            raise ValueError("pass --dataset cdnow|taobao|demo, or --data FILE --format ... --cutoff ISO --horizon H")
        data = load_bench_data(dataset, data_path, n_users=n_users, seed=seed, progress=progress)
    wanted = applicable_models(data) if not models else list(models)
    unknown = [m for m in wanted if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    if ORACLE in wanted and data.demo_shop is None:
        raise ValueError("the oracle exists only for the demo shop (--dataset demo)")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _load_manifest(out_dir)
    fingerprint = _fingerprint(data)
    if manifest and manifest.get("data") != fingerprint:
        raise ValueError(f"{out_dir / MANIFEST} holds a benchmark of other data ({manifest.get('data')}); "
                         "choose another --out folder so neither run's files are mixed")
    manifest = manifest or {"protocol": "docs/benchmark.md", "data": fingerprint, "models": {}, "notes": []}
    manifest.update({
        "dataset_info": data.info, "tasks": list(data.tasks),
        "test_cutoffs": [cutoff_tag(c) for c in data.cutoffs],
        "validation_cutoffs": {cutoff_tag(c): cutoff_tag(data.validation_cutoff(c)) for c in data.cutoffs},
        "horizons_days": list(data.horizons_days),
        "environment": {"python": platform.python_version(), "pandas": pd.__version__},
    })
    runner = _Runner(data, out_dir, resume, progress, say)
    say(f"{data.name}: {data.info['events']:,} events, {data.info['users']:,} users, "
        f"{len(runner.cutoffs)} cutoffs ({len(data.cutoffs)} test), horizons "
        f"{', '.join(horizon_tag(h) for h in data.horizons_days)}")  # 15m, not 0.010416666666666666 days
    warnings = data.info.get("warnings", [])
    manifest["notes"] = [n for n in manifest["notes"] if not n.startswith("data ends")] + warnings
    for warning in warnings:
        say(f"warning: {warning}")
    runner.write_truths()
    _save_manifest(out_dir, manifest)
    failed, skipped = [], []
    for model in wanted:
        t0 = time.perf_counter()
        note = None
        try:
            if model in CHURN_BASELINES:
                # Small problems: one BLAS / OpenMP thread; on busy cores extra threads only spin.
                with threadpool_limits(1):
                    runner.run_churn_baseline(model)
            elif model in RANKING_BASELINES:
                runner.run_ranking_baseline(model)
            elif model == ORACLE:
                runner.run_oracle()
            else:
                note = runner.run_transformer(transformer_config)
        except TooLittleData as exc:  # a shop of 30 users: one model cannot train, the others still can
            note = f"{model} SKIPPED: {exc}"
            skipped.append(model)
        except Exception as exc:
            if model != TRANSFORMER:
                raise  # our own baselines failing is a bug to see, not to hide
            traceback.print_exc()  # another room's error: show where, keep the baselines' files
            note = f"transformer FAILED: {type(exc).__name__}: {exc}"
            failed.append(model)
        seconds = round(time.perf_counter() - t0, 1)
        manifest["notes"] = [n for n in manifest["notes"] if not n.startswith(model)]
        if note:
            say(note)
            manifest["notes"].append(note)
            manifest["models"].pop(model, None)
        else:
            finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
            manifest["models"][model] = {"seconds": seconds, "finished_at": finished}
            say(f"{model}: files written in {seconds} s")
            for line in runner.info_notes:
                say(line)
            manifest["notes"] += runner.info_notes
            runner.info_notes = []
        _save_manifest(out_dir, manifest)
    manifest["failed"], manifest["skipped"] = failed, skipped
    _save_manifest(out_dir, manifest)
    return manifest
