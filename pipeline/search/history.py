"""A study's trial history on local disk, and the lock that keeps two processes off one study.

The history is an append-only JSON Lines file, ``<state>/<experiment>/<study>/history.jsonl``: one line
for the study (its parent run, space hash, data fingerprint, seed, and the warm-start points it was given),
one line per finished trial (written and fsync'ed before the trial is sent to MLflow; marked when it ran a
warm-start point), and one line per trial once its MLflow run is written.
A crash can only tear the line being appended; that last line is ignored on reading, so every trial whose
line is complete survives, whatever the moment of the kill. Nothing is ever rewritten in place.
When a study finishes, its file is renamed to ``<parent_run_id>.jsonl``: the next run starts a new study.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError, StudyLocked

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path(".pipeline")
WARM_START = "warm_start"


@dataclass
class StudyState:
    """What a history file holds: the study's identity, its trials, and which were logged to MLflow."""

    study: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    logged: dict[int, str] = field(default_factory=dict)
    """Trial number -> id of its MLflow run, for the trials whose run was fully written."""

    @property
    def warm_start(self) -> list[dict[str, Any]]:
        """The typed warm-start points the study started with: what a resume passes again as ``Plan.first``."""
        return list(self.study.get(WARM_START, []))

    @property
    def warm_start_numbers(self) -> set[int]:
        """The trials that evaluated a warm-start point (``PastTrial.warm_start`` on resume)."""
        return {t["number"] for t in self.trials if t.get(WARM_START)}


def study_folder(state_dir: Path, experiment: str, study: str) -> Path:
    return state_dir / _safe(experiment) / _safe(study)


def _safe(name: str) -> str:
    """A file name for ``name``; one that had to change gets a hash, so "a b" and "a_b" stay apart."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "_"
    return cleaned if cleaned == name else f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class History:
    """Appends to one study's history file; safe to call from the trial-writer thread too."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> StudyState | None:
        """The state in the file, or None when there is none (or not even its first line survived)."""
        if not self.path.exists():
            return None
        content = self.path.read_bytes()
        complete, _, torn = content.rpartition(b"\n")
        if torn:
            # The process died while appending: drop the partial line so later appends start clean.
            log.warning("%s: dropping a torn last line (the process died while writing it)", self.path)
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete) + 1 if complete else 0)
        entries = []
        for number, line in enumerate(complete.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                raise PipelineError(
                    f"{self.path}: line {number} is corrupt; move the file away to start "
                    "the study afresh (or rerun with --fresh)"
                ) from None
        if not entries or entries[0].get("type") != "study":
            return None
        state = StudyState(study=entries[0])
        for entry in entries[1:]:
            if entry["type"] == "trial" and entry["number"] == len(state.trials):
                state.trials.append(entry)
            elif entry["type"] == "logged":
                state.logged[entry["number"]] = entry["run_id"]
        return state

    def start(
        self, study: dict[str, Any], warm_start: Sequence[dict[str, Any]] = (), trials: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Begin a new study's file (replacing any), recording its warm-start points (typed parameters;
        JSON keeps ints, floats, strings and booleans exactly) so that a resume queues the same ones.
        ``trials`` (as ``append_trial`` takes them: a continued study's inherited ones) are written in the
        same file before it replaces any, so a crash leaves the study with all of them or none."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        line = {"type": "study", **study} | ({WARM_START: list(warm_start)} if warm_start else {})
        with tmp.open("w") as handle:
            handle.write(json.dumps(line) + "\n")
            for trial in trials:
                handle.write(json.dumps({"type": "trial", **trial}, allow_nan=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)

    def append_trial(self, trial: dict[str, Any], *, warm_start: bool = False) -> None:
        """``warm_start``: the trial evaluated one of the study's warm-start points (``Plan.is_warm_start``)."""
        self._append({"type": "trial", **trial} | ({WARM_START: True} if warm_start else {}))

    def append_logged(self, number: int, run_id: str) -> None:
        self._append({"type": "logged", "number": number, "run_id": run_id})

    def archive(self, name: str) -> Path:
        """Rename the finished study's file so that the next run starts a new study."""
        target = self.path.with_name(f"{_safe(name)}.jsonl")
        self.path.replace(target)
        return target

    def _append(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, allow_nan=True) + "\n").encode()
        with self._lock, self.path.open("ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


@contextmanager
def study_lock(folder: Path, study: str) -> Iterator[None]:
    """Hold an exclusive lock on the study for the life of the block; raise StudyLocked if it is held.

    ``flock`` is released by the kernel when the process dies, so a killed run never leaves a stale lock.
    It works between processes on one machine (or one NFS-with-locking folder), not across machines.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StudyLocked(f"study {study!r} is already running ({holder}); wait for it to finish") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()
