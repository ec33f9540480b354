"""Parallel trials: throughput of each engine on the default study, and each engine's per-trial overhead.

Engines: one trial at a time (`--parallelism 1`), local worker processes (`--parallelism 2`), and Spark
in local mode (`--parallelism 2 --spark-master 'local[2]'`, skipped without pyspark).

(a) Throughput: the default study (or --study; --max-evals trials, 30 by default; pruning off so that every
engine trains the same amount) once per engine, interleaved, --repeat times, each in a new temporary
directory and store. Prints search wall time, trials per minute of search and best validation metric.

(b) Per-trial overhead: trials that do almost no work (one boosting round on tests/quirks/integer_gaps.csv,
300 rows), run with --small and --large budgets; the difference cancels what an engine pays once (worker
start-up, a Spark session). Overhead per trial = (slots x extra search wall time - extra training time)
/ extra trials: the seconds of a trial slot not spent training, per trial.

Every trial's figures (number, train seconds, value, status) and each run's timings go to
benchmarks/results/parallel-<date>.json.

    python benchmarks/parallel.py [--max-evals 30] [--repeat 1] [--small 10] [--large 40] [--study FILE]

Runs studies in this process (pipeline.Study), as a notebook would: the first Spark run pays the session's
start, as a user does. Tiny settings (`--max-evals 4 --small 2 --large 4`) only check that it works.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402

ENGINES: dict[str, dict[str, Any]] = {
    "serial": {"parallelism": 1},
    "local[2 processes]": {"parallelism": 2},
    "spark local[2]": {"parallelism": 2, "spark_master": "local[2]"},
}
TINY_SPACE = {
    "model": "xgboost",
    "parameters": {
        "max_depth": {"distribution": "quniform", "low": 2, "high": 6, "q": 1},
        "learning_rate": {"distribution": "loguniform", "low": 0.01, "high": 0.3},
        "min_child_weight": {"distribution": "loguniform", "low": 0.5, "high": 20},
        "num_boost_round": 1,
    },
}
TINY_DATASET = REPO / "tests" / "quirks" / "integer_gaps.yaml"


def one_study(study: Path, keywords: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A fresh study in a new folder and store; its timings and its trials' figures."""
    folder = Path(tempfile.mkdtemp(prefix="parallel-"))
    result = pipeline.Study.from_file(
        study, tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", state_dir=folder / "state", progress=False,
        pruning=False, **keywords, **overrides,
    ).run()  # fmt: skip
    summary = result.to_dict()
    trials = [{"number": t.number, "train_s": t.train_seconds, "value": t.value, "ok": t.ok} for t in result.trials]
    return {
        "search_s": summary["search_s"],
        "search_train_s": summary["search_train_s"],
        "trials_per_min": 60 * len(trials) / summary["search_s"],
        "best_val": summary["best_val_metric"],
        "trials": trials,
    }


def overhead(engine: str, small: dict[str, Any], large: dict[str, Any]) -> float:
    """Seconds of a trial slot not spent training, per trial, from two budgets of trivial trials."""
    slots = ENGINES[engine]["parallelism"]
    extra_wall = large["search_s"] - small["search_s"]
    extra_train = large["search_train_s"] - small["search_train_s"]
    return (slots * extra_wall - extra_train) / (len(large["trials"]) - len(small["trials"]))


def tiny_study(folder: Path) -> Path:
    """A study of one-round trials on a 300-row table."""
    space, study = folder / "space.yaml", folder / "study.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    study.write_text(yaml.safe_dump({"name": "tiny", "experiment": "tiny", "dataset": str(TINY_DATASET),
                                     "space": str(space), "model_name": "tiny", "report": False}))  # fmt: skip
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-evals", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--small", type=int, default=10, help="trivial trials in the smaller overhead run")
    parser.add_argument("--large", type=int, default=40, help="trivial trials in the larger overhead run")
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "flights.yaml")
    args = parser.parse_args()
    engines = [e for e in ENGINES if "spark_master" not in ENGINES[e] or importlib.util.find_spec("pyspark")]
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    for i in range(args.repeat):
        for engine in engines:
            row = one_study(args.study.resolve(), ENGINES[engine], max_evals=args.max_evals)
            runs[engine].append(row)
            print(f"throughput, run {i + 1}, {engine}: search {row['search_s']:.1f} s, {row['trials_per_min']:.1f} "
                  f"trials/min, best {row['best_val']:.4f}", flush=True)  # fmt: skip
    tiny = tiny_study(Path(tempfile.mkdtemp(prefix="parallel-tiny-")))
    overheads: dict[str, dict[str, Any]] = {}
    for engine in engines:
        small, large = (one_study(tiny, ENGINES[engine], max_evals=n) for n in (args.small, args.large))
        overheads[engine] = {"per_trial_s": overhead(engine, small, large), "small": small, "large": large}
        print(f"overhead, {engine}: {overheads[engine]['per_trial_s'] * 1000:.0f} ms per trial", flush=True)
    print(f"median trials per minute of search ({args.max_evals} trials, {os.cpu_count()} cores): " + ", ".join(
        f"{e} {statistics.median(r['trials_per_min'] for r in runs[e]):.1f}" for e in engines))  # fmt: skip
    out = REPO / "benchmarks" / "results" / f"parallel-{datetime.date.today()}.json"
    out.write_text(json.dumps({"cores": os.cpu_count(), "max_evals": args.max_evals, "throughput": runs,
                               "overhead": overheads}, indent=1))  # fmt: skip
    print(f"raw figures: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
