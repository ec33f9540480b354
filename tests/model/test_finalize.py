"""pipeline.model.finalize: refit on the small real flights data, then log and register in a real MLflow store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow.tracking import MlflowClient

from pipeline import families, outputs, spaces, tracking
from pipeline.data import Dataset
from pipeline.families import Fitted
from pipeline.features import Preprocessor
from pipeline.metrics import BINARY, METRICS, REGRESSION
from pipeline.model import finalize
from pipeline.search.loop import TrialOutcome
from pipeline.search.trial import Trainer
from pipeline.study import training_data
from pipeline.tracking import names

PARAMS = {"model": "xgboost", "max_depth": 4, "learning_rate": 0.5, "num_boost_round": 200, "early_stopping_rounds": 5}
SEED = 11


@dataclass(frozen=True)
class Searched:
    """One real trial, trained the way the search trains it, and the outcome the final stage gets."""

    dataset: Dataset
    trial: Fitted
    best: TrialOutcome


def search_once(flights_tasks, kind: str, params: dict, metric: str) -> Searched:
    """One trial of ``params`` on the small flights as the search runs it: fit, score, outcome."""
    dataset = flights_tasks.dataset(kind)
    data = flights_tasks.training_data(kind)
    family = families.get(params["model"])
    trial = family.fit(params, data, dataset.task, metric, SEED)
    best = TrialOutcome(
        number=0,
        params=dict(params),
        value=family.validation_score(trial, data, dataset.task, metric),
        best_iteration=trial.best_iteration,
        run_id="",
        train_seconds=trial.seconds,
        ok=True,
    )
    return Searched(dataset=dataset, trial=trial, best=best)


@pytest.fixture(scope="module")
def searched(flights_tasks) -> Searched:
    found = search_once(flights_tasks, REGRESSION, PARAMS, "rmse")
    assert 0 < found.trial.best_iteration + 1 < found.trial.model.num_boosted_rounds(), "early stopping must cut"
    return found


@pytest.fixture(scope="module")
def refitted(searched: Searched) -> dict[str, finalize.FinalModel]:
    return {
        refit_on: finalize.refit(searched.dataset, searched.best, refit_on, SEED)
        for refit_on in ("train", "train_validation")
    }


def test_refit_on_train_reproduces_the_trial_cut_at_its_best_iteration(searched, refitted):
    model = refitted["train"]
    rounds = searched.best.best_iteration + 1
    x_test, _ = searched.dataset.xy("test")

    assert (model.family, model.task) == ("xgboost", searched.dataset.task)
    assert model.rounds == rounds
    assert model.model.num_boosted_rounds() == rounds
    assert model.train_rows == len(searched.dataset.train)
    assert model.train_seconds > 0
    # same rows, same preprocessor, same seed: the trial's booster cut at its best round, tree for tree
    trial_matrix = model.preprocessor.transform(x_test)
    expected = searched.trial.model.inplace_predict(trial_matrix, iteration_range=(0, rounds))
    np.testing.assert_allclose(finalize.predict(model, x_test), expected, rtol=1e-6)


def test_refit_on_train_validation_uses_both_splits(searched, refitted):
    model = refitted["train_validation"]
    dataset = searched.dataset

    assert model.train_rows == len(dataset.train) + len(dataset.validation)
    assert model.model.num_boosted_rounds() == searched.best.best_iteration + 1
    both = pd.concat([dataset.train, dataset.validation])
    assert model.preprocessor.categories["dest"] == sorted(both["dest"].dropna().astype(str).unique())
    only_in_validation = set(dataset.validation["dest"].dropna()) - set(dataset.train["dest"].dropna())
    assert only_in_validation, "the small partitions must differ in destinations for this check to mean anything"
    assert only_in_validation <= set(model.preprocessor.categories["dest"])
    assert not only_in_validation & set(refitted["train"].preprocessor.categories["dest"])
    x_test, _ = dataset.xy("test")
    assert not np.allclose(finalize.predict(model, x_test), finalize.predict(refitted["train"], x_test))


@pytest.mark.parametrize("best_iteration", [0, 16])
def test_refit_trains_exactly_best_iteration_plus_one_rounds(searched, best_iteration):
    best = TrialOutcome(0, dict(PARAMS), 1.0, best_iteration, "", 0.0, True)

    model = finalize.refit(searched.dataset, best, "train_validation", SEED)

    assert model.rounds == best_iteration + 1
    assert model.model.num_boosted_rounds() == best_iteration + 1


def test_predict_uses_exactly_the_rounds_kept(searched, refitted):
    model = refitted["train_validation"]
    x_test, _ = searched.dataset.xy("test")
    matrix = xgb.DMatrix(
        model.preprocessor.transform(x_test),
        feature_names=model.preprocessor.feature_names,
        feature_types=model.preprocessor.feature_types,
        enable_categorical=True,
    )

    predictions = finalize.predict(model, x_test)

    assert predictions.dtype == np.float64 and predictions.shape == (len(x_test),)
    np.testing.assert_allclose(predictions, model.model.predict(matrix, iteration_range=(0, model.rounds)), rtol=1e-6)
    one_round_fewer = model.model.predict(matrix, iteration_range=(0, model.rounds - 1))
    assert not np.allclose(predictions, one_round_fewer)


MODEL_NAME = "finalize-test-air-time"


@dataclass(frozen=True)
class Registered:
    client: MlflowClient
    runs: list[str]
    registrations: list[finalize.Registration]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, new_store):
    """A real SQLite tracking store and registry for the module, with an experiment to log in."""
    uri = new_store(tmp_path_factory.mktemp("finalize-store") / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        yield client, tracking.experiment_id(client, "finalize")
        mlflow.set_tracking_uri(None)


def register(store, model: finalize.FinalModel, dataset: Dataset, name: str, **tags: str):
    """Log and register ``model`` inside a run of its own, as ``run`` does inside the study's parent run."""
    client, experiment = store
    evaluation = finalize.evaluate(model, dataset, METRICS["rmse" if dataset.task.kind == REGRESSION else "log_loss"])
    with tracking.open_parent(client, experiment_id=experiment) as parent:
        registration = finalize.publish(client, parent, model, evaluation, name, trials=1, seed=SEED, provenance=tags)
    return registration, parent.run_id


@pytest.fixture(scope="module")
def registered(store, searched: Searched, refitted) -> Registered:
    """Two studies' final models registered under one name, each logged inside its own (parent) run."""
    runs, registrations = [], []
    for refit_on in ("train_validation", "train"):
        registration, run_id = register(store, refitted[refit_on], searched.dataset, MODEL_NAME, refit_on=refit_on)
        registrations.append(registration)
        runs.append(run_id)
    return Registered(client=store[0], runs=runs, registrations=registrations)


def test_first_version_is_champion_and_the_next_a_challenger(registered):
    first, second = registered.registrations
    assert (first.name, first.version, first.alias) == (MODEL_NAME, "1", "champion")
    assert (second.version, second.alias) == ("2", "challenger")
    assert first.uri == f"models:/{MODEL_NAME}@champion"
    client = registered.client
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(MODEL_NAME, "challenger").version) == "2"
    for registration, run_id in zip(registered.registrations, registered.runs, strict=True):
        version = client.get_model_version(MODEL_NAME, registration.version)
        assert version.tags["validation_status"] == "passed"
        assert version.run_id == run_id
        assert version.source == f"models:/{registration.model_id}"


def forget_steps(client: MlflowClient, parent: tracking.ParentRun) -> None:
    tracking.runs.delete_tags(client, parent.run_id, names.STEPS)
    for step in names.STEPS:
        parent.tags.pop(step, None)


def test_publishing_again_after_a_crash_reuses_the_version_the_parent_run_registered(store, searched, refitted):
    """The crash window between registering a version and recording it on the parent run: the same call
    again finds the version by its parent run and number of trials, and registers no second one."""
    client, experiment = store
    name = "finalize-test-again"
    evaluation = finalize.evaluate(refitted["train"], searched.dataset, METRICS["rmse"])
    with tracking.open_parent(client, experiment_id=experiment) as parent:
        first = finalize.publish(client, parent, refitted["train"], evaluation, name, trials=3, seed=SEED)
        forget_steps(client, parent)  # as if the process died before recording the version
        again = finalize.publish(client, parent, refitted["train"], evaluation, name, trials=3, seed=SEED)
        forget_steps(client, parent)  # as extending a finished study does
        extended = finalize.publish(client, parent, refitted["train"], evaluation, name, trials=4, seed=SEED)

    assert (first.version, first.alias) == ("1", "champion")
    assert (again.version, again.alias, again.model_id) == ("1", "champion", first.model_id)
    assert (extended.version, extended.alias) == ("2", "challenger")  # a larger budget is a new version
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    tags = client.get_model_version(name, "1").tags
    assert tags[names.PARENT_RUN_ID] == parent.run_id and tags[names.STUDY_TRIALS] == "3"
    assert tags[names.test_metric("rmse")] == f"{evaluation.value:.6g}"


def test_preprocessor_is_logged_as_plain_json(tmp_path, registered, refitted):
    client, run_id = registered.client, registered.runs[0]

    assert [a.path for a in client.list_artifacts(run_id, "preprocessor")] == ["preprocessor/preprocessor.json"]
    local = Path(client.download_artifacts(run_id, "preprocessor/preprocessor.json", str(tmp_path)))
    state = json.loads(local.read_text())
    assert Preprocessor(**state) == refitted["train_validation"].preprocessor


def test_champion_loaded_by_alias_predicts_raw_rows_like_finalize_predict(registered, searched, refitted):
    x_test, _ = searched.dataset.xy("test")
    rows = x_test.head(200).reset_index(drop=True)
    rows.loc[0, "dest"] = "ZZZ"  # a destination never seen: the model treats it as missing

    loaded = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    got = np.asarray(loaded.predict(rows), dtype=np.float64)

    np.testing.assert_array_equal(got, finalize.predict(refitted["train_validation"], rows))
    assert not np.array_equal(got, finalize.predict(refitted["train"], rows))  # it is the champion, not version 2


def test_champion_takes_a_missing_value_in_every_column_even_those_that_were_integers(registered, searched, refitted):
    """Real rows have gaps: the signature types integer columns as double, so a NaN is scored, not refused."""
    x_test, _ = searched.dataset.xy("test")
    integers = [c for c in x_test.columns if pd.api.types.is_integer_dtype(x_test[c])]
    assert integers, "the flights features include integer columns (hour, minute, distance)"
    rows = x_test.head(len(x_test.columns) + 1).reset_index(drop=True).astype({c: "float64" for c in integers})
    for i, column in enumerate(x_test.columns):
        rows[column] = rows[column].astype("object" if rows[column].dtype == "object" else rows[column].dtype)
        rows.loc[i, column] = np.nan if pd.api.types.is_numeric_dtype(rows[column]) else None

    got = np.asarray(mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion").predict(rows), dtype=np.float64)

    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, finalize.predict(refitted["train_validation"], rows))


# --- a classifier, and a family other than xgboost ------------------------------------------------------


@pytest.fixture(scope="module")
def late(flights_tasks) -> Searched:
    """One xgboost trial on the binary task (arrived more than 15 minutes late), tuned on log loss."""
    params = PARAMS | {"max_depth": 3, "learning_rate": 0.3}
    return search_once(flights_tasks, BINARY, params, "log_loss")


def test_refit_of_a_classifier_predicts_the_positive_class_probability(late):
    model = finalize.refit(late.dataset, late.best, "train_validation", SEED)
    x_test, y_test = late.dataset.xy("test")

    probability = finalize.predict(model, x_test)

    assert model.task == late.dataset.task
    assert model.model.num_boosted_rounds() == late.best.best_iteration + 1
    assert probability.shape == (len(x_test),)
    assert ((probability > 0) & (probability < 1)).all()
    assert METRICS["auc"].score(y_test, probability) > 0.75


def test_champion_classifier_serves_labels_and_probabilities_like_finalize_predict(store, late):
    model = finalize.refit(late.dataset, late.best, "train_validation", SEED)
    x_test, _ = late.dataset.xy("test")
    registration, _ = register(store, model, late.dataset, "finalize-test-late")
    assert (registration.version, registration.alias) == ("1", "champion")
    rows = x_test.head(300).reset_index(drop=True)
    rows.loc[0, "carrier"] = "ZZ"  # a carrier never seen: read as missing

    loaded = mlflow.pyfunc.load_model("models:/finalize-test-late@champion")
    served = loaded.predict(rows)

    expected = outputs.output(finalize.predict(model, rows), model.task)
    assert isinstance(served, pd.DataFrame)
    assert list(served.columns) == ["label", "probability_0", "probability_1"]
    pd.testing.assert_frame_equal(served, expected)
    np.testing.assert_allclose(served["probability_0"] + served["probability_1"], 1.0)
    np.testing.assert_array_equal(served["label"], (served["probability_1"] > 0.5).astype(int))
    assert set(served["label"]) == {0, 1}


@pytest.fixture(scope="module")
def ridge(flights_tasks) -> Searched:
    return search_once(flights_tasks, REGRESSION, {"model": "ridge", "alpha": 2.0}, "rmse")


def test_refit_of_a_family_without_rounds(ridge):
    model = finalize.refit(ridge.dataset, ridge.best, "train_validation", SEED)

    assert ridge.best.best_iteration is None
    assert (model.family, model.rounds) == ("ridge", None)
    assert model.preprocessor.encoding == "onehot"
    assert model.train_rows == len(ridge.dataset.train) + len(ridge.dataset.validation)
    assert model.model.alpha == 2.0
    assert model.model.n_features_in_ == len(model.preprocessor.feature_names)
    x_test, y_test = ridge.dataset.xy("test")
    assert METRICS["rmse"].score(y_test, finalize.predict(model, x_test)) < 0.25 * np.std(y_test)


def test_champion_ridge_serves_values_like_finalize_predict(store, ridge, tmp_path):
    model = finalize.refit(ridge.dataset, ridge.best, "train_validation", SEED)
    x_test, _ = ridge.dataset.xy("test")
    registration, run_id = register(store, model, ridge.dataset, "finalize-test-ridge")
    assert (registration.version, registration.alias) == ("1", "champion")
    rows = x_test.head(300).reset_index(drop=True)
    rows.loc[0, "dest"] = "ZZZ"

    served = mlflow.pyfunc.load_model("models:/finalize-test-ridge@champion").predict(rows)

    expected = outputs.output(finalize.predict(model, rows), model.task)
    assert isinstance(expected, np.ndarray) and expected.shape == (len(rows),)
    np.testing.assert_array_equal(np.asarray(served, dtype=np.float64), expected)
    client = store[0]
    local = Path(client.download_artifacts(run_id, "preprocessor/preprocessor.json", str(tmp_path)))
    assert Preprocessor.load(local) == model.preprocessor


def test_refit_of_hist_gradient_boosting_trains_the_trial_s_rounds(flights_tasks):
    params = {"model": "hist_gradient_boosting", "max_iter": 50, "learning_rate": 0.5}
    found = search_once(flights_tasks, REGRESSION, params, "rmse")
    assert found.best.best_iteration + 1 < params["max_iter"], "early stopping must have cut the iterations"

    model = finalize.refit(found.dataset, found.best, "train", SEED)

    assert model.rounds == found.best.best_iteration + 1 == found.trial.model.n_iter_
    assert model.model.n_iter_ == model.rounds
    x_test, _ = found.dataset.xy("test")
    expected = found.trial.model.predict(model.preprocessor.transform(x_test))  # same rows: the trial's model
    np.testing.assert_allclose(finalize.predict(model, x_test), expected, rtol=1e-9)


@pytest.mark.parametrize("kind", [REGRESSION, BINARY])
def test_evaluation_logs_what_the_report_draws_the_final_model_from(store, searched, refitted, late, kind, tmp_path):
    if kind == REGRESSION:
        model, dataset, metric = refitted["train_validation"], searched.dataset, METRICS["rmse"]
    else:
        model, dataset = finalize.refit(late.dataset, late.best, "train_validation", SEED), late.dataset
        metric = METRICS["log_loss"]
    evaluation = finalize.evaluate(model, dataset, metric)
    y_test, predictions = evaluation.y, evaluation.predictions
    client, experiment = store

    with tracking.open_parent(client, experiment_id=experiment) as parent:
        finalize.log_evaluation(parent, model, evaluation, SEED)

    local = Path(client.download_artifacts(parent.run_id, "evaluation", str(tmp_path)))
    frame = pd.read_parquet(local / "test_predictions.parquet")
    np.testing.assert_array_equal(frame["y_true"], y_test)
    if kind == REGRESSION:
        assert list(frame.columns) == ["y_true", "y_pred"]
        np.testing.assert_allclose(frame["y_pred"], predictions)
    else:
        assert list(frame.columns) == ["y_true", "probability_0", "probability_1"]
        np.testing.assert_allclose(frame["probability_1"], predictions)
    importance = json.loads((local / "feature_importance.json").read_text())["importance"]
    assert set(importance) == set(model.preprocessor.raw_columns)  # raw columns, not encoded ones
    assert max(importance.values()) > 0
    if kind == REGRESSION:  # air time is the route's length: the destination and distance carry it
        assert max(importance, key=importance.get) in {"dest", "distance"}
        assert importance["minute"] < 0.05 * max(importance.values())


DEPTHS = {"distribution": "randint", "low": 2, "high": 5}


@pytest.mark.parametrize("refit_on", ["train", "train_validation"])
def test_kfold_refits_on_every_non_test_row_for_the_folds_mean_best_iteration(kfold_dataset, refit_on):
    params = PARAMS | {"learning_rate": 0.1, "early_stopping_rounds": 10}
    searched = {k: v for k, v in params.items() if k != "model"} | {
        "max_depth": {"distribution": "randint", "low": 2, "high": 5}
    }
    space = spaces.from_mapping({"model": "xgboost", "parameters": searched}, "space")
    data = training_data(kfold_dataset, space)
    best, record = Trainer(space, data, kfold_dataset.task, METRICS["rmse"], SEED, {})(0, params)
    folds_best = [record.metrics[f"best_iteration_fold_{k}"] for k in range(3)]
    assert best.best_iteration == round(np.mean(folds_best)) and len(set(folds_best)) > 1

    model = finalize.refit(kfold_dataset, best, refit_on, SEED)

    rows = len(pd.read_csv(kfold_dataset.config.path)) - len(kfold_dataset.test)
    assert model.train_rows == len(kfold_dataset.train) == rows == 240
    assert model.rounds == best.best_iteration + 1 == model.model.num_boosted_rounds()
    x, y = kfold_dataset.xy("train")
    by_hand = families.get("xgboost").refit(
        params, model.rounds, model.preprocessor.transform(x), y, kfold_dataset.task, SEED, model.preprocessor
    )
    x_test, _ = kfold_dataset.xy("test")
    assert np.array_equal(
        finalize.predict(model, x_test), by_hand.inplace_predict(model.preprocessor.transform(x_test))
    )
