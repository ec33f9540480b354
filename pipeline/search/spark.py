"""Parallel trials on Spark: the session, and resident workers that each run many trials.

Spark is an optional extra (``pip install 'pipeline[spark]'``) for trials on several machines:
``--spark-master spark://host:7077`` spreads them over a cluster's executors, which must have this package
installed (``local[N]`` runs Spark on this machine; without ``--spark-master`` trials run in worker
processes instead, ``local.py``). Workers only train: the driver writes the history and every MLflow run,
so workers need no access to the tracking store.

A trial is not a Spark job. Each of the N workers is one long-running one-task Spark job whose task connects
back to the driver (``multiprocessing.connection``, over TCP, with a key only the pool's tasks are given),
loads the broadcast data once, and then serves trials over that connection exactly as a local worker process
does (``local.serve``), until the driver closes it. A trial costs one message each way; Spark schedules a job
only when a worker starts, or restarts after its task died.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from pipeline.errors import InputError, PipelineError
from pipeline.search.local import Worker, WorkerPool, serve
from pipeline.search.trial import Trainer

RESTARTS = 3
"""A slot's Spark jobs in a row that may end before their task connected back; one more fails the study."""

_GRACE_S = 2.0
"""On leaving, how long the idle workers' jobs are given to end on their own before the rest are cancelled."""

log = logging.getLogger(__name__)


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


class SparkPool(WorkerPool):
    """``workers`` resident Spark workers that run trials of ``trainer``; ``submit`` returns a future per
    trial (``local.WorkerPool``: a worker that dies fails its own trial only, with WorkerDied). Use it as a
    context manager: leaving it stops every worker and cancels the pool's jobs.

    Each slot is a driver thread that runs its worker's one-task job (all in the job group ``group``) and,
    when that job ends or fails, starts another: the new task connects back and takes the slot. A slot
    whose job ends ``RESTARTS + 1`` times in a row before its task connected fails the study with a
    PipelineError naming the address the tasks could not reach (``spark.driver.host`` and the port).

    The driver listens on 127.0.0.1 for a ``local[...]`` master; for a cluster on every interface, and tasks
    connect to ``spark.driver.host`` (``driver_host``, when given, replaces that address).
    """

    def __init__(self, spark: Any, trainer: Trainer, workers: int, threads: int | None, driver_host: str | None = None):
        super().__init__(trainer, workers, "spark-trial")
        assert trainer.data is not None, "the driver's trainer has the study's data"
        self._context = context = spark.sparkContext
        local = context.master.startswith("local")
        authkey = secrets.token_bytes(32)
        # A backlog for every worker: at the default of 1, workers connecting at once wait for TCP's retries.
        self._listener = Listener(("127.0.0.1" if local else "0.0.0.0", 0), backlog=max(workers, 8), authkey=authkey)
        port = self._listener.address[1]
        driver = context.getConf().get("spark.driver.host") or socket.gethostname()
        host = driver_host or ("127.0.0.1" if local else driver)
        self.address: tuple[str, int] = (host, port)
        """Where the tasks connect to."""
        self.group = f"pipeline-trials-{uuid.uuid4().hex}"
        """The Spark job group of this pool's jobs."""
        self._data = context.broadcast(replace(trainer.data, cache={}))  # built matrices cannot be pickled
        self._loads = context.accumulator(0)
        self._task = partial(_resident, _Task(self.address, authkey, self._data, threads, self._loads))
        self._lock = threading.Lock()
        self._jobs: dict[int, int | None] = {}
        """Per slot, the attempt its running job carries (None between jobs)."""
        self._connected: dict[int, _Resident] = {}
        """Per slot, the worker its running job's task connected as."""
        self._workers: list[_Resident] = []
        self._accepting = threading.Thread(target=self._accept, name="spark-accept", daemon=True)
        self._accepting.start()
        self._slots = [
            threading.Thread(target=self._slot, args=(slot,), name=f"spark-slot-{slot}", daemon=True)
            for slot in range(workers)
        ]
        for thread in self._slots:
            thread.start()

    @property
    def data_loads(self) -> int:
        """How many times a task of this pool loaded the broadcast data: once per worker. Counted when a task
        ends (Spark adds a task's counts when it succeeds): read it after leaving the pool."""
        return int(self._loads.value)

    def _slot(self, slot: int) -> None:
        self._context.setJobGroup(self.group, "pipeline trials", interruptOnCancel=True)
        misses, attempt = 0, 0
        while True:
            with self._lock:
                if self._closed:
                    return
                attempt += 1
                self._jobs[slot] = attempt
            reason: str | None = None
            try:
                reason = next(
                    iter(self._context.parallelize([(slot, attempt)], 1).mapPartitions(self._task).collect()), None
                )
            except Exception as exc:  # py4j's for a failed or cancelled job: the worker's trial saw its EOF
                reason = _last_line(exc)
            with self._lock:
                self._jobs[slot] = None
                worker = self._connected.pop(slot, None)
                if worker is not None:
                    worker.retired = True
                if self._closed:
                    return
            misses = 0 if worker is not None else misses + 1
            if misses > RESTARTS:
                self._stop_waiting(self._unreachable(misses, reason))
                return
            log.debug("slot %d: job %d ended (%s); starting another", slot, attempt, reason)

    def _unreachable(self, misses: int, reason: str | None) -> PipelineError:
        host, port = self.address
        why = f"; last error: {reason}" if reason else ""
        return PipelineError(
            f"Spark workers could not start: {misses} jobs in a row ended before their task connected back to the "
            f"driver at {host}:{port} (spark.driver.host {host}, port {port}: the executors must reach it){why}"
        )

    def _accept(self) -> None:
        while True:
            try:
                conn = self._listener.accept()
                slot, attempt = conn.recv()  # the task's first message, sent as it connects
            except Exception:  # a stranger without the key, a task that died, or the listener closed
                if self._closed:
                    return
                continue
            _no_delay(conn)
            worker = _Resident(conn)
            with self._lock:
                current = not self._closed and self._jobs.get(slot) == attempt
                if current:
                    earlier = self._connected.get(slot)
                    if earlier is not None:  # Spark retried the task within its job (a cluster)
                        earlier.retired = True
                        earlier.interrupt()
                    self._connected[slot] = worker
                    self._workers.append(worker)
            if current:
                self._idle.put(worker)
            else:  # its job already ended, or the pool is being left: its task ends on this EOF
                worker.close()
                if self._closed:
                    return

    def __enter__(self) -> SparkPool:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stops every worker: their connections close, so idle tasks end and their jobs finish; then the
        pool's jobs still running (a trial in progress, a job waiting for a core) are cancelled, and a trial
        that was running fails with WorkerDied."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            idle = [self._slots[slot] for slot, worker in self._connected.items() if not worker.busy]
        for worker in workers:
            worker.interrupt()
        self._wake_accept()
        self._stop_waiting()
        _join(idle, _GRACE_S)
        if any(thread.is_alive() for thread in self._slots):
            self._context.cancelJobGroup(self.group)
        _join(self._slots, 60.0)
        _join([self._accepting], 5.0)
        self._listener.close()
        self._trials.shutdown(wait=True, cancel_futures=True)
        for worker in workers:
            worker.close()
        self._data.destroy()
        stuck = [thread.name for thread in (*self._slots, self._accepting) if thread.is_alive()]
        if stuck:
            log.warning("Spark pool left with threads still running: %s", ", ".join(stuck))

    def _wake_accept(self) -> None:
        """Ends the accept loop, which a closed listener alone does not wake: a connection that brings no key
        makes ``accept`` return, and the loop sees the pool closed."""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.address[1]), timeout=5):
            pass


class _Resident(Worker):
    """The driver's end of a Spark task's connection."""

    def death(self) -> str:
        return "the Spark task running the trial ended (its Python worker died, or the pool was left)"

    def interrupt(self) -> None:
        """Ends the connection for both ends at once: a thread waiting on it here and the task reading it
        see it end (closing a socket that another thread reads from wakes neither)."""
        with self._lock:
            if self.conn.closed:
                return
            with socket.socket(fileno=os.dup(self.conn.fileno())) as duplicate, contextlib.suppress(OSError):
                duplicate.shutdown(socket.SHUT_RDWR)  # OSError: the other end is gone already


def _no_delay(conn: Connection) -> None:
    """Sends each message at once: a message over 16 KiB goes out as two writes, and Nagle's algorithm would
    hold the second until the first is acknowledged, which the other end delays (tens of ms a trial)."""
    with socket.socket(fileno=os.dup(conn.fileno())) as duplicate:
        duplicate.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _join(threads: Iterable[threading.Thread], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _last_line(error: BaseException) -> str:
    """A one-line reason from a failed Spark job: its Python exception if the text has one (py4j's message is
    Java's stack trace with the worker's traceback inside)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    python = [line for line in lines if _is_python_error(line)]
    return (python or lines or [type(error).__name__])[-1][:300]


def _is_python_error(line: str) -> bool:
    name, colon, _ = line.partition(":")
    return bool(colon) and name.isidentifier() and (name.endswith("Error") or name.endswith("Exception"))


@dataclass(frozen=True)
class _Task:
    """What each worker's task is given: where to connect, the key, the broadcast data."""

    address: tuple[str, int]
    authkey: bytes
    data: Any
    """The broadcast ``TrainingData``."""
    threads: int | None
    loads: Any
    """An accumulator: the task adds 1 when it loads ``data``."""


def _resident(task: _Task, rows: Iterator[tuple[int, int]]) -> Iterator[str]:
    """A worker's task on a Spark executor: it connects back, names its slot and attempt, loads the data and
    serves trials until the driver closes the connection. It reads its whole input first (an input left
    unread makes Spark end the Python worker rather than reuse it). A connection that fails is the task's
    one result, not its exception: Spark ends a Python worker whose task raised, and the next attempt would
    pay for a new one and its imports."""
    (hello,) = list(rows)
    try:
        conn: Connection = Client(task.address, authkey=task.authkey)
    except (OSError, EOFError, AuthenticationError) as exc:  # EOF or a wrong key: not our driver listening
        return iter([f"{type(exc).__name__}: {exc}"])
    with conn:
        _no_delay(conn)
        conn.send(hello)
        data = task.data.value
        task.loads.add(1)
        serve(conn, data, task.threads)
    return iter(())
