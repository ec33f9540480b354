"""One trial, from hyperopt's sampled values to its outcome and the record its MLflow run is written from.

Kept free of MLflow and hyperopt imports: a Spark worker that runs trials imports only this and the
model families.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline import families
from pipeline.config import MODEL_KEY
from pipeline.families import TrainingData
from pipeline.metrics import Metric, Task
from pipeline.search.pruning import MedianRule, RoundCheck
from pipeline.spaces import SearchSpace


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    params: dict[str, Any]
    value: float
    """The validation metric at the best iteration (NaN for a failed trial)."""
    best_iteration: int | None
    """The last boosting round kept by early stopping; None for a family without rounds or a failed trial."""
    run_id: str
    """The trial's child run; empty until its background write completed."""
    train_seconds: float
    ok: bool
    error: str | None = None
    pruned: bool = False
    """Stopped early by the pruning rule: ``value`` is its best so far, and it is never the study's best."""
    curve: list[float] = field(default_factory=list)
    """The early-stopping metric per round on the validation split, what later trials are pruned against."""
    warm_start: bool = False
    """It evaluated one of the study's warm-start points rather than a proposal of the algorithm."""


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
    """Runs one trial from hyperopt's sampled values; picklable, so that a Spark worker can run it too.

    ``completed`` holds, per family, the validation curves of the trials that completed so far: what the
    pruning rule compares the next trial with. The driver adds to it as trials complete.
    """

    space: SearchSpace
    data: TrainingData | None
    task: Task
    metric: Metric
    seed: int
    tags: dict[str, str]
    pruning: MedianRule | None = None
    device: str = "cpu"
    completed: dict[str, list[list[float]]] = field(default_factory=dict)

    def note_completed(self, outcome: TrialOutcome) -> None:
        if outcome.ok and not outcome.pruned and outcome.curve:
            self.completed.setdefault(outcome.params[MODEL_KEY], []).append(outcome.curve)

    def should_prune(self, family: str) -> RoundCheck | None:
        if self.pruning is None:
            return None
        return self.pruning.checker(self.completed.get(family, []), self.metric.early_stopping.get(self.task.kind))

    def __call__(self, number: int, values: dict[str, Any]) -> tuple[TrialOutcome, TrialRecord]:
        start_ms = now_ms()
        params = self.space.typed(values)
        record = TrialRecord(number=number, params=params, tags=dict(self.tags), start_ms=start_ms)
        metric, data, task = self.metric, self.data, self.task
        try:
            family = families.get(str(params[MODEL_KEY]))
            assert data is not None, "a Spark worker's trainer receives its data before it runs a trial"
            params = record.params = family.placed(params, self.device)
            fitted = family.fit(params, data, task, metric.name, self.seed, self.should_prune(family.name))
            value = family.validation_score(fitted, data, task, metric.name)
            if not math.isfinite(value):
                raise FloatingPointError(f"validation {metric.name} is {value}")
        except Exception as exc:  # a bad trial must not end the study: recorded as FAILED, hyperopt told so
            return failed_trial(number, params, f"{type(exc).__name__}: {exc}", record)
        record.metrics = {"train_seconds": fitted.seconds}
        if fitted.pruned:  # its value is a best-so-far: kept off the metric so no ranking by it picks this run
            record.metrics |= {f"{metric.name}_when_pruned": value, "pruned_at_round": len(fitted.curve) - 1}
        else:
            record.metrics[metric.name] = value
        if fitted.best_iteration is not None:
            record.metrics["best_iteration"] = fitted.best_iteration
        if fitted.curve:
            record.curves = {f"validation_{fitted.curve_metric}_curve": fitted.curve}
        if fitted.train_curve:
            record.curves[f"train_{fitted.curve_metric}_curve"] = fitted.train_curve
        record.tags["trial_state"] = "PRUNED" if fitted.pruned else "COMPLETE"
        _close(record)
        outcome = TrialOutcome(
            number=number,
            params=params,
            value=value,
            best_iteration=fitted.best_iteration,
            run_id="",
            train_seconds=fitted.seconds,
            ok=True,
            pruned=fitted.pruned,
            curve=list(fitted.curve),
        )
        return outcome, record


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
