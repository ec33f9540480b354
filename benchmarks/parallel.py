"""Trials per minute, one at a time against several at once on Spark (hyperopt's SparkTrials, local mode).

Runs the default study (or --study) with `--parallelism 1` and `--parallelism N` (interleaved, --repeat
times, each in a new temporary directory) and prints each run's search wall time, trials per minute of
search and best validation metric, then the median speed-up. Pruning is off by default so that both
modes train the same amount (`--pruning` keeps it on).

    python benchmarks/parallel.py [--workers 2] [--repeat 2] [--max-evals N] [--pruning] [--study FILE]

Needs pyspark (pip install -e '.[spark]'). The parallel runs' search time includes starting the Spark
session (a few seconds), as a user pays it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_study(study: Path, workers: int, max_evals: int | None, pruning: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [sys.executable, "-m", "pipeline", "run", "--json", "--no-progress", "--study", str(study),
               "--parallelism", str(workers), "--pruning" if pruning else "--no-pruning"]  # fmt: skip
    if max_evals:
        command += ["--max-evals", str(max_evals)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=tempfile.mkdtemp(prefix="parallel-"), env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"study failed ({done.returncode}):\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "process_s": time.perf_counter() - started,
        "search_s": summary["search_s"],
        "trials_per_min": 60 * (summary["trials"] + summary["trials_failed"]) / summary["search_s"],
        "train_s": summary["search_train_s"],
        "best_val": summary["best_val_metric"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--max-evals", type=int)
    parser.add_argument("--pruning", action="store_true")
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "flights.yaml")
    args = parser.parse_args()
    rows: dict[int, list[dict]] = {1: [], args.workers: []}
    for i in range(args.repeat):
        for workers in rows:
            row = one_study(args.study.resolve(), workers, args.max_evals, args.pruning)
            rows[workers].append(row)
            print(f"run {i + 1}, parallelism {workers}: " + ", ".join(f"{k}={v:.4g}" for k, v in row.items()),
                  flush=True)  # fmt: skip
    serial, parallel = (statistics.median(r["trials_per_min"] for r in rows[w]) for w in rows)
    print(f"median trials per minute of search: {serial:.1f} one at a time, {parallel:.1f} with {args.workers} "
          f"workers: {parallel / serial:.2f}x; machine: {os.cpu_count()} cores")  # fmt: skip


if __name__ == "__main__":
    main()
