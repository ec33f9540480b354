"""The final stage: retrain the best trial's parameters, evaluate once on test, log, register, alias.

The alias moves only after the registered version was loaded back through ``mlflow.pyfunc`` and
reproduced the in-process test predictions, so a half-logged model never becomes ``champion``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import pipeline
from pipeline import families, outputs, tracking
from pipeline.config import MODEL_KEY, PartitionSplit
from pipeline.data import Dataset
from pipeline.errors import PipelineError
from pipeline.features import Preprocessor
from pipeline.metrics import Metric, Task
from pipeline.model import registry
from pipeline.search.trial import TrialOutcome
from pipeline.tracking import Client, ParentRun, names

log = logging.getLogger(__name__)
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


def refit(dataset: Dataset, best: TrialOutcome, refit_on: str, seed: int) -> FinalModel:
    """Retrain the best trial's family and parameters on ``train`` (or train + validation), with the
    preprocessor refitted on the same rows, for the best trial's number of rounds: no early stopping.

    With a k-fold split, on every row but the test rows whatever ``refit_on`` says (each was validated on
    once; its training split holds them all), for the folds' mean best iteration."""
    x, y = dataset.xy("train")
    if refit_on == "train_validation" and dataset.folds is None:
        x_validation, y_validation = dataset.xy("validation")
        x, y = pd.concat([x, x_validation], ignore_index=True), np.concatenate([y, y_validation])
    family = families.get(best.params[MODEL_KEY])
    roles = dataset.roles
    preprocessor = Preprocessor.fit(x, roles.categorical, roles.numeric, roles.crossed, encoding=family.encoding)
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


@dataclass(frozen=True)
class Evaluation:
    """The final model's one look at the test split: its raw rows, targets, predictions and score."""

    x: pd.DataFrame
    y: np.ndarray
    predictions: np.ndarray
    """Values, or class probabilities (``predict``)."""
    metric: Metric
    value: float


def evaluate(model: FinalModel, dataset: Dataset, metric: Metric) -> Evaluation:
    """Score ``model`` once on the test split."""
    x_test, y_test = dataset.xy("test")
    predictions = predict(model, x_test)
    return Evaluation(x_test, y_test, predictions, metric, metric.score(y_test, predictions))


def log_evaluation(parent: ParentRun, model: FinalModel, evaluation: Evaluation, seed: int) -> None:
    """Log the test predictions and the raw columns' importance on the study's run, under ``evaluation/``:
    what the report's final-model plots are drawn from, so that they can be drawn again from MLflow alone.

    ``test_predictions.parquet`` holds ``y_true`` (the value, or the class index) and ``y_pred``
    (regression) or one ``probability_<class>`` column per class, in class order.
    """
    x_test, y_test, metric = evaluation.x, evaluation.y, evaluation.metric
    served = outputs.output(evaluation.predictions, model.task)
    frame = pd.DataFrame({"y_true": y_test})
    if model.task.classification:
        frame = frame.join(pd.DataFrame(served).drop(columns="label"))
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
        parent.log_folder(Path(tmp), names.EVALUATION_FOLDER)


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


def log_model(
    parent: ParentRun, model: FinalModel, x_test: pd.DataFrame, expected: np.ndarray, tags: dict[str, str]
) -> tracking.models.LoggedModel:
    """Log the preprocessor (``preprocessor/preprocessor.json``) and one pyfunc bundling preprocessor +
    model on the study's run, with a signature and an input example of raw test rows."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        preprocessor_file = model.preprocessor.save(folder / "preprocessor.json")
        parent.log_files([preprocessor_file], names.PREPROCESSOR_FOLDER)
        model_file = families.get(model.family).save(model.model, folder)
        description_file = folder / "model.json"
        description_file.write_text(json.dumps(outputs.describe(model.family, model.task)))
        return tracking.models.log_pyfunc(
            loader=Path(__file__).with_name("serving.py"),
            artifacts={"preprocessor": preprocessor_file, "model": model_file, "description": description_file},
            code_paths=[Path(pipeline.__file__).parent],
            example=x_test.head(5),
            example_output=outputs.output(expected[:5], model.task),
            requirements=_requirements(),
            tags=tags,
        )


def publish(
    client: Client,
    parent: ParentRun,
    model: FinalModel,
    evaluation: Evaluation,
    name: str,
    *,
    trials: int,
    seed: int,
    provenance: Mapping[str, str] | None = None,
    description: str = "",
    version_tags: Mapping[str, str] | None = None,
) -> registry.Registration:
    """Log the evaluation and the model on the study's parent run, register a version, check it loads and
    reproduces the in-process test predictions, then give it its role: the alias moves only after that
    check, so a half-logged model never becomes ``champion``.

    Each step is recorded on the parent run once done (``names.STEP_MODEL``, ``STEP_REGISTERED``,
    ``STEP_VERIFIED``, ``STEP_ALIASED``), so the same call after a crash resumes at the first step not done.
    A version is tagged with the parent run and the study's number of ``trials`` (with ``provenance`` and
    the test metric); when a crash came between registering and recording it, the rerun finds it by those
    two tags and reuses it: a study at one budget never registers a second version.
    """
    registered_by = {names.PARENT_RUN_ID: parent.run_id, names.STUDY_TRIALS: str(trials)}
    tags = dict(provenance or {}) | registered_by
    version = parent.tags.get(names.STEP_REGISTERED) or tracking.models.find_version(client, name, registered_by)
    if version is None:
        log_evaluation(parent, model, evaluation, seed)
        model_uri = parent.tags.get(names.STEP_MODEL)
        if model_uri is None:
            model_uri = log_model(parent, model, evaluation.x, evaluation.predictions, tags).uri
            parent.set_tags({names.STEP_MODEL: model_uri})
        version = tracking.models.register(client, model_uri, name, tags)
        log.info("registered %s version %s", name, version)
    else:
        log.info("%s version %s was registered by this study before it stopped: reusing it", name, version)
    parent.set_tags({names.STEP_REGISTERED: version})
    if description:
        tracking.models.set_description(client, name, version, description)
    test_tag = {names.test_metric(evaluation.metric.name): f"{evaluation.value:.6g}"}
    tracking.models.set_version_tags(client, name, version, test_tag | dict(version_tags or {}))
    if names.STEP_VERIFIED not in parent.tags:
        verify(client, name, version, evaluation.x, evaluation.predictions, model.task)
        parent.set_tags({names.STEP_VERIFIED: "passed"})
    alias = registry.place_new_version(client, name, version)
    parent.set_tags(
        {names.STEP_ALIASED: alias, names.MODEL_URI: f"models:/{name}@{alias}", names.MODEL_VERSION: version}
    )
    return registry.Registration(name, version, alias, tracking.models.version_model_id(client, name, version))


def describe(study: str, parent_run_id: str, dataset: Dataset, best: TrialOutcome, metric: str, test: float) -> str:
    """What a registered version is, for the registry page (Markdown): why is this the champion?"""
    split = dataset.config.split
    window = (
        f"train {', '.join(split.train)} / validation {', '.join(split.validation)} / test {', '.join(split.test)}"
        if isinstance(split, PartitionSplit)
        else f"{split.by} split: {len(dataset.train)} train / {len(dataset.validation)} validation / "
        f"{len(dataset.test)} test rows"
    )
    params = ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={v}`" for k, v in best.params.items())
    return "\n".join(
        [
            f"Study **{study}** (parent run `{parent_run_id}`), dataset {dataset.config.name}: {window}.",
            "",
            f"- validation {metric}: {best.value:.6g} (trial {best.number})",
            f"- test {metric}: {test:.6g} (scored once, after the refit)",
            f"- parameters: {params}",
        ]
    )


def verify(client: Client, name: str, version: str, x_test: pd.DataFrame, expected: np.ndarray, task: Task) -> None:
    """Load the registered version back through pyfunc, as anyone would, and check it reproduces the
    in-process test predictions; the outcome is tagged on the version. Raises PipelineError if it does not."""
    started = time.perf_counter()
    want = outputs.scores(outputs.output(expected, task))
    try:
        got = outputs.scores(tracking.models.load_pyfunc(f"models:/{name}/{version}").predict(x_test))
    except (PipelineError, OSError, ValueError, KeyError) as error:
        tracking.models.set_version_tags(client, name, version, {names.VALIDATION_STATUS: "failed"})
        raise PipelineError(
            f"registered {name} version {version} failed to load and predict: {error}; no alias was moved"
        ) from None
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-4):
        tracking.models.set_version_tags(client, name, version, {names.VALIDATION_STATUS: "failed"})
        raise PipelineError(f"registered {name} version {version} predicts differently once loaded; no alias was moved")
    tracking.models.set_version_tags(
        client,
        name,
        version,
        {names.VALIDATION_STATUS: "passed", names.VALIDATION_SECONDS: f"{time.perf_counter() - started:.2f}"},
    )


def _requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in SERVING_REQUIREMENTS]
