"""Validation and test metrics: their task, their direction, and the xgboost metric that early-stops them.

Predictions are what a model family's ``predict`` returns: values for regression, the positive class's
probability for binary classification, one probability column per class for multiclass. Classification
targets are class indices (0/1, or 0..k-1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from sklearn import metrics as sk

REGRESSION, BINARY, MULTICLASS = "regression", "binary", "multiclass"
TASKS = (REGRESSION, BINARY, MULTICLASS)


Value = TypeVar("Value", float, np.ndarray)
"""A score, or an array of scores (the gate's bootstrap resamples)."""


@dataclass(frozen=True)
class Task:
    kind: str
    """regression, binary or multiclass."""
    classes: tuple = ()
    """The class labels in index order (classification only); targets are indices into it."""

    @property
    def classification(self) -> bool:
        return self.kind != REGRESSION


@dataclass(frozen=True)
class Metric:
    name: str
    greater_is_better: bool
    score: Callable[[np.ndarray, np.ndarray], float]
    tasks: tuple[str, ...]
    early_stopping: dict[str, str]
    """Per task, the xgboost eval metric that orders boosting rounds the same way (r2 and rmse do on one
    split; log loss stands in for the Brier score, which xgboost does not compute)."""
    from_curve: Callable[[float, np.ndarray], float] | None = None
    """This metric from the early-stopping metric's value on ``y_true``, when it is a function of it: a
    trial then reads its score off the curve xgboost already computed instead of predicting again."""

    def loss(self, value: Value) -> Value:
        """What hyperopt minimises: the metric itself, or its negative when greater is better (elementwise for
        an array of scores)."""
        return -value if self.greater_is_better else value

    def better(self, a: float, b: float) -> bool:
        return a > b if self.greater_is_better else a < b


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y_true, np.float64) - y_pred) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y_true, np.float64) - y_pred)))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true = np.asarray(y_true, np.float64)
    total = np.sum((y_true - y_true.mean()) ** 2)
    return float(1.0 - np.sum((y_true - y_pred) ** 2) / total) if total > 0 else float("nan")


def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    proba = np.asarray(proba, np.float64)
    if proba.ndim == 2:
        proba = proba / proba.sum(axis=1, keepdims=True)  # float32 probabilities sum to 1 only roughly
    labels = np.arange(proba.shape[1]) if proba.ndim == 2 else [0, 1]
    return float(sk.log_loss(y_true, proba, labels=labels))


def auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(sk.roc_auc_score(y_true, proba))


def brier(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean((np.asarray(proba, np.float64) - np.asarray(y_true, np.float64)) ** 2))


def accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean(np.argmax(proba, axis=1) == np.asarray(y_true)))


def _same(value: float, y_true: np.ndarray) -> float:
    return float(value)


def _r2_from_rmse(value: float, y_true: np.ndarray) -> float:
    variance = float(np.var(np.asarray(y_true, np.float64)))
    return 1.0 - value**2 / variance if variance > 0 else float("nan")


def _accuracy_from_error(value: float, y_true: np.ndarray) -> float:
    return 1.0 - float(value)


METRICS = {
    "rmse": Metric("rmse", False, rmse, (REGRESSION,), {REGRESSION: "rmse"}, _same),
    "mae": Metric("mae", False, mae, (REGRESSION,), {REGRESSION: "mae"}, _same),
    "r2": Metric("r2", True, r2, (REGRESSION,), {REGRESSION: "rmse"}, _r2_from_rmse),
    "log_loss": Metric(
        "log_loss", False, log_loss, (BINARY, MULTICLASS), {BINARY: "logloss", MULTICLASS: "mlogloss"}, _same
    ),
    "auc": Metric("auc", True, auc, (BINARY,), {BINARY: "auc"}, _same),
    "brier": Metric("brier", False, brier, (BINARY,), {BINARY: "logloss"}),
    "accuracy": Metric("accuracy", True, accuracy, (MULTICLASS,), {MULTICLASS: "merror"}, _accuracy_from_error),
}
