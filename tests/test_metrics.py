"""pipeline.metrics against scikit-learn, and the metrics read off xgboost's early-stopping curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from pipeline.metrics import METRICS, mae, r2, rmse


@pytest.fixture(params=[0, 1, 2])
def sample(request) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(request.param)
    y_true = rng.normal(100, 30, size=500)
    y_pred = y_true + rng.normal(0, 10, size=500)
    return y_true, y_pred


def test_rmse_mae_r2_agree_with_sklearn(sample):
    y_true, y_pred = sample
    assert rmse(y_true, y_pred) == pytest.approx(math.sqrt(sk.mean_squared_error(y_true, y_pred)), rel=1e-12)
    assert mae(y_true, y_pred) == pytest.approx(sk.mean_absolute_error(y_true, y_pred), rel=1e-12)
    assert r2(y_true, y_pred) == pytest.approx(sk.r2_score(y_true, y_pred), rel=1e-12)


def test_metrics_accept_float32_predictions_and_integer_targets():
    rng = np.random.default_rng(3)
    y_true = rng.integers(20, 400, size=300)
    y_pred = (y_true + rng.normal(0, 5, size=300)).astype(np.float32)
    assert rmse(y_true, y_pred) == pytest.approx(math.sqrt(sk.mean_squared_error(y_true, y_pred)), rel=1e-6)
    assert mae(y_true, y_pred) == pytest.approx(sk.mean_absolute_error(y_true, y_pred), rel=1e-6)
    assert r2(y_true, y_pred) == pytest.approx(sk.r2_score(y_true, y_pred), rel=1e-6)


def test_perfect_and_mean_predictions():
    y = np.array([1.0, 2.0, 4.0, 8.0])
    assert rmse(y, y) == 0.0
    assert mae(y, y) == 0.0
    assert r2(y, y) == 1.0
    assert r2(y, np.full_like(y, y.mean())) == pytest.approx(0.0)
    assert math.isnan(r2(np.ones(4), np.zeros(4))), "r2 of a constant target is undefined"


def test_directions_and_losses():
    assert set(METRICS) == {"rmse", "mae", "r2"}
    assert not METRICS["rmse"].greater_is_better
    assert not METRICS["mae"].greater_is_better
    assert METRICS["r2"].greater_is_better

    assert METRICS["rmse"].loss(3.5) == 3.5
    assert METRICS["mae"].loss(2.0) == 2.0
    assert METRICS["r2"].loss(0.9) == -0.9
    # hyperopt minimises the loss: the better r2 must have the smaller loss.
    assert METRICS["r2"].loss(0.9) < METRICS["r2"].loss(0.5)
    assert METRICS["r2"].better(0.9, 0.5)
    assert METRICS["rmse"].better(1.0, 2.0)
    assert not METRICS["mae"].better(2.0, 1.0)


def test_early_stopping_metrics():
    assert METRICS["rmse"].early_stopping_metric == "rmse"
    assert METRICS["mae"].early_stopping_metric == "mae"
    assert METRICS["r2"].early_stopping_metric == "rmse", "r2 orders rounds like rmse on one split"


@pytest.mark.parametrize("name", ["rmse", "mae"])
def test_from_early_stopping_is_the_metric_itself(sample, name):
    y_true, y_pred = sample
    metric = METRICS[name]
    value = metric.score(y_true, y_pred)
    assert metric.from_early_stopping(value, y_true) == value


def test_r2_from_rmse_equals_sklearn_r2(sample):
    y_true, y_pred = sample
    from_rmse = METRICS["r2"].from_early_stopping(rmse(y_true, y_pred), y_true)
    assert from_rmse == pytest.approx(sk.r2_score(y_true, y_pred), rel=1e-10)
    assert from_rmse == pytest.approx(METRICS["r2"].score(y_true, y_pred), rel=1e-10)
