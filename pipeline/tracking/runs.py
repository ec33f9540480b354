"""Runs: each trial's child run (written in three calls, on a background thread), the study's parent run
(one object writes everything a study records on it), and the clean-up of runs a dead process left behind.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import pandas as pd
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from pipeline.errors import TrackingError
from pipeline.failpoints import failpoint
from pipeline.search.trial import TrialRecord, now_ms
from pipeline.tracking import names
from pipeline.tracking.curves import logged_points
from pipeline.tracking.queries import child_runs, trial_runs
from pipeline.tracking.retry import error_summary, retrying_locked, transient, with_grace
from pipeline.tracking.store import log_params, schema

T = TypeVar("T")
log = logging.getLogger(__name__)
SCHEMA_SAMPLE_ROWS = 2000
"""Rows a logged dataset's schema is inferred from (MLflow infers it value by value otherwise: about 1 s
per 25k rows of strings); their dtypes give the same schema as the whole split's."""


def log_trial(client: MlflowClient, experiment: str, parent_run_id: str, record: TrialRecord) -> str:
    """Write the trial's child run in three calls, ending FAILED if the store refuses the logging in between.

    The run is created only once the trial is over, so a killed process leaves at most the run being
    written RUNNING, never one per trial in progress. When the store goes away between the calls, the run
    is left as it is (ending it would wait on the store again): ``write_trial``'s next attempt, or the next
    run of the study, retires it.
    """
    tags = {
        MLFLOW_PARENT_RUN_ID: parent_run_id,
        MLFLOW_RUN_NAME: f"trial-{record.number:04d}",
        names.TRIAL_NUMBER: str(record.number),
        **record.tags,
    }
    metrics = [Metric(k, float(v), record.end_ms, 0) for k, v in record.metrics.items()]
    for name, values in record.curves.items():
        metrics.extend(Metric(name, v, record.end_ms, step) for step, v in logged_points(values))
    params = [Param(k, str(v)) for k, v in record.params.items()]
    run_id = retrying_locked(client.create_run, experiment, start_time=record.start_ms, tags=tags).info.run_id
    try:
        retrying_locked(client.log_batch, run_id, metrics=metrics, params=params)  # MLflow splits past its limits
    except Exception as error:
        if not transient(error):
            client.set_terminated(run_id, status="FAILED", end_time=now_ms())
        raise
    retrying_locked(client.set_terminated, run_id, status=record.status, end_time=record.end_ms)
    return run_id


def write_trial(
    client: MlflowClient,
    experiment: str,
    parent_run_id: str,
    record: TrialRecord,
    grace_s: float,
    stop: threading.Event | None = None,
) -> str:
    """``log_trial``, retried through an outage of the store for up to ``grace_s`` seconds (``with_grace``).

    Before each new attempt the runs an earlier one left for this trial (created, perhaps half-written, or
    created although the answer never came back) are retired, so the trial ends with exactly one run.
    Raises TrackingError once the grace period is over, the store's own error for a write it refused.
    """
    attempts = 0

    def attempt() -> str:
        nonlocal attempts
        if attempts:
            for run in trial_runs(client, experiment, parent_run_id, record.number):
                retire_run(client, run.info.run_id, by="pipeline retry")
        attempts += 1
        return log_trial(client, experiment, parent_run_id, record)

    return with_grace(attempt, grace_s, f"trial {record.number}'s run", stop)


class TrialWriter:
    """Writes trial runs on one background thread, in trial order, while the next trial trains.

    A trial's three tracking calls cost 20-30 ms on SQLite (more over HTTP), which is several percent of
    a one-second trial; off the training thread they cost only what the GIL and the disk take.
    When the store goes away, the write is retried (``write_trial``) for up to ``grace_s`` seconds while
    the trials go on and their writes queue up behind it (the study's history holds them all); once the
    store is back, the queue is written in order. When the grace period runs out, the writer gives up:
    ``raise_if_failed`` (called before each trial) and ``close`` raise a one-line TrackingError, and the
    queued writes are left to the next run of the study. A write the store refuses (a bad value) is not
    retried: it is raised as TrackingError by the next ``raise_if_failed`` or by ``close``, and later
    writes go on.

    Use it as a context manager: leaving the block normally waits for every queued write (``close``);
    leaving it on an error waits only for the writes the store takes at once (the first it fails ends the
    retrying and fails the rest, which the next run of the study writes from the history) and raises
    nothing of its own.
    """

    def __init__(self, client: MlflowClient, experiment: str, parent_run_id: str, grace_s: float = 0.0):
        self._client, self._experiment, self._parent, self._grace_s = client, experiment, parent_run_id, grace_s
        self._queue: queue.SimpleQueue[tuple[TrialRecord, Future[str]] | None] = queue.SimpleQueue()
        self._pending: list[tuple[int, Future[str]]] = []
        self._gave_up: TrackingError | None = None
        self._stop = threading.Event()
        self._closed = False
        # A daemon: a process that exits on an error is not held by a write waiting for the store.
        self._thread = threading.Thread(target=self._work, name="trial-writer", daemon=True)
        self._thread.start()

    def submit(self, record: TrialRecord) -> Future[str]:
        if self._closed:
            raise RuntimeError("the trial writer is closed")
        future: Future[str] = Future()
        self._queue.put((record, future))
        self._pending.append((record.number, future))
        return future

    def raise_if_failed(self) -> None:
        if self._gave_up is not None:
            raise self._gave_up
        for number, future in self._pending:
            if future.done() and (error := future.exception()) is not None:
                raise _write_failed(number, error)

    def close(self, *, wait_out_outage: bool = True) -> None:
        """Wait for every queued write, then raise the first failure (TrackingError). Without
        ``wait_out_outage``, a write the store fails is not retried, and the writes queued after it fail."""
        if not wait_out_outage:
            self._stop.set()
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        try:
            self._thread.join()
        except BaseException:  # Ctrl-C while waiting out an outage: stop retrying in the background too
            self._stop.set()
            raise
        self.raise_if_failed()

    def __enter__(self) -> TrialWriter:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if error_type is None:
            self.close()
            return
        with contextlib.suppress(TrackingError):  # the error leaving the block is the one to report
            self.close(wait_out_outage=False)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            record, future = item
            if self._gave_up is not None:
                future.set_exception(self._gave_up)
                continue
            try:
                future.set_result(
                    write_trial(self._client, self._experiment, self._parent, record, self._grace_s, self._stop)
                )
            except TrackingError as error:  # the grace period is over: the rest is left to the next run
                self._gave_up = error
                future.set_exception(error)
            except Exception as error:
                future.set_exception(error)


def _write_failed(number: int, error: BaseException) -> TrackingError:
    if isinstance(error, TrackingError):
        return error
    failure = TrackingError(f"the tracking store failed to record trial {number} ({error_summary(error)})")
    failure.__cause__ = error
    return failure


def retire_run(client: MlflowClient, run_id: str, by: str = "pipeline resume") -> None:
    """End as KILLED a run left behind (by a dead process, or by a write the store failed half-way), tag
    what retired it (``by``), then delete it (MLflow keeps it restorable)."""
    client.set_terminated(run_id, status="KILLED")
    client.set_tag(run_id, names.RETIRED_BY, by)
    client.delete_run(run_id)


def kill_orphaned_parents(client: MlflowClient, experiment: str, study: str, keep: str | None) -> list[str]:
    """Mark KILLED the study's parent runs left RUNNING by a dead process (the caller holds the study lock,
    so no live process owns them), and their RUNNING children."""
    running = client.search_runs(
        [experiment],
        filter_string=f"tags.{names.STUDY} = '{study}' and attributes.status = 'RUNNING'",
        max_results=1000,
    )
    killed = []
    for run in running:
        if MLFLOW_PARENT_RUN_ID in run.data.tags or run.info.run_id == keep:
            continue
        for child in child_runs(client, experiment, run.info.run_id):
            if child.info.status == "RUNNING":
                client.set_terminated(child.info.run_id, status="KILLED")
        client.set_terminated(run.info.run_id, status="KILLED")
        killed.append(run.info.run_id)
    return killed


def set_run_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Tags on a run that is not open here (a finished study's run, after its gate)."""
    failpoint(tags)
    retrying_locked(client.log_batch, run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])


class ParentRun:
    """The study's parent run, and the one writer of everything a study records on it.

    ``open_parent`` makes it MLflow's active run for the block (what ``mlflow.pyfunc.log_model`` and
    ``mlflow.log_input`` write to) and ends it as the block ends: FINISHED, FAILED on an error, KILLED on
    Ctrl-C or SIGTERM. Each write through this object is retried for up to ``grace_s`` seconds while the
    store is unavailable (``with_grace``), then raises TrackingError. Ending the run after an error is
    tried once: a store still away leaves it RUNNING (the next run of the study resumes it), never
    FINISHED.
    """

    def __init__(self, client: MlflowClient, run: Run, grace_s: float = 0.0):
        self.client = client
        self.run_id: str = run.info.run_id
        self.experiment_id: str = run.info.experiment_id
        self.grace_s = grace_s
        self.tags: dict[str, str] = dict(run.data.tags)
        """The run's tags when it was opened, and those set since through this object."""

    def _write(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        with_grace(lambda: call(*args, **kwargs), self.grace_s, f"the study run's {what}")

    def set_tags(self, tags: Mapping[str, str]) -> None:
        failpoint(tags)
        items = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        self._write("tags", retrying_locked, self.client.log_batch, self.run_id, tags=items)
        self.tags.update({k: str(v)[:5000] for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        stamp = now_ms()
        items = [Metric(k, float(v), stamp, 0) for k, v in metrics.items()]
        self._write("metrics", retrying_locked, self.client.log_batch, self.run_id, metrics=items)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._write("parameters", retrying_locked, log_params, self.client, self.run_id, params)

    def log_files(self, files: Sequence[Path], folder: str) -> None:
        for file in files:
            self._write("artifacts", self.client.log_artifact, self.run_id, str(file), artifact_path=folder)

    def log_texts(self, texts: Mapping[str, str], folder: str) -> None:
        """Small text files (a configuration given in memory, a JSON record) under ``folder``."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in texts.items():
                (Path(tmp) / name).write_text(text)
            self._write("artifacts", self.client.log_artifacts, self.run_id, tmp, artifact_path=folder)

    def log_folder(self, folder: Path, artifact_path: str) -> None:
        self._write("artifacts", log_folder, self.client, self.run_id, folder, artifact_path)

    def log_splits(self, splits: Sequence[tuple[str, pd.DataFrame, str]], source: str, target: str, name: str) -> None:
        """Each split as an MLflow dataset input: ``(split, frame, digest)``; contexts training/validation/testing."""
        contexts = {"train": "training", "validation": "validation", "test": "testing"}
        for split, frame, digest in splits:
            with warnings.catch_warnings():  # a local path matches two of MLflow's source kinds; either is right
                warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
                logged = from_pandas(frame, source=source, targets=target, name=f"{name}-{split}", digest=digest)
            logged.schema = schema(frame.head(SCHEMA_SAMPLE_ROWS))
            self._write("datasets", mlflow.log_input, logged, context=contexts.get(split, split))


@contextmanager
def open_parent(
    client: MlflowClient,
    run_id: str | None = None,
    *,
    experiment_id: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    grace_s: float = 0.0,
) -> Iterator[ParentRun]:
    """Start a new parent run (``experiment_id``, ``run_name``, ``tags``) or reopen ``run_id``, as the active
    run for the block, its writes retried for up to ``grace_s`` seconds; see ``ParentRun`` for how it ends."""
    if mlflow.active_run() is not None:  # a notebook's own run, or one a failed cell left open
        mlflow.end_run()
    if run_id is None:
        active = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {}))
    else:
        active = mlflow.start_run(run_id=run_id)
    try:
        yield ParentRun(client, active, grace_s)
    except BaseException as error:
        _end_once(active.info.run_id, "KILLED" if isinstance(error, KeyboardInterrupt | SystemExit) else "FAILED")
        raise
    try:
        with_grace(lambda: mlflow.end_run("FINISHED"), grace_s, "the study run's end")
    except TrackingError:
        _forget_active_run()
        raise


def _end_once(run_id: str, status: str) -> None:
    """End the parent run of a study that stopped, in one call (no grace: the study is giving up). A store
    that does not answer leaves it RUNNING, for the next run of the study, and the error that stopped the
    study is the one reported."""
    try:
        mlflow.end_run(status)
    except Exception as error:
        log.warning("parent run %s left RUNNING: the tracking store did not answer (%s); the next run of the "
                    "study resumes it", run_id, error_summary(error))  # fmt: skip
        _forget_active_run()


def _forget_active_run() -> None:
    """Drop MLflow's active-run stack without a call to the store, so the next study in this process starts
    clean (ending the run would wait out the retries against a store that is gone)."""
    from mlflow.tracking import fluent

    fluent._active_run_stack.set([])


def log_folder(client: MlflowClient, run_id: str, folder: Path, artifact_path: str) -> None:
    """Every file of ``folder`` on the run (open or not) under ``artifact_path``."""
    client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)


def delete_tags(client: MlflowClient, run_id: str, keys: Sequence[str]) -> None:
    for key in keys:
        with contextlib.suppress(Exception):  # a tag never set: nothing to delete
            client.delete_tag(run_id, key)
