"""Parallel trials in worker processes on this machine: no Spark, no Java; and the driver's side of the
worker protocol, which Spark's resident workers (``spark.py``) share.

Each of N worker processes is started once, as a fresh interpreter (``python -m pipeline.search.worker``:
no state forked from the driver, whose threads and open store a fork would copy, and none of the script that
started the study, which multiprocessing's spawn would run again), and receives the study's data once; it
builds its matrices on its first trial and keeps them for the next. Workers only train: the driver writes the
history and every MLflow run.

The protocol: a worker holds one connection to the driver and runs ``serve`` on it, a trial at a time, until
the connection closes. One connection per worker rather than ``concurrent.futures.ProcessPoolExecutor``: a pool
whose worker dies fails every trial in flight and cannot tell which one killed it. Here a worker that dies
(SIGKILL, a segfault in a native library, the OOM killer) fails its own trial only, and a new worker takes its
place.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from pipeline.errors import PipelineError
from pipeline.failpoints import failpoint
from pipeline.search.trial import Trainer, TrialOutcome, TrialRecord

Payload = tuple[TrialOutcome, TrialRecord]
"""What a worker sends back: the trial's outcome and the record its MLflow run is written from."""


class WorkerDied(RuntimeError):
    """The worker running a trial exited (or its connection to the driver closed) before it sent the trial
    back."""


WORKER_START = "worker_start"
"""The ``PIPELINE_FAILPOINT`` value that kills every local worker process as it starts, before it takes its data."""


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


class Worker:
    """The driver's end of one worker: a trial at a time goes out over ``conn`` and comes back."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.busy = False
        """A trial is out on it."""
        self.retired = False
        """It will take no more trials (its worker is known to be gone): an idle pool skips it."""
        self._lock = threading.Lock()

    def run(self, job: _Job) -> Payload:
        """The trial's payload; WorkerDied when the connection ends first, RuntimeError for an error of the
        worker outside the trial (the trainer records a failing fit itself)."""
        self.busy = True
        try:
            self.conn.send(job)
            kind, body = self.conn.recv()
        except (EOFError, OSError):
            self.close()
            raise WorkerDied(self.death()) from None
        finally:
            self.busy = False
        if kind == "error":
            raise RuntimeError(body)
        return body

    def death(self) -> str:
        """Why the trial failed, once its connection ended."""
        return "the worker running the trial died"

    def close(self) -> None:
        with self._lock:
            self.conn.close()


class WorkerPool:
    """What the engines share: ``submit`` and the trial threads, ``workers`` of them. A trial takes an idle
    worker, runs on it and gives it back; a worker that dies fails its own trial only (WorkerDied), and
    ``_lost`` is told. Engines add the workers (``_idle``) and stop them on leaving (``_stop_waiting``)."""

    def __init__(self, trainer: Trainer, workers: int, thread_name_prefix: str):
        self._trainer = trainer
        self._idle: queue.SimpleQueue[Worker | None] = queue.SimpleQueue()
        """Idle workers; None once no worker will come (see ``_stop_waiting``)."""
        self._failure: Exception = WorkerDied("the pool was closed before a worker took the trial")
        self._closed = False
        self._trials = ThreadPoolExecutor(workers, thread_name_prefix=thread_name_prefix)
        self._submitted = 0

    def submit(self, values: dict[str, Any]) -> Future[Payload]:
        """Start a trial on the next idle worker. Called on the driver's thread, which alone extends the
        pruning reference, so the copy taken here is consistent."""
        job = _Job(self._submitted, values, self._trainer.detached())
        self._submitted += 1
        return self._trials.submit(self._run, job)

    def _run(self, job: _Job) -> Payload:
        while True:
            worker = self._idle.get()
            if worker is None:
                self._idle.put(None)  # for the next trial waiting
                raise self._failure
            if not worker.retired:
                break
        try:
            payload = worker.run(job)
        except WorkerDied:
            self._lost(worker)
            raise
        self._idle.put(worker)
        return payload

    def _lost(self, worker: Worker) -> None:
        """``worker`` died in a trial (its connection is closed)."""

    def _stop_waiting(self, failure: Exception | None = None) -> None:
        """No worker will come: the trials waiting for one, and any submitted later, fail with ``failure`` (by
        default, that the pool was closed)."""
        if failure is not None:
            self._failure = failure
        self._idle.put(None)


class LocalPool(WorkerPool):
    """``workers`` processes that run trials of ``trainer`` (its data sent once to each); ``submit`` returns
    a future per trial. Use it as a context manager: leaving it stops the workers.

    ``threads`` sets each worker's ``PIPELINE_THREADS`` (xgboost's threads per trial); None leaves it as the
    driver's environment has it.
    """

    def __init__(self, trainer: Trainer, workers: int, threads: int | None):
        super().__init__(trainer, workers, "local-trial")
        assert trainer.data is not None, "the driver's trainer has the study's data"
        self._data = replace(trainer.data, cache={})  # built matrices cannot be pickled
        self._threads = threads
        self._workers: list[_Process] = []
        self._lock = threading.Lock()
        started = [self._start() for _ in range(workers)]  # they import at once; each reads its data after
        try:
            for worker in started:
                self._hand_data(worker)
        except PipelineError:
            self.__exit__()
            raise
        for worker in started:
            self._idle.put(worker)

    def _lost(self, worker: Worker) -> None:
        if self._closed:
            return
        replacement = self._start()
        try:
            self._hand_data(replacement)
        except PipelineError as error:  # the trials waiting for a worker fail with it, and the search ends
            self._stop_waiting(error)
            return
        self._idle.put(replacement)

    def _start(self) -> _Process:
        """A new worker process, importing (a closed pool's never takes a trial: leaving kills it)."""
        parent, child = multiprocessing.Pipe()  # a socket pair: the worker's death is an EOF at this end
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.search.worker", str(child.fileno())],
            pass_fds=[child.fileno()],
            env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)},  # the packages the driver imported
        )
        child.close()
        worker = _Process(parent, process)
        with self._lock:
            self._workers.append(worker)
            if self._closed:  # started while the pool was being left, after it killed the others
                process.kill()
        return worker

    def _hand_data(self, worker: _Process) -> None:
        """Send the worker the study's data and wait until it has them; PipelineError when it died first (it
        could not start)."""
        try:
            worker.conn.send((self._data, self._threads))
            worker.conn.recv()
        except (EOFError, OSError):
            code = worker.process.wait()
            raise PipelineError(f"a worker process could not start (exit code {code}); its error is above") from None

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stops every worker, idle or not (they hold nothing but their copy of the data): a trial still
        running, when the search ended on an error, fails rather than keeps this process waiting."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        for worker in workers:
            worker.process.kill()
            worker.process.wait()
        self._stop_waiting()
        self._trials.shutdown(wait=True, cancel_futures=True)
        for worker in workers:
            worker.close()


class _Process(Worker):
    def __init__(self, conn: Connection, process: Any):
        super().__init__(conn)
        self.process = process
        """A ``subprocess.Popen`` of ``python -m pipeline.search.worker``."""

    def death(self) -> str:
        return f"the worker process running the trial died (exit code {self.process.wait()})"


def serve(conn: Connection, data: Any, threads: int | None) -> None:
    """A worker: trials from the connection until it closes. The matrices built by the first trial stay in
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
            reply: tuple[str, Any] = ("done", replace(job.trainer, data=data)(-1, job.values))
        except Exception as exc:  # the trainer records a failing fit itself; this is anything else
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except OSError:  # the driver is gone (killed): nobody to send the trial to
            return
        except Exception as exc:  # the payload cannot be pickled
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
