"""Build chat fine-tuning data (JSON lines) from the shop's events at past cutoffs.

    python -m finetune.sft_data --out_dir out/sft_demo --demo_users 1500
    python -m finetune.sft_data --out_dir out/sft_shop --db ~/.shopsight/shop.duckdb \
        --predictor ~/.shopsight/models/predictor/shop      # cutoffs chosen from the store's span
    python -m finetune.sft_data ... --train_cutoffs 1998-04-01 1998-05-01 --eval_cutoff 1998-06-01

Two kinds of examples:
(a) churn: a user's history serialized as of a cutoff -> "yes"/"no" (no purchase in the next H
    days, the true outcome) + the next category (where the shop records categories) + reasons
    built only from facts known at the cutoff (the predictor's `explain_user` when a predictor is
    given, else RFM facts);
(b) tool use: a question -> the right tool call -> (with a store) the tool's result -> an
    answer that only repeats numbers of that result (finetune/sft_tools.py). With a store, each
    training example is built to fit --max_seq_len (the LoRA recipe's): whole, or the call alone
    when its result is too long (a recipe would drop it; on CDNOW it dropped every one).
Train and held-out examples come from different cutoffs AND different users (a stable hash
split), so neither the time nor the person of a held-out example was seen in training.
Files: train.jsonl, eval.jsonl (eval loss), eval_churn.jsonl and eval_tools.jsonl (evaluate.py),
manifest.yaml (resolved arguments, counts, label rates).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import pandas as pd
import yaml

from finetune.sft_tools import (ShopValues, assemble, fit_tool_example, load_bank, result_turns, sample_questions,
                                 tool_schema)
from finetune.sft_tokens import tokenize_example
from tools import paths  # noqa: F401  (offline environment)


def _day(ts) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def rfm_facts(history: pd.DataFrame, cutoff: datetime) -> dict:
    """Recency / frequency / monetary facts of one user's events at or before `cutoff`."""
    c = pd.Timestamp(cutoff)
    buys = history[history["behavior"] == "buy"]
    recent = history[history["ts"] > c - pd.Timedelta(days=30)]
    priced = buys.empty or buys["amount"].notna().any()  # a shop without prices: no spend, not "0.0"
    facts = {"orders": int(len(buys)),
             "spend": round(float(buys["amount"].fillna(0).sum()), 2) if priced else "not recorded",
             "days_since_last_buy": int((c - buys["ts"].max()).days) if len(buys) else "never bought",
             "days_since_last_event": int((c - history["ts"].max()).days) if len(history) else "no events",
             "events_last_30d": int(len(recent)),
             "orders_last_30d": int((recent["behavior"] == "buy").sum()),
             "tenure_days": int((c - history["ts"].min()).days) if len(history) else 0}
    cats = buys["category_id"].dropna()
    facts["top_category"] = str(cats.value_counts().index[0]) if len(cats) else "none"
    return facts


def churn_outcome(future: pd.DataFrame, cutoff: datetime, horizon_days: int) -> tuple[bool, str | None]:
    """(churned, next category) from one user's events after the cutoff (docs/benchmark.md definitions)."""
    c = pd.Timestamp(cutoff)
    window = future[(future["ts"] > c) & (future["ts"] <= c + pd.Timedelta(days=horizon_days))]
    churned = not (window["behavior"] == "buy").any()
    first = window.sort_values("ts", kind="stable").head(1)
    nxt = None if first.empty or pd.isna(first["category_id"].iloc[0]) else str(first["category_id"].iloc[0])
    return churned, nxt


def local_serialize(history: pd.DataFrame, last_n: int = 8) -> str:
    """A compact fallback serialization: one line per (day, category), newest first.

    "05-31 view,cart,buy oils_vinegar": behaviors of that day in time order, duplicates dropped;
    item ids and the year are left out to keep CPU fine-tuning prompts short.
    """
    rows = history.sort_values("ts", kind="stable")
    days = rows["ts"].dt.strftime("%m-%d")
    lines: list[str] = []
    # A shop without categories (CDNOW) gets "03-29 buy", not "03-29 buy ?" on every line.
    for (day, category), group in rows.groupby([days, rows["category_id"].fillna("")], sort=False):
        behaviors = list(dict.fromkeys(group["behavior"]))
        lines.append(f"{day} {','.join(behaviors)} {category}".rstrip())
    return "\n".join(lines[::-1][:last_n]) or "(no events)"


def make_serializer(token_budget: int, tokenizer=None, kind: str = "auto") -> Callable:
    """`serialize(history, reviews, cutoff) -> str`.

    Args:
        token_budget: the serializer's token budget.
        tokenizer: for exact token counts.
        kind: "assistant" (assistant.serialize.serialize_user, what the agent shows the model),
            "local" (the short fallback above), or "auto" (assistant when importable).
    """
    if kind not in ("auto", "assistant", "local"):
        raise ValueError(f"serializer {kind!r}: choose auto, assistant or local")
    try:
        from assistant.serialize import serialize_user
    except ImportError:
        if kind == "assistant":
            raise
        serialize_user = None
    if kind == "local" or serialize_user is None:
        return lambda history, reviews, cutoff: local_serialize(history)

    def serialize(history, reviews, cutoff):
        return serialize_user(history, reviews, cutoff, token_budget=token_budget, lang="en", tokenizer=tokenizer)

    return serialize


def reasons(facts: dict, explanation: dict | None = None) -> list[str]:
    """Short reasons, each a fact the model was shown or the predictor's explain returned."""
    out = []
    if explanation:
        for driver in (explanation.get("drivers") or [])[:2]:
            name = driver.get("feature") or driver.get("event")
            effect = driver.get("effect")
            if name is not None and isinstance(effect, (int, float)):
                out.append(f"{name} {'raises' if effect > 0 else 'lowers'} the risk")
    if isinstance(facts["days_since_last_buy"], int):
        out.append(f"last purchase {facts['days_since_last_buy']} days before the cutoff")
    else:
        out.append("no purchase before the cutoff")
    out.append(f"{facts['orders']} orders in total, {facts['orders_last_30d']} in the last 30 days")
    out.append(f"{facts['events_last_30d']} events in the last 30 days")
    return out


def churn_examples(events: pd.DataFrame, reviews: pd.DataFrame | None, users: list[str], cutoff: datetime,
                   horizon_days: int, serialize: Callable, explain: Callable | None = None,
                   has_categories: bool = True) -> list[dict]:
    """One churn chat example per user of `users` (users without events before the cutoff are skipped).

    Args:
        events: canonical events (any span; only ts <= cutoff reaches the prompt).
        reviews: canonical reviews or None.
        users: user ids to build examples for.
        cutoff: the as-of time.
        horizon_days: churn horizon H.
        serialize: `serialize(history, reviews, cutoff) -> str`.
        explain: optional `explain(user_id, cutoff, horizon_days) -> dict` (the predictor's explain_user).
        has_categories: False for a shop that records no categories (slot_values' "categories" is
            empty): no next category is asked for or answered (it was "none expected" every time).
    """
    from assistant.prompts import render

    c = pd.Timestamp(cutoff)
    sub = events[events["user_id"].isin(users)]
    past, future = sub[sub["ts"] <= c], sub[sub["ts"] > c]
    past_groups, future_groups = dict(tuple(past.groupby("user_id"))), dict(tuple(future.groupby("user_id")))
    out = []
    for user in users:
        history = past_groups.get(user)
        if history is None or history.empty:
            continue
        mine = reviews[(reviews["user_id"] == user) & (reviews["ts"] <= c)] if reviews is not None else None
        facts = rfm_facts(history, cutoff)
        if not has_categories:
            facts.pop("top_category")  # "none" for every user of such a shop
        churned, nxt = churn_outcome(future_groups.get(user, future.iloc[:0]), cutoff, horizon_days)
        explanation = explain(user, cutoff, horizon_days) if explain else None
        question = render("finetune_churn_question", cutoff=_day(c), horizon_days=horizon_days, facts=facts,
                          history=serialize(history, mine, cutoff), has_categories=has_categories)
        answer = render("finetune_churn_answer", label="yes" if churned else "no", next_category=nxt,
                        reasons=reasons(facts, explanation), has_categories=has_categories)
        out.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                    "meta": {"kind": "churn", "user_id": str(user), "cutoff": c.isoformat(),
                             "horizon_days": horizon_days, "label": int(churned), "next_category": nxt,
                             "facts": facts}})
    return out


def buyers_within(events: pd.DataFrame, cutoff: str, horizon_days: int) -> set[str]:
    """Users who buy in (cutoff, cutoff + H]: the retained ones (churn_outcome's rule, for all users at once)."""
    c = pd.Timestamp(cutoff)
    window = (events["ts"] > c) & (events["ts"] <= c + pd.Timedelta(days=horizon_days)) & (events["behavior"] == "buy")
    return set(events.loc[window, "user_id"].astype(str))


def split_users(users: list[str], eval_share: float, salt: str = "shopsight") -> tuple[list[str], list[str]]:
    """Stable train / held-out split by a hash of the id (the same user always lands on the same side)."""
    def bucket(u: str) -> float:
        return int(hashlib.sha1(f"{salt}:{u}".encode()).hexdigest()[:8], 16) / 16**8

    held = [u for u in users if bucket(u) < eval_share]
    return [u for u in users if bucket(u) >= eval_share], held


@dataclass
class SFTArgs:
    """Arguments of `python -m finetune.sft_data` (see `--help`)."""

    out_dir: str
    db: str | None = None
    demo_users: int | None = None
    predictor: str | None = None
    train_cutoffs: list[str] | None = None
    eval_cutoff: str | None = None
    horizon_days: int = 30
    n_churn_train: int = 80
    n_churn_eval: int = 160
    n_tool_train: int = 60
    n_tool_eval: int = 30
    eval_user_share: float = 0.3
    distractors: int = 2
    schema_style: str = "compact"
    token_budget: int = 160
    serializer: str = "auto"
    balance_churn: int = 1
    max_seq_len: int = 768
    tokenizer: str = "qwen2.5-coder-0.5b"
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.db is None) == (self.demo_users is None):
            raise ValueError("Give exactly one data source: --db PATH (an event store) or --demo_users N.")
        if not 0 < self.eval_user_share < 1:
            raise ValueError(f"--eval_user_share must be in (0, 1), got {self.eval_user_share}.")
        if self.eval_cutoff is None or self.train_cutoffs is None:
            return  # chosen from the data's span by resolve_cutoffs, then checked again
        if self.eval_cutoff in self.train_cutoffs:
            raise ValueError(f"--eval_cutoff {self.eval_cutoff} is also a train cutoff; held-out examples "
                             "must come from another cutoff.")
        late = [c for c in self.train_cutoffs
                if pd.Timestamp(c) + pd.Timedelta(days=self.horizon_days) > pd.Timestamp(self.eval_cutoff)]
        if late:
            raise ValueError(f"train cutoffs {late} + {self.horizon_days} days reach past --eval_cutoff: their labels "
                             "would use the held-out period. Choose earlier train cutoffs.")


DEMO_TRAIN_CUTOFFS = ["2026-04-01", "2026-05-01"]  # the demo shop's (tools/data/synth.py DEMO_CUTOFFS)
DEMO_EVAL_CUTOFF = "2026-06-01"


def resolve_cutoffs(args: SFTArgs, events: pd.DataFrame) -> SFTArgs:
    """`args` with cutoffs chosen from the events' span where not given, each checked against it.

    A churn label is "no purchase in (c, c+H]", so it is only true where the events reach c+H:
    past the data every user looks churned (a store of 1997-1998 asked at the demo's 2026
    cutoffs gave 100 % "yes"). The events count as covering whole days through the last event's
    date. Without cutoffs: the demo shop keeps its documented ones; a store gets the last
    cutoff whose window fits (held out) and the two before it, one horizon apart.
    """
    if events.empty:
        raise ValueError("the store has no events: churn and tool examples are built from events; "
                         "import an events or orders file first (docs/importing.md).")
    first = pd.Timestamp(events["ts"].min())
    covered = pd.Timestamp(events["ts"].max()).normalize() + pd.Timedelta(days=1)
    horizon = pd.Timedelta(days=args.horizon_days)
    eval_cutoff, train_cutoffs = args.eval_cutoff, args.train_cutoffs
    if eval_cutoff is None:
        eval_cutoff = DEMO_EVAL_CUTOFF if args.demo_users else _day(covered - horizon)
    if train_cutoffs is None:
        base = pd.Timestamp(eval_cutoff)
        train_cutoffs = DEMO_TRAIN_CUTOFFS if args.demo_users and args.eval_cutoff is None else \
            [_day(base - 2 * horizon), _day(base - horizon)]
    span = f"the events span {_day(first)} .. {_day(covered - pd.Timedelta(days=1))}"
    for cutoff in [eval_cutoff, *train_cutoffs]:  # the held-out one first: the user may have given only it
        c = pd.Timestamp(cutoff)
        if c + horizon > covered:
            raise ValueError(f"cutoff {cutoff}: its {args.horizon_days}-day label window ends "
                             f"{_day(c + horizon)}, after the data ({span}), so every user there would look "
                             f"churned. Choose cutoffs on or before {_day(covered - horizon)} (--eval_cutoff, "
                             "--train_cutoffs), or a shorter --horizon_days.")
        if c <= first:
            raise ValueError(f"cutoff {cutoff} is not after the first event ({span}): nobody has a history "
                             "there. Choose later cutoffs.")
    return replace(args, train_cutoffs=list(train_cutoffs), eval_cutoff=str(eval_cutoff))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows atomically (a temp file renamed), so a crash leaves no half file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def build(args: SFTArgs, events: pd.DataFrame, reviews: pd.DataFrame | None, values: dict[str, list[str]],
          tools: list[Callable], run_tool_at: Callable[[datetime], Callable] | None = None,
          explain: Callable | None = None, tokenizer=None, fit_tokenizer=None,
          log: Callable[[str], None] = lambda line: None) -> dict[str, list[dict]]:
    """All example sets from frames and tool functions (the testable core of `main`).

    Args:
        args: the resolved arguments.
        events, reviews: canonical frames.
        values: "items", "categories", "segments" id lists for the question slots.
        tools: the agent's tool functions (their schemas go into the prompts).
        run_tool_at: `run_tool_at(cutoff) -> run_tool(name, arguments) -> dict`, for results and
            grounded answers; None writes call-only tool examples.
        explain: optional predictor explanation for churn reasons.
        tokenizer: for the serializer's token budget.
        fit_tokenizer: the LoRA recipe's tokenizer: with it (and args.max_seq_len > 0) each tool example of
            train.jsonl and eval.jsonl is built to fit args.max_seq_len tokens (sft_tools.fit_tool_example);
            without it they are kept whole. eval_tools.jsonl (generation, all tools shown) stays whole.
        log: called with one line per finished stage (main prints them: a store of 20,000 users
            with a predictor takes minutes).

    Returns:
        {"train", "eval", "eval_churn", "eval_tools"} lists of examples, and "tool_fit": one row per
        training tool example {"tool", "fit": "result" | "call only" | "no result" | "too long"} (describe_fit).
    """
    from assistant.prompts import render

    args = resolve_cutoffs(args, events)
    rng = random.Random(args.seed)
    serialize = make_serializer(args.token_budget, tokenizer, args.serializer)
    all_users = sorted(events["user_id"].astype(str).unique())
    train_users, eval_users = split_users(all_users, args.eval_user_share)
    seen: dict[str, set[str]] = {}
    has_categories = bool(values.get("categories"))  # slot_values: the shop's categories, empty without any

    def seen_by(cutoff: str) -> set[str]:
        """Users with events by the cutoff (churn examples and tool questions ask only about them)."""
        if cutoff not in seen:
            seen[cutoff] = set(events.loc[events["ts"] <= pd.Timestamp(cutoff), "user_id"].astype(str))
        return seen[cutoff]

    churn_train = []
    per_cutoff = -(-args.n_churn_train // len(args.train_cutoffs))
    for i, cutoff in enumerate(args.train_cutoffs):
        pool = [u for u in train_users if u in seen_by(cutoff)]
        if args.balance_churn:  # equal yes / no: the model must learn the boundary, not the base rate
            # Label the whole pool first (cheap), then build examples for the picked users only: a sample
            # of 4x the need held 2 retained users per cutoff on CDNOW (94 % churn), so 16 asked gave 12.
            shuffled = random.Random(args.seed + i).sample(pool, len(pool))
            retained = buyers_within(events, cutoff, args.horizon_days)
            half = per_cutoff // 2
            picked = [u for u in shuffled if u not in retained][:half] + \
                [u for u in shuffled if u in retained][: per_cutoff - half]
            churn_train += churn_examples(events, reviews, picked, datetime.fromisoformat(cutoff), args.horizon_days,
                                          serialize, explain, has_categories)
            continue
        picked = random.Random(args.seed + i).sample(pool, min(per_cutoff, len(pool)))
        churn_train += churn_examples(events, reviews, picked, datetime.fromisoformat(cutoff), args.horizon_days,
                                      serialize, explain, has_categories)
    log(f"churn examples for training: {len(churn_train)} ({sum(e['meta']['label'] for e in churn_train)} churned)")
    pool = [u for u in eval_users if u in seen_by(args.eval_cutoff)]
    picked = random.Random(args.seed + 99).sample(pool, min(args.n_churn_eval, len(pool)))
    churn_eval = churn_examples(events, reviews, picked, datetime.fromisoformat(args.eval_cutoff), args.horizon_days,
                                serialize, explain, has_categories)
    log(f"held-out churn examples at {args.eval_cutoff}: {len(churn_eval)} "
        f"({sum(e['meta']['label'] for e in churn_eval)} churned)")

    schemas = [tool_schema(fn, args.schema_style) for fn in tools]
    params = {s["function"]["name"]: set(s["function"]["parameters"].get("properties", {})) for s in schemas}
    system = render("system", tools=schemas, entities={})
    answer = (lambda tool, arguments, result: render("finetune_tool_answer", tool=tool, args=arguments,
                                                     result=result)) if run_tool_at else None
    bank = load_bank()

    fitting = fit_tokenizer is not None and args.max_seq_len > 0
    count_tokens = (lambda example: len(tokenize_example(fit_tokenizer, example).input_ids)) if fitting else None

    def tool_set(split: str, users: list[str], cutoff: str, n: int, seed: int) -> tuple[list[dict], list[dict]]:
        """(examples with every tool shown, whole; the same questions fitted to --max_seq_len, or "too long")."""
        # Only users with events by the cutoff: a question about a user the shop has not seen yet
        # has no answer there (the tool says "unknown user"), so its call cannot be the right one.
        users = [u for u in users if u in seen_by(cutoff)]
        shop = ShopValues(users=users, items=values.get("items", []), categories=values.get("categories", []),
                          segments=values.get("segments", []))
        runner = run_tool_at(datetime.fromisoformat(cutoff)) if run_tool_at else None
        whole, fitted = [], []
        for q in sample_questions(bank, split, shop, n, seed, tool_params=params):
            meta = {"cutoff": cutoff, "split": split}
            turns = result_turns(q, runner, answer) if runner else None
            whole.append(assemble(q, schemas, system, turns, meta))
            example = fit_tool_example(q, schemas, system, turns, meta, args.distractors, rng, count_tokens,
                                       args.max_seq_len)
            fitted.append(example or {"meta": {"kind": "tool", "fit": "too long", "expected_calls": q["calls"]}})
        return whole, fitted

    tool_train, fit_rows = [], []
    for i, cutoff in enumerate(args.train_cutoffs):
        fitted = tool_set("train", train_users, cutoff, -(-args.n_tool_train // len(args.train_cutoffs)),
                          args.seed + 10 + i)[1]
        fit_rows += [{"tool": e["meta"]["expected_calls"][0]["name"], "fit": e["meta"]["fit"]} for e in fitted]
        tool_train += [e for e in fitted if e["meta"]["fit"] != "too long"]
    tool_eval, eval_fitted = tool_set("heldout", eval_users, args.eval_cutoff, args.n_tool_eval, args.seed + 77)
    log(f"tool-use examples: {len(tool_train)} for training, {len(tool_eval)} held out"
        f"{'' if run_tool_at else ' (calls only: no store to run the tools on)'}")
    if fitting:
        log(describe_fit(fit_rows, args.max_seq_len))
    eval_tools_mix = [e for e in eval_fitted if e["meta"]["fit"] != "too long"] if fitting else tool_eval
    train = churn_train + tool_train
    rng.shuffle(train)
    eval_mix = churn_eval[: max(1, len(churn_eval) // 4)] + eval_tools_mix[: max(1, len(eval_tools_mix) // 2)]
    return {"train": train, "eval": eval_mix, "eval_churn": churn_eval, "eval_tools": tool_eval, "tool_fit": fit_rows}


def describe_fit(rows: list[dict], max_seq_len: int) -> str:
    """"tool-use examples for training within 768 tokens: at_risk_users 0 with result, 9 call only; ..."

    A real shop's results can be longer than a CPU recipe's max_seq_len: the count says how many
    examples still train the reading of a result, and what to raise when too few do.
    """
    tools: dict[str, dict[str, int]] = {}
    for row in rows:
        tools.setdefault(row["tool"], {"result": 0, "call only": 0, "no result": 0, "too long": 0})[row["fit"]] += 1
    parts = "; ".join(f"{tool} {c['result']} with result, {c['call only']} call only"
                      + (f", {c['no result']} without result (the tool cannot answer here)" if c["no result"] else "")
                      + (f", {c['too long']} left out" if c["too long"] else "") for tool, c in sorted(tools.items()))
    short = sum(r["fit"] in ("call only", "too long") for r in rows)
    hint = (" (a result that does not fit is left out, never cut; a larger --max_seq_len here and in the "
            "LoRA recipe keeps more results)") if short else ""
    return f"tool-use examples for training within {max_seq_len} tokens: {parts}{hint}"


ARG_HELP = {
    "out_dir": "folder for train.jsonl, eval.jsonl, eval_churn.jsonl, eval_tools.jsonl, manifest.yaml",
    "db": "an event store (e.g. $SHOPSIGHT_HOME/shop.duckdb): build the examples from this shop",
    "demo_users": "or: build them from the demo shop generated in memory with N users",
    "predictor": "a predictor checkpoint folder ($SHOPSIGHT_HOME/models/predictor/shop, demo in older homes, after "
                 "`shopsight predictor train`): its explanations become the churn reasons, and tool answers use it",
    "train_cutoffs": "as-of dates of the training examples (ISO); default: the two horizons before --eval_cutoff",
    "eval_cutoff": "as-of date of the held-out examples; default: the last date whose label window fits the data",
    "horizon_days": "churn = no purchase in the next N days (default 30)",
    "n_churn_train": "churn examples for training", "n_churn_eval": "held-out churn examples",
    "n_tool_train": "tool-use examples for training", "n_tool_eval": "held-out tool-use examples",
    "eval_user_share": "share of users held out (a stable hash of the id)",
    "distractors": "other tools shown beside the right one in training examples",
    "schema_style": "compact (default) or full tool schemas; train, evaluate and serve with the same",
    "token_budget": "token budget of a serialized history",
    "serializer": "auto, assistant (what the agent shows the model) or local (shorter, for CPU fine-tuning)",
    "balance_churn": "1: as many churned as retained training examples; 0: the shop's rate",
    "max_seq_len": "the LoRA recipe's max_seq_len (the CPU recipes: 768): a tool example longer than this trains "
                   "without its result (the call only), a recipe would drop it whole; 0 keeps every example whole",
    "tokenizer": "counts the tokens for --max_seq_len: the recipe's base_model (a folder or a packaged model)",
    "seed": "seeds the samples (and the demo shop)",
}


def tokenizer_folder(name: str) -> Path:
    """`--tokenizer`: a folder, or a packaged model already converted for transformers.

    Not converted here: that writes a 1.3 GB bf16 folder (minutes), a side effect a data step should not have.
    """
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    from assistant.llm.registry import MODEL_REGISTRY, cache_dir, is_cached

    if name in MODEL_REGISTRY and is_cached(name):
        return cache_dir(name)
    raise SystemExit(f"--tokenizer {name}: neither a folder nor an installed model (it counts the tokens for "
                     f"--max_seq_len); run `shopsight models install --transformers {name}` (finetune.lora needs "
                     "it too), give a tokenizer folder, or --max_seq_len 0 to keep tool examples whole")


def main(argv: list[str] | None = None) -> dict:
    """Build the data from a store or the demo shop and write the files + manifest."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in SFTArgs.__dataclass_fields__.values():
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if "list" in kind:
            parser.add_argument(f"--{f.name}", nargs="+", help=ARG_HELP.get(f.name))
        else:
            caster = int if kind.startswith("int") else float if kind.startswith("float") else str
            parser.add_argument(f"--{f.name}", type=caster, help=ARG_HELP.get(f.name))
    raw = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    try:
        args = SFTArgs(**raw)
    except (TypeError, ValueError) as err:
        raise SystemExit(str(err)) from None
    from finetune.sft_sources import load_source

    source = load_source(args)
    try:
        args = resolve_cutoffs(args, source.events)
    except ValueError as err:
        raise SystemExit(f"{source.description}: {err}") from None
    print(f"{source.description}: {len(source.events):,} events, train cutoffs {', '.join(args.train_cutoffs)}, "
          f"held-out cutoff {args.eval_cutoff}, churn horizon {args.horizon_days} days", flush=True)
    fit_tokenizer = None
    if args.max_seq_len > 0 and source.run_tool_at is not None:  # without a store the examples stop at the call
        from transformers import AutoTokenizer

        fit_tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(args.tokenizer))
    sets = build(args, source.events, source.reviews, source.values, source.tools, source.run_tool_at,
                 source.explain, fit_tokenizer=fit_tokenizer, log=lambda line: print(line, flush=True))
    fit_rows = sets.pop("tool_fit")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in sets.items():
        write_jsonl(out / f"{name}.jsonl", rows)
    churn = [e["meta"]["label"] for e in sets["eval_churn"]]
    manifest = {"args": asdict(args), "source": source.description,
                "counts": {k: len(v) for k, v in sets.items()},
                "eval_churn_rate": round(sum(churn) / max(len(churn), 1), 3),
                "tool_results": bool(source.run_tool_at),
                "tool_fit": {"max_seq_len": args.max_seq_len if fit_tokenizer is not None else None,
                             "with_result": sum(r["fit"] == "result" for r in fit_rows),
                             "call_only": sum(r["fit"] == "call only" for r in fit_rows),
                             "no_result": sum(r["fit"] == "no result" for r in fit_rows),
                             "left_out": sum(r["fit"] == "too long" for r in fit_rows)},
                "created": datetime.now().isoformat(timespec="seconds")}
    (out / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    print(yaml.safe_dump(manifest["counts"]), f"written to {out}")
    return manifest


if __name__ == "__main__":
    main()
