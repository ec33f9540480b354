"""Where the default study's time goes: training vs everything else.

Runs `python -m pipeline run --json` (the default study unless --study is given) --repeat times in one
fresh temporary directory: the first run creates the SQLite store (as a first run on a new machine does),
later runs reuse it (as a scheduled retrain does). For each run it prints:
- the process wall time (python start-up and imports included) and the study's own wall time;
- time inside xgboost training (every trial plus the final refit);
- the search phase's overhead: search wall time minus training time inside it, as a share;
- the whole command's overhead: process wall time minus all training, as a share.

    python benchmarks/overhead.py [--repeat N] [--max-evals N] [--study FILE]

One run on a shared machine is noisy: use --repeat and read the median.
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


def one_run(workdir: str, extra: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", "--json", "--no-progress", *extra],
                          cwd=workdir, env=env, capture_output=True, text=True, check=False)  # fmt: skip
    process_s = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"study failed ({done.returncode}):\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["process_s"] = process_s
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--max-evals", type=int)
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "flights.yaml")
    args = parser.parse_args()
    extra = ["--study", str(args.study.resolve())]
    if args.max_evals:
        extra += ["--max-evals", str(args.max_evals)]
    rows = []
    workdir = tempfile.mkdtemp(prefix="overhead-")
    for i in range(args.repeat):
        s = one_run(workdir, extra)
        train = s["search_train_s"] + s["final_train_s"]
        row = {
            "process_s": s["process_s"], "study_wall_s": s["wall_s"], "search_s": s["search_s"],
            "train_s": train, "search_overhead_pct": 100 * (s["search_s"] - s["search_train_s"]) / s["search_s"],
            "study_overhead_pct": 100 * (s["wall_s"] - train) / s["wall_s"],
            "process_overhead_pct": 100 * (s["process_s"] - train) / s["process_s"],
            "per_trial_overhead_ms": 1000 * (s["search_s"] - s["search_train_s"]) / s["trials"],
            "trials": s["trials"], "best_val": s["best_val_metric"], "test": s["test_metric"],
        }  # fmt: skip
        rows.append(row)
        store = "new store" if i == 0 else "existing store"
        print(f"run {i + 1} ({store}): " + ", ".join(f"{k}={v:.4g}" for k, v in row.items()), flush=True)
    if args.repeat > 2:
        warm = rows[1:]
        print(
            "median of runs on an existing store: "
            + ", ".join(f"{k}={statistics.median(r[k] for r in warm):.4g}" for k in warm[0])
        )
    print(f"metric: {s['metric']}; machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
