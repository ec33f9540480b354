"""What `run --continue-from` buys: a search that narrows its space half-way, keeping what it learnt,
against searches that spend the whole budget in one space from scratch.

Per seed, three arms, each in a fresh temporary directory (its own store and state), through the CLI:

- ``continued``: N trials in the wide space (the study's), then N more in the narrowed space with
  ``--continue-from`` (the wide study's expressible trials inherited, not re-run);
- ``wide``: 2N trials in the wide space from scratch;
- ``narrow``: 2N trials in the narrowed space from scratch.

It prints, per arm and seed, the best validation metric (RMSE on the default task), the test metric, the
trials inherited and the wall time of the arm's commands, then the medians; the raw trials of every study
(parameters, value, inherited or not, from the study's archived history) go to ``--output``.

    python benchmarks/continuation.py [--seeds 42 43 44] [--per-phase 15] [--study FILE] [--narrow FILE]

The narrowed space is ``--narrow``, by default ``benchmarks/tasks/flights_narrow.yaml``: the default space
with two parameters narrowed as a user would after a first look at its trials (learning_rate 0.02-0.1,
max_depth 8-12). Narrowing every parameter at once would leave almost no trial expressible (a random trial
lies inside the middle half of eight ranges one time in 256), and nothing to continue from. Seconds come from a shared
machine and are noisy: compare the medians on a quiet one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import cli_study

REPO = Path(__file__).resolve().parents[1]
LOG_KINDS = ("loguniform", "qloguniform")


def run(workdir: Path, study: Path, seed: int, *extra: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One ``python -m pipeline run`` in ``workdir``: its JSON summary and the trials of its archived history."""
    summary, lines = cli_study(workdir, "--study", str(study), "--seed", str(seed), "--study-name", "bench", *extra)
    trials = [
        {"number": t["number"], "params": t["outcome"]["params"], "value": t["outcome"]["value"],
         "ok": t["outcome"]["ok"], "pruned": t["outcome"]["pruned"],
         "inherited_from": t["outcome"].get("inherited_from", "")}
        for t in lines if t["type"] == "trial"
    ]  # fmt: skip
    return summary, trials


def arm(name: str, study: Path, narrow: Path, seed: int, per_phase: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"continuation-{name}-"))
    started = time.perf_counter()
    studies = []
    if name == "continued":
        studies.append(run(workdir, study, seed, "--max-evals", str(per_phase)))
        continued = ("--space", str(narrow), "--continue-from", "bench", "--max-evals", str(per_phase))
        studies.append(run(workdir, study, seed, *continued))
    else:
        space = ("--space", str(narrow)) if name == "narrow" else ()
        studies.append(run(workdir, study, seed, *space, "--max-evals", str(2 * per_phase)))
    wall_s = time.perf_counter() - started
    summary = studies[-1][0]
    return {
        "arm": name,
        "seed": seed,
        "best_val": summary["best_val_metric"],
        "test": summary["test_metric"],
        "inherited": summary.get("inherited_trials", 0),
        "dropped": len(summary.get("dropped_trials", [])),
        "wall_s": wall_s,
        "studies": [{"summary": s, "trials": t} for s, t in studies],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--per-phase", type=int, default=15, help="trials per phase; the arms from scratch run 2x")
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "flights.yaml")
    parser.add_argument("--narrow", type=Path, default=REPO / "benchmarks" / "tasks" / "flights_narrow.yaml")
    parser.add_argument("--output", type=Path, help="raw results (default: benchmarks/results/continuation-DATE.json)")
    args = parser.parse_args()
    study = args.study.resolve()
    narrow = args.narrow.resolve()
    rows = []
    for seed in args.seeds:
        for name in ("continued", "wide", "narrow"):
            row = arm(name, study, narrow, seed, args.per_phase)
            rows.append(row)
            print(f"seed {seed} {name:>9}: best val {row['best_val']:.4f}, test {row['test']:.4f}, inherited "
                  f"{row['inherited']}, dropped {row['dropped']}, {row['wall_s']:.1f} s", flush=True)  # fmt: skip
    print(f"\n| arm ({args.per_phase}+{args.per_phase} trials) | median best val | median test | median wall s |")
    print("|---|---|---|---|")
    for name in ("continued", "wide", "narrow"):
        mine = [r for r in rows if r["arm"] == name]
        med = {k: statistics.median(r[k] for r in mine) for k in ("best_val", "test", "wall_s")}
        print(f"| {name} | {med['best_val']:.4f} | {med['test']:.4f} | {med['wall_s']:.1f} |")
    output = args.output or REPO / "benchmarks" / "results" / f"continuation-{datetime.date.today()}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    output.write_text(json.dumps({"seeds": args.seeds, "per_phase": args.per_phase, "narrow": yaml.safe_load(
        narrow.read_text()), "machine": machine, "arms": rows}, indent=1, default=str))  # fmt: skip
    print(f"\nseeds {args.seeds}; machine: {os.cpu_count()} cores; raw trials in {output}")


if __name__ == "__main__":
    main()
