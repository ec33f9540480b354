"""Where parallel trials run: worker processes on this machine, or Spark for several machines.

Both engines take trials from ``optimizer.minimize_parallel`` (``submit(values)`` returns a future of the
trial's outcome and record) and are context managers that stop their workers on leaving. Workers only
train; the driver writes the history and every MLflow run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.search.local import LocalPool
from pipeline.search.trial import Trainer

if TYPE_CHECKING:
    from pipeline.search.spark import SparkPool


@dataclass(frozen=True)
class Parallel:
    workers: int
    """Trials run at once."""
    master: str | None = None
    """Spark master URL (``local[N]``, ``spark://host:7077``, ...); None runs worker processes here."""

    @property
    def threads_per_trial(self) -> int | None:
        """On this machine its cores split between the trials (oversubscribing them thrashes); None where
        ``PIPELINE_THREADS`` is set (the workers inherit it) or on a cluster, whose executors decide from
        their own idle cores."""
        if os.environ.get("PIPELINE_THREADS") or (self.master is not None and not self.master.startswith("local")):
            return None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.workers)


def engine(parallel: Parallel, trainer: Trainer) -> LocalPool | SparkPool:
    """The engine for ``parallel``, its workers started (a Spark session for a master URL: InputError when
    pyspark is not installed)."""
    if parallel.master is None:
        return LocalPool(trainer, parallel.workers, parallel.threads_per_trial)
    from pipeline.search import spark  # pyspark is an optional extra

    return spark.SparkPool(spark.session(parallel.master), trainer, parallel.workers, parallel.threads_per_trial)
