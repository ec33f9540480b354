"""Stopping hopeless trials early: a median rule over boosting rounds, at equal learning progress.

At each round past the warm-up, a trial's best validation value so far is compared with the median of the
trials that completed before it, each read where it had made as much learning progress; worse than that
median, it stops. A completed trial that early-stopped before that point counts with its final best, since
it had stopped improving.

Learning progress is rounds times the learning rate (the shrinkage of each tree): after round ``r`` a
trial with rate ``eta`` has added ``(r + 1) * eta`` of full trees. Optuna's MedianPruner compares trials at
the same round, which cuts exactly the slow learners that win on many tables: at round 50 a trial at rate
0.02 has come as far as one at rate 0.3 after 3 rounds, and its error is still high. Read at equal progress
it competes with where the fast trials stood after 3 rounds, and a fast trial past its competitors' ends
is compared with their final bests. Trials with equal rates are compared at the same round, as before.

With k-fold cross-validation a trial trains its folds one after the other, and the rule must not stop it on
one bad fold: its value is the mean over folds, and one fold is exactly the noise cross-validation averages
away. So each fold is compared with the same fold of the completed trials (the same rows: a fold that is
hard for every trial counts against none), and a trial is stopped only when two folds say so: during a
fold it is worse on, after it finished an earlier fold worse than the completed trials' median there. One
bad fold, however bad, never stops a trial, and its mean decides; a trial worse on every fold is stopped in
its second fold, which saves up to (k - 2) / k of its cost. The running mean over the folds done so far was
not chosen: until the second fold starts it is the first fold alone, so it stops a trial on one bad fold,
and a mean that outweighs one fold (three folds or more) comes too late to save much.

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

    def checker(
        self,
        completed_curves: Sequence[Sequence[float]],
        curve_metric: str | None,
        rates: Sequence[float] | None = None,
        rate: float = 1.0,
    ) -> RoundCheck | None:
        """The per-round check for the next trial, whose learning rate is ``rate``, given the completed
        trials' curves and their learning rates (``rates``; None: all at ``rate``). None while too few trials
        completed to judge."""
        every = rates if rates is not None else [rate] * len(completed_curves)
        kept = [(np.asarray(c, np.float64), r) for c, r in zip(completed_curves, every, strict=True)]
        kept = [(c, r) for c, r in kept if len(c)]
        if len(kept) < self.startup_trials or curve_metric is None:
            return None
        sign = _sign(curve_metric)
        running = _running_best_padded([sign * c for c, _ in kept])
        last = np.array([len(c) - 1 for c, _ in kept])
        speed = rate / np.array([r for _, r in kept], np.float64)
        """Rounds of each completed trial per round of this one, for the same learning progress."""
        rows = np.arange(len(kept))
        best_so_far = np.inf
        warmup = self.warmup_rounds

        def check(round_: int, value: float) -> bool:
            nonlocal best_so_far
            best_so_far = min(best_so_far, sign * value)
            if round_ < warmup:
                return False
            at = np.clip(np.floor((round_ + 1) * speed).astype(np.int64) - 1, 0, last)
            return bool(best_so_far > np.median(running[rows, at]))

        return check

    def over_folds(
        self,
        completed: Sequence[Sequence[Sequence[float]]],
        curve_metric: str | None,
        folds: int,
        rates: Sequence[float] | None = None,
        rate: float = 1.0,
    ) -> FoldPruning | None:
        """The checks for the next trial's ``folds`` folds, given each completed trial's curve per fold (a
        single split is one fold) and learning rate (see ``checker``); trials with another number of folds,
        or a fold without a curve, do not count. None while too few trials completed to judge."""
        pairs = zip(completed, rates if rates is not None else [rate] * len(completed), strict=True)
        usable, usable_rates = [], []
        for trial, trial_rate in pairs:
            if len(trial) == folds and all(len(c) for c in trial):
                usable.append(trial)
                usable_rates.append(trial_rate)
        checks = [self.checker([trial[k] for trial in usable], curve_metric, usable_rates, rate) for k in range(folds)]
        if curve_metric is None or any(check is None for check in checks):
            return None
        sign = _sign(curve_metric)
        medians = [float(np.median([_best(trial[k], sign) for trial in usable])) for k in range(folds)]
        return FoldPruning([c for c in checks if c is not None], medians, sign)


@dataclass
class FoldPruning:
    """One trial's pruning over its folds (see the module docstring): ``check(k)`` during fold ``k``, then
    ``finished(k, curve)`` once it ran to its end."""

    checks: list[RoundCheck]
    """Per fold, the median rule against that fold's curves of the completed trials."""
    final_medians: list[float]
    """Per fold, the median of the completed trials' best values on it (as losses: times ``sign``)."""
    sign: float
    worse_folds: int = 0
    """Folds this trial finished worse than the completed trials' median on them."""

    def check(self, fold: int) -> RoundCheck:
        """The per-round check of ``fold``: the median rule, once an earlier fold finished worse (at once for
        a single split)."""
        rule = self.checks[fold]
        if len(self.checks) == 1:
            return rule

        def check(round_: int, value: float) -> bool:
            worse = rule(round_, value)  # called every round: it keeps the fold's best so far
            return worse and self.worse_folds > 0

        return check

    def finished(self, fold: int, curve: Sequence[float]) -> None:
        """Note a fold that ran to its end: worse than the median there, it is the trial's first strike."""
        if len(curve) and _best(curve, self.sign) > self.final_medians[fold]:
            self.worse_folds += 1


def _sign(curve_metric: str) -> float:
    """-1 for a curve that grows as the model improves, so that every curve reads as a loss."""
    return -1.0 if curve_metric in MAXIMIZED_CURVES else 1.0


def _best(curve: Sequence[float], sign: float) -> float:
    """A curve's best value, as a loss."""
    return float(np.min(sign * np.asarray(curve, np.float64)))


def _running_best_padded(losses: Sequence[np.ndarray]) -> np.ndarray:
    """Each curve's running minimum, carried forward to the longest curve's length."""
    width = max(len(c) for c in losses)
    rows = np.empty((len(losses), width))
    for row, curve in zip(rows, losses, strict=True):
        best = np.minimum.accumulate(curve)
        row[: len(best)] = best
        row[len(best) :] = best[-1]
    return rows
