"""Case memory build speed: this checkout's batched build beside the per-batch build of a baseline commit.

Each variant runs in its own process on the same store, cutoffs and users, into a fresh Chroma folder,
with the real packaged MiniLM and the home's trained predictor; the table gives cases per second of
wall time and of CPU time (the CPU figure moves less when the machine is shared).

    SHOPSIGHT_HOME=/tmp/home .venv/bin/python bench/case_build.py --users 1000
    SHOPSIGHT_HOME=/tmp/home .venv/bin/python bench/case_build.py --baseline none   # this checkout only

The baseline (default 3ffcc01, the build before tools/case_build.py) is exported with `git archive`
into a temporary folder and imported from there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs inside each variant's process, with that variant's `tools` first on sys.path.
RUN = r"""
import json, sys, time
import pandas as pd
from assistant.config import Settings
from tools.case_snapshots import default_cutoffs
from tools.cases import CaseMemory
from tools.data.store import EventStore
from tools.predictor.score import Predictor
settings, users, out = Settings.from_env(), int(sys.argv[1]), sys.argv[2]
with EventStore(settings.db_path, read_only=True) as store:
    events, reviews = store.events_frame(), store.reviews_frame()
cutoffs = default_cutoffs(pd.Timestamp(events["ts"].max()).to_pydatetime(), settings.horizons_days)
if users:
    keep = sorted(events["user_id"].astype(str).unique())[:users]
    events = events[events["user_id"].astype(str).isin(keep)]
predictor = Predictor.load(settings.predictor_dir)
memory = CaseMemory(path=out)
# Load MiniLM before the clock starts (the baseline has no handle on it: its first batch loads it, ~4 s).
memory.text_embedding(["warm up the embedding model"]) if hasattr(memory, "text_embedding") else None
wall, cpu = time.perf_counter(), time.process_time()
report = memory.build(events, cutoffs, settings.horizons_days, predictor=predictor, progress=False, reviews=reviews)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"cases": report["text_added"], "vectors": report["vectors_added"], "wall_s": wall, "cpu_s": cpu}))
"""


def run_variant(source: Path, users: int, out: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, str(users), str(out)], cwd=source, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(source)})
    if done.returncode:
        raise SystemExit(f"variant at {source} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=0, help="only the first N users (0 = all)")
    parser.add_argument("--baseline", default="3ffcc01", help="git revision to compare with, or 'none'")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="case-build-bench-") as tmp:
        tmp = Path(tmp)
        variants = [("this checkout", ROOT)]
        if args.baseline != "none":
            base = tmp / "baseline"
            base.mkdir()
            archive = subprocess.run(["git", "archive", args.baseline, "tools", "assistant"], cwd=ROOT,
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            variants.insert(0, (f"baseline {args.baseline}", base))
        for name, source in variants:
            result = run_variant(source, args.users, tmp / f"chroma-{len(rows)}")
            rows.append((name, result))
            print(f"{name}: {result}", flush=True)
    print("\n| build | cases | wall s | cases/s (wall) | CPU s | cases per CPU-s |\n|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['cases']:,} | {r['wall_s']:.1f} | {r['cases'] / r['wall_s']:.0f} | {r['cpu_s']:.1f} "
              f"| {r['cases'] / r['cpu_s']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
