"""The real CLI in a temporary directory: a study on small real flights partitions, checked through MLflow."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from cli import REPO, main_here, write_study
from mlflow.tracking import MlflowClient

from pipeline.metrics import rmse

MAX_EVALS = 4


def children(client: MlflowClient, summary: dict):
    runs = client.search_runs([summary["experiment_id"]],
                              filter_string=f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'")  # fmt: skip
    return sorted(runs, key=lambda r: int(r.data.tags["trial_number"]))


def test_json_summary_has_the_promised_fields(two_studies):
    _, (first, _), _ = two_studies
    for key in ("experiment_id", "parent_run_id", "trials", "best_params", "best_val_metric", "metric",
                "test_metric", "model_name", "model_version", "model_uri", "alias", "wall_s"):  # fmt: skip
        assert key in first
    assert first["trials"] == MAX_EVALS and first["metric"] == "rmse"
    assert first["model_uri"] == "models:/e2e-air-time@champion"
    assert isinstance(first["best_params"]["max_depth"], int)


def test_each_trial_is_a_child_run_with_typed_params_metric_and_curve(two_studies):
    _, (first, _), client = two_studies
    parent = client.get_run(first["parent_run_id"])
    trials = children(client, first)
    assert [r.data.tags["trial_number"] for r in trials] == [str(i) for i in range(MAX_EVALS)]
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.params["max_depth"].isdigit()  # an int, not "6.0"
        assert 0.02 <= float(run.data.params["learning_rate"]) <= 0.3
        assert run.data.tags["space_sha256"] == parent.data.tags["space_sha256"]
        assert run.data.tags["data_fingerprint"] == parent.data.tags["data_fingerprint"]
        curve = client.get_metric_history(run.info.run_id, "validation_rmse_curve")
        best_iteration = int(run.data.metrics["best_iteration"])
        by_step = {m.step: m.value for m in curve}
        assert max(by_step) > best_iteration
        # the trial's metric is the curve's value at the best iteration (a scored round), its minimum
        assert run.data.metrics["rmse"] == pytest.approx(by_step[best_iteration], rel=1e-6)
        assert run.data.metrics["rmse"] == pytest.approx(min(by_step.values()), rel=1e-6)
    best = min(trials, key=lambda r: r.data.metrics["rmse"])
    assert parent.data.tags["best_trial_run_id"] == best.info.run_id
    assert parent.data.metrics["best_val_rmse"] == pytest.approx(first["best_val_metric"])


def test_parent_run_holds_config_datasets_preprocessor_and_test_metric(two_studies):
    _, (first, _), client = two_studies
    parent = client.get_run(first["parent_run_id"])
    assert parent.info.status == "FINISHED"
    files = {a.path for a in client.list_artifacts(first["parent_run_id"], "config")}
    assert files == {"config/study.yaml", "config/flights.yaml", "config/xgboost.yaml"}
    assert [a.path for a in client.list_artifacts(first["parent_run_id"], "preprocessor")] == [
        "preprocessor/preprocessor.json"
    ]
    contexts = sorted(i.tags[0].value for i in parent.inputs.dataset_inputs)
    assert contexts == ["testing", "training", "validation"]
    assert parent.data.metrics["test_rmse"] == pytest.approx(first["test_metric"])


def test_registered_model_loads_by_alias_and_reproduces_the_test_metric(two_studies, flights_dir):
    workdir, (first, _), _ = two_studies
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(first["model_uri"])
    raw = pd.read_parquet(flights_dir / "2013-03.parquet").dropna(subset=["air_time"])
    inputs = raw[["origin", "dest", "carrier", "distance", "dep_time", "sched_dep_time", "hour", "minute"]]
    predictions = np.asarray(model.predict(inputs))
    assert predictions.shape == (len(raw),)
    assert rmse(raw["air_time"].to_numpy(), predictions) == pytest.approx(first["test_metric"], rel=1e-6)
    with pytest.raises(mlflow.exceptions.MlflowException, match="dest"):
        model.predict(inputs.drop(columns=["dest"]))


def test_second_study_is_a_challenger_and_the_champion_stays(two_studies):
    _, (first, second), client = two_studies
    assert (first["model_version"], first["alias"]) == ("1", "champion")
    assert (second["model_version"], second["alias"]) == ("2", "challenger")
    assert str(client.get_model_version_by_alias("e2e-air-time", "champion").version) == "1"
    assert client.get_model_version("e2e-air-time", "2").tags["validation_status"] == "passed"


def test_same_seed_gives_the_same_trials(two_studies):
    _, (first, second), client = two_studies
    params = [[r.data.params for r in children(client, s)] for s in (first, second)]
    assert params[0] == params[1]
    assert first["best_val_metric"] == pytest.approx(second["best_val_metric"], rel=1e-9)


def test_invalid_space_exits_2_with_one_line_and_writes_nothing(tmp_path, dataset_file):
    space = tmp_path / "space.yaml"
    space.write_text("model: xgboost\nparameters:\n  max_dept: {distribution: quniform, low: 3, high: 9, q: 1}\n")
    study = write_study(tmp_path, dataset_file, space=str(space))
    done = main_here(tmp_path, "run", "--study", str(study), "--no-progress")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "space.yaml" in errors[0] and "parameters.max_dept" in errors[0]
    assert "max_depth" in errors[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_missing_column_exits_2_naming_file_and_column(tmp_path, flights_spec):
    spec = flights_spec | {"features": flights_spec["features"] | {"numeric": ["distanse"]}}
    dataset = tmp_path / "broken.yaml"
    dataset.write_text(yaml.safe_dump(spec))
    done = main_here(tmp_path, "run", "--study", str(write_study(tmp_path, dataset)), "--no-progress")
    assert done.returncode == 2
    assert "broken.yaml" in done.stderr and "distanse" in done.stderr and "distance" in done.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_space_check_prints_the_space_and_typed_samples(tmp_path):
    done = main_here(tmp_path, "space", "check", str(REPO / "search_spaces" / "xgboost.yaml"), "--samples", "4")
    assert done.returncode == 0, done.stderr
    samples = [line for line in done.stdout.splitlines() if line.startswith("sample ")]
    assert len(samples) == 4
    for line in samples:
        depth = int(line.split("max_depth=")[1].split(",")[0])  # printed as an int, not 6.0
        assert 3 <= depth <= 12
    assert "learning_rate" in done.stdout and "loguniform(low=0.02, high=0.3)" in done.stdout


def test_space_check_refuses_an_invalid_file_with_exit_2(tmp_path):
    bad = REPO / "tests" / "invalid_spaces" / "low_not_below_high.yaml"
    done = main_here(tmp_path, "space", "check", str(bad))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {bad}") and "Traceback" not in done.stderr


def test_runs_lists_the_studies_and_their_best_trials_first(two_studies):
    workdir, (_, second), _ = two_studies
    done = main_here(workdir, "runs", "--experiment", "e2e-flights", "--top", "2")

    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= 100 and "\x1b" not in done.stdout
    studies, newest, _ = done.stdout.strip().split("\n\n")
    header, _, *rows = studies.splitlines()[1:]
    assert header.split()[:2] == ["study", "status"] and len(rows) == 2
    assert "e2e-air-time v2" in rows[0] and "challenger" in rows[0]  # newest first, with its alias now
    assert "e2e-air-time v1" in rows[1] and "champion" in rows[1]
    assert f"(run {second['parent_run_id']}): top 2 trials by validation rmse" in newest.splitlines()[0]
    trials = [line for line in newest.splitlines()[3:] if re.match(r"\s*\d+\s+\d", line)]
    values = [float(line.split()[1]) for line in trials]
    assert values == sorted(values) and values[0] == pytest.approx(second["best_val_metric"], rel=1e-3)
    assert "max_bin" not in newest  # fixed values are not repeated per trial


def test_report_redraws_a_past_study_from_mlflow_as_the_study_logged_it(two_studies, tmp_path):
    workdir, (first, _), client = two_studies
    output = tmp_path / "redrawn"

    done = main_here(workdir, "report", "--run-id", first["parent_run_id"], "--output", str(output))

    assert done.returncode == 0, done.stderr[-3000:]
    logged = Path(client.download_artifacts(first["parent_run_id"], "report", str(tmp_path / "logged")))
    redrawn = {path.name: path.read_bytes() for path in output.iterdir()}
    assert redrawn == {path.name: path.read_bytes() for path in logged.iterdir()}
    assert {"report.html", "optimization_history.png", "learning_curves.png", "residuals.png"} <= set(redrawn)
