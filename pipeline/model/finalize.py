"""The final stage: retrain the best trial's parameters, evaluate once on test, log, register, alias.

The alias moves only after the registered version was loaded back through ``mlflow.pyfunc`` and
reproduced the in-process test predictions, so a half-logged model never becomes ``champion``.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import pipeline
from pipeline import families, outputs, tracking
from pipeline.config import MODEL_KEY
from pipeline.data import Dataset
from pipeline.errors import PipelineError
from pipeline.features import Preprocessor
from pipeline.metrics import Metric, Task
from pipeline.model import registry
from pipeline.search.loop import TrialOutcome

SERVING_REQUIREMENTS = ("mlflow", "xgboost", "scikit-learn", "pandas", "numpy", "joblib")
IMPORTANCE_ROWS = 5000
"""Test rows the permutation importance scores (a seeded sample): one prediction per raw column, so this
bounds its cost for slow families such as deep random forests."""


@dataclass(frozen=True)
class FinalModel:
    family: str
    preprocessor: Preprocessor
    model: Any
    """The family's estimator, trained for exactly the rounds kept where it has rounds."""
    task: Task
    rounds: int | None
    train_rows: int
    train_seconds: float


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    alias: str
    model_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def refit(dataset: Dataset, best: TrialOutcome, refit_on: str, seed: int) -> FinalModel:
    """Retrain the best trial's family and parameters on ``train`` (or train + validation), with the
    preprocessor refitted on the same rows, for the best trial's number of rounds: no early stopping."""
    x, y = dataset.xy("train")
    if refit_on == "train_validation":
        x_validation, y_validation = dataset.xy("validation")
        x, y = pd.concat([x, x_validation], ignore_index=True), np.concatenate([y, y_validation])
    family = families.get(best.params[MODEL_KEY])
    features = dataset.config.features
    categorical = list(features.categorical)
    numeric = [c for c in dataset.feature_columns if c not in categorical]
    preprocessor = Preprocessor.fit(x, categorical, numeric, features.crossed, encoding=family.encoding)
    rounds = best.best_iteration + 1 if best.best_iteration is not None else None
    started = time.perf_counter()
    model = family.refit(best.params, rounds, preprocessor.transform(x), y, dataset.task, seed, preprocessor)
    return FinalModel(
        family=family.name,
        preprocessor=preprocessor,
        model=model,
        task=dataset.task,
        rounds=rounds,
        train_rows=len(x),
        train_seconds=time.perf_counter() - started,
    )


def predict(model: FinalModel, frame: pd.DataFrame) -> np.ndarray:
    """Values, or class probabilities, of raw rows (what the test metric is computed from)."""
    return families.get(model.family).predict(model.model, model.preprocessor.transform(frame), model.task)


def log_evaluation(
    model: FinalModel, x_test: pd.DataFrame, y_test: np.ndarray, predictions: np.ndarray, metric: Metric, seed: int
) -> None:
    """Log the test predictions and the raw columns' importance on the active run, under ``evaluation/``:
    what the report's final-model plots are drawn from, so that they can be drawn again from MLflow alone.

    ``test_predictions.parquet`` holds ``y_true`` (the value, or the class index) and ``y_pred``
    (regression) or one ``probability_<class>`` column per class, in class order.
    """
    served = outputs.output(predictions, model.task)
    frame = pd.DataFrame({"y_true": y_test})
    if model.task.classification:
        frame = frame.join(served.drop(columns="label"))
    else:
        frame["y_pred"] = served
    importance = {
        "metric": metric.name,
        "greater_is_better": metric.greater_is_better,
        "importance": permutation_importance(model, x_test, y_test, metric, seed),
    }
    with tempfile.TemporaryDirectory() as tmp:
        frame.to_parquet(Path(tmp) / "test_predictions.parquet", index=False)
        (Path(tmp) / "feature_importance.json").write_text(json.dumps(importance, indent=1))
        mlflow.log_artifacts(tmp, artifact_path="evaluation")


def permutation_importance(
    model: FinalModel, x: pd.DataFrame, y: np.ndarray, metric: Metric, seed: int
) -> dict[str, float]:
    """Per raw input column, how much worse ``metric`` gets when that column's values are shuffled across
    rows (positive: the model relies on it), in the metric's units.

    Shuffling raw columns rather than the model's encoded ones works for every family alike and answers
    for the columns a user provides: one-hot columns of a category, or a crossed pair such as
    ``origin_dest``, are disturbed together with the raw column they come from.
    """
    rng = np.random.default_rng(seed)
    if len(x) > IMPORTANCE_ROWS:
        rows = np.sort(rng.choice(len(x), IMPORTANCE_ROWS, replace=False))
        x, y = x.iloc[rows], np.asarray(y)[rows]
    x = x.reset_index(drop=True)
    baseline = metric.loss(metric.score(y, predict(model, x)))
    importance = {}
    for column in model.preprocessor.raw_columns:
        shuffled = x.assign(**{column: x[column].iloc[rng.permutation(len(x))].set_axis(x.index)})
        importance[column] = metric.loss(metric.score(y, predict(model, shuffled))) - baseline
    return importance


def log_and_register(
    model: FinalModel,
    x_test: pd.DataFrame,
    expected: np.ndarray,
    client: MlflowClient,
    model_name: str,
    tags: dict[str, str],
) -> Registration:
    """Log preprocessor + model on the active run, register a version, check it loads, then alias it.

    ``expected`` are the in-process predictions on ``x_test`` (raw test rows) that the registered version,
    loaded back, must reproduce before any alias moves.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        preprocessor_file = model.preprocessor.save(folder / "preprocessor.json")
        mlflow.log_artifact(str(preprocessor_file), artifact_path="preprocessor")
        model_file = families.get(model.family).save(model.model, folder)
        description = outputs.describe(model.family, model.task)
        description_file = folder / "model.json"
        description_file.write_text(json.dumps(description))
        example = x_test.head(5)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("serving.py")),
            artifacts={
                "preprocessor": str(preprocessor_file),
                "model": str(model_file),
                "description": str(description_file),
            },
            code_paths=[str(Path(pipeline.__file__).parent)],
            signature=tracking.signature(example, outputs.output(expected[:5], model.task)),
            input_example=example,
            pip_requirements=_requirements(),
            registered_model_name=model_name,
            tags=tags,
        )
    version = str(info.registered_model_version)
    _verify(client, model_name, version, x_test, outputs.output(expected, model.task))
    if registry.champion_version(client, model_name) is None:
        registry.promote(client, model_name, version, reason="first version of the model")
        alias = registry.CHAMPION
    else:  # a later version waits as challenger until a gate or a person promotes it
        alias = registry.CHALLENGER
        client.set_registered_model_alias(model_name, alias, version)
    return Registration(name=model_name, version=version, alias=alias, model_id=info.model_id)


def _verify(client: MlflowClient, name: str, version: str, x_test: pd.DataFrame, output: Any) -> None:
    """Load the registered version back through pyfunc and score the test rows once."""
    started = time.perf_counter()
    expected = outputs.scores(output)
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        got = outputs.scores(loaded.predict(x_test))
    except (MlflowException, OSError, ValueError, KeyError) as error:
        client.set_model_version_tag(name, version, "validation_status", "failed")
        raise PipelineError(
            f"registered {name} version {version} failed to load and predict: {error}; no alias was moved"
        ) from None
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-5, atol=1e-4):
        client.set_model_version_tag(name, version, "validation_status", "failed")
        raise PipelineError(f"registered {name} version {version} predicts differently once loaded; no alias was moved")
    client.set_model_version_tag(name, version, "validation_status", "passed")
    client.set_model_version_tag(name, version, "validation_seconds", f"{time.perf_counter() - started:.2f}")


def _requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in SERVING_REQUIREMENTS]
