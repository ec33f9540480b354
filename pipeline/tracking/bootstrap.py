"""A new SQLite tracking store appears whole or not at all; one that a killed process half-created is repaired.

MLflow creates a SQLite store in place, in many steps (the initial tables, then some 60 alembic migrations,
seconds in all), none of them undone when the process dies. A process killed in between leaves tables
without a schema version, or at an intermediate one with the next migration half applied, and every later
start fails (``table experiment_tags already exists``); two processes creating one store at once collide
the same way (``table jobs already exists``).

``ensure_store`` creates the store under an exclusive lock (``<db>.lock``, next to it), with MLflow's own
initialization, in a temporary file of the same folder that is then renamed into place: the store's path
holds nothing or a complete store, whatever the moment of a kill. A store whose schema is not MLflow's
current one (half-created by anything else, or empty from an older MLflow) is moved aside as
``<db>.broken-<timestamp>`` and created anew when it holds no runs, models or experiments; when it does,
``TrackingError`` says what to do instead (back it up, ``mlflow db upgrade``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from pipeline.errors import TrackingError

log = logging.getLogger(__name__)

ARTIFACT_ROOT = "./mlruns"
"""Where the Default experiment keeps artifacts: what MLflow itself uses for a SQLite store."""
DATA_TABLES = ("runs", "registered_models", "logged_models", "trace_info")
"""Tables whose rows are a user's work (experiments are checked apart: the Default one is not)."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI (relative to the working directory, as for MLflow);
    None for any other scheme and for in-memory databases."""
    if not uri.startswith("sqlite:"):
        return None
    database = make_url(uri).database
    return None if not database or database == ":memory:" else Path(database)


def ensure_store(uri: str) -> None:
    """Make sure the SQLite store at ``uri`` exists whole, at MLflow's current schema; do nothing for other
    schemes. A current store is left untouched, without taking the lock.

    Raises TrackingError for a file that is not a SQLite database, or a store not at the current schema
    that holds runs, models or experiments (MLflow cannot use it either; the message says how to upgrade).
    """
    path = sqlite_path(uri)
    if path is None or _current(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(f"{path.name}.lock")):
        for leftover in path.parent.glob(f".{path.name}.creating-*"):
            leftover.unlink()  # a creator killed before its rename: we hold the lock, so it is dead
        if _current(path):  # another process created it while we waited
            return
        if path.exists() and _tables(path):
            _set_aside(path)
        _create(path)


def _open(path: Path) -> sqlite3.Connection:
    """A connection to an existing file, never creating one. Read-write, though nothing here writes: a process
    killed while it wrote to the store leaves a hot journal, which SQLite rolls back on the next open, and a
    read-only connection cannot ("attempt to write a readonly database"), which refused a store after a kill -9."""
    return sqlite3.connect(f"file:{path}?mode=rw", uri=True)


def _current(path: Path) -> bool:
    """Whether the file is a store at MLflow's current schema: its creation (or upgrade) finished."""
    if not path.exists() or path.stat().st_size == 0 or "alembic_version" not in _tables(path):
        return False
    from mlflow.store.db.utils import _get_latest_schema_revision

    with closing(_open(path)) as db:
        versions = [row[0] for row in db.execute("SELECT version_num FROM alembic_version")]
    return versions == [_get_latest_schema_revision()]


def _tables(path: Path) -> set[str]:
    try:
        with closing(_open(path)) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise TrackingError(
            f"tracking store {path} is not a SQLite database ({error}); "
            "move it away, or point --tracking-uri / MLFLOW_TRACKING_URI at another file"
        ) from None


def _set_aside(path: Path) -> None:
    """Move a half-created store away when it holds nothing; refuse when it holds a user's work."""
    with closing(_open(path)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = sum(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DATA_TABLES if t in tables)
        if "experiments" in tables:
            rows += db.execute("SELECT count(*) FROM experiments WHERE experiment_id != 0").fetchone()[0]
    if rows:
        raise TrackingError(
            f"tracking store {path} is not at MLflow's current schema (created by an older MLflow, or its creation "
            f"was interrupted) and holds {rows} runs, models or experiments; back it up, then run "
            f"`mlflow db upgrade sqlite:///{path}`, or move it away to start a new store"
        )
    broken = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    path.replace(broken)
    log.warning(
        "tracking store %s holds no runs but is not at MLflow's current schema (half-created by a process that "
        "died, or from an older MLflow): moved it to %s and creating it anew",
        path,
        broken,
    )


def _create(path: Path) -> None:
    """Create the store with MLflow's own initialization in a temporary file, then rename it into place."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    temporary = path.with_name(f".{path.name}.creating-{os.getpid()}")
    uri = f"sqlite:///{temporary}"
    log.info("creating tracking store %s", path)
    SqlAlchemyStore(uri, ARTIFACT_ROOT)
    # MLflow caches one engine per URI; this one's file is about to be renamed, so close it now.
    engine = SqlAlchemyStore._engine_map.pop(uri, None)
    if engine is not None:
        engine.dispose()
    with temporary.open("rb+") as handle:
        os.fsync(handle.fileno())
    temporary.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``, waiting for another creator; the kernel releases it when the
    holder dies, so a killed creator never blocks the next one."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
