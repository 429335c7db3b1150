"""The packaged chat models side by side on llama.cpp: load, prefill, decode, memory.

    .venv/bin/python bench/gguf_sizes.py                                  # 0.5B and 1.5B, 2 threads
    .venv/bin/python bench/gguf_sizes.py --models qwen2.5-coder-0.5b --prompt-tokens 500

Each model runs in its own process (so its RSS is its own): the GGUF as shipped (joined from
its pinned packages and sha256-checked once into --gguf-dir), `Llama(n_ctx=4096)`, a prompt of
exactly --prompt-tokens tokens evaluated at once (prefill), then --new-tokens greedy tokens with
llama-cpp-python's own `generate` (decode). Prints a markdown table with the CPU's flags;
timings on a shared machine are noisy, so each row says the load average it ran under.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT_SOURCE = ROOT / "data" / "questions" / "demo_questions.jsonl"


def cpu_flags() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    flags = sorted(set(re.findall(r"amx[a-z_]*|avx512_bf16|avx2", text)))
    model = re.search(r"Model name:\s*(.+)", text)
    return f"{model.group(1).strip() if model else 'unknown CPU'}, {os.cpu_count()} cores, flags: {' '.join(flags) or 'none'}"


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    status = Path("/proc/self/status").read_text()
    now = int(re.search(r"VmRSS:\s*(\d+)", status).group(1)) / 1024
    peak = int(re.search(r"VmHWM:\s*(\d+)", status).group(1)) / 1024
    return now, peak


def gguf_file(name: str, gguf_dir: Path) -> Path:
    """The model's GGUF joined from its packages (sha256-checked), once."""
    from assistant.llm.registry import get_packaged, join_chunks, locate_chunks

    model = get_packaged(name)
    path = gguf_dir / f"{name}.gguf"
    if not (path.is_file() and path.stat().st_size == model.size):
        gguf_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        join_chunks(model, locate_chunks(model), tmp, progress=False)
        os.replace(tmp, path)
    return path


def measure(path: Path, threads: int, prompt_tokens: int, new_tokens: int) -> dict:
    """One model in this process: load, prefill, decode, memory."""
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(model_path=str(path), n_ctx=4096, n_threads=threads, n_threads_batch=threads, n_batch=512,
                verbose=False)
    load_s = time.perf_counter() - started
    text = "\n".join(json.loads(line)["question"] for line in PROMPT_SOURCE.read_text().splitlines() if line.strip())
    tokens = llm.tokenize(text.encode())
    while len(tokens) < prompt_tokens:
        tokens += tokens
    tokens = tokens[:prompt_tokens]
    started = time.perf_counter()
    llm.eval(tokens)
    prefill_s = time.perf_counter() - started
    llm.reset()  # decode measured on a short prompt, as an answer step after a cached prefix would
    started, n = time.perf_counter(), 0
    for token in llm.generate(tokens[:16], temp=0.0, top_k=1):
        n += 1
        if n == 1:
            first = time.perf_counter()
        if n > new_tokens:
            break
    decode_tok_s = (n - 1) / (time.perf_counter() - first)
    rss, peak = rss_mb()
    return {"load_s": round(load_s, 2), "prefill_s": round(prefill_s, 2),
            "prefill_tok_s": round(prompt_tokens / prefill_s, 1), "decode_tok_s": round(decode_tok_s, 1),
            "rss_mb": round(rss), "peak_rss_mb": round(peak), "gguf_mb": round(path.stat().st_size / 1e6),
            "load_avg": round(os.getloadavg()[0], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--gguf-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "shopsight-gguf")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure this GGUF here
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(Path(args.one), args.threads, args.prompt_tokens, args.new_tokens)))
        return 0
    rows = []
    for name in args.models:
        path = gguf_file(name, args.gguf_dir)
        out = subprocess.run([sys.executable, __file__, "--one", str(path), "--threads", str(args.threads),
                              "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens)],
                             capture_output=True, text=True, check=True)
        rows.append((name, json.loads(out.stdout.strip().splitlines()[-1])))
        print(f"{name}: {rows[-1][1]}", file=sys.stderr)
    keys = ["gguf_mb", "load_s", "prefill_s", "prefill_tok_s", "decode_tok_s", "rss_mb", "peak_rss_mb", "load_avg"]
    print(f"llama.cpp (llama-cpp-python), {args.threads} threads, prefill {args.prompt_tokens} tokens, "
          f"decode {args.new_tokens} tokens greedy; {cpu_flags()}")
    print("\n| model | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for name, row in rows:
        print(f"| {name} | " + " | ".join(str(row[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
