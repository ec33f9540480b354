"""Parallel trials on Spark: the session, the study's data shipped once per worker, and the trial function.

Spark is an optional extra (``pip install 'pipeline[spark]'``): local mode (``local[N]``) uses the cores
of this machine; a cluster URL (``--spark-master spark://host:7077``) spreads trials over its executors,
which must have this package installed. Workers only train: the driver writes the history and every MLflow
run, so workers need no access to the tracking store.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass, replace
from typing import Any

from pipeline.errors import InputError
from pipeline.search import optimizer

TRIAL_KEY = "trial"
"""The key of a worker's result that carries the trial's outcome and record back to the driver."""


@dataclass(frozen=True)
class Parallel:
    workers: int
    """Trials run at once."""
    master: str | None = None
    """Spark master URL; None runs Spark in local mode with ``workers`` cores."""

    @property
    def url(self) -> str:
        return self.master or f"local[{self.workers}]"

    @property
    def threads_per_trial(self) -> int | None:
        """In local mode the machine's cores split between the trials (oversubscribing them thrashes);
        on a cluster each executor decides from its own idle cores."""
        return max(1, (os.cpu_count() or 1) // self.workers) if self.master is None else None


def session(parallel: Parallel) -> Any:
    """The process's Spark session for ``parallel.url``, started on first use and kept for later studies
    (pyspark stops it at exit); InputError when pyspark is not installed."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError(
            None, "--parallelism", "parallel trials need pyspark", "pip install 'pipeline[spark]'"
        ) from None
    active = SparkSession.getActiveSession()
    if active is not None and active.sparkContext.master == parallel.url:
        return active
    if active is not None:
        active.stop()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # else workers start a Python without our packages
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if parallel.master is None:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with warnings.catch_warnings():  # about pandas-on-Spark, which trials do not use
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        spark = (
            SparkSession.builder.master(parallel.url)
            .appName("pipeline")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
    spark.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one INFO line per closed connection otherwise
    return spark


@dataclass
class RemoteObjective:
    """hyperopt's objective on a worker: the trial function without the data, which arrives by broadcast.

    SparkTrials pickles the objective when it dispatches each trial, so the pruning curves the driver's
    trainer has gathered by then travel with it.
    """

    trainer: Any
    """A ``trial.Trainer`` with no data."""
    data: Any
    """A Spark broadcast of the study's ``TrainingData``, sent to each executor once. hyperopt's task leaves
    its input unread, so Spark does not reuse the Python worker: each trial loads the data and builds its
    matrices anew (about a second per trial on top of the imports)."""
    threads: int | None

    def __call__(self, values: dict[str, Any]) -> dict[str, Any]:
        if self.threads is not None:
            os.environ["PIPELINE_THREADS"] = str(self.threads)
        trainer = replace(self.trainer, data=self.data.value)
        outcome, record = trainer(-1, values)
        if not outcome.ok:
            return {"status": optimizer.FAIL, TRIAL_KEY: (outcome, record)}
        return {"status": optimizer.OK, "loss": trainer.metric.loss(outcome.value), TRIAL_KEY: (outcome, record)}


def remote_objective(spark: Any, trainer: Any, parallel: Parallel) -> RemoteObjective:
    data = spark.sparkContext.broadcast(replace(trainer.data, cache={}))  # built matrices cannot be pickled
    return RemoteObjective(replace(trainer, data=None), data, parallel.threads_per_trial)
