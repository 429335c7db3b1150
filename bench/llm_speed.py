"""Generation speed of the default chat model on CPU, both engines side by side.

Settings: `llamacpp` (ours: the packaged GGUF through `assistant.llm.loader.load_llm` and its
`LlamaEngine`, the app's default), `llamacpp-generate` (llama-cpp-python's own `Llama.generate`,
greedy, on the same file: the reference our decode must stay within 10 % of), and the
transformers engine's `fp32` (the baseline), `bf16` and `4bit` (loaded through
`assistant.llm.loader.load_chat_model`). Each runs in its own process and measures, greedy:
- time to first token for a ~1,500-token prompt (a serialized user history + a question);
- a typical answer: a ~300-token agent prompt and exactly 150 new tokens: total seconds, time
  to first token and decode tokens/s (tokens after the first / time after the first);
- load seconds and resident memory after load.

    python bench/llm_speed.py --threads 2           # every setting, default model
    python bench/llm_speed.py --settings llamacpp llamacpp-generate fp32 --threads 2 --out bench/results/llm_speed.md

Targets (issue 16): decode of the 0.5B >= 25 tok/s on 2 AVX2 cores, within 10 % of
llama-cpp-python's own generate. Timings on a shared machine are noisy: the table states the
load average at the start and the CPU's flags (AVX2 / AVX-512 bf16 / AMX decide the speeds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import resource
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tools.paths  # noqa: E402,F401  (offline env first)

SETTINGS = {"llamacpp": {}, "llamacpp-generate": {}, "fp32": {"dtype": "fp32"}, "bf16": {"dtype": "bf16"},
            "4bit": {"dtype": "bf16", "load_in_4bit": True}}
LLAMA_SETTINGS = ("llamacpp", "llamacpp-generate")


class _Clock:
    """A generate() streamer that records when each new token arrives."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # the first put is the prompt
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter() - self.start)

    def end(self) -> None:
        pass


def _long_history_text(tokenizer, budget: int) -> str:
    import pandas as pd

    from assistant.serialize import serialize_user

    cutoff = datetime(2026, 4, 1)
    rows = []
    for d in range(120):
        for k in range(3):
            rows.append({"user_id": "1042", "ts": cutoff - timedelta(days=120 - d, hours=3 * k),
                         "behavior": ("view", "cart", "view", "buy", "fav")[(d + k) % 5],
                         "item_id": f"B00{(d * 7 + k) % 97:04d}", "category_id": str(2500 + (d + k) % 11),
                         "quantity": 1, "amount": 12.5})
    return serialize_user(pd.DataFrame(rows), None, cutoff, token_budget=budget, tokenizer=tokenizer,
                          detail_days=60, max_detail_events=200)


def _prompt(tokenizer, user_text: str, tools: list | None = None) -> str:
    messages = [{"role": "system", "content": "You are ShopSight, an analyst assistant for an online shop."},
                {"role": "user", "content": user_text}]
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)


def _run(model, tokenizer, prompt: str, new_tokens: int) -> tuple[int, list[float]]:
    import torch

    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    clock = _Clock()
    with torch.inference_mode():
        model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       temperature=None, top_p=None, top_k=None, streamer=clock,
                       pad_token_id=tokenizer.pad_token_id)
    return int(enc["input_ids"].shape[1]), clock.times


def _rss_gb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def measure(setting: str, model_name: str, answer_tokens: int, long_tokens: int) -> dict:
    """Load one setting and time it (run in its own process, so memory figures do not mix)."""
    import torch

    from assistant.llm.loader import LLMSpec, load_chat_model

    t0 = time.perf_counter()
    model, tok = load_chat_model(LLMSpec(model=model_name, **SETTINGS[setting]))
    load_s = time.perf_counter() - t0
    rss = _rss_gb()
    history = _long_history_text(tok, long_tokens - 60)
    long_prompt = _prompt(tok, history + "\n\nWill this user buy again within 7 days? Answer yes or no.")
    _run(model, tok, _prompt(tok, "Hi"), 2)  # warm-up: first-call overheads are not speed
    long_len, long_times = _run(model, tok, long_prompt, 1)
    question = ("Summarize in about 120 words what an operations analyst should watch in a shop's weekly "
                "churn numbers, and why.")
    n_prompt, times = _run(model, tok, _prompt(tok, question), answer_tokens)
    decode_s = times[-1] - times[0]
    return {
        "setting": setting, "threads": torch.get_num_threads(), "load_s": load_s, "rss_gb": rss,
        "long_len": long_len, "ttft_long": long_times[0], "prompt_len": n_prompt, "ttft": times[0],
        "answer_s": times[-1], "n_new": len(times),
        "tok_s": (len(times) - 1) / decode_s if decode_s > 0 else float("nan"),
    }


class _LlamaTokens:
    """What serialize_user needs of a tokenizer (exact counts), over llama.cpp's tokenizer."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.engine.encode(text)


def measure_llama(setting: str, model_name: str, answer_tokens: int, long_tokens: int, threads: int | None) -> dict:
    """Our llama.cpp engine (`llamacpp`) or llama-cpp-python's own generate on the same GGUF."""
    from assistant.llm.loader import LLMSpec, load_llm

    t0 = time.perf_counter()
    chat = load_llm(LLMSpec(model=model_name, engine="llamacpp", n_threads=threads))
    load_s = time.perf_counter() - t0
    rss = _rss_gb()
    engine = chat.model

    def prompt(text: str) -> list[int]:
        return engine.encode(chat.apply_template([{"role": "system", "content": "You are ShopSight, an analyst "
                                                   "assistant for an online shop."}, {"role": "user", "content": text}]))

    def timed(ids: list[int], n: int) -> list[float]:
        engine.llm.reset()  # no prefix reuse between measurements: each prompt is prefilled whole
        engine.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        start, times = time.perf_counter(), []
        if setting == "llamacpp":
            for _ in engine.stream(ids, n):
                times.append(time.perf_counter() - start)
        else:
            for token in engine.llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
                if engine.is_end(token) or len(times) == n:
                    break
                times.append(time.perf_counter() - start)
        return times

    history = _long_history_text(_LlamaTokens(engine), long_tokens - 60)
    long_ids = prompt(history + "\n\nWill this user buy again within 7 days? Answer yes or no.")
    timed(prompt("Hi"), 2)  # warm-up
    long_times = timed(long_ids, 1)
    question = ("Summarize in about 120 words what an operations analyst should watch in a shop's weekly "
                "churn numbers, and why.")
    short_ids = prompt(question)
    times = timed(short_ids, answer_tokens)
    decode_s = times[-1] - times[0]
    return {
        "setting": setting, "threads": engine.llm.n_threads, "load_s": load_s, "rss_gb": rss,
        "long_len": len(long_ids), "ttft_long": long_times[0], "prompt_len": len(short_ids), "ttft": times[0],
        "answer_s": times[-1], "n_new": len(times),
        "tok_s": (len(times) - 1) / decode_s if decode_s > 0 else float("nan"),
    }


def cpu_flags_text() -> str:
    """The flags that decide CPU LLM speed (as `lscpu | grep -o -E 'amx[a-z_]*|avx512_bf16|avx2'`)."""
    from assistant.llm.loader import cpu_flags

    flags = cpu_flags()
    wanted = sorted(f for f in flags if f.startswith("amx") or f in ("avx2", "avx512_bf16", "avx512f"))
    return " ".join(wanted) or "none of avx2 / avx512 / amx"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--answer-tokens", type=int, default=150)
    parser.add_argument("--long-prompt", type=int, default=1500, help="tokens of the long prompt")
    parser.add_argument("--threads", type=int, default=None, help="torch / llama.cpp threads (default: the engines')")
    parser.add_argument("--one", choices=list(SETTINGS), help=argparse.SUPPRESS)  # child process
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = parser.parse_args(argv)

    if args.one in LLAMA_SETTINGS:
        row = measure_llama(args.one, args.model, args.answer_tokens, args.long_prompt, args.threads)
        print("ROW " + json.dumps(row))
        return 0
    if args.one:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        row = measure(args.one, args.model, args.answer_tokens, args.long_prompt)
        print("ROW " + json.dumps(row))
        return 0

    load_avg = os.getloadavg()[0]
    rows = []
    for setting in args.settings:
        cmd = [sys.executable, __file__, "--one", setting, "--model", args.model,
               "--answer-tokens", str(args.answer_tokens), "--long-prompt", str(args.long_prompt)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        found = [line for line in done.stdout.splitlines() if line.startswith("ROW ")]
        if done.returncode != 0 or not found:
            print(f"[{setting}] failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(found[-1][4:]))
        print(f"[{setting}] {rows[-1]}", file=sys.stderr, flush=True)
    if not rows:
        return 1

    lines = [
        f"LLM generation speed, {args.model}, CPU, threads {args.threads or 'default'}, greedy; "
        f"load average at start {load_avg:.1f} on {os.cpu_count()} cores (shared machine: noisy); "
        f"CPU flags: {cpu_flags_text()}. {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        "| setting | load s | RSS GB | decode tok/s | TTFT long prompt s (tokens) | answer s (new tokens; prompt tokens) |",
        "|---|---|---|---|---|---|",
    ]
    notes = {"fp32": " (transformers baseline)", "llamacpp": " (ours, default)",
             "llamacpp-generate": " (llama-cpp-python generate)"}
    for r in rows:
        lines.append(f"| {r['setting']}{notes.get(r['setting'], '')} | {r['load_s']:.1f} | {r['rss_gb']:.2f} | "
                     f"{r['tok_s']:.2f} | {r['ttft_long']:.1f} ({r['long_len']}) | {r['answer_s']:.1f} "
                     f"({r['n_new']}; {r['prompt_len']}) |")
    by = {r["setting"]: r for r in rows}
    if "llamacpp" in by and "llamacpp-generate" in by:
        ratio = by["llamacpp"]["tok_s"] / by["llamacpp-generate"]["tok_s"]
        lines += ["", f"Our decode / llama-cpp-python's generate: {ratio:.2f} (target >= 0.90)."]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
