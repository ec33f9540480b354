"""pipeline.reporting.runs: the ``runs`` listing and the top-trials table, read from studies logged in a real SQLite
MLflow store (parent and child runs tagged as a study tags them, a registered model whose aliases move), and the
plain-text tables they are drawn as."""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.reporting import runs
from pipeline.reporting.runs import Column

MODEL = "listing-model"
PARAMS = {"max_depth": "6", "learning_rate": "0.0312345", "subsample": "0.8", "max_bin": "256"}


def log_study(client: MlflowClient, name: str, values: list[float | None], version: str | None) -> str:
    """A finished study as ``run`` leaves it: a parent run, one child run per trial (``None`` is a pruned trial,
    stopped at 99.0), its counts and best metric, and the registered version it made."""
    experiment = client.get_experiment_by_name("listing") or client.get_experiment(client.create_experiment("listing"))
    parent = client.create_run(experiment.experiment_id, run_name=name, tags={"space_sha256": "abc"})
    parent_id = parent.info.run_id
    for key, value in {"metric": "rmse", "model_name": MODEL, "fixed.xgboost.max_bin": "256"}.items():
        client.log_param(parent_id, key, value)
    for number, value in enumerate(values):
        pruned = value is None
        state = "PRUNED" if pruned else "COMPLETE"
        tags = {MLFLOW_PARENT_RUN_ID: parent_id, "trial_number": str(number), "trial_state": state}
        child = client.create_run(experiment.experiment_id, tags=tags)
        for key, param in (PARAMS | {"model": "xgboost", "max_depth": str(3 + number)}).items():
            client.log_param(child.info.run_id, key, param)
        client.log_metric(child.info.run_id, "rmse_when_pruned" if pruned else "rmse", 99.0 if pruned else value)
        client.log_metric(child.info.run_id, "trial_seconds", 1.25 + number)
        client.set_terminated(child.info.run_id)
    finished = [v for v in values if v is not None]
    counts = {"trials_finished": len(values), "trials_pruned": len(values) - len(finished), "trials_failed": 0}
    for key, value in (counts | {"best_val_rmse": min(finished), "test_rmse": min(finished) + 1}).items():
        client.log_metric(parent_id, key, value)
    if version is not None:
        client.set_tag(parent_id, "model_uri", f"models:/{MODEL}@champion")
        client.set_tag(parent_id, "model_version", version)
    client.set_terminated(parent_id)
    return parent_id


@pytest.fixture(scope="module")
def two_studies(store_uri):
    """Two studies of one model: the first registered version 1, the second version 2, which is champion now;
    version 1 is the challenger."""
    client = MlflowClient(store_uri)
    client.create_registered_model(MODEL)
    first = log_study(client, "first", [12.0, 11.5, None], version="1")
    second = log_study(client, "second", [10.0, None, None, 10.5, 9.5], version="2")
    for run_id in (first, second):
        client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(MODEL, "champion", "2")
    client.set_registered_model_alias(MODEL, "challenger", "1")
    return first, second


def test_each_study_shows_its_counts_and_the_aliases_its_version_has_now(client, two_studies):
    first, second = two_studies

    newest, oldest = runs.listing(client, "listing", 3)

    assert (newest.run_id, oldest.run_id) == (second, first)
    assert (newest.finished, newest.pruned, newest.failed) == (3, 2, 0)
    assert (oldest.finished, oldest.pruned, oldest.failed) == (2, 1, 0)
    assert (newest.model, newest.version, newest.aliases) == (MODEL, "2", ("champion",))
    assert oldest.aliases == ("challenger",)
    assert [t.value for t in newest.trials] == [9.5, 10.0, 10.5]  # best first
    assert set(newest.trials[0].params) == {"max_depth", "learning_rate", "subsample"}  # searched only


def test_the_listing_is_a_table_with_a_header_that_fits_100_columns(client, two_studies):
    _, second = two_studies

    text = runs.render(client, "listing", 5)

    lines = text.splitlines()
    assert max(len(line) for line in lines) <= runs.WIDTH
    assert "\x1b" not in text and text.isascii()  # plain text: no colour codes, readable in any log
    assert re.split(r"\s{2,}", lines[1]) == [
        "study", "status", "finished", "pruned", "failed", "best val", "test", "model version", "aliases"
    ]  # fmt: skip
    second_row = re.split(r"\s{2,}", lines[3].strip())
    assert second_row == ["second", "FINISHED", "3", "2", "0", "rmse 9.5", "10.5", f"{MODEL} v2", "champion"]
    assert f"second (run {second}): top 5 trials by validation rmse" in lines
    pruned = [line for line in lines if " PRUNED " in line]
    assert len(pruned) == 3 and all(" 99 " in line for line in pruned)  # the value it had when stopped


def test_a_model_that_is_not_registered_has_no_aliases(client):
    assert runs.model_aliases(client, "never-registered") == {}


def test_the_end_of_run_count_names_finished_pruned_and_failed_trials():
    assert runs.trial_counts(7, 23, 0) == "30 trials: 7 finished, 23 pruned, 0 failed"
    assert runs.trial_counts(1, 0, 0) == "1 trial: 1 finished, 0 pruned, 0 failed"


def test_a_table_wraps_its_wide_column_to_fit_and_aligns_numbers_right():
    columns = [Column("trial", right=True), Column("status"), Column("parameters", wrap=True)]
    params = ", ".join(f"parameter_{i}={i / 7:.4f}" for i in range(12))
    rows = [["3", "FINISHED", params], ["12", "PRUNED", "depth=3"], ["4", "FAILED", "x" * 90]]

    lines = runs.table(columns, rows, width=60)

    assert lines[0].split() == ["trial", "status", "parameters"] and set(lines[1].replace(" ", "")) == {"-"}
    assert max(len(line) for line in lines) <= 60
    start, second = lines[0].index("parameters"), next(i for i, line in enumerate(lines) if line.startswith("   12"))
    assert second > 3  # the first row took several lines
    assert " ".join(line[start:] for line in lines[2:second]) == params  # wrapped at spaces, nothing lost
    assert lines[second].startswith("   12  PRUNED")
    assert "x" * 30 in "".join(lines)  # a word longer than its column is cut, not dropped


def test_a_table_that_fits_is_left_as_it_is():
    lines = runs.table([Column("a"), Column("bb", right=True, wrap=True)], [["x", "1"], ["yyy", "22"]])

    assert lines == ["a    bb", "---  --", "x     1", "yyy  22"]
