"""pipeline.booster: early-stopped xgboost training on the small real flights data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from pipeline import config
from pipeline.booster import (
    ACCEPTED_PARAMETERS,
    TRAINING_KNOBS,
    Matrices,
    booster_params,
    build_matrices,
    train,
)
from pipeline.data import load_dataset
from pipeline.features import Preprocessor
from pipeline.metrics import mae, rmse

FAST = {"learning_rate": 1.0, "max_depth": 6, "num_boost_round": 300, "early_stopping_rounds": 5}
"""A learning rate this high overfits within a few rounds, so early stopping ends training early."""


@dataclass
class Prepared:
    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray
    preprocessor: Preprocessor

    def matrices(self, quantized: bool) -> Matrices:
        return build_matrices(
            self.x_train,
            self.y_train,
            self.x_validation,
            self.y_validation,
            self.preprocessor.feature_names,
            self.preprocessor.feature_types,
            quantized=quantized,
        )


@pytest.fixture
def prepared(dataset_file: Path) -> Prepared:
    dataset_config = config.load_dataset(dataset_file)
    dataset = load_dataset(dataset_config, dataset_file)
    x_train, y_train = dataset.xy("train")
    x_validation, y_validation = dataset.xy("validation")
    features = dataset_config.features
    numeric = [c for c in dataset.feature_columns if c not in features.categorical]
    preprocessor = Preprocessor.fit(x_train, features.categorical, numeric, features.crossed)
    return Prepared(
        preprocessor.transform(x_train),
        y_train,
        preprocessor.transform(x_validation),
        y_validation,
        preprocessor,
    )


def fit(prepared: Prepared, params=FAST, *, quantized=True, eval_metric="rmse", seed=0):
    matrices = prepared.matrices(quantized)
    return train(params, matrices.train, matrices.validation, eval_metric=eval_metric, seed=seed, nthread=2)


@pytest.mark.parametrize("quantized", [True, False])
def test_build_matrices_shapes_names_and_types(prepared, quantized):
    matrices = prepared.matrices(quantized)
    assert matrices.train.num_row() == len(prepared.y_train)
    assert matrices.validation.num_row() == len(prepared.y_validation)
    assert matrices.train.num_col() == len(prepared.preprocessor.feature_names)
    assert matrices.train.feature_names == prepared.preprocessor.feature_names
    assert matrices.validation.feature_types == prepared.preprocessor.feature_types
    np.testing.assert_array_equal(matrices.validation.get_label(), prepared.y_validation.astype(np.float32))


@pytest.mark.parametrize("quantized", [True, False])
def test_early_stopping_stops_before_the_round_limit(prepared, quantized):
    result = fit(prepared, quantized=quantized)
    rounds = result.booster.num_boosted_rounds()
    assert rounds < FAST["num_boost_round"]
    assert len(result.curve) == rounds
    assert 0 <= result.best_iteration < len(result.curve)
    assert rounds == result.best_iteration + FAST["early_stopping_rounds"] + 1
    assert result.curve[result.best_iteration] == min(result.curve)
    assert result.seconds > 0


@pytest.mark.parametrize(
    ("quantized", "eval_metric", "score"), [(True, "rmse", rmse), (False, "rmse", rmse), (True, "mae", mae)]
)
def test_curve_at_best_iteration_is_the_score_of_the_kept_rounds(prepared, quantized, eval_metric, score):
    result = fit(prepared, quantized=quantized, eval_metric=eval_metric)
    best = result.best_iteration
    kept = result.booster.inplace_predict(prepared.x_validation, iteration_range=(0, best + 1))
    assert result.curve[best] == pytest.approx(score(prepared.y_validation, kept), abs=1e-4)

    assert result.booster.num_boosted_rounds() > best + 1, "training should have run past the best round"
    every_round = result.booster.inplace_predict(prepared.x_validation)
    assert score(prepared.y_validation, every_round) == pytest.approx(result.curve[-1], abs=1e-4)
    assert abs(score(prepared.y_validation, every_round) - result.curve[best]) > 1e-3


def test_without_validation_it_boosts_exactly_the_rounds_asked(prepared):
    matrices = prepared.matrices(True)
    result = train(FAST, matrices.train, None, eval_metric="rmse", seed=0, nthread=2, num_boost_round=7)
    assert result.booster.num_boosted_rounds() == 7
    assert result.best_iteration == 6
    assert result.curve == []


def test_accepted_parameters():
    for name in ("max_depth", "learning_rate", "eta", "num_boost_round", "early_stopping_rounds", "subsample"):
        assert name in ACCEPTED_PARAMETERS
    for name in ("max_dept", "learning_rte", "n_estimators", "random_state"):
        assert name not in ACCEPTED_PARAMETERS


def test_booster_params_drop_training_knobs_and_keep_the_search_values():
    params = booster_params({"max_depth": 3, "num_boost_round": 10, "early_stopping_rounds": 2}, "mae", 5, 2)
    assert not set(TRAINING_KNOBS) & set(params)
    assert params["max_depth"] == 3
    assert params["eval_metric"] == "mae"
    assert params["seed"] == 5
    assert params["nthread"] == 2
    assert params["objective"] == "reg:squarederror"


def test_same_seed_gives_identical_predictions(prepared):
    params = FAST | {"subsample": 0.6, "colsample_bytree": 0.6, "num_boost_round": 20, "early_stopping_rounds": 20}
    first, again = fit(prepared, params, seed=11), fit(prepared, params, seed=11)
    other = fit(prepared, params, seed=12)

    def predict(result):
        return result.booster.inplace_predict(prepared.x_validation)

    np.testing.assert_array_equal(predict(first), predict(again))
    assert first.curve == again.curve
    assert first.best_iteration == again.best_iteration
    assert not np.array_equal(predict(first), predict(other)), "sampling should depend on the seed"


def test_predictions_from_numpy_match_the_dmatrix(prepared):
    result = fit(prepared, quantized=False)
    dmatrix = xgb.DMatrix(
        prepared.x_validation,
        feature_names=prepared.preprocessor.feature_names,
        feature_types=prepared.preprocessor.feature_types,
        enable_categorical=True,
    )
    rounds = (0, result.best_iteration + 1)
    np.testing.assert_allclose(
        result.booster.inplace_predict(prepared.x_validation, iteration_range=rounds),
        result.booster.predict(dmatrix, iteration_range=rounds),
        rtol=1e-6,
    )
