"""How often must a trial score its validation split? Early stopping replayed at coarser scoring intervals.

Scoring the validation split is not training, yet it measured 30-50 % of a boosting round on our tables
(xgboost predicts each new tree on the validation rows and computes the metric over all of them). The
pipeline scores once per `SCORING_PROGRESS` of learning progress (`pipeline.families.xgboost
.scoring_interval`). This replays early stopping (the trial's own `early_stopping_rounds`, 50 in these
studies) over the full every-round curves of the unpruned studies that `pruning_replay.py --collect` kept,
scoring only every `scoring_interval(rate, progress)` rounds, and prints per task and progress:

- `study best shift`: how much worse each study's best value gets, relative to itself (median and max
  over seeds): what the search loses;
- `worst trial shift`: the largest relative change of one trial's value;
- `scorings per round`: scorings left, per round trained (1 when every round is scored);
- `rounds`: rounds trained, as a share of every-round scoring's (a stop can come earlier).

    .venv/bin/python benchmarks/scoring_replay.py [--curves FILE.json.gz]

The replay reads stored curves only: its figures do not depend on the machine or its load.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.families.xgboost import SCORING_PROGRESS, scoring_interval
from pipeline.search.pruning import MAXIMIZED_CURVES

CURVES = Path(__file__).resolve().parent / "results" / "curves-2026-11-29.json.gz"
PROGRESS = (0.0, 0.1, SCORING_PROGRESS, 0.3, 0.5)
PATIENCE = 50


def replay(curve: Sequence[float], every: int, patience: int = PATIENCE) -> tuple[float, int, int]:
    """Early stopping over a loss curve scored every ``every`` rounds (and at its last): the kept value,
    the rounds trained and the scorings made."""
    best, best_round, scorings = np.inf, 0, 0
    for round_, value in enumerate(curve):
        if round_ % every == 0 or round_ == len(curve) - 1:
            scorings += 1
            if value < best:
                best, best_round = value, round_
        if round_ - best_round >= patience:
            return best, round_ + 1, scorings
    return best, len(curve), scorings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--curves", type=Path, default=CURVES)
    with gzip.open(parser.parse_args().curves) as stored:
        studies = json.load(stored)["studies"]
    print("| task | progress | study best shift (median / max) | worst trial shift | scorings per round | rounds |")
    print("|---|---|---|---|---|---|")
    for task in dict.fromkeys(s["task"] for s in studies):
        for progress in PROGRESS:
            best_shifts, trial_shifts, scorings, rounds, full_rounds = [], [], 0, 0, 0
            for study in (s for s in studies if s["task"] == task):
                sign = -1.0 if study["curve_metric"] in MAXIMIZED_CURVES else 1.0
                kept, exact = [], []
                for trial in study["trials"]:
                    losses = sign * np.asarray(trial["curve"], np.float64)
                    every = scoring_interval(trial["rate"], progress) if progress else 1
                    value, trained, scored = replay(losses, every)
                    kept.append(value)
                    exact.append(float(losses.min()))
                    trial_shifts.append(abs(value - exact[-1]) / abs(exact[-1]))
                    scorings, rounds, full_rounds = scorings + scored, rounds + trained, full_rounds + len(losses)
                best_shifts.append((min(kept) - min(exact)) / abs(min(exact)))
            print(
                f"| {task} | {progress or 'every round'} | {statistics.median(best_shifts):.1e} / "
                f"{max(best_shifts):.1e} | {max(trial_shifts):.1e} | {scorings / rounds:.2f} | "
                f"{rounds / full_rounds:.3f} |"
            )


if __name__ == "__main__":
    main()
