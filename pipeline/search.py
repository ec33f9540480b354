"""The search: hyperopt proposes parameters, each trial trains on the shared matrices and becomes one child run.

A trial that raises or scores NaN/inf is recorded as a FAILED child run with the error as tags and
reported to hyperopt as failed, so the study goes on and the final stage can never pick it.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient
from tqdm import tqdm

from pipeline import booster, optimizer, tracking
from pipeline.booster import Matrices
from pipeline.errors import PipelineError
from pipeline.metrics import Metric
from pipeline.spaces import SearchSpace


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    params: dict[str, Any]
    value: float
    """The validation metric at the best iteration (NaN for a failed trial)."""
    best_iteration: int
    run_id: str
    """The trial's child run; empty until its background write completed."""
    train_seconds: float
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class SearchResult:
    trials: list[TrialOutcome]
    best: TrialOutcome
    wall_seconds: float

    @property
    def finished(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.ok]

    @property
    def train_seconds(self) -> float:
        return sum(t.train_seconds for t in self.trials)


@dataclass(frozen=True)
class SearchSettings:
    max_evals: int
    seed: int
    algorithm: str
    nthread: int


@dataclass(frozen=True)
class RunContext:
    """Where trials are logged: the tracking client, the experiment and the study's parent run."""

    client: MlflowClient
    experiment_id: str
    parent_run_id: str
    tags: dict[str, str]
    """Provenance tags stamped on every trial run (space hash, data fingerprint, git commit)."""


def run_search(
    space: SearchSpace,
    matrices: Matrices,
    y_validation: np.ndarray,
    metric: Metric,
    settings: SearchSettings,
    context: RunContext,
    show_progress: bool = True,
) -> SearchResult:
    """Run ``settings.max_evals`` trials; raises PipelineError when no trial succeeds."""
    outcomes: list[TrialOutcome] = []
    writes = []
    writer = tracking.TrialWriter(context.client, context.experiment_id, context.parent_run_id)
    started = time.perf_counter()
    bar = tqdm(
        total=settings.max_evals,
        desc="trials",
        unit="trial",
        file=sys.stderr,
        disable=not show_progress,
        dynamic_ncols=True,
    )

    def objective(values: dict[str, Any]) -> dict[str, Any]:
        outcome, record = _run_trial(
            len(outcomes), values, space, matrices, y_validation, metric, settings, context.tags
        )
        outcomes.append(outcome)
        writes.append(writer.submit(record))
        best = _best(outcomes, metric)
        bar.update(1)
        if best is not None:
            bar.set_postfix({f"best {metric.name}": f"{best.value:.4f}"}, refresh=False)
        if not outcome.ok:
            return {"status": optimizer.FAIL, "error": outcome.error}
        return {"status": optimizer.OK, "loss": metric.loss(outcome.value)}

    try:
        optimizer.minimize(
            objective, space, max_evals=settings.max_evals, seed=settings.seed, algorithm=settings.algorithm
        )
    except Exception:
        if any(o.ok for o in outcomes) or not outcomes:
            raise
        # hyperopt raises its own "no evaluation tasks" error when every trial failed; say why instead.
    finally:
        bar.close()
        writer.close()
    outcomes = [replace(o, run_id=w.result()) for o, w in zip(outcomes, writes, strict=True)]
    best = _best(outcomes, metric)
    if best is None:
        first = outcomes[0].error if outcomes else "no trial ran"
        raise PipelineError(f"all {len(outcomes)} trials failed; first error: {first}")
    return SearchResult(trials=outcomes, best=best, wall_seconds=time.perf_counter() - started)


def _best(outcomes: list[TrialOutcome], metric: Metric) -> TrialOutcome | None:
    ok = [o for o in outcomes if o.ok]
    return min(ok, key=lambda o: (metric.loss(o.value), o.number)) if ok else None


def _run_trial(
    number: int,
    values: dict[str, Any],
    space: SearchSpace,
    matrices: Matrices,
    y_validation: np.ndarray,
    metric: Metric,
    settings: SearchSettings,
    tags: dict[str, str],
) -> tuple[TrialOutcome, tracking.TrialRecord]:
    start_ms = tracking.now_ms()
    params = space.typed(values)
    record = tracking.TrialRecord(number=number, params=params, tags=dict(tags), start_ms=start_ms)
    value, best_iteration, seconds, error = math.nan, -1, 0.0, None
    try:
        result = booster.train(
            params,
            matrices.train,
            matrices.validation,
            eval_metric=metric.early_stopping_metric,
            seed=settings.seed,
            nthread=settings.nthread,
        )
        seconds, best_iteration = result.seconds, result.best_iteration
        value = metric.from_early_stopping(result.curve[best_iteration], y_validation)
        if not math.isfinite(value):
            raise FloatingPointError(f"validation {metric.name} is {value}")
        record.metrics = {metric.name: value, "best_iteration": best_iteration, "train_seconds": seconds}
        record.curves = {f"validation_{metric.early_stopping_metric}_curve": result.curve}
    except Exception as exc:  # a bad trial must not end the study: recorded as FAILED, hyperopt told so
        error = f"{type(exc).__name__}: {exc}"
        record.status = "FAILED"
        record.tags |= {"error_class": type(exc).__name__, "error_message": str(exc)[:5000]}
    record.end_ms = tracking.now_ms()
    record.metrics["trial_seconds"] = (record.end_ms - start_ms) / 1000
    outcome = TrialOutcome(
        number=number,
        params=params,
        value=value,
        best_iteration=best_iteration,
        run_id="",
        train_seconds=seconds,
        ok=error is None,
        error=error,
    )
    return outcome, record
