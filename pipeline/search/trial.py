"""One trial, from hyperopt's sampled values to its outcome and the record its MLflow run is written from.

Kept free of MLflow and hyperopt imports: a worker process (local or Spark) that runs trials imports only
this and the model families.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pipeline import families
from pipeline.config import MODEL_KEY
from pipeline.families import CrossValidation, Family, Fitted, TrainingData
from pipeline.metrics import Metric, Task
from pipeline.search.pruning import FoldPruning, PruningRule
from pipeline.spaces import SearchSpace


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    params: dict[str, Any]
    value: float
    """The validation metric at the best iteration (NaN for a failed trial); with k-fold cross-validation,
    the mean of the folds' values."""
    best_iteration: int | None
    """The last boosting round kept by early stopping (k-fold: the rounded mean over folds, which the final
    model trains for); None for a family without rounds or a failed trial."""
    run_id: str
    """The trial's child run; empty until its background write completed."""
    train_seconds: float
    ok: bool
    error: str | None = None
    pruned: bool = False
    """Stopped early by the pruning rule: ``value`` is its best so far, and it is never the study's best."""
    curve: list[float] = field(default_factory=list)
    """The early-stopping metric per round on the validation split, what later trials are pruned against
    (k-fold: its mean over folds, each carried at its last value past its end; pruning uses ``fold_curves``)."""
    warm_start: bool = False
    """It evaluated one of the study's warm-start points rather than a proposal of the algorithm."""
    inherited_from: str = ""
    """A continued study's copy of a source study's trial: the run that trained it (never re-trained here)."""
    fold_curves: list[list[float]] = field(default_factory=list)
    """k-fold cross-validation: ``curve`` per fold, for the folds it trained; empty for a single split. Kept
    in the study history, not on the child run (whose curve is their mean): a study rebuilt from the tracking
    store alone leaves its earlier k-fold trials out of the pruning rule's reference."""

    @property
    def curves_per_fold(self) -> list[list[float]]:
        """The validation curve of each fold: a single split's is ``curve``."""
        return self.fold_curves or [self.curve]


@dataclass
class TrialRecord:
    """Everything one trial logs, written in one create + batch + terminate sequence."""

    number: int
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, Sequence[float]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "FINISHED"
    start_ms: int = 0
    end_ms: int = 0


@dataclass
class Trainer:
    """Runs one trial from hyperopt's sampled values; picklable, so that a worker process can run it too.

    ``completed`` holds, per family, the learning rate and the validation curves (one per fold) of the
    trials that completed so far: what the pruning rule compares the next trial with, at equal learning
    progress. The driver adds to it as trials complete.

    With k-fold cross-validation (``data`` a ``CrossValidation``) a trial fits each fold in turn, stopping
    when one is pruned; its value is the mean of the folds' values and its best iteration their rounded
    mean, and its child run gets each fold's as ``<metric>_fold_<k>`` and ``best_iteration_fold_<k>``.
    """

    space: SearchSpace
    data: TrainingData | CrossValidation | None
    task: Task
    metric: Metric
    seed: int
    tags: dict[str, str]
    pruning: PruningRule | None = None
    device: str = "cpu"
    completed: dict[str, list[tuple[float, list[list[float]]]]] = field(default_factory=dict)
    train_curves: bool = False
    """Score the training split at every round too, for a train curve on each child run (see
    ``StudyConfig.train_curves``)."""

    def note_completed(self, outcome: TrialOutcome) -> None:
        if outcome.ok and not outcome.pruned and outcome.curve:
            family = families.get(str(outcome.params[MODEL_KEY]))
            rate = family.learning_rate(outcome.params)
            self.completed.setdefault(family.name, []).append((rate, outcome.curves_per_fold))

    def detached(self) -> Trainer:
        """This trainer for a worker: without the data (which a worker receives once) and with a copy of the
        pruning reference as it is now, which the driver goes on extending while the trial runs."""
        completed = {family: list(curves) for family, curves in self.completed.items()}
        return replace(self, data=None, completed=completed)

    def fold_pruning(self, family: Family, params: dict[str, Any], folds: int) -> FoldPruning | None:
        if self.pruning is None:
            return None
        curve_metric = self.metric.early_stopping.get(self.task.kind)
        completed = self.completed.get(family.name, [])
        curves, rates = [c for _, c in completed], [r for r, _ in completed]
        return self.pruning.over_folds(curves, curve_metric, folds, rates, family.learning_rate(params))

    def fit_folds(
        self, family: Family, params: dict[str, Any], folds: Sequence[TrainingData]
    ) -> list[tuple[Fitted, float]]:
        """Each fold's fit and validation value, in order; the folds after a pruned one are not fit. Raises
        FloatingPointError for a value that is not finite."""
        metric, task = self.metric, self.task
        pruning = self.fold_pruning(family, params, len(folds))
        fits = []
        for k, fold in enumerate(folds):
            check = pruning.check(k) if pruning else None
            fitted = family.fit(params, fold, task, metric.name, self.seed, check, self.train_curves)
            value = family.validation_score(fitted, fold, task, metric.name)
            if not math.isfinite(value):
                where = f" on fold {k}" if len(folds) > 1 else ""
                raise FloatingPointError(f"validation {metric.name} is {value}{where}")
            fits.append((fitted, value))
            if fitted.pruned:
                break
            if pruning is not None:
                pruning.finished(k, fitted.curve)
        return fits

    def __call__(self, number: int, values: dict[str, Any]) -> tuple[TrialOutcome, TrialRecord]:
        start_ms = now_ms()
        params = self.space.typed(values)
        record = TrialRecord(number=number, params=params, tags=dict(self.tags), start_ms=start_ms)
        metric, data = self.metric, self.data
        try:
            family = families.get(str(params[MODEL_KEY]))
            assert data is not None, "a worker's trainer receives its data before it runs a trial"
            params = record.params = family.placed(params, self.device)
            fits = self.fit_folds(family, params, data.folds)
        except Exception as exc:  # a bad trial must not end the study: recorded as FAILED, hyperopt told so
            return failed_trial(number, params, f"{type(exc).__name__}: {exc}", record)
        fitted = fits[-1][0]
        value = float(np.mean([v for _, v in fits]))
        best_iteration = mean_best_iteration([f.best_iteration for f, _ in fits])
        seconds = sum(f.seconds for f, _ in fits)
        curve, train_curve = mean_curve([f.curve for f, _ in fits]), mean_curve([f.train_curve for f, _ in fits])
        record.metrics = {"train_seconds": seconds}
        if fitted.pruned:  # its value is a best-so-far: kept off the metric so no ranking by it picks this run
            record.metrics |= {f"{metric.name}_when_pruned": value, "pruned_at_round": len(fitted.curve) - 1}
        else:
            record.metrics[metric.name] = value
        if fitted.stalled:
            record.metrics["stalled_at_round"] = len(fitted.curve) - 1
        if best_iteration is not None:
            record.metrics["best_iteration"] = best_iteration
        if len(data.folds) > 1:
            record.metrics |= fold_metrics(metric.name, fits)
        if curve:
            record.curves = {f"validation_{fitted.curve_metric}_curve": curve}
        if train_curve:
            record.curves[f"train_{fitted.curve_metric}_curve"] = train_curve
        record.tags["trial_state"] = "PRUNED" if fitted.pruned else "COMPLETE"
        _close(record)
        outcome = TrialOutcome(
            number=number,
            params=params,
            value=value,
            best_iteration=best_iteration,
            run_id="",
            train_seconds=seconds,
            ok=True,
            pruned=fitted.pruned,
            curve=curve,
            fold_curves=[list(f.curve) for f, _ in fits] if len(data.folds) > 1 else [],
        )
        return outcome, record


def fold_metric(name: str, fold: int) -> str:
    """The name of a fold's own value of metric ``name`` on a k-fold trial's run: ``rmse_fold_0``."""
    return f"{name}_fold_{fold}"


def fold_metrics(metric: str, fits: Sequence[tuple[Fitted, float]]) -> dict[str, float]:
    """Per fold that ran to its end, its value and best iteration; for a pruned trial, the fold it was
    pruned in (whose value so far counts only in ``<metric>_when_pruned``)."""
    out: dict[str, float] = {}
    for k, (fitted, value) in enumerate(fits):
        if fitted.pruned:
            out["pruned_at_fold"] = k
            continue
        out[fold_metric(metric, k)] = value
        if fitted.best_iteration is not None:
            out[fold_metric("best_iteration", k)] = fitted.best_iteration
    return out


def mean_best_iteration(best: Sequence[int | None]) -> int | None:
    """The folds' best iterations' rounded mean: the rounds the final model trains for on all the rows."""
    if not best or any(b is None for b in best):
        return None
    return round(sum(b for b in best if b is not None) / len(best))


def mean_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    """The per-round mean of the folds' curves, each carried at its last value past its end (a fold that
    early-stopped has stopped improving); one split's curve as it is, and none if a fold has none."""
    if len(curves) == 1 or not all(curves):
        return list(curves[0]) if len(curves) == 1 else []
    width = max(len(c) for c in curves)
    padded = np.array([[*c, *[c[-1]] * (width - len(c))] for c in curves], dtype=np.float64)
    return [float(v) for v in padded.mean(axis=0)]


def failed_trial(
    number: int, params: dict[str, Any], error: str, record: TrialRecord | None = None
) -> tuple[TrialOutcome, TrialRecord]:
    """A FAILED trial with its error as tags; ``record`` carries its start time when it started here."""
    record = record or TrialRecord(number=number, params=params, start_ms=now_ms())
    record.status = "FAILED"
    error_class, _, message = error.partition(": ")
    record.tags |= {"error_class": error_class, "error_message": message[:5000], "trial_state": "FAIL"}
    _close(record)
    outcome = TrialOutcome(number, params, math.nan, None, "", 0.0, ok=False, error=error)
    return outcome, record


def _close(record: TrialRecord) -> None:
    record.end_ms = now_ms()
    record.metrics["trial_seconds"] = (record.end_ms - record.start_ms) / 1000


def now_ms() -> int:
    return int(time.time() * 1000)
