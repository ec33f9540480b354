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


def learning_rate(params: dict[str, Any]) -> float:
    """``learning_rate`` or its alias ``eta``; xgboost's default (0.3) when the space leaves it out."""
    return float(params.get("learning_rate", params.get("eta", DEFAULT_LEARNING_RATE)))


SCORING_PROGRESS = 0.2
"""Learning progress (rounds times the learning rate) between two scorings of the validation split."""


def scoring_interval(learning_rate: float, progress: float = SCORING_PROGRESS) -> int:
    """Rounds between two scorings of the validation split: every round at a learning rate of 0.15 or
    more, every 4th at 0.05, every 10th at 0.02.

    Scoring is not training: xgboost predicts each new tree on the validation rows and computes the metric
    over all of them, which measured 30-55 % of a round on our tables. At a low rate one round barely
    moves the curve, so scoring once per ``progress`` of learning progress finds nearly the same best
    round: replayed over the full curves of 15 unpruned studies (``benchmarks/scoring_replay.py``), a
    study's best value moved by at most 2e-4 of itself at 0.2.
    """
    return max(1, round(progress / learning_rate)) if learning_rate > 0 else 1


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

    The validation split is scored every ``scoring_interval`` rounds (and at the last); the curve carries
    the last score through the rounds in between, so it still has one value per round, and the best round
    is always a scored one: the kept model's value is exact. Early stopping waits ``early_stopping_rounds``
    rounds after the best, as xgboost's does (the interval is at most that patience, so a score falls in
    it), and ``should_prune`` sees every round but stops training at a scored one.

    With ``train_curve`` the training split is scored too, at the same rounds: a metric pass over the
    training rows each time (more than the validation's, as the training split is the larger), which the
    search does not pay unless asked.
    """
    knobs = TRAINING_KNOBS | {k: params[k] for k in TRAINING_KNOBS if k in params}
    rounds = int(num_boost_round or knobs["num_boost_round"])
    booster_config = booster_params(params, task, eval_metric, seed, nthread)
    started = time.perf_counter()
    booster = xgb.Booster(booster_config, [dtrain] if dvalidation is None else [dtrain, dvalidation])
    scores = None
    if dvalidation is not None:
        splits = [(dtrain, "train"), (dvalidation, "validation")] if train_curve else [(dvalidation, "validation")]
        patience = int(knobs["early_stopping_rounds"])
        every = min(scoring_interval(learning_rate(params)), patience)  # a score within every patience window
        scores = _Scores(splits, eval_metric, every, patience, should_prune)
    for round_ in range(rounds):
        booster.update(dtrain, round_)
        if scores is not None and scores.stop_after(booster, round_, last=round_ == rounds - 1):
            break
    booster.reset()  # frees the prediction caches of both splits, as xgb.train does
    seconds = time.perf_counter() - started
    if scores is None:
        return Fitted(model=booster, best_iteration=rounds - 1, curve=[], curve_metric=eval_metric, seconds=seconds)
    return Fitted(
        model=booster,
        best_iteration=scores.best_round,
        curve=scores.curves["validation"],
        curve_metric=eval_metric,
        seconds=seconds,
        train_curve=scores.curves.get("train", []),
        pruned=scores.stopped is Stop.PRUNED,
        stalled=scores.stopped is Stop.STALLED,
    )


class _Scores:
    """One fit's scoring: the splits' curves, the best round, early stopping and the pruning rule's check."""

    def __init__(
        self,
        splits: list[tuple[xgb.DMatrix, str]],
        eval_metric: str,
        every: int,
        patience: int,
        should_prune: RoundCheck | None,
    ):
        self.splits, self.every, self.patience, self.should_prune = splits, every, patience, should_prune
        self.sign = -1.0 if eval_metric in MAXIMIZED_CURVES else 1.0
        self.curves: dict[str, list[float]] = {name: [] for _, name in splits}
        self.best_round, self.best = 0, np.inf
        self.stopped: Stop | None = None

    def stop_after(self, booster: xgb.Booster, round_: int, last: bool) -> bool:
        """Record ``round_`` (scored, or carried from the last scored round); true when training should end.
        The pruning rule sees every round but is obeyed at scored rounds only: a stop is decided on a score."""
        scored = round_ % self.every == 0 or last
        if scored:
            for name, value in _parsed(booster.eval_set(self.splits, round_)).items():
                self.curves[name].append(value)
        else:
            for curve in self.curves.values():
                curve.append(curve[-1])
        value = self.curves["validation"][-1]
        if self.sign * value < self.best:  # strictly better, as xgboost's early stopping counts it
            self.best_round, self.best = round_, self.sign * value
        stop = self.should_prune(round_, value) if self.should_prune is not None else None
        if stop is not None and scored:
            self.stopped = stop
            return True
        return round_ - self.best_round >= self.patience


def _parsed(evaluation: str) -> dict[str, float]:
    """xgboost's evaluation line (``[12]\ttrain-rmse:3.1\tvalidation-rmse:3.4``) as {split: value}."""
    scores = {}
    for item in evaluation.split("\t")[1:]:
        key, value = item.rsplit(":", 1)
        scores[key.split("-", 1)[0]] = float(value)
    return scores


class XGBoostFamily(Family):
    name = "xgboost"
    tasks = (REGRESSION, BINARY, MULTICLASS)
    encoding = "codes"
    binary_only = frozenset({"scale_pos_weight"})

    def accepted_parameters(self) -> frozenset[str]:
        return ACCEPTED_PARAMETERS

    def placed(self, params: dict[str, Any], device: str) -> dict[str, Any]:
        return params if device == "cpu" else params | {"device": device}

    def learning_rate(self, params: dict[str, Any]) -> float:
        return learning_rate(params)

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
