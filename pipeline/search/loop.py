"""The search: hyperopt proposes parameters, each trial trains on the shared splits and becomes one child run.

A trial that raises or scores NaN/inf is recorded as a FAILED child run with the error as tags and
reported to hyperopt as failed, so the study goes on and the final stage can never pick it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

from pipeline import tracking
from pipeline.errors import PipelineError, TooManyFailures
from pipeline.families import CrossValidation, TrainingData
from pipeline.metrics import Metric, Task
from pipeline.search import optimizer, parallel
from pipeline.search.history import History
from pipeline.search.progress import Progress
from pipeline.search.pruning import PruningRule
from pipeline.search.trial import Trainer, TrialOutcome, TrialRecord, failed_trial, now_ms
from pipeline.spaces import SearchSpace


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
    pruning: PruningRule | None = None
    parallel: parallel.Parallel | None = None
    """Run trials several at once (worker processes here, or Spark) instead of one after the other here."""
    device: str = "cpu"
    """Where trials of families with a GPU mode (xgboost) train: ``cpu`` or ``cuda``."""
    train_curves: bool = False
    """Score the training split at every round of every trial too (``StudyConfig.train_curves``)."""


@dataclass(frozen=True)
class RunContext:
    """Where trials are logged: the tracking client, the experiment and the study's parent run."""

    client: tracking.Client
    experiment_id: str
    parent_run_id: str
    tags: dict[str, str]
    """Provenance tags stamped on every trial run (space hash, data fingerprint, git commit)."""
    grace_s: float = 0.0
    """How long a trial run that the store fails to take is retried while trials go on (``TrialWriter``)."""


def run_search(
    space: SearchSpace,
    data: TrainingData | CrossValidation,
    task: Task,
    metric: Metric,
    settings: SearchSettings,
    context: RunContext,
    history: History,
    past: Sequence[TrialOutcome] = (),
    show_progress: bool = True,
    first: Sequence[dict[str, Any]] = (),
) -> SearchResult:
    """Run trials until ``settings.max_evals`` (``past`` included, but for the trials a continued study
    inherited, which come on top) or a stop rule; each trial is appended to ``history`` before its MLflow
    run is written, so a crash never loses a finished trial.

    Raises TooManyFailures (or PipelineError when every trial failed).
    """
    outcomes: list[TrialOutcome] = list(past)
    writes: dict[int, Future[str]] = {}
    started = time.perf_counter()
    stop: list[str] = []
    budget = settings.max_evals + inherited_count(past)
    progress = Progress(budget, len(past), metric.name, enabled=show_progress)

    trainer = Trainer(
        space,
        data,
        task,
        metric,
        settings.seed,
        context.tags,
        settings.pruning,
        settings.device,
        train_curves=settings.train_curves,
    )
    for outcome in past:
        trainer.note_completed(outcome)

    def settle(outcome: TrialOutcome, record: TrialRecord) -> dict[str, Any]:
        """The driver's side of a finished trial: history, MLflow, stop rules, progress; hyperopt's result."""
        if plan.is_warm_start(outcome.params):
            outcome = replace(outcome, warm_start=True)
            record.tags[tracking.names.WARM_START] = "true"
        outcomes.append(outcome)
        trainer.note_completed(outcome)
        entry = {"number": outcome.number, "outcome": asdict(outcome), "record": asdict(record)}
        history.append_trial(entry, warm_start=outcome.warm_start)
        writes[outcome.number] = writer.submit(record)
        writes[outcome.number].add_done_callback(partial(_note_logged, history, outcome.number))
        if reason := stop_reason(outcomes, metric, settings, time.perf_counter() - started):
            stop.append(reason)
        best = best_of(outcomes, metric)
        progress.update(None if best is None else best.value)
        if not outcome.ok:
            return {"status": optimizer.FAIL, "error": outcome.error}
        return {"status": optimizer.OK, "loss": metric.loss(outcome.value)}

    def objective(values: dict[str, Any]) -> dict[str, Any]:
        writer.raise_if_failed()  # a store that went away ends the study now, not after the whole budget
        return settle(*trainer(len(outcomes), values))

    def settle_remote(
        values: dict[str, Any], payload: tuple[TrialOutcome, TrialRecord] | None, error: str | None
    ) -> dict[str, Any]:
        """A trial a worker ran (or died running), numbered in the order trials finish."""
        writer.raise_if_failed()
        number = len(outcomes)
        if payload is not None:
            outcome, record = payload
            record.number, outcome = number, replace(outcome, number=number)
        else:
            start = TrialRecord(number, space.typed(values), tags=dict(context.tags), start_ms=now_ms())
            outcome, record = failed_trial(number, start.params, error or "the worker failed", start)
        return settle(outcome, record)

    known = [
        optimizer.PastTrial(o.number, o.params, metric.loss(o.value) if o.ok else None, warm_start=o.warm_start)
        for o in past
    ]
    plan = optimizer.Plan(
        space, budget, settings.seed, settings.algorithm, known, first, should_stop=lambda: bool(stop)
    )
    # Leaving the block waits for the queued runs (through an outage of the store, for the grace period).
    with tracking.TrialWriter(context.client, context.experiment_id, context.parent_run_id, context.grace_s) as writer:
        try:
            if settings.parallel is None:
                exhausted = optimizer.minimize(objective, plan)
            else:
                with parallel.engine(settings.parallel, trainer) as engine:
                    workers = settings.parallel.workers
                    exhausted = optimizer.minimize_parallel(engine.submit, plan, workers, settle_remote)
        finally:
            progress.close()
    if exhausted:
        stop.append(exhausted)
    outcomes = [replace(o, run_id=writes[o.number].result()) if o.number in writes else o for o in outcomes]
    failed = [o for o in outcomes if not o.ok]
    if stop and stop[0].startswith(FAILURES):
        raise TooManyFailures(f"study stopped: {stop[0]}; first error: {failed[0].error}")
    best = best_of(outcomes, metric)
    if best is None:
        first_error = failed[0].error if failed else "no trial ran"
        raise PipelineError(f"all {len(outcomes)} trials failed; first error: {first_error}")
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
    best = best_of(outcomes, metric)
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


def best_of(outcomes: Sequence[TrialOutcome], metric: Metric) -> TrialOutcome | None:
    """The completed (not pruned, not failed) trial with the best value; ties go to the earlier one."""
    ok = [o for o in outcomes if o.ok and not o.pruned]
    return min(ok, key=lambda o: (metric.loss(o.value), o.number)) if ok else None


def inherited_count(outcomes: Sequence[TrialOutcome]) -> int:
    """How many of a study's trials it inherited (``--continue-from``): they do not count against its
    ``max_evals``."""
    return sum(1 for o in outcomes if o.inherited_from)


def outcome_from_history(entry: dict[str, Any], run_id: str) -> TrialOutcome:
    return TrialOutcome(**(entry["outcome"] | {"run_id": run_id}))


def record_from_history(entry: dict[str, Any]) -> TrialRecord:
    return TrialRecord(**entry["record"])
