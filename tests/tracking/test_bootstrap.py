"""pipeline.tracking.bootstrap: creating a SQLite store survives a real ``kill -9`` at any step and a
concurrent creator, with real MLflow in real processes."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.errors import TrackingError
from pipeline.tracking.bootstrap import ensure_store, sqlite_path

KILLED_AT = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine

uri, kill_at, creator = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ddl = 0

@event.listens_for(Engine, "before_cursor_execute")
def kill_at_the_nth_schema_change(conn, cursor, statement, *args):
    global ddl
    if statement.split(None, 1)[0].upper() in ("CREATE", "ALTER", "DROP"):
        ddl += 1
        if ddl == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9, between two steps of the store's creation

if creator == "mlflow":
    from mlflow import MlflowClient
    MlflowClient(uri).search_experiments()  # what tracking.connect did: MLflow creates the store in place
else:
    from pipeline.tracking.bootstrap import ensure_store
    ensure_store(uri)
"""

USE = """
import sys
from mlflow import MlflowClient
from pipeline.tracking.bootstrap import ensure_store

uri, name = sys.argv[1], sys.argv[2]
if sys.argv[3] == "ensure":
    ensure_store(uri)
client = MlflowClient(uri)
client.create_run(client.create_experiment(name))
"""
# The creation of a store runs about 330 schema changes: the first tables, then MLflow's migrations.
EARLY, MIGRATING = 20, 200


def killed_creation(db: Path, kill_at: int, creator: str) -> None:
    child = subprocess.run([sys.executable, "-c", KILLED_AT, f"sqlite:///{db}", str(kill_at), creator], timeout=300)
    assert child.returncode == -signal.SIGKILL, "the creator was not killed where intended"


def use(uri: str, name: str, how: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", USE, uri, name, how], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def experiments(db: Path) -> list[str]:
    return [e.name for e in MlflowClient(f"sqlite:///{db}").search_experiments()]


@pytest.mark.parametrize("kill_at", [EARLY, MIGRATING], ids=["initial-tables", "migrations"])
def test_a_store_mlflow_half_created_fails_forever_and_ensure_store_repairs_it(tmp_path, kill_at):
    db = tmp_path / "mlflow.db"
    killed_creation(db, kill_at, "mlflow")

    broken = use(f"sqlite:///{db}", "again", "mlflow-only")
    output = broken.communicate(timeout=300)[0]
    assert broken.returncode != 0, "the half-created store should fail without ensure_store"
    assert "already exists" in output or "out-of-date database schema" in output, output[-2000:]

    ensure_store(f"sqlite:///{db}")

    assert experiments(db) == ["Default"]
    set_aside = list(tmp_path.glob("mlflow.db.broken-*"))
    assert len(set_aside) == 1, "the half-created store should be kept aside, not deleted"
    assert not list(tmp_path.glob(".mlflow.db.creating-*"))


def test_ensure_store_killed_while_creating_leaves_no_store_and_the_next_call_creates_it(tmp_path):
    db = tmp_path / "store" / "mlflow.db"
    killed_creation(db, MIGRATING, "ensure_store")

    assert not db.exists(), "the store's path must hold nothing or a complete store"
    assert list(db.parent.glob(".mlflow.db.creating-*")), "the kill should have left the temporary file"

    ensure_store(f"sqlite:///{db}")

    assert experiments(db) == ["Default"]
    assert not list(db.parent.glob(".mlflow.db.creating-*")), "a dead creator's temporary file is removed"
    assert not list(db.parent.glob("mlflow.db.broken-*"))


def test_two_processes_creating_one_new_store_both_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    children = [use(uri, name, "ensure") for name in ("first", "second")]
    outputs = [child.communicate(timeout=300)[0] for child in children]

    assert [child.returncode for child in children] == [0, 0], outputs
    assert sorted(experiments(tmp_path / "mlflow.db")) == ["Default", "first", "second"]


def test_a_half_created_store_that_holds_runs_is_refused_in_one_line_and_left_alone(tmp_path):
    db = tmp_path / "mlflow.db"
    killed_creation(db, MIGRATING, "mlflow")
    with closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (7, 'x', 'active')")
    before = db.read_bytes()

    with pytest.raises(TrackingError) as raised:
        ensure_store(f"sqlite:///{db}")

    message = str(raised.value)
    assert "\n" not in message and str(db) in message and "mlflow db upgrade" in message
    assert db.read_bytes() == before
    assert not list(tmp_path.glob("mlflow.db.broken-*"))


def test_a_complete_store_is_left_untouched(tmp_path):
    db = tmp_path / "mlflow.db"
    ensure_store(f"sqlite:///{db}")
    MlflowClient(f"sqlite:///{db}").create_experiment("kept")
    before = (db.read_bytes(), db.stat().st_mtime_ns)

    ensure_store(f"sqlite:///{db}")

    assert (db.read_bytes(), db.stat().st_mtime_ns) == before
    assert sorted(experiments(db)) == ["Default", "kept"]


KILLED_MID_WRITE = """
import os, signal, sqlite3, sys

db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size = 1")  # pages spill to the file mid-transaction: the journal is hot
db.execute("BEGIN")
rows = [(f"lost-{i}",) for i in range(3000)]
db.executemany("INSERT INTO experiments (name, lifecycle_stage) VALUES (?, 'active')", rows)
os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of a write to the store
"""


def test_a_store_whose_writer_was_killed_mid_transaction_is_rolled_back_and_used(new_store, tmp_path):
    """A process killed while it wrote to the store leaves a hot journal beside it: the next one to open the
    store must roll it back, which a read-only look cannot do ("attempt to write a readonly database")."""
    db = tmp_path / "mlflow.db"
    uri = new_store(db)
    MlflowClient(uri).create_experiment("kept")
    child = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(db)], timeout=120)
    assert child.returncode == -signal.SIGKILL and db.with_name("mlflow.db-journal").exists()

    ensure_store(uri)

    assert sorted(experiments(db)) == ["Default", "kept"], "the killed transaction is rolled back, nothing lost"
    MlflowClient(uri).create_experiment("after")
    assert not db.with_name("mlflow.db-journal").exists()


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_text("not a database, but someone's notes\n" * 100)

    with pytest.raises(TrackingError, match="not a SQLite database"):
        ensure_store(f"sqlite:///{db}")
    assert db.read_text().startswith("not a database")


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("sqlite:///mlflow.db", Path("mlflow.db")),
        ("sqlite:////abs/dir/m.db", Path("/abs/dir/m.db")),
        ("sqlite:///m.db?timeout=20", Path("m.db")),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("http://127.0.0.1:5000", None),
        ("databricks", None),
        ("postgresql://u@h/db", None),
    ],
)
def test_only_sqlite_files_are_handled(uri, path):
    assert sqlite_path(uri) == path


def test_other_schemes_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    ensure_store("http://127.0.0.1:9")  # nothing listens there: ensure_store must not try
    ensure_store("sqlite://")

    assert list(tmp_path.iterdir()) == []
