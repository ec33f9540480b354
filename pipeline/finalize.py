"""The final stage: retrain the best trial's parameters, evaluate once on test, log, register, alias.

The alias moves only after the registered version was loaded back through ``mlflow.pyfunc`` and
reproduced the in-process test predictions, so a half-logged model never becomes ``champion``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import pipeline
from pipeline import booster, tracking
from pipeline.data import Dataset
from pipeline.errors import PipelineError
from pipeline.features import Preprocessor
from pipeline.metrics import Metric
from pipeline.search import TrialOutcome

CHAMPION, CHALLENGER = "champion", "challenger"
SERVING_REQUIREMENTS = ("mlflow", "xgboost", "pandas", "numpy")


@dataclass(frozen=True)
class FinalModel:
    preprocessor: Preprocessor
    booster: xgb.Booster
    """Truncated to the rounds kept, so any caller's ``predict`` uses exactly those."""
    rounds: int
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


def refit(dataset: Dataset, best: TrialOutcome, refit_on: str, metric: Metric, seed: int, nthread: int) -> FinalModel:
    """Retrain on ``train`` (or train + validation) for the best trial's number of rounds, no early stopping."""
    frame = dataset.train if refit_on == "train" else pd.concat([dataset.train, dataset.validation], ignore_index=True)
    features = dataset.config.features
    categorical = list(features.categorical)
    numeric = [c for c in dataset.feature_columns if c not in categorical]
    preprocessor = Preprocessor.fit(frame, categorical, numeric, features.crossed)
    matrix = xgb.QuantileDMatrix(
        preprocessor.transform(frame),
        frame[dataset.config.target].to_numpy(np.float64),
        feature_names=preprocessor.feature_names,
        feature_types=preprocessor.feature_types,
        enable_categorical=True,
    )
    rounds = best.best_iteration + 1
    result = booster.train(
        best.params,
        matrix,
        None,
        eval_metric=metric.early_stopping_metric,
        seed=seed,
        nthread=nthread,
        num_boost_round=rounds,
    )
    return FinalModel(
        preprocessor=preprocessor,
        booster=result.booster[:rounds],
        rounds=rounds,
        train_rows=len(frame),
        train_seconds=result.seconds,
    )


def predict(model: FinalModel, frame: pd.DataFrame) -> np.ndarray:
    return model.booster.inplace_predict(model.preprocessor.transform(frame)).astype(np.float64)


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
        booster_file = folder / "booster.ubj"
        model.booster.save_model(booster_file)
        example = x_test.head(5)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("serving.py")),
            artifacts={"preprocessor": str(preprocessor_file), "booster": str(booster_file)},
            code_paths=[str(Path(pipeline.__file__).parent)],
            signature=tracking.signature(example, expected[:5]),
            input_example=example,
            pip_requirements=_requirements(),
            registered_model_name=model_name,
            tags=tags,
        )
    version = str(info.registered_model_version)
    _verify(client, model_name, version, x_test, expected)
    alias = _alias_for(client, model_name)
    client.set_registered_model_alias(model_name, alias, version)
    return Registration(name=model_name, version=version, alias=alias, model_id=info.model_id)


def _verify(client: MlflowClient, name: str, version: str, x_test: pd.DataFrame, expected: np.ndarray) -> None:
    """Load the registered version back through pyfunc and score the test rows once."""
    started = time.perf_counter()
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        got = np.asarray(loaded.predict(x_test), dtype=np.float64)
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


def _alias_for(client: MlflowClient, name: str) -> str:
    """``champion`` for a model's first version; later ones are ``challenger`` until a gate promotes them."""
    try:
        client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return CHAMPION
    return CHALLENGER


def _requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in SERVING_REQUIREMENTS]
