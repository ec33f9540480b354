"""pipeline.finalize: refit on the small real flights data, then log and register in a real MLflow store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
import yaml
from mlflow.tracking import MlflowClient

from pipeline import booster, config, finalize, tracking
from pipeline.data import Dataset, load_dataset
from pipeline.features import Preprocessor
from pipeline.metrics import METRICS
from pipeline.search import TrialOutcome

PARAMS = {"max_depth": 4, "learning_rate": 0.5, "num_boost_round": 200, "early_stopping_rounds": 5}
SEED, NTHREAD = 11, 2
RMSE = METRICS["rmse"]


@dataclass(frozen=True)
class Searched:
    """One real trial, trained the way the search trains it, and the outcome the final stage gets."""

    dataset: Dataset
    trial: booster.TrainResult
    best: TrialOutcome


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, flights_spec: dict) -> Searched:
    file = tmp_path_factory.mktemp("finalize-data") / "flights.yaml"
    file.write_text(yaml.safe_dump(flights_spec))
    dataset_config = config.load_dataset(file)
    dataset = load_dataset(dataset_config, file)
    x_train, y_train = dataset.xy("train")
    x_validation, y_validation = dataset.xy("validation")
    categorical = list(dataset_config.features.categorical)
    numeric = [c for c in dataset.feature_columns if c not in categorical]
    preprocessor = Preprocessor.fit(x_train, categorical, numeric, dataset_config.features.crossed)
    matrices = booster.build_matrices(
        preprocessor.transform(x_train),
        y_train,
        preprocessor.transform(x_validation),
        y_validation,
        preprocessor.feature_names,
        preprocessor.feature_types,
        quantized=True,
    )
    trial = booster.train(PARAMS, matrices.train, matrices.validation, eval_metric="rmse", seed=SEED, nthread=NTHREAD)
    assert 0 < trial.best_iteration + 1 < trial.booster.num_boosted_rounds(), "early stopping must have cut rounds"
    best = TrialOutcome(
        number=0,
        params=dict(PARAMS),
        value=trial.curve[trial.best_iteration],
        best_iteration=trial.best_iteration,
        run_id="",
        train_seconds=trial.seconds,
        ok=True,
    )
    return Searched(dataset=dataset, trial=trial, best=best)


@pytest.fixture(scope="module")
def refitted(searched: Searched) -> dict[str, finalize.FinalModel]:
    return {
        refit_on: finalize.refit(searched.dataset, searched.best, refit_on, RMSE, SEED, NTHREAD)
        for refit_on in ("train", "train_validation")
    }


def test_refit_on_train_reproduces_the_trial_cut_at_its_best_iteration(searched, refitted):
    model = refitted["train"]
    rounds = searched.best.best_iteration + 1
    x_test, _ = searched.dataset.xy("test")

    assert model.rounds == rounds
    assert model.booster.num_boosted_rounds() == rounds
    assert model.train_rows == len(searched.dataset.train)
    # same rows, same preprocessor, same seed: the trial's booster cut at its best round, tree for tree
    trial_matrix = model.preprocessor.transform(x_test)
    expected = searched.trial.booster.inplace_predict(trial_matrix, iteration_range=(0, rounds))
    np.testing.assert_allclose(finalize.predict(model, x_test), expected, rtol=1e-6)


def test_refit_on_train_validation_uses_both_splits(searched, refitted):
    model = refitted["train_validation"]
    dataset = searched.dataset

    assert model.train_rows == len(dataset.train) + len(dataset.validation)
    assert model.booster.num_boosted_rounds() == searched.best.best_iteration + 1
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

    model = finalize.refit(searched.dataset, best, "train_validation", RMSE, SEED, NTHREAD)

    assert model.rounds == best_iteration + 1
    assert model.booster.num_boosted_rounds() == best_iteration + 1


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
    np.testing.assert_allclose(predictions, model.booster.predict(matrix, iteration_range=(0, model.rounds)), rtol=1e-6)
    one_round_fewer = model.booster.predict(matrix, iteration_range=(0, model.rounds - 1))
    assert not np.allclose(predictions, one_round_fewer)


MODEL_NAME = "finalize-test-air-time"


@dataclass(frozen=True)
class Registered:
    client: MlflowClient
    runs: list[str]
    registrations: list[finalize.Registration]


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, searched: Searched, refitted) -> Registered:
    """Two studies' final models registered under one name, each logged inside its own (parent) run."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('finalize-store') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        experiment = tracking.experiment_id(client, "finalize")
        runs, registrations = [], []
        x_test, _ = searched.dataset.xy("test")
        for refit_on in ("train_validation", "train"):
            with mlflow.start_run(experiment_id=experiment) as run:
                registrations.append(
                    finalize.log_and_register(
                        refitted[refit_on],
                        x_test,
                        finalize.predict(refitted[refit_on], x_test),
                        client,
                        MODEL_NAME,
                        tags={"refit_on": refit_on},
                    )
                )
                runs.append(run.info.run_id)
        yield Registered(client=client, runs=runs, registrations=registrations)
        mlflow.set_tracking_uri(None)


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
