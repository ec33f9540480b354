"""The CLI's ``main`` (in this process: nothing here is about a process) over a multi-family space and over the
binary classification example, on small real data: each registers a model that loads by alias and predicts raw
rows, reproducing the logged test metric."""

from __future__ import annotations

import re

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from cli import REPO, main_here, summary_of, write_study
from mlflow.tracking import MlflowClient

from pipeline.metrics import brier, rmse

RAW_COLUMNS = ["origin", "dest", "carrier", "distance", "dep_time", "sched_dep_time", "hour", "minute"]

MULTI_FAMILY = {
    "models": {
        "xgboost": {"parameters": {
            "max_depth": {"distribution": "quniform", "low": 2, "high": 8, "q": 1},
            "learning_rate": {"distribution": "loguniform", "low": 0.05, "high": 0.5},
            "num_boost_round": 300, "early_stopping_rounds": 20,
        }},
        "ridge": {"parameters": {"alpha": {"distribution": "loguniform", "low": 0.01, "high": 10}}},
        "random_forest": {"parameters": {
            "n_estimators": 20,
            "min_samples_leaf": {"distribution": "quniform", "low": 1, "high": 20, "q": 1},
        }},
        "hist_gradient_boosting": {"parameters": {
            "learning_rate": {"distribution": "loguniform", "low": 0.05, "high": 0.5},
            "max_iter": 100,
        }},
    }
}  # fmt: skip


def test_a_multi_family_study_tries_several_families_and_registers_the_best(
    tmp_path, flights_spec, flights_dir, new_store
):
    new_store(tmp_path / "mlflow.db")
    dataset = tmp_path / "flights.yaml"
    dataset.write_text(yaml.safe_dump(flights_spec))
    space = tmp_path / "families.yaml"
    space.write_text(yaml.safe_dump(MULTI_FAMILY))
    study = write_study(tmp_path, dataset, space=str(space), max_evals=8, seed=3, model_name="families")

    summary = summary_of(main_here(tmp_path, "run", "--study", str(study), "--json", "--no-progress"))

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(
        [summary["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'"
    )
    assert len(runs) == 8
    tried = {r.data.params["model"] for r in runs}
    assert len(tried) >= 3  # TPE explored the families, not one
    for run in runs:
        own = set(MULTI_FAMILY["models"][run.data.params["model"]]["parameters"])
        assert set(run.data.params) == own | {"model"}  # no other family's parameters leak in
    assert summary["best_params"]["model"] in tried
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(summary["model_uri"])
    raw = pd.read_parquet(flights_dir / "2013-03.parquet").dropna(subset=["air_time"])
    predictions = np.asarray(model.predict(raw[RAW_COLUMNS]))
    assert rmse(raw["air_time"].to_numpy(), predictions) == pytest.approx(summary["test_metric"], rel=1e-6)


def test_the_classification_example_tunes_brier_and_serves_labels_and_probabilities_with_flags_over_the_file(
    tmp_path, flights_spec, flights_dir, new_store
):
    new_store(tmp_path / "mlflow.db")
    shipped = yaml.safe_load((REPO / "data" / "flights_late.yaml").read_text())
    spec = shipped | {"path": flights_spec["path"]}
    dataset = tmp_path / "late.yaml"
    dataset.write_text(yaml.safe_dump(spec))
    study = write_study(tmp_path, dataset, metric="brier", max_evals=30, model_name="from-the-file")

    done = main_here(tmp_path, "run", "--study", str(study), "--max-evals", "4", "--study-name", "flagged",
                     "--experiment", "flag-exp", "--model-name", "late", "--json", "--no-progress")  # fmt: skip

    summary = summary_of(done)
    assert summary["trials"] + summary["trials_failed"] == 4 and summary["model_uri"] == "models:/late@champion"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(summary["parent_run_id"]).info.run_name == "flagged"
    assert client.get_experiment(summary["experiment_id"]).name == "flag-exp"
    table = done.stdout.split("top trials:\n")[1].split("\n{")[0]  # up to the JSON line
    top = [line for line in table.splitlines()[2:] if re.match(r"\s*\d+\s", line)]  # rows, not wrapped lines
    assert table.split()[:2] == ["trial", "brier"] and top and all("FINISHED" in line for line in top)
    assert "max_depth=" in table
    assert summary["metric"] == "brier" and 0 < summary["test_metric"] < 0.25
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/late@champion")
    raw = pd.read_parquet(flights_dir / "2013-03.parquet").dropna(subset=["arr_delay"])
    served = model.predict(raw[spec["features"]["categorical"] + spec["features"]["numeric"]])
    assert list(served.columns) == ["label", "probability_0", "probability_1"]
    assert np.allclose(served["probability_0"] + served["probability_1"], 1.0)
    assert set(served["label"]) <= {0, 1}
    late = (raw["arr_delay"] > 15).astype(int).to_numpy()
    assert brier(late, served["probability_1"].to_numpy()) == pytest.approx(summary["test_metric"], rel=1e-6)
