"""Which trials would a pruning rule cut? Rules replayed over the full curves of unpruned studies.

A closed-loop comparison (a study with the rule against one without) mixes two effects: what the rule cuts,
and how TPE's later proposals change once it is told other values. Over a few seeds the second drowns the
first. This benchmark isolates the first: it runs each task's study with pruning off (`--collect`), keeps
every trial's full validation curve, learning rate and training seconds, then replays each rule over those
trials in their order, as the study would have met them (a trial the rule stops does not join the completed
trials later ones are compared with; a trial stopped as stalled does, with its curve cut there). Per rule
and task it prints:

- `best`: the study's best validation value among trials the rule let complete (median over seeds);
- `lost best`: studies whose best trial the rule cut;
- `good cut`: trials among their study's best fifth (by final value) that the rule cut, over all seeds;
- `time`: training seconds left, as a share of the unpruned study's (each trial's seconds prorated by the
  rounds it ran; median over seeds);
- `check`: what the rule itself costs per round a trial runs, in microseconds (building its reference from
  the completed trials included; this process's clock, over all seeds), to compare with a boosting round's
  milliseconds.

    .venv/bin/python benchmarks/pruning_replay.py --collect [--tasks flights,diamonds,mortgages] [--seeds 5]
    .venv/bin/python benchmarks/pruning_replay.py [--curves FILE.json.gz]

Collecting runs the studies through the CLI: run it on a quiet machine if the seconds matter (the replay's
time shares are prorated from them); the curves and values do not depend on the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gzip
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import cli_study, provenance
from quality import REPO, TASKS, materialize, study_file

from pipeline import config, data
from pipeline.metrics import METRICS
from pipeline.search.pruning import MAXIMIZED_CURVES, PruningRule, Stop

RESULTS = REPO / "benchmarks" / "results"
RULES = {
    "median at equal progress (until 2026-11-29)": PruningRule(5, 50, quantile=0.5, fall_margin=0.0, stall_rounds=None),
    "default": PruningRule(),
    "no stall stop": PruningRule(stall_rounds=None),
    "fall_margin 1": PruningRule(fall_margin=1.0),
    "quantile 0.5": PruningRule(quantile=0.5),
    "quantile 0.25": PruningRule(quantile=0.25),
    "quantile 0.2": PruningRule(quantile=0.2),
    "stall_rounds 5": PruningRule(stall_rounds=5),
}
"""The rules replayed: the median rule the pipeline had, its default now, and one knob changed at a time."""


def collect(tasks: Sequence[str], seeds: Sequence[int], trials: int, path: Path) -> None:
    """Each task's study with pruning off, per seed; every trial's curve, rate and seconds, to ``path``."""
    studies = []
    for task in tasks:
        materialize(task)
        study_config = config.load_study(TASKS[task])
        kind = data.load_dataset(config.load_dataset(study_config.dataset), study_config.dataset).task.kind
        curve_metric = METRICS[study_config.metric].early_stopping[kind]
        for seed in seeds:
            workdir = Path(tempfile.mkdtemp(prefix=f"replay-{task}-"))
            study = study_file(task, workdir, {"pruning": {"enabled": False}})
            args = ("--study", str(study), "--seed", str(seed), "--max-evals", str(trials))
            summary, history = cli_study(workdir, *args)
            outcomes = [line["outcome"] for line in history if line.get("type") == "trial"]
            studies.append({"task": task, "seed": seed, "curve_metric": curve_metric, "trials": [
                {"curve": o["curve"], "rate": o["params"].get("learning_rate", 0.3), "seconds": o["train_seconds"]}
                for o in outcomes if o["ok"]
            ]})  # fmt: skip
            print(f"{task} seed {seed}: best {summary['best_val_metric']:.5g}, search {summary['search_s']:.0f} s")
    meta = provenance(list(seeds), trials, 0, 0)
    path.write_bytes(gzip.compress(json.dumps({"meta": meta, "studies": studies}).encode()))
    print(f"wrote {path}")


@dataclasses.dataclass
class Replayed:
    best: float
    """Best final value (as a loss) among the trials the rule let complete."""
    seconds: float
    full_seconds: float
    lost_best: bool
    good_cut: int
    check_seconds: float
    """Spent in the rule: building each trial's check and calling it at each round the trial ran."""
    rounds: int


def replay(rule: PruningRule, trials: list[dict[str, Any]], curve_metric: str) -> Replayed:
    """One study's trials, in order, met by ``rule``."""
    sign = -1.0 if curve_metric in MAXIMIZED_CURVES else 1.0
    finals = sorted(sign * min(sign * np.asarray(t["curve"])) for t in trials)
    good = finals[len(finals) // 5]
    completed: list[tuple[list[float], float]] = []
    best, seconds, full, good_cut, checking, rounds = np.inf, 0.0, 0.0, 0, 0.0, 0
    for trial in trials:
        curve, rate = trial["curve"], trial["rate"]
        started = time.perf_counter()
        check = rule.checker([c for c, _ in completed], curve_metric, [r for _, r in completed], rate)
        stop, ran = None, len(curve)
        for round_, value in enumerate(curve):
            if check is not None and (stop := check(round_, value)) is not None:
                ran = round_ + 1
                break
        checking += time.perf_counter() - started
        rounds += ran
        full += trial["seconds"]
        seconds += trial["seconds"] * ran / len(curve)
        if stop is Stop.PRUNED:
            good_cut += min(sign * np.asarray(curve)) <= good
            continue
        completed.append((curve[:ran], rate))
        best = min(best, float(min(sign * np.asarray(curve[:ran]))))
    return Replayed(best, seconds, full, best > finals[0], good_cut, checking, rounds)


def report(path: Path) -> None:
    studies = json.loads(gzip.decompress(path.read_bytes()))["studies"]
    print(f"curves: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}\n")
    print("| task | rule | best (median) | lost best | good cut | time share (median) | check µs/round |")
    print("|---|---|---|---|---|---|---|")
    for task in dict.fromkeys(s["task"] for s in studies):
        group = [s for s in studies if s["task"] == task]
        for name, rule in RULES.items():
            done = [replay(rule, s["trials"], s["curve_metric"]) for s in group]
            best = statistics.median(r.best for r in done)
            share = statistics.median(r.seconds / r.full_seconds for r in done)
            check_us = 1e6 * sum(r.check_seconds for r in done) / sum(r.rounds for r in done)
            print(
                f"| {task} ({len(group)} seeds) | {name} | {best:.5g} | {sum(r.lost_best for r in done)}/{len(done)} "
                f"| {sum(r.good_cut for r in done)} | {share:.2f} | {check_us:.1f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collect", action="store_true", help="run the unpruned studies and keep their curves")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N")
    parser.add_argument("--trials", type=int, default=30)
    default = RESULTS / f"curves-{datetime.date.today().isoformat()}.json.gz"
    parser.add_argument("--curves", type=Path, help=f"kept curves (default: the newest {RESULTS.name}/curves-*)")
    args = parser.parse_args()
    if args.collect:
        collect(args.tasks.split(","), range(1, args.seeds + 1), args.trials, args.curves or default)
    path = args.curves or max(RESULTS.glob("curves-*.json.gz"), default=default)
    report(path)


if __name__ == "__main__":
    main()
