"""Parallel trials in worker processes on this machine: no Spark, no Java.

Each of N worker processes is started once (spawn: no state forked from the driver, whose threads and
open store a fork would copy) and receives the study's data once; it builds its matrices on its first
trial and keeps them for the next. Workers only train: the driver writes the history and every MLflow run.

One pipe per worker rather than ``concurrent.futures.ProcessPoolExecutor``: a pool whose worker dies fails
every trial in flight and cannot tell which one killed it. Here a worker that dies (SIGKILL, a segfault in
a native library, the OOM killer) fails its own trial only, and a new worker takes its place.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from pipeline.failpoints import failpoint
from pipeline.search.trial import Trainer, TrialOutcome, TrialRecord

Payload = tuple[TrialOutcome, TrialRecord]
"""What a worker sends back: the trial's outcome and the record its MLflow run is written from."""


class WorkerDied(RuntimeError):
    """The worker process running a trial exited before it sent the trial back."""


def trial_failpoint(index: int) -> str:
    """The ``PIPELINE_FAILPOINT`` value that kills the worker running the ``index``-th trial submitted
    (from 0): a crash test's worker death, in the middle of a trial."""
    return f"worker_trial_{index}"


@dataclass(frozen=True)
class _Job:
    index: int
    """Its place in the order trials were submitted (from 0): what ``trial_failpoint`` names."""
    values: dict[str, Any]
    trainer: Trainer
    """``Trainer.detached`` when the trial was submitted: the pruning reference as it was then."""


class LocalPool:
    """``workers`` processes that run trials of ``trainer`` (its data sent once to each); ``submit`` returns
    a future per trial. Use it as a context manager: leaving it stops the workers.

    ``threads`` sets each worker's ``PIPELINE_THREADS`` (xgboost's threads per trial); None leaves it as the
    driver's environment has it.
    """

    def __init__(self, trainer: Trainer, workers: int, threads: int | None):
        self._trainer = trainer
        assert trainer.data is not None, "the driver's trainer has the study's data"
        self._data = replace(trainer.data, cache={})  # built matrices cannot be pickled
        self._threads = threads
        self._context = multiprocessing.get_context("spawn")
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self._slots = ThreadPoolExecutor(workers, thread_name_prefix="local-trial")
        self._submitted = 0
        for _ in range(workers):
            self._idle.put(self._start())

    def submit(self, values: dict[str, Any]) -> Future[Payload]:
        """Start a trial on the next idle worker. Called on the driver's thread, which alone extends the
        pruning reference, so the copy taken here is consistent."""
        job = _Job(self._submitted, values, self._trainer.detached())
        self._submitted += 1
        return self._slots.submit(self._run, job)

    def _run(self, job: _Job) -> Payload:
        worker = self._idle.get()
        try:
            return worker.run(job)
        except WorkerDied:
            if not self._closed:
                worker = self._start()
            raise
        finally:
            self._idle.put(worker)

    def _start(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child, self._data, self._threads), name="pipeline-trial", daemon=True
        )
        process.start()
        child.close()  # the worker holds the only other end: its death is an EOF here
        worker = _Worker(process, parent)
        with self._lock:
            self._workers.append(worker)
        return worker

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stops every worker, idle or not (they hold nothing but their copy of the data): a trial still
        running, when the search ended on an error, fails rather than keeps this process waiting."""
        self._closed = True
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.process.kill()
            worker.process.join()
        self._slots.shutdown(wait=True, cancel_futures=True)
        for worker in workers:
            worker.conn.close()


@dataclass
class _Worker:
    process: Any
    """A ``multiprocessing`` process of the spawn context."""
    conn: Connection

    def run(self, job: _Job) -> Payload:
        try:
            self.conn.send(job)
            kind, body = self.conn.recv()
        except (EOFError, OSError):
            self.process.join()
            self.conn.close()
            raise WorkerDied(f"the worker process running the trial died (exit code {self.process.exitcode})") from None
        if kind == "error":
            raise RuntimeError(body)
        return body


def _serve(conn: Connection, data: Any, threads: int | None) -> None:
    """A worker process: trials from the pipe until it closes. The matrices built by the first trial stay in
    ``data.cache`` for the next ones."""
    if threads is not None:
        os.environ["PIPELINE_THREADS"] = str(threads)
    while True:
        try:
            job: _Job = conn.recv()
        except (EOFError, OSError):
            return
        failpoint([trial_failpoint(job.index)])
        try:
            conn.send(("done", replace(job.trainer, data=data)(-1, job.values)))
        except Exception as exc:  # the trainer records a failing fit itself; this is anything else
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
