"""Stopping hopeless trials early: a median rule over boosting rounds, as Optuna's MedianPruner.

At each round past the warm-up, a trial's best validation value so far is compared with the median, at the
same round, of the trials that completed before it; worse than that median, it stops. A completed trial
that early-stopped before that round counts with its final best, since it had stopped improving.

The rule sees only finished trials' curves, which the study history holds, so a resumed study prunes
exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

MAXIMIZED_CURVES = frozenset({"auc", "aucpr", "map", "ndcg", "pre"})
"""xgboost eval metrics that grow as the model improves; every other one shrinks."""

RoundCheck = Callable[[int, float], bool]
"""Called after each boosting round with the round (0-based) and the validation value; True stops the trial."""


@dataclass(frozen=True)
class MedianRule:
    startup_trials: int = 5
    """Completed trials needed before any trial is pruned."""
    warmup_rounds: int = 50
    """Rounds every trial runs before it may be pruned (slow learners start badly)."""

    def checker(self, completed_curves: Sequence[Sequence[float]], curve_metric: str | None) -> RoundCheck | None:
        """The per-round check for the next trial, or None while too few trials completed to judge."""
        curves = [np.asarray(c, np.float64) for c in completed_curves if len(c)]
        if len(curves) < self.startup_trials or curve_metric is None:
            return None
        sign = -1.0 if curve_metric in MAXIMIZED_CURVES else 1.0
        median = np.median(_running_best_padded([sign * c for c in curves]), axis=0)
        best_so_far = np.inf
        warmup = self.warmup_rounds

        def check(round_: int, value: float) -> bool:
            nonlocal best_so_far
            best_so_far = min(best_so_far, sign * value)
            return bool(round_ >= warmup and best_so_far > median[min(round_, len(median) - 1)])

        return check


def _running_best_padded(losses: Sequence[np.ndarray]) -> np.ndarray:
    """Each curve's running minimum, carried forward to the longest curve's length."""
    width = max(len(c) for c in losses)
    rows = np.empty((len(losses), width))
    for row, curve in zip(rows, losses, strict=True):
        best = np.minimum.accumulate(curve)
        row[: len(best)] = best
        row[len(best) :] = best[-1]
    return rows
