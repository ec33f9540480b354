"""Parallel trials on Spark: the session, the study's data shipped once per worker, and the trial function.

Spark is an optional extra (``pip install 'pipeline[spark]'``) for trials on several machines:
``--spark-master spark://host:7077`` spreads them over a cluster's executors, which must have this package
installed (``local[N]`` runs Spark on this machine; without ``--spark-master`` trials run in worker
processes instead, ``local.py``). Workers only train: the driver writes the history and every MLflow run,
so workers need no access to the tracking store.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any

from pipeline.errors import InputError
from pipeline.search.local import Payload
from pipeline.search.trial import Trainer


def session(master: str) -> Any:
    """The process's Spark session for ``master``, started on first use and kept for later studies
    (pyspark stops it at exit); InputError when pyspark is not installed."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError(
            None,
            "--spark-master",
            "trials on Spark need pyspark",
            "pip install 'pipeline[spark]', or leave out --spark-master",
        ) from None
    active = SparkSession.getActiveSession()
    if active is not None and active.sparkContext.master == master:
        return active
    if active is not None:
        active.stop()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # else workers start a Python without our packages
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with warnings.catch_warnings():  # about pandas-on-Spark, which trials do not use
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        spark = (
            SparkSession.builder.master(master)
            .appName("pipeline")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
    spark.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one INFO line per closed connection otherwise
    return spark


class SparkPool:
    """Trials on Spark, each a one-task job started from a driver thread (one per slot), so ``workers``
    trials run at once. Use it as a context manager: leaving it waits for the running trials and frees the
    broadcast data.

    The study's data is broadcast once. A trial's task reads its whole input, so Spark keeps its Python
    worker for the next task (``spark.python.worker.reuse``), and that worker keeps the data it loaded and
    the matrices it built (``_loaded``): after each worker's first trial, a trial costs Spark one small job,
    not a new Python process, its imports and the data.
    """

    def __init__(self, spark: Any, trainer: Trainer, workers: int, threads: int | None):
        self._context = spark.sparkContext
        self._trainer = trainer
        assert trainer.data is not None, "the driver's trainer has the study's data"
        self._data = self._context.broadcast(replace(trainer.data, cache={}))  # built matrices cannot be pickled
        self._key = uuid.uuid4().hex
        self._threads = threads
        self._slots = ThreadPoolExecutor(workers, thread_name_prefix="spark-trial")

    def submit(self, values: dict[str, Any]) -> Future[Payload]:
        """Start a trial; called on the driver's thread (see ``Trainer.detached``)."""
        task = partial(_run_partition, self._key, self._data, self._trainer.detached(), self._threads)
        return self._slots.submit(self._job, task, values)

    def _job(self, task: Callable[[Iterator[dict[str, Any]]], Iterator[Payload]], values: dict[str, Any]) -> Payload:
        (payload,) = self._context.parallelize([values], 1).mapPartitions(task).collect()
        return payload

    def __enter__(self) -> SparkPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._slots.shutdown(wait=True, cancel_futures=True)
        self._data.destroy()


_loaded: dict[str, Any] = {}
"""In a Spark Python worker: a pool's key -> the study's data, with the matrices its trials built."""


def _run_partition(
    key: str, data: Any, trainer: Trainer, threads: int | None, values: Iterator[dict[str, Any]]
) -> Iterator[Payload]:
    """A trial's task on a Spark worker. It reads its input to the end before it trains (an input left
    unread makes Spark end the Python worker rather than reuse it)."""
    trials = list(values)
    if threads is not None:
        os.environ["PIPELINE_THREADS"] = str(threads)
    if key not in _loaded:
        _loaded.clear()  # an earlier study's data
        _loaded[key] = data.value
    trainer = replace(trainer, data=_loaded[key])
    for trial in trials:
        yield trainer(-1, trial)
