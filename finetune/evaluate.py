"""Evaluate the LLM base vs LoRA on held-out cutoffs and users; print the table side by side.

    python -m finetune.evaluate --data_dir out/sft_demo --base_model qwen2.5-coder-0.5b \
        --adapter out/lora_qwen05_demo/final --out_dir out/bench_demo [--bench_dir out/bench_demo]

(a) churn: the LLM as a predictor, P("yes") vs P("no") as the next token, written as
    docs/benchmark.md prediction files (OUT/llm_base/churn__30d__<cutoff>.csv, OUT/llm_lora/...) and
    scored with ROC-AUC etc. on the sampled held-out users, beside a recency score on the same
    users and any models already in --bench_dir (the predictor, the baselines), restricted to
    the same users (a missing user counts 0.5, as the protocol says);
(b) tool calls: exact tool and arguments on the held-out question file;
(c) grounding: share of numbers and ids in generated answers found in the tool results.
Writes OUT/llm_eval.md (the table), OUT/llm_eval.yaml (numbers, arguments) and
OUT/llm_eval_records.jsonl (every question and answer, for reading the failures).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch
import yaml

from finetune.eval_llm import (churn_probabilities, grounding_share, routed_tool_call_accuracy, tool_call_accuracy,
                               tool_defaults)
from finetune.sft_tokens import read_sft_file
from tools import paths  # noqa: F401  (offline environment)


def load_models(base_model: str, adapter: str | None, dtype: str):
    """(model, tokenizer, has_adapter): the base, wrapped with the checked adapter when given.

    The adapter is attached before anything runs; the base is evaluated with it disabled, so
    both are the same weights in memory and a 4-bit base is never generated from unwrapped.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.adapter import load_adapter
    from finetune.lora import resolve_base

    folder = resolve_base(base_model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
    if adapter:
        try:
            model = load_adapter(model, adapter, base_model)
        except ValueError as err:
            raise SystemExit(str(err)) from None
    model.eval()
    return model, tokenizer, bool(adapter)


def recency_scores(examples: list[dict]) -> list[float]:
    """A baseline on the same users: more days since the last purchase -> higher churn score."""
    days = []
    for e in examples:
        value = e["meta"].get("facts", {}).get("days_since_last_buy")
        days.append(float(value) if isinstance(value, (int, float)) else 1e4)  # never bought: most at risk
    top = max(days) if days else 1.0
    return [d / top for d in days]


def churn_table(examples: list[dict], scores: dict[str, list[float]], out_dir: Path,
                bench_dir: Path | None) -> dict[str, dict]:
    """Write each model's prediction file and score every model on the sampled users."""
    from tools.predictor import bench_files
    from tools.predictor.metrics import churn_metrics

    meta = [e["meta"] for e in examples]
    cutoff, horizon = datetime.fromisoformat(meta[0]["cutoff"]), int(meta[0]["horizon_days"])
    users = [m["user_id"] for m in meta]
    labels = [m["label"] for m in meta]
    table = {}
    for name, p in scores.items():
        bench_files.write_churn(out_dir, name, horizon, cutoff, pd.DataFrame({"user_id": users, "p_churn": p}))
        table[name] = churn_metrics(labels, p)
    # models of an earlier run into out_dir (e.g. llm_base) and of a benchmark folder, on the same users
    for source in [out_dir] + ([bench_dir] if bench_dir is not None and bench_dir.is_dir() else []):
        if not source.is_dir():
            continue
        for folder in bench_files.model_dirs(source):
            path = folder / bench_files.file_name("churn", horizon, cutoff)
            if folder.name in table or not path.is_file():
                continue
            theirs = bench_files.read_churn(path).set_index("user_id")["p_churn"]
            table[folder.name] = churn_metrics(labels, [float(theirs.get(u, 0.5)) for u in users])
    return table


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(churn: dict[str, dict], rows: dict[str, dict[str, float | None]], columns: list[str]) -> str:
    """The side-by-side table: churn metrics for every model, then the LLM-only rows."""
    order = {"llm_base": 0, "llm_lora": 1}
    models = sorted(churn, key=lambda m: order.get(m, 2))  # base, LoRA, then the others as found
    lines = ["| metric | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for key in ("auc", "ap", "brier", "ece", "base_rate", "n"):
        cells = [str(int(churn[m][key])) if key == "n" else _fmt(churn[m][key]) for m in models]
        lines.append(f"| churn {key} | " + " | ".join(cells) + " |")
    for label, values in rows.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(values.get(m)) if m in columns else "" for m in models) + " |")
    return "\n".join(lines)


def write_records(path: Path, records: list[dict], rerun: set[str]) -> None:
    """Per-question records: those of the variants run now replace their earlier ones, the others stay.

    The file was appended to, so every re-run of a variant added its records again.
    """
    kept = []
    if path.is_file():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("model") not in rerun]
    lines = kept + [json.dumps(record, ensure_ascii=False, default=str) for record in records]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> dict:
    """Score base and LoRA; write prediction files, the table, the numbers and the records."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True, help="output folder of finetune.sft_data")
    parser.add_argument("--base_model", required=True, help="registry name or model folder")
    parser.add_argument("--adapter", help="LoRA adapter folder (finetune.lora's final/)")
    parser.add_argument("--out_dir", required=True, help="benchmark folder for the prediction files")
    parser.add_argument("--bench_dir", help="benchmark folder with other models' prediction files")
    parser.add_argument("--variants", default="base,lora",
                        help="which to run now: base and/or lora; results of the other one already in "
                             "--out_dir (an earlier run) are kept and shown")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="weights of the base model")
    parser.add_argument("--max_churn", type=int, default=None, help="at most N held-out churn users")
    parser.add_argument("--churn_per_class", type=int, default=None,
                        help="take the first N churned and N retained users (a stratified sample: AUC is "
                             "unchanged in expectation, its variance lower for a small budget)")
    parser.add_argument("--max_tools", type=int, default=None,
                        help="at most N held-out tool questions (0: churn only; each takes ~1 min on 2 CPU cores)")
    parser.add_argument("--max_grounding", type=int, default=10,
                        help="tool questions whose answer is written and checked against the tool result")
    parser.add_argument("--routed", default="router,prior",
                        help="also score the agent's likelihood router on the tool questions: router (model "
                             "likelihoods), prior (plus the exemplar prior); empty to skip")
    parser.add_argument("--batch_size", type=int, default=8, help="churn prompts scored together")
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    data, out = Path(args.data_dir), Path(args.out_dir)
    churn_ex = read_sft_file(data / "eval_churn.jsonl")[: args.max_churn]
    if args.churn_per_class:
        churn_ex = [e for e in churn_ex if e["meta"]["label"] == 1][: args.churn_per_class] + \
            [e for e in churn_ex if e["meta"]["label"] == 0][: args.churn_per_class]
    tool_ex = read_sft_file(data / "eval_tools.jsonl")[: args.max_tools]  # --max_tools 0: churn only
    from finetune.sft_sources import _schema_tools, shop_tools

    schema_tools = _schema_tools()
    defaults = tool_defaults(schema_tools)
    routed = [r.strip() for r in args.routed.split(",") if r.strip()]
    # The router fills calls as the agent does: with the tools' id checks over the same shop.
    routed_tools = (shop_tools(data) if tool_ex and routed else None) or schema_tools
    model, tokenizer, has_adapter = load_models(args.base_model, args.adapter, args.dtype)
    wanted = {v.strip() for v in args.variants.split(",")}
    variants = []
    if "base" in wanted:
        variants.append(("llm_base", model.disable_adapter() if has_adapter else contextlib.nullcontext()))
    if "lora" in wanted and has_adapter:
        variants.append(("llm_lora", contextlib.nullcontext()))
    previous = out / "llm_eval.yaml"
    old = yaml.safe_load(previous.read_text(encoding="utf-8")) if previous.is_file() else {}
    rows = {key: {m: v for m, v in (old.get(key) or {}).items() if m not in {n for n, _ in variants}}
            for key in ("tool-call accuracy", "tool-call accuracy (router)", "tool-call accuracy (router + prior)",
                        "grounding share")}
    scores, records, timings = {}, [], dict(old.get("seconds") or {})
    for name, context in variants:
        started = time.perf_counter()
        with context:
            scores[name] = churn_probabilities(model, tokenizer, churn_ex, args.batch_size)
            # written at once: a long tool evaluation that is stopped does not lose the churn scores
            churn_table(churn_ex, {name: scores[name]}, out, None)
            accuracy, calls = tool_call_accuracy(model, tokenizer, tool_ex, defaults) if tool_ex else (None, [])
            share, answers = grounding_share(model, tokenizer, tool_ex[: args.max_grounding])
            for kind in routed if tool_ex else []:
                prior = None
                if kind == "prior":
                    from assistant.agent.tool_prior import default_prior

                    prior = default_prior()
                key = "tool-call accuracy (router + prior)" if kind == "prior" else "tool-call accuracy (router)"
                rows[key][name], routed_calls = routed_tool_call_accuracy(model, tokenizer, tool_ex, defaults,
                                                                          routed_tools, prior=prior)
                records += [{"model": name, "kind": f"routed_call_{kind}", **r} for r in routed_calls]
        rows["tool-call accuracy"][name], rows["grounding share"][name] = accuracy, share
        timings[name] = round(time.perf_counter() - started, 1)
        records += [{"model": name, "kind": "tool_call", **r} for r in calls]
        records += [{"model": name, "kind": "answer", **r} for r in answers]
    scores["recency_days"] = recency_scores(churn_ex)
    churn = churn_table(churn_ex, scores, out, Path(args.bench_dir) if args.bench_dir else None)
    llm_columns = sorted({m for values in rows.values() for m in values})
    table = markdown(churn, rows, llm_columns)
    out.mkdir(parents=True, exist_ok=True)
    (out / "llm_eval.md").write_text(table + "\n", encoding="utf-8")
    summary = {"args": vars(args), "churn": churn, **{k: v for k, v in rows.items()}, "seconds": timings,
               "n_churn": len(churn_ex), "n_tool_questions": len(tool_ex)}
    (out / "llm_eval.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(summary)), sort_keys=False),
                                       encoding="utf-8")
    write_records(out / "llm_eval_records.jsonl", records, rerun={n for n, _ in variants})
    print(table)
    return summary


if __name__ == "__main__":
    main()
