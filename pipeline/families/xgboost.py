"""The xgboost family: hist trees with early stopping on the validation split, on matrices built once per
study (one QuantileDMatrix pair per ``max_bin`` value the search tries)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from pipeline.config import MODEL_KEY
from pipeline.families import Family, Fitted, Task, TrainingData, threads
from pipeline.features import Preprocessor
from pipeline.metrics import BINARY, METRICS, MULTICLASS, REGRESSION
from pipeline.search.pruning import MAXIMIZED_CURVES, RoundCheck, Stop

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

DEFAULT_LEARNING_RATE = 0.3
"""xgboost's ``eta`` when a space does not set it."""

OBJECTIVES = {REGRESSION: "reg:squarederror", BINARY: "binary:logistic", MULTICLASS: "multi:softprob"}
REFIT_METRICS = {REGRESSION: "rmse", BINARY: "logloss", MULTICLASS: "mlogloss"}


def booster_params(params: dict[str, Any], task: Task, eval_metric: str, seed: int, nthread: int) -> dict[str, Any]:
    """The search's parameters completed with what every trial needs, without the training-loop knobs."""
    base = {
        "objective": OBJECTIVES[task.kind],
        "tree_method": "hist",
        "eval_metric": eval_metric,
        "seed": seed,
        "nthread": nthread,
        "verbosity": 1,
    }
    if task.kind == MULTICLASS:
        base["num_class"] = len(task.classes)
    return base | {k: v for k, v in params.items() if k not in TRAINING_KNOBS and k != MODEL_KEY}


def train(
    params: dict[str, Any],
    dtrain: xgb.DMatrix,
    dvalidation: xgb.DMatrix | None,
    *,
    task: Task,
    eval_metric: str,
    seed: int,
    nthread: int,
    num_boost_round: int | None = None,
    should_prune: RoundCheck | None = None,
    train_curve: bool = False,
) -> Fitted:
    """Boost with early stopping on ``dvalidation``; without it, exactly ``num_boost_round`` rounds.

    With ``train_curve`` the training split is scored at every round too: xgboost keeps its predictions
    cached, so that costs a metric pass over the training rows per round (more than the validation's, as
    the training split is the larger), which the search does not pay unless asked.
    """
    knobs = TRAINING_KNOBS | {k: params[k] for k in TRAINING_KNOBS if k in params}
    rounds = int(num_boost_round or knobs["num_boost_round"])
    history: dict[str, dict[str, list[float]]] = {}
    pruning = [_Pruning(should_prune, eval_metric)] if should_prune is not None and dvalidation is not None else []
    started = time.perf_counter()
    booster = xgb.train(
        booster_params(params, task, eval_metric, seed, nthread),
        dtrain,
        num_boost_round=rounds,
        evals=_evaluated(dtrain, dvalidation, train_curve),
        early_stopping_rounds=int(knobs["early_stopping_rounds"]) if dvalidation is not None else None,
        evals_result=history,
        verbose_eval=False,
        callbacks=pruning,
    )
    seconds = time.perf_counter() - started
    curve = [float(v) for v in history.get("validation", {}).get(eval_metric, [])]
    stopped = any(p.stopped is not None for p in pruning)
    best = rounds - 1 if dvalidation is None else _best_round(booster, curve, eval_metric, stopped)
    return Fitted(
        model=booster,
        best_iteration=int(best),
        curve=curve,
        curve_metric=eval_metric,
        seconds=seconds,
        train_curve=[float(v) for v in history.get("train", {}).get(eval_metric, [])],
        pruned=any(p.stopped is Stop.PRUNED for p in pruning),
        stalled=any(p.stopped is Stop.STALLED for p in pruning),
    )


def _evaluated(
    dtrain: xgb.DMatrix, dvalidation: xgb.DMatrix | None, train_curve: bool
) -> list[tuple[xgb.DMatrix, str]]:
    """The splits scored at each round: the validation split (early stopping), the training one if asked."""
    if dvalidation is None:
        return []
    return [(dtrain, "train"), (dvalidation, "validation")] if train_curve else [(dvalidation, "validation")]


def _best_round(booster: xgb.Booster, curve: list[float], eval_metric: str, stopped: bool) -> int:
    """Early stopping's best round, or the curve's for a trial the pruning rule ``stopped``: xgboost ends the
    round's callbacks at the first that stops training, so early stopping never saw that last round."""
    if not stopped and (best := booster.attr("best_iteration")) is not None:
        return int(best)
    return int(np.argmax(curve) if eval_metric in MAXIMIZED_CURVES else np.argmin(curve))


class _Pruning(xgb.callback.TrainingCallback):
    def __init__(self, should_prune: RoundCheck, eval_metric: str):
        super().__init__()
        self.should_prune, self.eval_metric = should_prune, eval_metric
        self.stopped: Stop | None = None

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict[str, Any]) -> bool:
        self.stopped = self.should_prune(epoch, evals_log["validation"][self.eval_metric][-1])
        return self.stopped is not None


class XGBoostFamily(Family):
    name = "xgboost"
    tasks = (REGRESSION, BINARY, MULTICLASS)
    encoding = "codes"

    def accepted_parameters(self) -> frozenset[str]:
        return ACCEPTED_PARAMETERS

    def placed(self, params: dict[str, Any], device: str) -> dict[str, Any]:
        return params if device == "cpu" else params | {"device": device}

    def learning_rate(self, params: dict[str, Any]) -> float:
        """``learning_rate`` or its alias ``eta``; xgboost's default (0.3) when the space leaves it out."""
        return float(params.get("learning_rate", params.get("eta", DEFAULT_LEARNING_RATE)))

    def check_fixed(self, name: str, value: Any, context: dict[str, Any] | None = None) -> str | None:
        """The training-loop knobs by type (the probe fit runs one round whatever they say), the rest by a
        probe fit."""
        if name in TRAINING_KNOBS:
            positive_int = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            return None if positive_int else f"{value!r} is not a positive integer"
        return super().check_fixed(name, value, context)

    def matrices(self, data: TrainingData, max_bin: int) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        """The study's training and validation matrices for ``max_bin``, built on first use."""
        key = ("xgboost", max_bin)
        if key not in data.cache:
            x_train, x_validation = data.encoded(self.encoding)
            preprocessor = data.preprocessors[self.encoding]
            common = {
                "feature_names": preprocessor.feature_names,
                "feature_types": preprocessor.feature_types,
                "enable_categorical": True,
                "max_bin": max_bin,
            }
            train_matrix = xgb.QuantileDMatrix(x_train, data.y_train, **common)
            validation = xgb.QuantileDMatrix(x_validation, data.y_validation, ref=train_matrix, **common)
            data.cache[key] = (train_matrix, validation)
        return data.cache[key]

    def fit(
        self,
        params: dict[str, Any],
        data: TrainingData,
        task: Task,
        metric_name: str,
        seed: int,
        should_prune: RoundCheck | None = None,
        train_curve: bool = False,
    ) -> Fitted:
        train_matrix, validation = self.matrices(data, int(params.get("max_bin", 256)))
        eval_metric = METRICS[metric_name].early_stopping[task.kind]
        return train(
            params,
            train_matrix,
            validation,
            task=task,
            eval_metric=eval_metric,
            seed=seed,
            nthread=threads(),
            should_prune=should_prune,
            train_curve=train_curve,
        )

    def validation_score(self, fitted: Fitted, data: TrainingData, task: Task, metric_name: str) -> float:
        """Read off the early-stopping curve when the metric is a function of it: no second prediction."""
        metric = METRICS[metric_name]
        if metric.from_curve is not None and fitted.curve and fitted.best_iteration is not None:
            return metric.from_curve(fitted.curve[fitted.best_iteration], data.y_validation)
        return super().validation_score(fitted, data, task, metric_name)

    def trained_model(self, fitted: Fitted) -> xgb.Booster:
        assert fitted.best_iteration is not None, "an xgboost fit always records its best round"
        return fitted.model[: fitted.best_iteration + 1]

    def refit(
        self,
        params: dict[str, Any],
        rounds: int | None,
        x: np.ndarray,
        y: np.ndarray,
        task: Task,
        seed: int,
        preprocessor: Preprocessor | None = None,
    ) -> xgb.Booster:
        types = preprocessor.feature_types if preprocessor is not None else None
        matrix = xgb.DMatrix(x, y, feature_types=types, enable_categorical=types is not None)
        fitted = train(
            params,
            matrix,
            None,
            task=task,
            eval_metric=REFIT_METRICS[task.kind],
            seed=seed,
            nthread=threads(),
            num_boost_round=rounds,
        )
        return fitted.model

    def predict(self, model: xgb.Booster, x: np.ndarray, task: Task) -> np.ndarray:
        return model.inplace_predict(x).astype(np.float64)

    def save(self, model: xgb.Booster, folder: Path) -> Path:
        path = folder / "model.ubj"
        model.set_param({"device": "cpu"})  # trained on a GPU or not, the registered model serves anywhere
        model.save_model(path)
        return path

    def load(self, path: Path) -> xgb.Booster:
        return xgb.Booster(model_file=str(path))
