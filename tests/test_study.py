"""pipeline.study: how keywords and the study file combine, what is refused before anything runs, and the
Python API run twice in one process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import data, spaces
from pipeline.config import StudyConfig, load_dataset
from pipeline.errors import InputError
from pipeline.study import Study, check_compatible, pruning_rule

REPO = Path(__file__).resolve().parents[1]


def study_file(folder: Path, dataset_file: Path, space: str = "xgboost.yaml", **overrides) -> Path:
    path = folder / "study.yaml"
    study = {"name": "s", "experiment": "e", "dataset": str(dataset_file), "model_name": "m",
             "space": str(REPO / "search_spaces" / space)} | overrides  # fmt: skip
    path.write_text(yaml.safe_dump(study))
    return path


def test_flags_override_pruning_and_device_and_leave_the_rest_as_the_file_says(tmp_path, dataset_file):
    path = study_file(tmp_path, dataset_file, pruning={"warmup_rounds": 7})
    study = Study.from_file(path, pruning=False, device="cuda").config
    assert study.pruning.enabled is False and study.pruning.warmup_rounds == 7
    assert study.device == "cuda"
    assert pruning_rule(study.pruning) is None
    default = Study.from_file(path).config
    assert default.device == "cpu" and pruning_rule(default.pruning).warmup_rounds == 7


def test_an_unknown_device_names_the_key_and_what_is_allowed(tmp_path, dataset_file):
    with pytest.raises(InputError, match=r"device.*'cpu' or 'cuda'"):
        Study.from_file(study_file(tmp_path, dataset_file, device="tpu"))


def test_fewer_than_one_parallel_trial_is_refused(tmp_path, dataset_file):
    with pytest.raises(InputError, match=r"--parallelism.*give 1 or more"):
        Study.from_file(study_file(tmp_path, dataset_file), parallelism=0)


def test_cuda_is_refused_for_a_space_without_a_family_that_trains_on_a_gpu(tmp_path, dataset_file):
    path = study_file(tmp_path, dataset_file, space="ridge.yaml", device="cuda")
    study = Study.from_file(path).config
    dataset = data.load_dataset(load_dataset(dataset_file), dataset_file)
    with pytest.raises(InputError, match=r"device.*no model family of ridge.yaml trains on cuda"):
        check_compatible(study, path, dataset, spaces.load(study.space))
    multi = study.model_copy(update={"space": REPO / "search_spaces" / "multi_family.yaml"})
    check_compatible(multi, path, dataset, spaces.load(multi.space))  # its xgboost trials can use the GPU


def test_a_metric_that_does_not_fit_the_task_is_refused_with_the_allowed_ones(tmp_path, dataset_file):
    path = study_file(tmp_path, dataset_file, metric="auc")
    study = Study.from_file(path).config
    dataset = data.load_dataset(load_dataset(dataset_file), dataset_file)
    with pytest.raises(InputError, match=r"metric: auc does not apply to a regression task.*rmse, mae, r2"):
        check_compatible(study, path, dataset, spaces.load(study.space))


@pytest.mark.parametrize(
    ("task", "space_file", "where"),
    [
        ("multiclass", "multi_family_classification.yaml", "models.xgboost.parameters.scale_pos_weight"),
        ("regression", "xgboost_binary.yaml", "parameters.scale_pos_weight"),
    ],
)
def test_a_parameter_of_binary_tasks_only_is_refused_for_another_task(flights_tasks, task, space_file, where):
    """xgboost ignores scale_pos_weight (the positive class's weight) outside a binary task, warning at every
    trial, while the search spends a dimension on it: a shipped binary space on a multiclass table."""
    metric = "rmse" if task == "regression" else "log_loss"
    study = StudyConfig(name="s", experiment="e", dataset=Path("d"), space=Path("s"), model_name="m", metric=metric)
    space = spaces.load(REPO / "search_spaces" / space_file)

    with pytest.raises(InputError) as caught:
        check_compatible(study, "f", flights_tasks.dataset(task), space)

    assert caught.value.file == space.file and caught.value.key == where
    message = str(caught.value)
    assert f"weights the positive class, which only a binary task has; this dataset's task is {task}" in message
    assert message.endswith("; remove it from the space for this task")
    binary = study.model_copy(update={"metric": "log_loss"})
    check_compatible(binary, "f", flights_tasks.dataset("binary"), space)


SMALL_SPACE = {
    "model": "xgboost",
    "parameters": {
        "max_depth": {"distribution": "quniform", "low": 2, "high": 6, "q": 1},
        "learning_rate": {"distribution": "loguniform", "low": 0.05, "high": 0.3},
        "num_boost_round": 40,
        "early_stopping_rounds": 5,
    },
}


def test_the_python_api_runs_two_studies_in_one_process_without_leaking_state(tmp_path, flights_spec, monkeypatch):
    """As in a notebook: a study from files, then one from dicts, each in its own store; the global tracking
    URI a user set before is put back, and no MLflow run is left active."""
    import mlflow
    from mlflow.tracking import MlflowClient

    import pipeline

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mine = f"sqlite:///{tmp_path / 'mine.db'}"
    mlflow.set_tracking_uri(mine)
    dataset = tmp_path / "flights.yaml"
    dataset.write_text(yaml.safe_dump(flights_spec))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SMALL_SPACE))
    path = study_file(tmp_path, dataset, space="unused.yaml", report=False)
    path.write_text(path.read_text().replace(str(REPO / "search_spaces" / "unused.yaml"), str(tmp_path / "space.yaml")))
    first_uri, second_uri = (f"sqlite:///{tmp_path / name}" for name in ("first.db", "second.db"))

    first = pipeline.Study.from_file(
        path, max_evals=3, seed=7, tracking_uri=first_uri, experiment="nb", study_name="try-1",
        state_dir=tmp_path / "state", progress=False,
    ).run()  # fmt: skip
    second = pipeline.Study.from_config(
        {"name": "try-2", "experiment": "nb", "model_name": "nb-model", "report": False},
        flights_spec,
        SMALL_SPACE,
        max_evals=2,
        tracking_uri=second_uri,
        state_dir=tmp_path / "state",
        progress=False,
    ).run()

    assert mlflow.get_tracking_uri() == mine and mlflow.active_run() is None
    for result, uri, name, trials in ((first, first_uri, "try-1", 3), (second, second_uri, "try-2", 2)):
        client = MlflowClient(uri)
        parent = client.get_run(result.parent_run_id)
        assert parent.info.status == "FINISHED" and parent.info.run_name == name
        frame = result.trials_dataframe()
        assert list(frame["number"]) == list(range(trials))
        assert {"state", "value", "run_id", "train_seconds", "params_max_depth", "params_learning_rate"} <= set(frame)
        assert all(isinstance(v, int) for v in frame["params_max_depth"])  # typed as the trial received them
        assert result.best_value == frame.loc[frame["state"] == "COMPLETE", "value"].min()
        assert isinstance(result.best_params["max_depth"], int) and result.best_params["model"] == "xgboost"
        assert result.model_uri == f"models:/{result.model_name}@champion"
        champion = client.get_model_version_by_alias(result.model_name, "champion")
        assert str(champion.version) == result.model_version
        assert result.model_id.startswith("m-") and champion.source == f"models:/{result.model_id}"
        assert result.to_dict()["best_val_metric"] == result.best_value
        roles = json.loads(Path(client.download_artifacts(result.parent_run_id, "features/roles.json")).read_text())
        assert {r["column"]: r["role"] for r in roles}["origin"] == "categorical"
        assert {r["column"]: r["role"] for r in roles}["arr_delay"] == "dropped"
        assert parent.data.tags["features"].split(",")[:3] == ["origin", "dest", "carrier"]
    logged = MlflowClient(second_uri).list_artifacts(second.parent_run_id, "config")
    assert sorted(a.path for a in logged) == ["config/dataset.yaml", "config/space.yaml", "config/study.yaml"]
    assert MlflowClient(mine).search_experiments(filter_string="name = 'nb'") == []  # nothing in the user's store


def test_in_memory_configs_are_validated_like_files_with_the_same_errors(flights_spec):
    import pipeline

    study = {"name": "s", "experiment": "e", "model_name": "m"}
    with pytest.raises(
        InputError, match=r"space config \(in memory\): parameters.max_dept: not a xgboost hyperparameter"
    ):
        pipeline.Study.from_config(study, flights_spec, {"model": "xgboost", "parameters": {"max_dept": 3}})
    with pytest.raises(InputError, match=r"study config \(in memory\): max_evals"):
        pipeline.Study.from_config(study | {"max_evals": 0}, flights_spec, SMALL_SPACE)
    with pytest.raises(InputError, match=r"dataset config \(in memory\): split"):
        pipeline.Study.from_config(study, flights_spec | {"split": {"by": "months"}}, SMALL_SPACE)


def test_a_keyword_the_api_does_not_know_is_a_type_error_as_for_any_function(tmp_path, dataset_file):
    import pipeline

    with pytest.raises(TypeError, match=r"from_file\(\) got an unexpected keyword argument 'max_eval'"):
        pipeline.Study.from_file(study_file(tmp_path, dataset_file), max_eval=3)  # type: ignore[call-arg]


def test_a_kfold_study_scores_trials_by_their_fold_mean_and_registers_a_model_serving_raw_rows(tmp_path, new_store):
    """A tiny study on a table nobody here wrote, cross-validated in 3 folds: each trial's child run holds its
    folds' values and their mean, the final model is refit on every non-test row for the folds' mean best
    iteration, and the registered model scores raw rows with a gap in every column."""
    import mlflow
    from mlflow.tracking import MlflowClient

    quirks = REPO / "tests" / "quirks"
    dataset = yaml.safe_load((quirks / "yes_no.yaml").read_text())
    dataset |= {"path": str(quirks / "yes_no.csv"), "split": {"by": "kfold", "folds": 3, "test": 0.2, "seed": 0}}
    uri = new_store(tmp_path / "mlflow.db")
    study = {"name": "cv", "experiment": "cv", "model_name": "cv-model", "metric": "log_loss", "report": False}
    result = Study.from_config(
        study, dataset, SMALL_SPACE, max_evals=3, tracking_uri=uri, state_dir=tmp_path / "state", progress=False
    ).run()

    client = MlflowClient(uri)
    assert result.finished == 3
    for trial in result.trials:
        metrics = client.get_run(trial.run_id).data.metrics
        folds = [metrics[f"log_loss_fold_{k}"] for k in range(3)]
        assert metrics["log_loss"] == pytest.approx(np.mean(folds)) == pytest.approx(trial.value)
        assert metrics["best_iteration"] == round(np.mean([metrics[f"best_iteration_fold_{k}"] for k in range(3)]))
    parent = client.get_run(result.parent_run_id).data
    assert (parent.params["train_rows"], parent.params["validation_rows"], parent.params["test_rows"]) == (
        "240",
        "0",
        "60",
    )
    assert parent.metrics["final_rounds"] == result.best_iteration + 1

    rows = pd.read_csv(quirks / "yes_no.csv").drop(columns="churned").head(6).astype({"rooms": "float64"})
    for i, column in enumerate(rows.columns):
        rows.loc[i, column] = None
    mlflow.set_tracking_uri(uri)
    try:
        served = mlflow.pyfunc.load_model(result.model_uri).predict(rows)
    finally:
        mlflow.set_tracking_uri(None)
    assert len(served) == len(rows)
    assert served["probability_Yes"].between(0, 1).all() and set(served["label"]) <= {"Yes", "No"}
