"""pipeline.search: real hyperopt trials on the small real flights data, each a child run in a real MLflow store."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline import booster, config, spaces, tracking
from pipeline.data import load_dataset
from pipeline.errors import PipelineError
from pipeline.features import Preprocessor
from pipeline.history import History
from pipeline.metrics import METRICS
from pipeline.search import RunContext, SearchSettings, run_search

FAST = {"num_boost_round": 200, "early_stopping_rounds": 5}
"""With learning rates of 0.5 and more, early stopping ends each trial within a few dozen rounds."""
PROVENANCE = {"space_sha256": "test-space", "data_fingerprint": "test-data"}


@dataclass(frozen=True)
class Prepared:
    matrices: booster.Matrices
    y_validation: np.ndarray


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, flights_spec: dict) -> Prepared:
    """The search's shared matrices, built the way ``run`` builds them."""
    file = tmp_path_factory.mktemp("search-data") / "flights.yaml"
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
    return Prepared(matrices=matrices, y_validation=y_validation)


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('search-store') / 'mlflow.db'}"


@pytest.fixture
def client(store_uri: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(store_uri)
    yield MlflowClient(store_uri)
    mlflow.set_tracking_uri(None)  # set_tracking_uri also sets MLFLOW_TRACKING_URI; undo both


@pytest.fixture
def context(client: MlflowClient, request: pytest.FixtureRequest) -> RunContext:
    """A parent run of its own (in an experiment named after the test) for the trials to hang under."""
    experiment = tracking.experiment_id(client, request.node.name)
    parent = client.create_run(experiment, tags={"mlflow.runName": "study"})
    return RunContext(client=client, experiment_id=experiment, parent_run_id=parent.info.run_id, tags=PROVENANCE)


def write_space(folder: Path, parameters: dict) -> spaces.SearchSpace:
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump({"model": "xgboost", "parameters": parameters | FAST}))
    return spaces.load(path)


def journal(folder: Path) -> History:
    """A fresh trial history, as run.py starts one for a new study."""
    history = History(folder / "history.jsonl")
    history.start({"parent_run_id": "test"})
    return history


def settings(max_evals: int, seed: int = 3) -> SearchSettings:
    return SearchSettings(max_evals=max_evals, seed=seed, algorithm="tpe", nthread=2)


def child_runs(context: RunContext) -> dict[int, mlflow.entities.Run]:
    runs = context.client.search_runs(
        [context.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{context.parent_run_id}'"
    )
    return {int(run.data.tags["trial_number"]): run for run in runs}


SEARCHED = {
    "max_depth": {"distribution": "quniform", "low": 2, "high": 7, "q": 1},
    "learning_rate": {"distribution": "uniform", "low": 0.5, "high": 1.0},
}


def test_each_trial_is_one_child_run_and_the_best_is_the_lowest_ok_rmse(tmp_path, prepared, context):
    space = write_space(tmp_path, SEARCHED)

    result = run_search(
        space,
        prepared.matrices,
        prepared.y_validation,
        METRICS["rmse"],
        settings(5),
        context,
        journal(tmp_path),
        show_progress=False,
    )

    assert [t.number for t in result.trials] == [0, 1, 2, 3, 4]
    runs = child_runs(context)
    assert sorted(runs) == [0, 1, 2, 3, 4]
    for trial in result.trials:
        run = runs[trial.number]
        assert trial.ok and trial.error is None
        assert trial.run_id == run.info.run_id
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"trial-{trial.number:04d}"
        assert run.data.tags["space_sha256"] == "test-space"
        assert run.data.tags["data_fingerprint"] == "test-data"
        assert isinstance(trial.params["max_depth"], int)
        assert run.data.params["max_depth"] == str(trial.params["max_depth"])
        assert run.data.params["num_boost_round"] == "200"
        assert run.data.metrics["rmse"] == pytest.approx(trial.value, rel=1e-12)
        assert run.data.metrics["best_iteration"] == trial.best_iteration
        assert 0 <= trial.best_iteration < 200
    values = [t.value for t in result.trials]
    assert len(set(values)) > 1  # otherwise "the best" would not be tested
    assert result.best.value == min(values)
    assert result.best.number == values.index(min(values))
    assert result.finished == result.trials
    assert result.train_seconds == pytest.approx(sum(t.train_seconds for t in result.trials))


def test_failing_trials_are_failed_runs_with_the_error_and_never_the_best(tmp_path, prepared, context):
    # xgboost refuses max_depth=-1 ("should be greater equal to 0") when training starts
    space = write_space(
        tmp_path,
        {
            "max_depth": {"distribution": "choice", "options": [3, -1]},
            "learning_rate": {"distribution": "uniform", "low": 0.5, "high": 1.0},
        },
    )

    result = run_search(
        space,
        prepared.matrices,
        prepared.y_validation,
        METRICS["rmse"],
        settings(6),
        context,
        journal(tmp_path),
        show_progress=False,
    )

    failed = [t for t in result.trials if not t.ok]
    ok = [t for t in result.trials if t.ok]
    assert failed and ok, "the seed must give both kinds of trial"
    assert {t.params["max_depth"] for t in failed} == {-1}
    assert {t.params["max_depth"] for t in ok} == {3}
    runs = child_runs(context)
    assert sorted(runs) == list(range(6))
    for trial in failed:
        run = runs[trial.number]
        assert trial.run_id == run.info.run_id
        assert math.isnan(trial.value)
        assert run.info.status == "FAILED"
        assert run.data.tags["error_class"] == "XGBoostError"
        assert "max_depth" in run.data.tags["error_message"]
        assert trial.error.startswith("XGBoostError: ")
        assert "rmse" not in run.data.metrics
        assert "trial_seconds" in run.data.metrics
    for trial in ok:
        assert runs[trial.number].info.status == "FINISHED"
    assert result.best.ok
    assert result.best.value == min(t.value for t in ok)
    assert result.finished == ok


def test_when_every_trial_fails_the_error_says_so_and_quotes_the_first(tmp_path, prepared, context):
    space = write_space(tmp_path, {"max_depth": {"distribution": "choice", "options": [-1, -2]}})

    with pytest.raises(PipelineError, match=r"^all 3 trials failed; first error: XGBoostError: .*max_depth") as raised:
        run_search(
            space,
            prepared.matrices,
            prepared.y_validation,
            METRICS["rmse"],
            settings(3),
            context,
            journal(tmp_path),
            show_progress=False,
        )

    runs = child_runs(context)
    assert sorted(runs) == [0, 1, 2]  # the failed trials were still written before the error
    assert {run.info.status for run in runs.values()} == {"FAILED"}
    first_message = runs[0].data.tags["error_message"]
    assert first_message.splitlines()[0] in str(raised.value)


def test_r2_is_maximised_and_read_off_the_rmse_curve(tmp_path, prepared, context):
    space = write_space(tmp_path, SEARCHED)
    r2 = METRICS["r2"]

    result = run_search(
        space,
        prepared.matrices,
        prepared.y_validation,
        r2,
        settings(5),
        context,
        journal(tmp_path),
        show_progress=False,
    )

    values = [t.value for t in result.trials]
    assert len(set(values)) > 1
    assert result.best.value == max(values)
    best_run = context.client.get_run(result.best.run_id)
    assert best_run.data.metrics["r2"] == pytest.approx(result.best.value, rel=1e-12)
    curve = {m.step: m.value for m in context.client.get_metric_history(result.best.run_id, "validation_rmse_curve")}
    assert len(curve) > result.best.best_iteration
    rmse_at_best = curve[result.best.best_iteration]
    expected = 1.0 - rmse_at_best**2 / np.var(prepared.y_validation)
    assert result.best.value == pytest.approx(expected, rel=1e-9)
    assert 0.0 < result.best.value < 1.0
