"""Validation and test metrics, each with its direction and the xgboost metric that early-stops it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    name: str
    greater_is_better: bool
    score: Callable[[np.ndarray, np.ndarray], float]
    early_stopping_metric: str
    """The xgboost eval metric that orders boosting rounds the same way (r2 and rmse do on one split)."""

    def loss(self, value: float) -> float:
        """What hyperopt minimises: the metric itself, or its negative when greater is better."""
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


METRICS = {
    "rmse": Metric("rmse", greater_is_better=False, score=rmse, early_stopping_metric="rmse"),
    "mae": Metric("mae", greater_is_better=False, score=mae, early_stopping_metric="mae"),
    "r2": Metric("r2", greater_is_better=True, score=r2, early_stopping_metric="rmse"),
}
