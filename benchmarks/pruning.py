"""What pruning saves: the default study with and without the median rule, over several seeds.

For each seed it runs `python -m pipeline run --pruning` and `--no-pruning` (interleaved, in one fresh
temporary directory each, so both pay the same store costs) and prints, per mode, the best validation and
test metric, the trials pruned, the boosting rounds trained over all trials (read from the study's
archived history: a count that does not depend on the machine's load) and the search wall time.

    python benchmarks/pruning.py [--seeds 42 43 44] [--max-evals N] [--study FILE]

Rounds are exact; seconds come from a shared machine and are noisy: compare the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import cli_study

REPO = Path(__file__).resolve().parents[1]


def one_study(study: Path, seed: int, pruning: bool, max_evals: int | None) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="pruning-"))
    arguments = ["--study", str(study), "--seed", str(seed), "--pruning" if pruning else "--no-pruning"]
    if max_evals:
        arguments += ["--max-evals", str(max_evals)]
    summary, trials = cli_study(workdir, *arguments)
    rounds = sum(len(t["outcome"]["curve"]) for t in trials if t["type"] == "trial")
    return {
        "best_val": summary["best_val_metric"],
        "test": summary["test_metric"],
        "pruned": summary["trials_pruned"],
        "rounds": rounds,
        "search_s": summary["search_s"],
        "search_train_s": summary["search_train_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--max-evals", type=int)
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "flights.yaml")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"pruning": [], "no pruning": []}
    for seed in args.seeds:
        for mode, pruning in (("pruning", True), ("no pruning", False)):
            row = one_study(args.study.resolve(), seed, pruning, args.max_evals)
            results[mode].append(row)
            print(f"seed {seed} {mode:>10}: " + ", ".join(f"{k}={v:.4g}" for k, v in row.items()), flush=True)
    print("\n| mode | median best val | median test | median pruned | median rounds | median search s |")
    print("|---|---|---|---|---|---|")
    for mode, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"| {mode} | {med['best_val']:.3f} | {med['test']:.3f} | {med['pruned']:.0f} | {med['rounds']:.0f} "
              f"| {med['search_s']:.1f} |")  # fmt: skip
    print(f"\nseeds {args.seeds}; machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
