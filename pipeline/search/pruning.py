"""Stopping trials early that will not win: an optimistic bound on each boosting curve, at equal learning progress.

At each round, a trial's best validation value so far, less what it may still gain, is compared with the
completed trials' values where they had made as much learning progress; worse than a quantile of those (a
third, by default: the trials that the search will model as good), the trial is pruned. Past a completed
trial's end its final best counts, since it had stopped improving.

Learning progress is rounds times the learning rate (the shrinkage of each tree): after round ``r`` a
trial with rate ``eta`` has added ``(r + 1) * eta`` of full trees. Optuna's MedianPruner compares trials at
the same round, which cuts exactly the slow learners that win on many tables: at round 50 a trial at rate
0.02 has come as far as one at rate 0.3 after 3 rounds. Trials with equal rates are compared round for round.

What a trial may still gain is ``fall_margin`` times what it gained over its last unit of progress (its
last ``1 / eta`` rounds). Comparing best-so-far values alone (a median rule) was measured to cut winners:
early on every curve falls from the same start at much the same pace, and which one is ahead at progress 1
or 2 says little about where it ends (on the flights table the final ranking settles near progress 4). A
curve still falling fast is kept however far behind it stands; one that has flattened is judged by where it
stands. Replayed over the full curves of unpruned studies, this cut none of a study's best fifth of trials,
where the median rule cut some of them, and saved as much time on a table whose trials refine for long.

A trial that trails the study's best and has not improved for ``stall_rounds`` rounds is stopped as
completed, not pruned: its value is its best round's, a real model's, as early stopping would have
returned it with a shorter patience. Early stopping's own patience (``early_stopping_rounds``) still
applies to the trials that lead: those are the ones worth the wait. (Its effect on the default study: a
third of every trial's rounds were the patience after its best round.)

With k-fold cross-validation a trial trains its folds one after the other, and the rule must not stop it on
one bad fold: its value is the mean over folds, and one fold is exactly the noise cross-validation averages
away. So each fold is compared with the same fold of the completed trials (the same rows: a fold that is
hard for every trial counts against none), and a trial is stopped only when two folds say so: during a
fold it is worse on, after it finished an earlier fold worse than the completed trials' median there. One
bad fold, however bad, never stops a trial, and its mean decides; a trial worse on every fold is stopped in
its second fold, which saves up to (k - 2) / k of its cost. Folds run their full patience (no stall stop):
a fold's best trails or leads the study on other rows than the trial's value.

The rule sees only finished trials' curves, which the study history holds, so a resumed study prunes
exactly as an uninterrupted one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

MAXIMIZED_CURVES = frozenset({"auc", "aucpr", "map", "ndcg", "pre"})
"""xgboost eval metrics that grow as the model improves; every other one shrinks."""


class Stop(enum.Enum):
    """Why a trial stops before its own early stopping would."""

    PRUNED = "pruned"
    """It would not be among the good trials: recorded as pruned, never the study's best."""
    STALLED = "stalled"
    """It trails the study's best and stopped improving: completed, with its best round's value."""


RoundCheck = Callable[[int, float], Stop | None]
"""Called after each boosting round with the round (0-based) and the validation value; a Stop ends the trial."""


@dataclass(frozen=True)
class PruningRule:
    startup_trials: int = 5
    """Completed trials needed before any trial is stopped."""
    warmup_rounds: int = 0
    """Rounds every trial runs before it may be stopped."""
    quantile: float = 0.33
    """The share of the completed trials (at equal progress) that a trial's bound must stay within."""
    fall_margin: float = 2.0
    """How many times its last unit of progress's gain a trial may still gain (0: its best so far alone)."""
    stall_rounds: int | None = 10
    """Rounds without improvement after which a trial that trails the study's best stops (None: never)."""

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
        incumbent = float(running[:, -1].min())
        speed = rate / np.array([r for _, r in kept], np.float64)
        """Rounds of each completed trial per round of this one, for the same learning progress."""
        unit = max(1, round(1 / rate)) if rate > 0 else 1  # learning_rate 0 (allowed by xgboost) learns nothing
        """This trial's rounds per unit of learning progress: the window its recent gain is measured over."""
        bests: list[float] = []
        margin, stall, warmup = self.fall_margin, self.stall_rounds, self.warmup_rounds
        since_improved = 0
        bars = np.empty(0)
        """Per round of this trial, the value its bound must not be worse than: computed for a block of
        rounds at once (a quantile per round cost 23-27 µs, up to 2 % of a boosting round on diamonds)."""

        def bar(round_: int) -> float:
            nonlocal bars
            if round_ >= len(bars):
                more = range(len(bars), max(2 * len(bars), round_ + 1, BAR_BLOCK))
                bars = np.concatenate([bars, _quantiles_at_progress(running, speed, last, self.quantile, more)])
            return float(bars[round_])

        def check(round_: int, value: float) -> Stop | None:
            nonlocal since_improved
            previous = bests[-1] if bests else np.inf
            bests.append(min(previous, sign * value))
            since_improved = 0 if bests[-1] < previous else since_improved + 1
            if round_ < warmup:
                return None
            if len(bests) > unit or margin == 0:  # its gain is measured once it has run one unit of progress
                gain = bests[-1 - unit] - bests[-1] if len(bests) > unit else 0.0
                if bests[-1] - margin * gain > bar(round_):
                    return Stop.PRUNED
            if stall is not None and since_improved >= stall and bests[-1] > incumbent:
                return Stop.STALLED
            return None

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
        rule = self if folds == 1 else replace(self, stall_rounds=None)
        checks = [rule.checker([trial[k] for trial in usable], curve_metric, usable_rates, rate) for k in range(folds)]
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
    """Per fold, the rule against that fold's curves of the completed trials."""
    final_medians: list[float]
    """Per fold, the median of the completed trials' best values on it (as losses: times ``sign``)."""
    sign: float
    worse_folds: int = 0
    """Folds this trial finished worse than the completed trials' median on them."""

    def check(self, fold: int) -> RoundCheck:
        """The per-round check of ``fold``: the rule, once an earlier fold finished worse (at once for a
        single split)."""
        rule = self.checks[fold]
        if len(self.checks) == 1:
            return rule

        def check(round_: int, value: float) -> Stop | None:
            worse = rule(round_, value)  # called every round: it keeps the fold's best so far
            return worse if worse is not None and self.worse_folds > 0 else None

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


BAR_BLOCK = 256
"""Rounds whose pruning bars are computed at once (then twice as many as so far, as a trial runs on)."""


def _quantiles_at_progress(
    running: np.ndarray, speed: np.ndarray, last: np.ndarray, quantile: float, rounds: range
) -> np.ndarray:
    """For each of a trial's ``rounds``: the ``quantile`` of the completed trials' best-so-far values (rows of
    ``running``) where each had made as much learning progress (it runs ``speed`` of its rounds per round of
    this trial; past its ``last`` round, its final best)."""
    after = np.arange(rounds.start + 1, rounds.stop + 1, dtype=np.float64)  # rounds run, after each round
    at = np.clip(np.floor(np.outer(after, speed)).astype(np.int64) - 1, 0, last)
    return np.quantile(running[np.arange(len(running)), at], quantile, axis=1)


def _running_best_padded(losses: Sequence[np.ndarray]) -> np.ndarray:
    """Each curve's running minimum, carried forward to the longest curve's length."""
    width = max(len(c) for c in losses)
    rows = np.empty((len(losses), width))
    for row, curve in zip(rows, losses, strict=True):
        best = np.minimum.accumulate(curve)
        row[: len(best)] = best
        row[len(best) :] = best[-1]
    return rows
