"""pipeline.metrics against scikit-learn, and the metrics read off xgboost's early-stopping curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from pipeline.metrics import (
    BINARY,
    METRICS,
    MULTICLASS,
    REGRESSION,
    TASKS,
    Task,
    accuracy,
    auc,
    brier,
    log_loss,
    mae,
    r2,
    rmse,
)


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
    assert set(METRICS) == {"rmse", "mae", "r2", "log_loss", "auc", "brier", "accuracy"}
    for name in ("rmse", "mae", "log_loss", "brier"):
        assert not METRICS[name].greater_is_better, name
    for name in ("r2", "auc", "accuracy"):
        assert METRICS[name].greater_is_better, name

    assert METRICS["rmse"].loss(3.5) == 3.5
    assert METRICS["mae"].loss(2.0) == 2.0
    assert METRICS["r2"].loss(0.9) == -0.9
    assert METRICS["auc"].loss(0.8) == -0.8
    assert METRICS["brier"].loss(0.1) == 0.1
    # hyperopt minimises the loss: the better r2 must have the smaller loss.
    assert METRICS["r2"].loss(0.9) < METRICS["r2"].loss(0.5)
    assert METRICS["accuracy"].loss(0.9) < METRICS["accuracy"].loss(0.5)
    assert METRICS["r2"].better(0.9, 0.5)
    assert METRICS["auc"].better(0.9, 0.5)
    assert METRICS["rmse"].better(1.0, 2.0)
    assert METRICS["log_loss"].better(0.2, 0.3)
    assert not METRICS["mae"].better(2.0, 1.0)


def test_tasks_of_each_metric():
    assert {name for name, m in METRICS.items() if REGRESSION in m.tasks} == {"rmse", "mae", "r2"}
    assert {name for name, m in METRICS.items() if BINARY in m.tasks} == {"log_loss", "auc", "brier"}
    assert {name for name, m in METRICS.items() if MULTICLASS in m.tasks} == {"log_loss", "accuracy"}
    for metric in METRICS.values():
        assert set(metric.tasks) <= set(TASKS)
        assert set(metric.early_stopping) == set(metric.tasks), "an early-stopping metric for every task it scores"


def test_early_stopping_metrics():
    assert METRICS["rmse"].early_stopping[REGRESSION] == "rmse"
    assert METRICS["mae"].early_stopping[REGRESSION] == "mae"
    assert METRICS["r2"].early_stopping[REGRESSION] == "rmse", "r2 orders rounds like rmse on one split"
    assert METRICS["log_loss"].early_stopping == {BINARY: "logloss", MULTICLASS: "mlogloss"}
    assert METRICS["auc"].early_stopping[BINARY] == "auc"
    assert METRICS["brier"].early_stopping[BINARY] == "logloss", "xgboost has no Brier score; log loss stands in"
    assert METRICS["accuracy"].early_stopping[MULTICLASS] == "merror"


@pytest.mark.parametrize("name", ["rmse", "mae"])
def test_from_curve_is_the_metric_itself(sample, name):
    y_true, y_pred = sample
    metric = METRICS[name]
    value = metric.score(y_true, y_pred)
    assert metric.from_curve(value, y_true) == value


def test_r2_from_rmse_equals_sklearn_r2(sample):
    y_true, y_pred = sample
    from_rmse = METRICS["r2"].from_curve(rmse(y_true, y_pred), y_true)
    assert from_rmse == pytest.approx(sk.r2_score(y_true, y_pred), rel=1e-10)
    assert from_rmse == pytest.approx(METRICS["r2"].score(y_true, y_pred), rel=1e-10)


# --- classification ------------------------------------------------------------------------------------


@pytest.fixture(params=[0, 1, 2])
def binary_sample(request) -> tuple[np.ndarray, np.ndarray]:
    """Class indices 0/1 and the positive class's probability, informative but imperfect."""
    rng = np.random.default_rng(request.param)
    y_true = rng.integers(0, 2, size=500)
    proba = np.clip(0.3 * y_true + rng.uniform(0, 0.7, size=500), 0.01, 0.99)
    return y_true, proba


@pytest.fixture(params=[0, 1, 2])
def multiclass_sample(request) -> tuple[np.ndarray, np.ndarray]:
    """Class indices 0..3 and one probability column per class (rows sum to 1)."""
    rng = np.random.default_rng(request.param)
    y_true = rng.integers(0, 4, size=500)
    scores = rng.uniform(0, 1, size=(500, 4))
    scores[np.arange(500), y_true] += 0.7
    return y_true, scores / scores.sum(axis=1, keepdims=True)


def test_binary_metrics_agree_with_sklearn(binary_sample):
    y_true, proba = binary_sample
    assert log_loss(y_true, proba) == pytest.approx(sk.log_loss(y_true, proba), rel=1e-12)
    assert auc(y_true, proba) == pytest.approx(sk.roc_auc_score(y_true, proba), rel=1e-12)
    assert brier(y_true, proba) == pytest.approx(sk.brier_score_loss(y_true, proba), rel=1e-12)
    assert 0.5 < auc(y_true, proba) < 1.0


def test_multiclass_metrics_agree_with_sklearn(multiclass_sample):
    y_true, proba = multiclass_sample
    assert log_loss(y_true, proba) == pytest.approx(sk.log_loss(y_true, proba), rel=1e-12)
    expected_accuracy = sk.accuracy_score(y_true, proba.argmax(axis=1))
    assert accuracy(y_true, proba) == pytest.approx(expected_accuracy, rel=1e-12)
    assert 0.25 < accuracy(y_true, proba) < 1.0


def test_log_loss_knows_every_class_even_when_one_is_absent_from_the_rows(multiclass_sample):
    y_true, proba = multiclass_sample
    rows = y_true != 3  # a validation split may hold no row of a class the model knows
    expected = sk.log_loss(y_true[rows], proba[rows], labels=[0, 1, 2, 3])
    assert log_loss(y_true[rows], proba[rows]) == pytest.approx(expected, rel=1e-12)
    only_negatives = np.zeros(20, dtype=int)
    expected = sk.log_loss(only_negatives, np.full(20, 0.2), labels=[0, 1])
    assert log_loss(only_negatives, np.full(20, 0.2)) == pytest.approx(expected, rel=1e-12)


def test_classification_metrics_accept_float32_probabilities(binary_sample):
    y_true, proba = binary_sample
    single = proba.astype(np.float32)
    assert brier(y_true, single) == pytest.approx(sk.brier_score_loss(y_true, single), rel=1e-6)
    assert log_loss(y_true, single) == pytest.approx(sk.log_loss(y_true, proba), rel=1e-6)


def test_perfect_classifier():
    y = np.array([0, 1, 1, 0, 1])
    assert brier(y, y.astype(float)) == 0.0
    assert auc(y, y.astype(float)) == 1.0
    assert accuracy(np.array([2, 0, 1]), np.eye(3)[[2, 0, 1]]) == 1.0
    assert log_loss(y, np.where(y == 1, 1 - 1e-12, 1e-12)) < 1e-9


def test_accuracy_from_merror(multiclass_sample):
    y_true, proba = multiclass_sample
    merror = float(np.mean(proba.argmax(axis=1) != y_true))
    assert METRICS["accuracy"].from_curve(merror, y_true) == pytest.approx(accuracy(y_true, proba), rel=1e-12)
    assert METRICS["log_loss"].from_curve(0.25, y_true) == 0.25
    assert METRICS["auc"].from_curve(0.75, y_true) == 0.75
    assert METRICS["brier"].from_curve is None, "the Brier score is not a function of the log loss"


def test_task_classification():
    assert not Task(REGRESSION).classification
    assert Task(REGRESSION).classes == ()
    assert Task(BINARY, (0, 1)).classification
    assert Task(MULTICLASS, ("EWR", "JFK", "LGA")).classification
    assert Task(BINARY, (0, 1)) == Task(BINARY, (0, 1)) != Task(MULTICLASS, (0, 1))
