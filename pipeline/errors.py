"""Errors a user can cause, each mapped by ``__main__`` to a one-line message and an exit code."""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """Base of the errors the CLI reports as one line instead of a traceback."""

    exit_code = 1


class InputError(PipelineError):
    """The user's study, dataset or space file (or the data it points to) is invalid: exit 2."""

    exit_code = 2

    def __init__(self, file: str | Path | None, key: str | None, problem: str, fix: str | None = None):
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        where = ": ".join(str(part) for part in (file, key) if part)
        message = f"{where}: {problem}" if where else problem
        super().__init__(f"{message}; {fix}" if fix else message)


class TrackingError(PipelineError):
    """The MLflow tracking store could not be used (unreachable server, unwritable database)."""


class StudyLocked(PipelineError):
    """Another process runs this study: exit code 3, so a scheduler can tell it from a failure."""

    exit_code = 3


class TooManyFailures(PipelineError):
    """More than the allowed share of trials failed: the study stops and nothing is registered."""
