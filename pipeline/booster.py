"""xgboost training with early stopping on the validation split, on matrices built once per study."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

TRAINING_KNOBS = {"num_boost_round": 1000, "early_stopping_rounds": 50}
"""Parameters of the training loop rather than of the booster, with their defaults."""

_SKLEARN_ONLY = {
    "callbacks",
    "early_stopping_rounds",
    "enable_categorical",
    "feature_types",
    "feature_weights",
    "importance_type",
    "missing",
    "n_estimators",
    "n_jobs",
    "random_state",
    "eval_metric",
}
_NATIVE_ALIASES = {
    "eta",
    "alpha",
    "lambda",
    "min_split_loss",
    "seed",
    "nthread",
    "max_cat_to_onehot",
    "colsample_bylevel",
    "refresh_leaf",
    "process_type",
    "num_parallel_tree",
    "rate_drop",
    "skip_drop",
    "one_drop",
    "sample_type",
    "normalize_type",
    "lambda_bias",
    "updater",
}
ACCEPTED_PARAMETERS = frozenset(
    (set(xgb.XGBRegressor().get_params()) - _SKLEARN_ONLY) | _NATIVE_ALIASES | set(TRAINING_KNOBS)
)
"""Names a search-space file may set for the xgboost family; anything else is a typo."""


@dataclass(frozen=True)
class Matrices:
    """Training and validation matrices, built once and shared by every trial."""

    train: xgb.DMatrix
    validation: xgb.DMatrix


@dataclass(frozen=True)
class TrainResult:
    booster: xgb.Booster
    best_iteration: int
    """0-based index of the last round kept: predictions use rounds ``0..best_iteration``."""
    curve: list[float]
    """The early-stopping metric on the validation split after each round."""
    seconds: float
    """Time spent inside ``xgb.train`` (boosting plus its per-round validation)."""


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def build_matrices(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_validation: np.ndarray,
    y_validation: np.ndarray,
    feature_names: list[str],
    feature_types: list[str],
    quantized: bool,
) -> Matrices:
    """``quantized`` builds QuantileDMatrix (less memory, faster), valid only while ``max_bin`` is fixed."""
    common = {"feature_names": feature_names, "feature_types": feature_types, "enable_categorical": True}
    if quantized:
        train = xgb.QuantileDMatrix(x_train, y_train, **common)
        validation = xgb.QuantileDMatrix(x_validation, y_validation, ref=train, **common)
    else:
        train = xgb.DMatrix(x_train, y_train, **common)
        validation = xgb.DMatrix(x_validation, y_validation, **common)
    return Matrices(train=train, validation=validation)


def booster_params(params: dict[str, Any], eval_metric: str, seed: int, nthread: int) -> dict[str, Any]:
    """The search's parameters completed with what every trial needs, without the training-loop knobs."""
    base = {
        "objective": "reg:squarederror",
        "tree_method": "hist",
        "eval_metric": eval_metric,
        "seed": seed,
        "nthread": nthread,
        "verbosity": 1,
    }
    return base | {k: v for k, v in params.items() if k not in TRAINING_KNOBS}


def train(
    params: dict[str, Any],
    dtrain: xgb.DMatrix,
    dvalidation: xgb.DMatrix | None,
    *,
    eval_metric: str,
    seed: int,
    nthread: int,
    num_boost_round: int | None = None,
) -> TrainResult:
    """Boost with early stopping on ``dvalidation``; without it, exactly ``num_boost_round`` rounds."""
    knobs = TRAINING_KNOBS | {k: params[k] for k in TRAINING_KNOBS if k in params}
    rounds = int(num_boost_round or knobs["num_boost_round"])
    history: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    booster = xgb.train(
        booster_params(params, eval_metric, seed, nthread),
        dtrain,
        num_boost_round=rounds,
        evals=[(dvalidation, "validation")] if dvalidation is not None else (),
        early_stopping_rounds=int(knobs["early_stopping_rounds"]) if dvalidation is not None else None,
        evals_result=history,
        verbose_eval=False,
    )
    seconds = time.perf_counter() - started
    best = booster.best_iteration if dvalidation is not None else rounds - 1
    curve = history.get("validation", {}).get(eval_metric, [])
    return TrainResult(booster=booster, best_iteration=int(best), curve=[float(v) for v in curve], seconds=seconds)
