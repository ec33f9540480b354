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
    from_early_stopping: Callable[[float, np.ndarray], float]
    """This metric from the early-stopping metric's value on ``y_true``: a trial reads its validation score
    off the curve xgboost already computed at the best round instead of predicting again."""

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


def _same(value: float, y_true: np.ndarray) -> float:
    return float(value)


def _r2_from_rmse(value: float, y_true: np.ndarray) -> float:
    variance = float(np.var(np.asarray(y_true, np.float64)))
    return 1.0 - value**2 / variance if variance > 0 else float("nan")


METRICS = {
    "rmse": Metric("rmse", False, score=rmse, early_stopping_metric="rmse", from_early_stopping=_same),
    "mae": Metric("mae", False, score=mae, early_stopping_metric="mae", from_early_stopping=_same),
    "r2": Metric("r2", True, score=r2, early_stopping_metric="rmse", from_early_stopping=_r2_from_rmse),
}
