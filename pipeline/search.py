"""The search: hyperopt proposes parameters, each trial trains on the shared splits and becomes one child run.

A trial that raises or scores NaN/inf is recorded as a FAILED child run with the error as tags and
reported to hyperopt as failed, so the study goes on and the final stage can never pick it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

from mlflow.tracking import MlflowClient
from tqdm import tqdm

from pipeline import families, optimizer, tracking
from pipeline.errors import PipelineError
from pipeline.families import TrainingData
from pipeline.history import History
from pipeline.metrics import Metric, Task
from pipeline.pruning import MedianRule, RoundCheck
from pipeline.spaces import MODEL_KEY, SearchSpace


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


@dataclass(frozen=True)
class SearchResult:
    trials: list[TrialOutcome]
    """Every trial of the study, those from before a resume included."""
    best: TrialOutcome
    wall_seconds: float
    stop_reason: str
    resumed_trials: int = 0
    """Trials that were already finished when this invocation started."""

    @property
    def finished(self) -> list[TrialOutcome]:
        """Trials that did not fail, pruned ones included."""
        return [t for t in self.trials if t.ok]

    @property
    def pruned(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.pruned]

    @property
    def train_seconds(self) -> float:
        """Training time of this invocation's trials (what its wall time can be compared with)."""
        return sum(t.train_seconds for t in self.trials[self.resumed_trials :])


@dataclass(frozen=True)
class StopRules:
    """When a study ends before ``max_evals``: all optional but the failure share."""

    timeout_s: float | None = None
    metric_threshold: float | None = None
    patience: int | None = None
    max_failed_share: float = 0.5
    min_trials_for_failed_share: int = 5


@dataclass(frozen=True)
class SearchSettings:
    max_evals: int
    seed: int
    algorithm: Callable[..., Any]
    """hyperopt's suggest function (``optimizer.algorithm_for``)."""
    stop: StopRules = StopRules()
    pruning: MedianRule | None = None


@dataclass(frozen=True)
class RunContext:
    """Where trials are logged: the tracking client, the experiment and the study's parent run."""

    client: MlflowClient
    experiment_id: str
    parent_run_id: str
    tags: dict[str, str]
    """Provenance tags stamped on every trial run (space hash, data fingerprint, git commit)."""


class TooManyFailures(PipelineError):
    """More than the allowed share of trials failed: the study stops and nothing is registered."""


def run_search(
    space: SearchSpace,
    data: TrainingData,
    task: Task,
    metric: Metric,
    settings: SearchSettings,
    context: RunContext,
    history: History,
    past: Sequence[TrialOutcome] = (),
    show_progress: bool = True,
    first: Sequence[dict[str, Any]] = (),
) -> SearchResult:
    """Run trials until ``settings.max_evals`` (``past`` included) or a stop rule; each trial is appended to
    ``history`` before its MLflow run is written, so a crash never loses a finished trial.

    Raises TooManyFailures (or PipelineError when every trial failed).
    """
    outcomes: list[TrialOutcome] = list(past)
    writes: dict[int, Future[str]] = {}
    writer = tracking.TrialWriter(context.client, context.experiment_id, context.parent_run_id)
    started = time.perf_counter()
    stop: list[str] = []
    bar = tqdm(
        total=settings.max_evals,
        initial=len(past),
        desc="trials",
        unit="trial",
        file=sys.stderr,
        disable=not show_progress,
        dynamic_ncols=True,
    )

    def should_prune(family: str) -> RoundCheck | None:
        if settings.pruning is None:
            return None
        completed = [o.curve for o in outcomes if o.ok and not o.pruned and o.params[MODEL_KEY] == family]
        return settings.pruning.checker(completed, metric.early_stopping.get(task.kind))

    def objective(values: dict[str, Any]) -> dict[str, Any]:
        writer.raise_if_failed()  # a store that went away ends the study now, not after the whole budget
        outcome, record = _run_trial(
            len(outcomes), values, space, data, task, metric, settings.seed, should_prune, context
        )
        outcomes.append(outcome)
        history.append_trial({"number": outcome.number, "outcome": asdict(outcome), "record": asdict(record)})
        writes[outcome.number] = writer.submit(record)
        writes[outcome.number].add_done_callback(partial(_note_logged, history, outcome.number))
        if reason := stop_reason(outcomes, metric, settings, time.perf_counter() - started):
            stop.append(reason)
        best = _best(outcomes, metric)
        bar.update(1)
        if best is not None:
            bar.set_postfix({f"best {metric.name}": f"{best.value:.4f}"}, refresh=False)
        if not outcome.ok:
            return {"status": optimizer.FAIL, "error": outcome.error}
        return {"status": optimizer.OK, "loss": metric.loss(outcome.value)}

    known = [optimizer.PastTrial(o.number, o.params, metric.loss(o.value) if o.ok else None) for o in past]
    try:
        optimizer.minimize(
            objective,
            space,
            max_evals=settings.max_evals,
            seed=settings.seed,
            algorithm=settings.algorithm,
            past=known,
            first=first,
            should_stop=lambda: bool(stop),
        )
    finally:
        bar.close()
        writer.close()
    outcomes = [replace(o, run_id=writes[o.number].result()) if o.number in writes else o for o in outcomes]
    failed = [o for o in outcomes if not o.ok]
    if stop and stop[0].startswith(FAILURES):
        raise TooManyFailures(f"study stopped: {stop[0]}; first error: {failed[0].error}")
    best = _best(outcomes, metric)
    if best is None:
        first = failed[0].error if failed else "no trial ran"
        raise PipelineError(f"all {len(outcomes)} trials failed; first error: {first}")
    reason = stop[0] if stop else f"max_evals ({settings.max_evals}) reached"
    return SearchResult(
        trials=outcomes,
        best=best,
        wall_seconds=time.perf_counter() - started,
        stop_reason=reason,
        resumed_trials=len(past),
    )


FAILURES = "failed trials"


def stop_reason(
    outcomes: Sequence[TrialOutcome], metric: Metric, settings: SearchSettings, elapsed_s: float
) -> str | None:
    """Why the study should stop after its latest trial, or None to go on (``max_evals`` is hyperopt's)."""
    rules = settings.stop
    failed = sum(not o.ok for o in outcomes)
    if len(outcomes) >= rules.min_trials_for_failed_share and failed > rules.max_failed_share * len(outcomes):
        return f"{FAILURES}: {failed} of {len(outcomes)} (more than {rules.max_failed_share:.0%})"
    best = _best(outcomes, metric)
    threshold = rules.metric_threshold
    if best is not None and threshold is not None and not metric.better(threshold, best.value):
        return f"metric threshold reached: best {metric.name} {best.value:.6g} vs {rules.metric_threshold:g}"
    if best is not None and rules.patience is not None and outcomes[-1].number - best.number >= rules.patience:
        return f"no improvement in {rules.patience} trials (best is trial {best.number})"
    if rules.timeout_s is not None and elapsed_s >= rules.timeout_s:
        return f"timeout: {elapsed_s:.0f} s >= {rules.timeout_s:g} s"
    return None


def _note_logged(history: History, number: int, write: Future[str]) -> None:
    if write.exception() is None:
        history.append_logged(number, write.result())


def _best(outcomes: Sequence[TrialOutcome], metric: Metric) -> TrialOutcome | None:
    ok = [o for o in outcomes if o.ok and not o.pruned]
    return min(ok, key=lambda o: (metric.loss(o.value), o.number)) if ok else None


def outcome_from_history(entry: dict[str, Any], run_id: str) -> TrialOutcome:
    return TrialOutcome(**(entry["outcome"] | {"run_id": run_id}))


def record_from_history(entry: dict[str, Any]) -> tracking.TrialRecord:
    return tracking.TrialRecord(**entry["record"])


def _run_trial(
    number: int,
    values: dict[str, Any],
    space: SearchSpace,
    data: TrainingData,
    task: Task,
    metric: Metric,
    seed: int,
    should_prune: Callable[[str], RoundCheck | None],
    context: RunContext,
) -> tuple[TrialOutcome, tracking.TrialRecord]:
    start_ms = tracking.now_ms()
    params = space.typed(values)
    record = tracking.TrialRecord(number=number, params=params, tags=dict(context.tags), start_ms=start_ms)
    value, seconds, error, fitted = math.nan, 0.0, None, None
    try:
        family = families.get(params[MODEL_KEY])
        fitted = family.fit(params, data, task, metric.name, seed, should_prune(family.name))
        seconds = fitted.seconds
        value = family.validation_score(fitted, data, task, metric.name)
        if not math.isfinite(value):
            raise FloatingPointError(f"validation {metric.name} is {value}")
        record.metrics = {"train_seconds": seconds}
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
    except Exception as exc:  # a bad trial must not end the study: recorded as FAILED, hyperopt told so
        error, value, fitted = f"{type(exc).__name__}: {exc}", math.nan, None
        record.status = "FAILED"
        record.tags |= {"error_class": type(exc).__name__, "error_message": str(exc)[:5000]}
    pruned = fitted is not None and fitted.pruned
    record.tags["trial_state"] = "FAIL" if error is not None else "PRUNED" if pruned else "COMPLETE"
    record.end_ms = tracking.now_ms()
    record.metrics["trial_seconds"] = (record.end_ms - start_ms) / 1000
    outcome = TrialOutcome(
        number=number,
        params=params,
        value=value,
        best_iteration=fitted.best_iteration if fitted is not None else None,
        run_id="",
        train_seconds=seconds,
        ok=error is None,
        error=error,
        pruned=pruned,
        curve=list(fitted.curve) if fitted is not None else [],
    )
    return outcome, record
