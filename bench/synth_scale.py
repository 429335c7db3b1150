"""Benchmark of the demo shop generator: time, memory and the oracle against realized churn.

    .venv/bin/python bench/synth_scale.py                    # 5,000 and 100,000 users, seed 0
    .venv/bin/python bench/synth_scale.py --users 5000 --seed 1

Each size runs in a fresh subprocess so that peak RSS is that run's own. The churn table puts
the oracle beside a recency baseline (days since the user's last event, no fitting): the
oracle knows the latent engagement, so it should beat recency at every cutoff and horizon.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _one(n_users: int, seed: int) -> dict:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from tools.data.synth import DEMO_CUTOFFS, DEMO_HORIZONS_DAYS, generate_shop

    t0, c0 = time.perf_counter(), time.process_time()
    shop = generate_shop(n_users=n_users, seed=seed, progress=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = []
    ev = shop.events
    for cutoff in DEMO_CUTOFFS:
        last = ev[ev["ts"] <= cutoff].groupby("user_id")["ts"].max()
        for h in DEMO_HORIZONS_DAYS:
            p = shop.true_churn_probability(cutoff, h)
            y = shop.churn_labels(cutoff, h)["churned"].to_numpy()
            recency = (cutoff - last.loc[p["user_id"]]).dt.total_seconds().to_numpy()
            rows.append({"cutoff": str(cutoff.date()), "h": h, "n": len(p), "base_rate": float(y.mean()),
                         "oracle_mean_p": float(p["p_churn"].mean()),
                         "oracle_auc": float(roc_auc_score(y, p["p_churn"])),
                         "oracle_brier": float(np.mean((p["p_churn"].to_numpy() - y) ** 2)),
                         "recency_auc": float(roc_auc_score(y, recency))})
    return {"n_users": n_users, "seed": seed, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": rss_mb, "events": len(ev),
            "buys": int((ev["behavior"] == "buy").sum()), "reviews": len(shop.reviews), "churn": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[5000, 100_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.seed)))
        return
    results = []
    for n in args.users:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--seed", str(args.seed)],
                             check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    print("| users | generation s (wall) | CPU s | peak RSS MB | events | buys | reviews | events/s (wall) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['n_users']:,} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['events']:,} | {r['buys']:,} "
              f"| {r['reviews']:,} | {r['events'] / r['seconds']:,.0f} |")
    print("\n| users | cutoff | H | n | base rate | oracle mean p | oracle AUC | recency AUC | oracle Brier |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for c in r["churn"]:
            print(f"| {r['n_users']:,} | {c['cutoff']} | {c['h']} | {c['n']:,} | {c['base_rate']:.3f} "
                  f"| {c['oracle_mean_p']:.3f} | {c['oracle_auc']:.3f} | {c['recency_auc']:.3f} "
                  f"| {c['oracle_brier']:.3f} |")


if __name__ == "__main__":
    main()
