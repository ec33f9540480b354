"""Where parallel trials run: worker processes on this machine, or Spark for several machines.

Both engines take trials from ``optimizer.minimize_parallel`` (``submit(values)`` returns a future of the
trial's outcome and record) and are context managers that stop their workers on leaving. Workers only
train; the driver writes the history and every MLflow run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.search.local import LocalPool
from pipeline.search.trial import Trainer

if TYPE_CHECKING:
    from pipeline.search.spark import SparkPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parallel:
    workers: int
    """Trials run at once."""
    master: str | None = None
    """Spark master URL (``local[N]``, ``spark://host:7077``, ...); None runs worker processes here."""

    @property
    def threads_per_trial(self) -> int | None:
        """On this machine its cores split between the trials; None on a cluster, whose executors decide
        from their own idle cores, and where ``PIPELINE_THREADS`` is set and fits (the workers inherit it).

        A ``PIPELINE_THREADS`` that would oversubscribe the cores (its threads times the trials at once
        beyond them) is cut to the share, with a warning: xgboost's OpenMP threads then wait on each other
        at every round, which made a diamonds study (benchmarks/quality.py, 2 trials at once with 2 threads
        each on 2 cores) take 242 s instead of 15 s."""
        if self.master is not None and not self.master.startswith("local"):
            return None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        share = max(1, cores // self.workers)
        asked = os.environ.get("PIPELINE_THREADS")
        if not asked:
            return share
        if int(asked) * self.workers <= cores or int(asked) <= share:  # it fits, or no fewer threads would
            return None
        log.warning(
            "PIPELINE_THREADS=%s for each of %d trials at once is %d threads on %d cores: xgboost's threads "
            "would wait on each other at every round; each trial gets %d (set PIPELINE_THREADS to it, or lower "
            "--parallelism, to silence this)",
            asked, self.workers, int(asked) * self.workers, cores, share,
        )  # fmt: skip
        return share


def engine(parallel: Parallel, trainer: Trainer) -> LocalPool | SparkPool:
    """The engine for ``parallel``, its workers started (a Spark session for a master URL: InputError when
    pyspark is not installed)."""
    if parallel.master is None:
        return LocalPool(trainer, parallel.workers, parallel.threads_per_trial)
    from pipeline.search import spark  # pyspark is an optional extra

    return spark.SparkPool(spark.session(parallel.master), trainer, parallel.workers, parallel.threads_per_trial)
