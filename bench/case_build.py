"""Case memory build speed and retrieval quality: this checkout beside a baseline commit.

Each variant runs in its own process on the same store, cutoffs and users, into a fresh Chroma folder,
with the real packaged MiniLM and the home's trained predictor; the table gives cases per second of
wall time and of CPU time (the CPU figure moves less when the machine is shared), and the quality of
what the memory then answers: for a sample of users at the last cutoff, the share of their 10 nearest
other customers (by text, as `search_user` asks without a predictor; by the predictor's user vector)
whose 30-day outcome (churned or came back) is the user's own.

    SHOPSIGHT_HOME=/tmp/home .venv/bin/python bench/case_build.py --users 1000
    SHOPSIGHT_HOME=/tmp/home .venv/bin/python bench/case_build.py --baseline none   # this checkout only

The baseline (default 5186e11, the build before round 5's changes) is exported with `git archive`
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
# Quality: do a user's nearest other customers share the user's own outcome (30 days after the last cutoff)?
from tools.case_snapshots import outcomes, review_facts, snapshot_features, snapshot_phrase
last, horizon, sample_size = cutoffs[-1], max(settings.horizons_days), int(sys.argv[3])
known = sorted(events.loc[events["ts"] <= pd.Timestamp(last), "user_id"].astype(str).unique())
sample = known[::max(1, len(known) // sample_size)][:sample_size]
feats = snapshot_features(events, last, sample)
truth = outcomes(events, last, settings.horizons_days, feats.index)[f"churned_{horizon}d"]
revs = review_facts(reviews, last, set(sample))
agree = {"text": [], "user_vector": []}
for user in feats.index:
    phrase = snapshot_phrase(feats.loc[user], revs.loc[user] if user in revs.index else None)
    found = memory.search_text(phrase, k=10, horizon_days=horizon, exclude_user=user)["cases"]
    agree["text"] += [c["churned"] == bool(truth[user]) for c in found if "churned" in c]
got, vectors = predictor.user_vectors(events, last, users=list(feats.index))
for user, vector in zip(got, vectors):
    found = memory.search_vector(vector, k=10, horizon_days=horizon, exclude_user=user)["cases"]
    agree["user_vector"] += [c["churned"] == bool(truth[user]) for c in found if "churned" in c]
print(json.dumps({"cases": report["text_added"], "vectors": report["vectors_added"], "wall_s": wall, "cpu_s": cpu,
                  "queries": len(feats), "churn_base_rate": float(truth.mean()),
                  **{f"same_outcome_{k}": sum(v) / max(len(v), 1) for k, v in agree.items()}}))
"""


def run_variant(source: Path, users: int, out: Path, queries: int) -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, str(users), str(out), str(queries)], cwd=source,
                          capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(source)})
    if done.returncode:
        raise SystemExit(f"variant at {source} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=0, help="only the first N users (0 = all)")
    parser.add_argument("--baseline", default="5186e11", help="git revision to compare with, or 'none'")
    parser.add_argument("--queries", type=int, default=200, help="users sampled for the quality check")
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
            result = run_variant(source, args.users, tmp / f"chroma-{len(rows)}", args.queries)
            rows.append((name, result))
            print(f"{name}: {result}", flush=True)
    print(f"\n| build | cases | wall s | cases/s (wall) | CPU s | cases per CPU-s | same outcome, text | "
          f"same outcome, user vector |\n|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['cases']:,} | {r['wall_s']:.1f} | {r['cases'] / r['wall_s']:.0f} | {r['cpu_s']:.1f} "
              f"| {r['cases'] / r['cpu_s']:.0f} | {r['same_outcome_text']:.3f} | {r['same_outcome_user_vector']:.3f} |")
    r = rows[-1][1]
    print(f"\nquality: {r['queries']} users at the last cutoff, 10 neighbours each; "
          f"{r['churn_base_rate']:.3f} of them churned within the horizon (a random neighbour agrees with "
          f"probability {r['churn_base_rate'] ** 2 + (1 - r['churn_base_rate']) ** 2:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
