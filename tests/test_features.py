"""pipeline.features: the preprocessor fitted on real training rows, applied to real validation rows."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from pipeline import config, tracking
from pipeline.data import Dataset, load_dataset
from pipeline.features import Preprocessor, thousands_mark, xgboost_names

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


# --- one-hot encoding (linear models) ------------------------------------------------------------------


@pytest.fixture
def onehot(dataset: Dataset) -> Preprocessor:
    return Preprocessor.fit(dataset.train, CATEGORICAL, NUMERIC, CROSSED, encoding="onehot")


def block(preprocessor: Preprocessor, matrix: np.ndarray, name: str) -> np.ndarray:
    """The 0/1 columns of one categorical feature, in the order of its categories."""
    columns = [preprocessor.feature_names.index(f"{name}={value}") for value in preprocessor.categories[name]]
    assert columns == list(range(columns[0], columns[0] + len(columns))), "one contiguous block per feature"
    return matrix[:, columns]


def test_onehot_has_one_column_per_category_seen_in_training(dataset, onehot, fitted):
    assert onehot.categories == fitted.categories, "the same categories, whatever the encoding"
    width = sum(len(seen) for seen in onehot.categories.values())
    assert onehot.feature_names[:width] == [f"{n}={v}" for n, seen in onehot.categories.items() for v in seen]
    assert onehot.feature_names[width:] == NUMERIC
    assert onehot.feature_types == ["q"] * (width + len(NUMERIC))

    matrix = onehot.transform(dataset.train)

    assert matrix.dtype == np.float32
    assert matrix.shape == (len(dataset.train), width + len(NUMERIC))
    for name in [*CATEGORICAL, "origin_dest"]:
        ones = block(onehot, matrix, name)
        assert set(np.unique(ones)) == {0.0, 1.0}
        np.testing.assert_array_equal(ones.sum(axis=1), 1.0)  # every training row has a seen category
        decoded = np.asarray(onehot.categories[name])[ones.argmax(axis=1)]
        expected = dataset.train[name] if name in CATEGORICAL else dataset.train["origin"] + "_" + dataset.train["dest"]
        np.testing.assert_array_equal(decoded, expected.to_numpy(dtype=str))


def test_onehot_rows_of_unseen_or_missing_categories_are_all_zero(dataset, onehot):
    frame = dataset.validation.copy()
    frame["carrier"] = frame["carrier"].astype(object)
    frame.loc[3, "carrier"] = None
    frame.loc[4, "origin"] = None
    unseen = ~frame["dest"].isin(onehot.categories["dest"]).to_numpy()
    assert unseen.any(), "February should reach a destination January's first rows do not"

    matrix = onehot.transform(frame)

    dest = block(onehot, matrix, "dest")
    np.testing.assert_array_equal(dest.sum(axis=1), np.where(unseen, 0.0, 1.0))
    carrier = block(onehot, matrix, "carrier").sum(axis=1)
    assert carrier[3] == 0 and np.delete(carrier, 3).min() == 1
    assert block(onehot, matrix, "origin")[4].sum() == 0
    assert block(onehot, matrix, "origin_dest")[4].sum() == 0, "a cross with a missing part is missing"
    assert not np.isnan(matrix).any()


def test_onehot_standardizes_numbers_with_the_training_mean_and_deviation(dataset, onehot):
    raw = dataset.train[NUMERIC].to_numpy(dtype=np.float64)
    means, scales = np.nanmean(raw, axis=0), np.nanstd(raw, axis=0)
    np.testing.assert_allclose(onehot.means, means)
    np.testing.assert_allclose(onehot.scales, scales)

    for split in (dataset.train, dataset.validation):
        matrix = onehot.transform(split)
        for i, name in enumerate(NUMERIC):
            values = split[name].to_numpy(dtype=np.float64)
            expected = np.where(np.isnan(values), 0.0, (values - means[i]) / scales[i])
            np.testing.assert_allclose(column(onehot, matrix, name), expected, rtol=1e-6, atol=1e-6)

    train = column(onehot, onehot.transform(dataset.train), "dep_time")
    assert abs(train.mean()) < 1e-4 and train.std() == pytest.approx(1.0, rel=1e-4)
    frame = dataset.validation.head(20).copy()
    frame.loc[5, "dep_time"] = np.nan
    with_missing = column(onehot, onehot.transform(frame), "dep_time")
    assert with_missing[5] == 0, "a missing number becomes the training mean: 0 once standardized"
    assert (np.delete(with_missing, 5) != 0).all()
    validation = column(onehot, onehot.transform(dataset.validation), "distance")
    assert abs(validation.mean()) > 1e-3, "validation rows are scaled by training statistics, not their own"


def test_onehot_constant_number_is_centred_not_divided_by_zero(dataset):
    frame = dataset.train.assign(minute=7)
    preprocessor = Preprocessor.fit(frame, ["carrier"], ["minute", "distance"], encoding="onehot")
    assert preprocessor.scales[0] == 1.0
    matrix = preprocessor.transform(frame)
    assert np.isfinite(matrix).all()
    assert (column(preprocessor, matrix, "minute") == 0).all()


def test_codes_keep_no_means_or_scales(fitted):
    assert fitted.encoding == "codes"
    assert (fitted.means, fitted.scales) == ([], [])


def test_onehot_save_and_load_keep_encoding_means_and_scales(tmp_path, dataset, onehot):
    path = onehot.save(tmp_path / "preprocessor.json")

    loaded = Preprocessor.load(path)

    assert loaded == onehot
    assert loaded.encoding == "onehot"
    assert (loaded.means, loaded.scales) == (onehot.means, onehot.scales)
    assert loaded.feature_names == onehot.feature_names
    for split in (dataset.train, dataset.validation, dataset.test):
        np.testing.assert_array_equal(loaded.transform(split), onehot.transform(split))


# --- tables nobody here wrote --------------------------------------------------------------------------

QUIRKS = Path(__file__).parent / "quirks"


def quirk(name: str) -> Dataset:
    return load_dataset(config.load_dataset(QUIRKS / f"{name}.yaml"), QUIRKS / f"{name}.yaml")


def fitted_for(dataset: Dataset, encoding: str = "codes") -> Preprocessor:
    roles = dataset.roles
    return Preprocessor.fit(dataset.train, roles.categorical, roles.numeric, roles.crossed, encoding=encoding)


def test_names_xgboost_refuses_are_renamed_in_the_encoded_columns_only():
    dataset = quirk("odd_names")
    preprocessor = fitted_for(dataset)
    assert preprocessor.raw_columns == ["town", "size[m2]", "rooms<5]"]
    assert preprocessor.feature_names == ["town", "size(m2)", "roomslt5)"]
    onehot = fitted_for(dataset, "onehot")
    assert "town=north(1)" in onehot.feature_names

    x, y = dataset.xy("train")
    matrix = xgb.DMatrix(
        preprocessor.transform(x),
        y,
        feature_names=preprocessor.feature_names,
        feature_types=preprocessor.feature_types,
        enable_categorical=True,
    )
    booster = xgb.train({"nthread": 1, "max_depth": 3}, matrix, num_boost_round=20)
    raw_rows = dataset.test[preprocessor.raw_columns]  # served rows carry the names the data has
    predictions = booster.inplace_predict(preprocessor.transform(raw_rows))
    assert np.corrcoef(predictions, dataset.xy("test")[1])[0, 1] > 0.9


def test_renamed_names_stay_unique():
    assert xgboost_names(["a[1]", "a(1)", "a<b", "altb"]) == ["a(1)", "a(1)__2", "altb", "altb__2"]


def test_categories_beyond_the_limit_share_one_other_code():
    frame = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d", "e"], "n": np.arange(14.0)})
    codes = Preprocessor.fit(frame, ["c"], ["n"], max_categories=3)
    assert codes.categories == {"c": ["a", "b", "c"]} and codes.other == ["c"]
    rows = pd.DataFrame({"c": ["a", "c", "d", "never seen", None], "n": 1.0})
    np.testing.assert_array_equal(codes.transform(rows)[:, 0], [0, 2, 3, 3, np.nan])

    onehot = Preprocessor.fit(frame, ["c"], ["n"], encoding="onehot", max_categories=3)
    assert onehot.feature_names == ["c=a", "c=b", "c=c", "c=(other)", "n"]
    np.testing.assert_array_equal(onehot.transform(rows)[:, :4].argmax(axis=1)[:4], [0, 2, 3, 3])
    assert onehot.transform(rows)[4, :4].sum() == 0, "missing stays all zeros"


def test_ties_at_the_limit_go_to_the_value_that_sorts_first():
    frame = pd.DataFrame({"c": ["z", "y", "x", "z"]})
    assert Preprocessor.fit(frame, ["c"], [], max_categories=2).categories == {"c": ["x", "z"]}
    shuffled = frame.iloc[::-1]
    assert Preprocessor.fit(shuffled, ["c"], [], max_categories=2).categories == {"c": ["x", "z"]}


def test_a_preprocessor_saved_before_the_other_code_existed_loads(tmp_path, fitted):
    state = json.loads(fitted.save(tmp_path / "p.json").read_text())
    del state["other"]
    (tmp_path / "old.json").write_text(json.dumps(state))
    assert Preprocessor.load(tmp_path / "old.json") == fitted


class _Encoded(mlflow.pyfunc.PythonModel):
    """The smallest served model that reads raw rows through the preprocessor: the row sums of its matrix."""

    def load_context(self, context):
        self.preprocessor = Preprocessor.load(context.artifacts["preprocessor"])

    def predict(self, context, model_input, params=None):
        return np.nansum(self.preprocessor.transform(model_input), axis=1)


@pytest.mark.parametrize("name", ["integer_gaps", "odd_names", "yes_no", "high_cardinality"])
def test_a_model_logged_with_its_signature_serves_gaps_and_whole_numbers_in_every_column(
    tmp_path, name, monkeypatch, new_store
):
    """Through a real MLflow store and ``mlflow.pyfunc``: a row whose every column is missing is accepted,
    also in the columns that held integers in training, and so are the training rows as they are."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(new_store(tmp_path / "mlflow.db"))
    try:
        dataset = quirk(name)
        preprocessor = fitted_for(dataset)
        example = dataset.test[preprocessor.raw_columns].head(5)
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=_Encoded(),
                artifacts={"preprocessor": str(preprocessor.save(tmp_path / "preprocessor.json"))},
                signature=tracking.signature(example),
                input_example=example,
                pip_requirements=["mlflow"],
            )
        loaded = mlflow.pyfunc.load_model(info.model_uri)
        gaps = pd.DataFrame({c: [None] for c in preprocessor.raw_columns}, dtype=object)
        rows = pd.concat([example.astype(object), gaps], ignore_index=True)
        served = loaded.predict(rows)
        assert len(served) == 6
        np.testing.assert_allclose(served[:5], np.nansum(preprocessor.transform(example), axis=1), rtol=1e-6)
        np.testing.assert_allclose(loaded.predict(example), served[:5], rtol=1e-6)  # int64 columns as they are
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.parametrize(
    ("values", "decimal", "mark"),
    [
        (["1.234,56", "12,5", "999"], ",", "."),
        (["1,234,567.8", "-3,000"], ".", ","),
        (["1 234.5", "12"], ".", " "),
        (["1,5", "2,25"], ".", None),  # a decimal comma the file did not declare, not thousands
        (["12.345", "1.2"], ",", None),  # "1.2" groups no thousands: codes or versions, not numbers
        (["abc", "1.234"], ",", None),
    ],
)
def test_a_thousands_mark_is_found_only_where_it_groups_digits_by_three(values, decimal, mark):
    assert thousands_mark(pd.Series(values), decimal) == mark
