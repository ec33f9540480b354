"""The few MLflow calls every stage shares: connecting, the experiment, batched trial runs, provenance tags."""

from __future__ import annotations

import logging
import os
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.models import ModelSignature, infer_signature
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from pipeline.errors import TrackingError
from pipeline.search.trial import TrialRecord, now_ms

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
T = TypeVar("T")
log = logging.getLogger(__name__)


def resolve_uri(uri: str | None) -> str:
    """Flag, then ``MLFLOW_TRACKING_URI``, then a SQLite file in the working directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def connect(uri: str | None) -> MlflowClient:
    """Point MLflow at the store and prove it answers before any study work starts."""
    resolved = resolve_uri(uri)
    mlflow.set_tracking_uri(resolved)
    client = MlflowClient(resolved)
    try:
        client.search_experiments(max_results=1)
    except Exception as error:  # any failure here means the store cannot be used at all
        raise TrackingError(
            f"tracking store {resolved} cannot be used ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
            "start the server or fix --tracking-uri / MLFLOW_TRACKING_URI"
        ) from None
    return client


def experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(name)


def log_trial(client: MlflowClient, experiment: str, parent_run_id: str, record: TrialRecord) -> str:
    """Write the trial's child run in three calls, ending FAILED if the logging in between fails.

    The run is created only once the trial is over, so a killed process leaves at most the run being
    written RUNNING, never one per trial in progress.
    """
    tags = {
        MLFLOW_PARENT_RUN_ID: parent_run_id,
        MLFLOW_RUN_NAME: f"trial-{record.number:04d}",
        "trial_number": str(record.number),
        **record.tags,
    }
    metrics = [Metric(k, float(v), record.end_ms, 0) for k, v in record.metrics.items()]
    for name, values in record.curves.items():
        metrics.extend(Metric(name, float(v), record.end_ms, step) for step, v in enumerate(values))
    params = [Param(k, str(v)) for k, v in record.params.items()]
    run_id = _retrying(client.create_run, experiment, start_time=record.start_ms, tags=tags).info.run_id
    try:
        _retrying(client.log_batch, run_id, metrics=metrics, params=params)  # MLflow splits past its limits
    except BaseException:
        client.set_terminated(run_id, status="FAILED", end_time=now_ms())
        raise
    _retrying(client.set_terminated, run_id, status=record.status, end_time=record.end_ms)
    return run_id


class TrialWriter:
    """Writes trial runs on one background thread, in order, while the next trial trains.

    A trial's three tracking calls cost 20-30 ms on SQLite (more over HTTP), which is several percent of
    a one-second trial; off the training thread they cost only what the GIL and the disk take.
    A failed write (the store went away and the retries ran out) is raised as TrackingError by the next
    ``raise_if_failed`` or by ``close``, which also waits for every pending write.
    """

    def __init__(self, client: MlflowClient, experiment: str, parent_run_id: str):
        self._client, self._experiment, self._parent = client, experiment, parent_run_id
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trial-writer")
        self._pending: list[tuple[int, Future[str]]] = []

    def submit(self, record: TrialRecord) -> Future[str]:
        future = self._pool.submit(log_trial, self._client, self._experiment, self._parent, record)
        self._pending.append((record.number, future))
        return future

    def raise_if_failed(self) -> None:
        for number, future in self._pending:
            if future.done() and future.exception() is not None:
                raise _write_failed(number, future.exception())

    def close(self) -> None:
        try:
            for number, future in self._pending:
                if future.exception() is not None:
                    raise _write_failed(number, future.exception())
        finally:
            self._pool.shutdown(wait=True)


def _write_failed(number: int, error: BaseException) -> TrackingError:
    first = str(error).splitlines()[0][:300] if str(error) else ""
    failure = TrackingError(f"the tracking store failed to record trial {number} ({type(error).__name__}: {first})")
    failure.__cause__ = error
    return failure


LOCKED_RETRIES = 6


def _retrying(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call MLflow, retrying while SQLite reports "database is locked" (another process is writing)."""
    for attempt in range(LOCKED_RETRIES):
        try:
            return call(*args, **kwargs)
        except Exception as error:
            if "database is locked" not in str(error) or attempt == LOCKED_RETRIES - 1:
                raise
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")


@contextmanager
def parent_run(run_id: str | None = None, **start: Any) -> Iterator[Run]:
    """Start (or, given ``run_id``, resume) the study's parent run and always end it.

    Ends FINISHED, FAILED on an error, KILLED on Ctrl-C or SIGTERM; when the store itself is what failed,
    no further call is attempted (it would only wait out the retries again): the next run of the study
    marks the parent it finds RUNNING.
    """
    active = mlflow.start_run(run_id=run_id, **start)
    try:
        yield active
    except TrackingError:
        log.warning("parent run %s left as is: the tracking store is unreachable", active.info.run_id)
        raise
    except BaseException as error:
        mlflow.end_run("KILLED" if isinstance(error, KeyboardInterrupt | SystemExit) else "FAILED")
        raise
    mlflow.end_run("FINISHED")


def child_runs(client: MlflowClient, experiment: str, parent_run_id: str) -> list[Run]:
    return client.search_runs(
        [experiment], filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_run_id}'", max_results=50000
    )


def retire_run(client: MlflowClient, run_id: str) -> None:
    """End a run a dead process left behind as KILLED, then delete it (MLflow keeps it restorable)."""
    client.set_terminated(run_id, status="KILLED")
    client.set_tag(run_id, "retired_by", "pipeline resume")
    client.delete_run(run_id)


def kill_orphaned_parents(client: MlflowClient, experiment: str, study: str, keep: str | None) -> list[str]:
    """Mark KILLED the study's parent runs left RUNNING by a dead process (the caller holds the study lock,
    so no live process owns them), and their RUNNING children."""
    running = client.search_runs(
        [experiment], filter_string=f"tags.study = '{study}' and attributes.status = 'RUNNING'", max_results=1000
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


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any], tags: dict[str, str] | None = None) -> None:
    """One batched call (MLflow splits it past its per-call limits); values cut to MLflow's 6000 characters."""
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    client.log_batch(run_id, params=items, tags=[RunTag(k, v) for k, v in (tags or {}).items()])


def signature(inputs: pd.DataFrame, outputs: np.ndarray | None = None) -> ModelSignature:
    """The model/dataset schema of ``inputs`` with their dtypes as they are in the data.

    MLflow's hint that integer columns cannot hold missing values is moot here: the data a model or dataset
    meets later comes from the same source, with the same dtypes.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        return infer_signature(inputs, outputs)


def git_commit(path: Path) -> str | None:
    """The commit of the checkout holding ``path``, if it is one (for provenance tags)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
