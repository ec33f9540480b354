"""Riding out a tracking store that goes away: which errors are transient, the backoff between attempts, the
grace period a write is retried for, and SQLite's "database is locked" retried at once."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from mlflow.exceptions import MlflowException

from pipeline.errors import TrackingError

T = TypeVar("T")
log = logging.getLogger(__name__)


def error_summary(error: BaseException) -> str:
    """``Class: first line`` of an error, cut to 300 characters: what a one-line message can hold."""
    first = str(error).splitlines()[0][:300] if str(error) else ""
    return f"{type(error).__name__}: {first}"


TRANSIENT_CODES = frozenset(
    {
        "INTERNAL_ERROR",  # the client's code for a server it could not reach, and the server's for a 500
        "TEMPORARILY_UNAVAILABLE",  # SQLAlchemy's OperationalError: locked, disk I/O, cannot open the file
        "SERVICE_UNDER_MAINTENANCE",
        "WORKSPACE_TEMPORARILY_UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "ABORTED",
        "REQUEST_LIMIT_EXCEEDED",
        "RESOURCE_EXHAUSTED",
    }
)
"""MLflow error codes of a failure that can pass by itself; any other code is a write the store refused."""


def transient(error: BaseException) -> bool:
    """Whether retrying the call later may succeed: the store unreachable, overloaded or briefly locked,
    as opposed to a request it refused (an invalid value, an unknown run or experiment)."""
    if isinstance(error, MlflowException):
        return error.error_code in TRANSIENT_CODES
    return isinstance(error, OSError)  # requests' ConnectionError and timeouts are OSErrors


FIRST_RETRY_S = 0.5
MAX_RETRY_S = 10.0


def retry_delay(attempt: int) -> float:
    """Seconds before retry ``attempt`` (0, 1, ...) of a failed write: 0.5, 1, 2, 4, 8, then 10 s apart.

    Capped low because an outage ends unannounced: the queue is written at most 10 s after the store is
    back. Each attempt against a store that is down also spends MLflow's own HTTP retries (about 15 s
    by default, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``), so an outage costs one request per 10-25 s.
    """
    return min(MAX_RETRY_S, FIRST_RETRY_S * 2**attempt)


def with_grace(call: Callable[[], T], grace_s: float, what: str, stop: threading.Event | None = None) -> T:
    """``call()``, retried with ``retry_delay`` backoff while it fails ``transient``-ly, for up to ``grace_s``
    seconds after its first failure (one attempt is always made; setting ``stop`` ends the retrying).

    Raises a one-line TrackingError naming ``what`` once the grace period is over; a failure that is not
    transient is raised as it is, at once.
    """
    stop = stop or threading.Event()
    deadline: float | None = None
    for attempt in itertools.count():
        try:
            result = call()
        except Exception as error:
            if not transient(error):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + grace_s
                if grace_s > 0:
                    log.warning("tracking store unavailable (%s): retrying %s for up to %g s, the study goes on",
                                error_summary(error), what, grace_s)  # fmt: skip
            if now >= deadline or stop.wait(min(retry_delay(attempt), deadline - now)):
                raise _gave_up(what, grace_s, error) from error
            continue
        if deadline is not None:
            log.info("tracking store back: %s written at attempt %d", what, attempt + 1)
        return result
    raise AssertionError("unreachable")


def _gave_up(what: str, grace_s: float, error: BaseException) -> TrackingError:
    waited = f" and was still unavailable after the {grace_s:g} s grace period (tracking.grace_s)" if grace_s else ""
    return TrackingError(
        f"the tracking store failed to record {what}{waited} ({error_summary(error)}); "
        "rerun the same command once it is back: the study resumes"
    )


LOCKED_RETRIES = 6


def retrying_locked(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call MLflow, retrying while SQLite reports "database is locked" (another process is writing)."""
    for attempt in range(LOCKED_RETRIES):
        try:
            return call(*args, **kwargs)
        except Exception as error:
            if "database is locked" not in str(error) or attempt == LOCKED_RETRIES - 1:
                raise
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")
