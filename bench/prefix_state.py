"""What the persisted prompt head saves a cold process: compute the agent's head vs load it from disk.

    SHOPSIGHT_HOME=<home with the packaged model> .venv/bin/python bench/prefix_state.py --threads 1

Renders the agent's first prompt for the headline question (system prompt and every tool schema,
as `shopsight ask` does), then, in two fresh llama.cpp engines over the packaged GGUF, prefills it
once computing the head (and saving its KV state to a temporary folder) and once loading it.
Prints wall and CPU seconds of each and the state's size. Needs no event store (tool schemas only).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUESTION = "Which users will churn this week and why?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the free cores)")
    args = parser.parse_args(argv)

    from assistant.agent.loop import Agent
    from assistant.llm.llama_engine import LlamaEngine
    from assistant.llm.loader import LLMSpec, cpu_flags, load_llm
    from assistant.llm.registry import gguf_path
    from tools.catalog import ToolContext, build_tools

    tools = build_tools(ToolContext(store=None, cutoff=datetime(2026, 7, 1)))  # schemas only
    chat = load_llm(LLMSpec(model=args.model, n_threads=args.threads))
    agent = Agent(chat, tools, max_steps=4)
    prompt, _, _ = chat.render_prompt(agent.prepare_messages(QUESTION), [s.schema for s in agent.specs.values()], "any")
    ids, head = chat._ids(prompt)
    flags = " ".join(sorted(f for f in cpu_flags() if f.startswith("amx") or f in ("avx2", "avx512_bf16")))
    print(f"{args.model}: first prompt {len(ids)} tokens, persisted head {head}; CPU flags: {flags}")
    folder = Path(tempfile.mkdtemp(prefix="shopsight_kv_"))
    try:
        for label in ("compute the head (and save it)", "load the head from disk"):
            engine = LlamaEngine.open(gguf_path(args.model), n_threads=args.threads, state_dir=folder, state_key="bench")
            wall, cpu = time.perf_counter(), time.process_time()
            engine.prefill(ids, persist_prefix=head)
            print(f"{label}: wall {time.perf_counter() - wall:.2f} s, cpu {time.process_time() - cpu:.2f} s, "
                  f"loaded {engine.last_loaded_prefix} tokens")
        size = sum(p.stat().st_size for p in folder.glob("*.kvstate"))
        print(f"state file: {size / 1e6:.1f} MB")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
