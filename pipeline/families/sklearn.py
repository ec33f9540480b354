"""scikit-learn model families: random forest, extra trees, histogram gradient boosting, linear models.

One adapter class, configured per family with its estimator classes, the tasks it serves and the encoding
it needs; tree ensembles read categorical codes (NaN for missing or unseen), linear models a one-hot,
standardized matrix. Histogram gradient boosting early-stops on the study's validation split.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn import ensemble, linear_model, svm
from threadpoolctl import threadpool_limits

from pipeline.config import MODEL_KEY
from pipeline.families import Family, Fitted, Task, TrainingData, threads
from pipeline.features import Preprocessor
from pipeline.metrics import BINARY, MULTICLASS, REGRESSION
from pipeline.search.pruning import RoundCheck

MANAGED = {"random_state", "n_jobs", "verbose", "warm_start", "categorical_features", "early_stopping"}
"""Set by the pipeline (seed, threads, the validation split), not by a space file."""
HGB_MAX_CATEGORIES = 255
PARALLEL = {"random_forest", "extra_trees"}
"""Families whose n_jobs parallelizes the fit (LogisticRegression's n_jobs does nothing since sklearn 1.8)."""


class SklearnFamily(Family):
    def __init__(self, name: str, regressor: type | None, classifier: type | None, encoding: str):
        self.name, self.encoding = name, encoding
        self._classes = {REGRESSION: regressor, BINARY: classifier, MULTICLASS: classifier}
        self.tasks = tuple(task for task, cls in self._classes.items() if cls is not None)

    def accepted_parameters(self) -> frozenset[str]:
        names: set[str] = set()
        for cls in self._classes.values():
            if cls is not None:
                names |= set(cls().get_params())
        return frozenset(names - MANAGED)

    def check_fixed(self, name: str, value: Any, context: dict[str, Any] | None = None) -> str | None:
        """scikit-learn's own parameter validation (types and ranges), without fitting anything; a value
        one of the family's estimators accepts passes (``absolute_error`` is a regression criterion)."""
        problems = []
        for task in self.tasks:
            try:
                estimator = self.estimator((context or {}) | {name: value}, Task(task, (0, 1)), seed=0)
                estimator._validate_params()  # what fit() runs first; checks every declared constraint
            except Exception as error:  # whatever the estimator raises is the user's value being refused
                problems.append(f"{value!r} is refused by {self.name}: {str(error).splitlines()[0][:300]}")
            else:
                return None
        return problems[0]

    def estimator(self, params: dict[str, Any], task: Task, seed: int) -> Any:
        cls = self._classes[task.kind]
        assert cls is not None, f"{self.name} does not handle {task.kind} (check_compatible refuses it first)"
        settings = {k: v for k, v in params.items() if k != MODEL_KEY}
        defaults = cls().get_params()
        if "random_state" in defaults:
            settings["random_state"] = seed
        if "n_jobs" in defaults and self.name in PARALLEL:
            settings["n_jobs"] = threads()
        return cls(**settings)

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
        """``should_prune`` and ``train_curve`` are not used: these estimators train without per-round
        callbacks."""
        x_train, x_validation = data.encoded(self.encoding)
        estimator = self.estimator(params, task, seed)
        extra: dict[str, Any] = {}
        if self.name == "hist_gradient_boosting":
            estimator.set_params(
                early_stopping=True, categorical_features=_categorical_mask(data.preprocessors[self.encoding])
            )
            extra = {"X_val": x_validation, "y_val": data.y_validation}
        started = time.perf_counter()
        with threadpool_limits(threads()):  # OpenMP inside histogram boosting
            estimator.fit(x_train, data.y_train, **extra)
        seconds = time.perf_counter() - started
        if self.name == "hist_gradient_boosting":
            curve = [float(-v) for v in estimator.validation_score_[1:]]  # [0] is before the first round
            best = estimator.n_iter_ - 1
            return Fitted(estimator, best, curve, "loss", seconds)
        return Fitted(estimator, None, [], None, seconds)

    def refit(
        self,
        params: dict[str, Any],
        rounds: int | None,
        x: np.ndarray,
        y: np.ndarray,
        task: Task,
        seed: int,
        preprocessor: Preprocessor | None = None,
    ) -> Any:
        estimator = self.estimator(params, task, seed)
        if self.name == "hist_gradient_boosting":
            estimator.set_params(early_stopping=False)
            if rounds:
                estimator.set_params(max_iter=int(rounds))
            if preprocessor is not None:
                estimator.set_params(categorical_features=_categorical_mask(preprocessor))
        with threadpool_limits(threads()):
            return estimator.fit(x, y)

    def predict(self, model: Any, x: np.ndarray, task: Task) -> np.ndarray:
        with threadpool_limits(threads()):
            if task.kind == REGRESSION:
                return np.asarray(model.predict(x), dtype=np.float64)
            raw = model.predict_proba(x)
        proba = np.zeros((len(x), len(task.classes)))
        proba[:, np.asarray(model.classes_, dtype=int)] = raw  # a class unseen in training keeps 0
        return proba[:, 1] if task.kind == BINARY else proba

    def save(self, model: Any, folder: Path) -> Path:
        path = folder / "model.joblib"
        joblib.dump(model, path)
        return path

    def load(self, path: Path) -> Any:
        return joblib.load(path)


def _categorical_mask(preprocessor: Preprocessor) -> list[bool]:
    """Categorical codes HistGradientBoosting can treat as categories (it allows at most 255 of them)."""
    counts = [len(v) for v in preprocessor.categories.values()] if preprocessor.encoding == "codes" else []
    mask = [count <= HGB_MAX_CATEGORIES for count in counts]
    return mask + [False] * (len(preprocessor.feature_names) - len(mask))


FAMILIES = (
    SklearnFamily("random_forest", ensemble.RandomForestRegressor, ensemble.RandomForestClassifier, "codes"),
    SklearnFamily("extra_trees", ensemble.ExtraTreesRegressor, ensemble.ExtraTreesClassifier, "codes"),
    SklearnFamily(
        "hist_gradient_boosting",
        ensemble.HistGradientBoostingRegressor,
        ensemble.HistGradientBoostingClassifier,
        "codes",
    ),
    SklearnFamily("ridge", linear_model.Ridge, None, "onehot"),
    SklearnFamily("lasso", linear_model.Lasso, None, "onehot"),
    SklearnFamily("elastic_net", linear_model.ElasticNet, None, "onehot"),
    SklearnFamily("linear_svr", svm.LinearSVR, None, "onehot"),
    SklearnFamily("logistic_regression", None, linear_model.LogisticRegression, "onehot"),
)
