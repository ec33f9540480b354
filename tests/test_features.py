"""pipeline.features: the preprocessor fitted on real training rows, applied to real validation rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import config
from pipeline.data import Dataset, load_dataset
from pipeline.features import Preprocessor

CATEGORICAL = ["origin", "dest", "carrier"]
NUMERIC = ["distance", "dep_time", "sched_dep_time", "hour", "minute"]
CROSSED = [["origin", "dest"]]


@pytest.fixture
def dataset(dataset_file: Path) -> Dataset:
    return load_dataset(config.load_dataset(dataset_file), dataset_file)


@pytest.fixture
def fitted(dataset: Dataset) -> Preprocessor:
    return Preprocessor.fit(dataset.train, CATEGORICAL, NUMERIC, CROSSED)


def column(preprocessor: Preprocessor, matrix: np.ndarray, name: str) -> np.ndarray:
    return matrix[:, preprocessor.feature_names.index(name)]


def test_categories_are_those_seen_in_training(dataset, fitted):
    train = dataset.train
    for name in CATEGORICAL:
        assert fitted.categories[name] == sorted(train[name].dropna().unique())
    routes = train["origin"] + "_" + train["dest"]
    assert fitted.categories["origin_dest"] == sorted(routes.unique())
    # Fitting looked at training rows only: a destination served in February alone is unknown.
    only_later = set(dataset.validation["dest"]) - set(train["dest"])
    assert only_later, "the real February data should reach a destination January's first rows do not"
    assert not only_later & set(fitted.categories["dest"])


def test_training_rows_get_the_codes_of_their_category(dataset, fitted):
    matrix = fitted.transform(dataset.train)
    assert matrix.dtype == np.float32
    assert matrix.shape == (len(dataset.train), len(fitted.feature_names))
    for name in CATEGORICAL:
        codes = column(fitted, matrix, name)
        assert not np.isnan(codes).any()
        decoded = np.asarray(fitted.categories[name])[codes.astype(int)]
        np.testing.assert_array_equal(decoded, dataset.train[name].to_numpy(dtype=str))
    routes = np.asarray(fitted.categories["origin_dest"])[column(fitted, matrix, "origin_dest").astype(int)]
    np.testing.assert_array_equal(routes, (dataset.train["origin"] + "_" + dataset.train["dest"]).to_numpy(dtype=str))


def test_unseen_categories_become_nan(dataset, fitted):
    validation = dataset.validation
    matrix = fitted.transform(validation)
    dest = column(fitted, matrix, "dest")
    unseen = ~validation["dest"].isin(fitted.categories["dest"]).to_numpy()
    assert unseen.any()
    assert np.isnan(dest[unseen]).all()
    assert not np.isnan(dest[~unseen]).any()
    # A route of two known airports that never flew in training is unseen too.
    route = column(fitted, matrix, "origin_dest")
    known = set(fitted.categories["origin_dest"])
    unseen_route = ~(validation["origin"] + "_" + validation["dest"]).isin(known).to_numpy()
    assert np.isnan(route[unseen_route]).all()
    assert not np.isnan(route[~unseen_route]).any()


def test_missing_values_become_nan_codes_and_stay_nan_in_numeric_columns(dataset, fitted):
    frame = dataset.validation.head(20).copy()
    frame["carrier"] = frame["carrier"].astype(object)
    frame.loc[3, "carrier"] = None
    frame.loc[4, "origin"] = None
    matrix = fitted.transform(frame)
    assert np.isnan(column(fitted, matrix, "carrier")[3])
    assert np.isnan(column(fitted, matrix, "origin")[4])
    assert np.isnan(column(fitted, matrix, "origin_dest")[4]), "a cross with a missing part is missing"
    assert not np.isnan(column(fitted, matrix, "origin_dest")[3])

    raw_missing = dataset.train["dep_time"].isna().to_numpy()
    train = fitted.transform(dataset.train)
    np.testing.assert_array_equal(np.isnan(column(fitted, train, "dep_time")), raw_missing)


def test_integer_categories_map_the_same_when_a_missing_value_makes_the_column_float(dataset):
    """A category column of integers turns float64 in a split with one missing value (pandas has no NaN for int64).

    The promise is that only the missing row becomes NaN; the other rows keep the codes learnt in training.
    """
    preprocessor = Preprocessor.fit(dataset.train, ["hour"], ["distance"])
    frame = dataset.validation.head(50).copy()
    assert frame["hour"].dtype == np.int64
    expected = preprocessor.transform(frame)
    frame["hour"] = frame["hour"].astype(np.float64)
    frame.loc[0, "hour"] = np.nan
    got = preprocessor.transform(frame)
    assert np.isnan(got[0, 0])
    np.testing.assert_array_equal(got[1:], expected[1:])


def test_numeric_columns_pass_through_as_float32(dataset, fitted):
    matrix = fitted.transform(dataset.validation)
    for name in NUMERIC:
        np.testing.assert_array_equal(column(fitted, matrix, name), dataset.validation[name].to_numpy(dtype=np.float32))


def test_transform_names_the_missing_raw_column(dataset, fitted):
    with pytest.raises(KeyError, match="distance"):
        fitted.transform(dataset.validation.drop(columns=["distance"]))
    with pytest.raises(KeyError, match="'origin'"):
        fitted.transform(dataset.validation.drop(columns=["origin"]))


def test_transform_ignores_extra_columns_and_column_order(dataset, fitted):
    frame = dataset.validation
    shuffled = frame[list(reversed(frame.columns))].assign(unrelated=1.5)
    np.testing.assert_array_equal(fitted.transform(shuffled), fitted.transform(frame))


def test_save_and_load_give_identical_transforms(tmp_path, dataset, fitted):
    path = fitted.save(tmp_path / "preprocessor.json")
    loaded = Preprocessor.load(path)
    assert loaded == fitted
    assert loaded.feature_names == fitted.feature_names
    for split in (dataset.train, dataset.validation, dataset.test):
        np.testing.assert_array_equal(loaded.transform(split), fitted.transform(split))
    assert Preprocessor.load(str(path)) == fitted


def test_raw_columns_feature_names_and_types_agree(dataset, fitted):
    assert fitted.raw_columns == [*CATEGORICAL, *NUMERIC]
    assert fitted.feature_names == [*CATEGORICAL, "origin_dest", *NUMERIC]
    assert fitted.feature_types == ["c"] * 4 + ["q"] * len(NUMERIC)
    assert len(fitted.feature_names) == len(fitted.feature_types) == fitted.transform(dataset.test).shape[1]
    # The raw columns are exactly what transform needs: those alone suffice.
    only_raw = dataset.test[fitted.raw_columns]
    np.testing.assert_array_equal(fitted.transform(only_raw), fitted.transform(dataset.test))


def test_fit_without_crosses(dataset):
    preprocessor = Preprocessor.fit(dataset.train, ["carrier"], ["distance"])
    assert preprocessor.crossed == []
    assert preprocessor.feature_names == ["carrier", "distance"]
    assert preprocessor.raw_columns == ["carrier", "distance"]
