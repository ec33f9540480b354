"""pipeline.tracking against the real embedded MLflow store (SQLite in a temporary folder)."""

from __future__ import annotations

import re
import socket
import threading
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.types import DataType
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline import tracking
from pipeline.errors import TrackingError
from pipeline.search.trial import TrialRecord
from pipeline.tracking import TrialWriter

CURVE_POINTS = 2345
"""More than two of MLflow's 1000-metrics-per-call batches."""


@pytest.fixture
def parent(client: MlflowClient, request: pytest.FixtureRequest) -> tuple[str, str]:
    """A fresh experiment (named after the test) and a parent run in it."""
    experiment = tracking.experiment_id(client, request.node.name)
    return experiment, client.create_run(experiment).info.run_id


def record(number: int, **fields) -> TrialRecord:
    defaults = {"params": {"max_depth": 6, "learning_rate": 0.1}, "start_ms": 1_700_000_000_000 + number}
    return TrialRecord(number=number, **(defaults | fields))


def test_log_trial_writes_a_finished_child_run_with_every_curve_step(client, parent):
    experiment, parent_id = parent
    curve = [100.0 / (step + 1) for step in range(CURVE_POINTS)]
    params = {"max_depth": 6, "learning_rate": 0.125, "grow_policy": "lossguide"}
    params |= {f"extra_{i:03d}": i for i in range(150)}  # past MLflow's 100 params per call as well
    trial = record(
        7,
        params=params,
        metrics={"rmse": 12.5, "best_iteration": 1200},
        curves={"validation_rmse_curve": curve},
        tags={"space_sha256": "abc123"},
        start_ms=1_700_000_000_000,
        end_ms=1_700_000_004_321,
    )

    run_id = tracking.log_trial(client, experiment, parent_id, trial)

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "trial-0007"
    assert run.info.experiment_id == experiment
    assert (run.info.start_time, run.info.end_time) == (1_700_000_000_000, 1_700_000_004_321)
    assert run.data.tags[MLFLOW_PARENT_RUN_ID] == parent_id
    assert run.data.tags["trial_number"] == "7"
    assert run.data.tags["space_sha256"] == "abc123"
    assert run.data.params == {k: str(v) for k, v in params.items()}
    assert run.data.metrics["rmse"] == 12.5
    assert run.data.metrics["best_iteration"] == 1200
    history = sorted(client.get_metric_history(run_id, "validation_rmse_curve"), key=lambda m: m.step)
    assert [m.step for m in history] == list(range(CURVE_POINTS))
    np.testing.assert_allclose([m.value for m in history], curve)


def test_log_trial_of_a_failed_record_ends_failed(client, parent):
    experiment, parent_id = parent
    trial = record(3, status="FAILED", tags={"error_class": "XGBoostError"}, metrics={"trial_seconds": 0.5})

    run = client.get_run(tracking.log_trial(client, experiment, parent_id, trial))

    assert run.info.status == "FAILED"
    assert run.info.run_name == "trial-0003"
    assert run.data.tags["error_class"] == "XGBoostError"
    assert run.data.tags[MLFLOW_PARENT_RUN_ID] == parent_id
    assert set(run.data.metrics) == {"trial_seconds"}


class ThreadRecordingClient(MlflowClient):
    """The real client, noting which thread created each run and for which trial."""

    def __init__(self, uri: str):
        super().__init__(uri)
        self.created: list[tuple[str, str]] = []

    def create_run(self, experiment_id, start_time=None, tags=None, run_name=None):
        self.created.append((threading.current_thread().name, tags["trial_number"]))
        return super().create_run(experiment_id, start_time=start_time, tags=tags, run_name=run_name)


def test_trial_writer_writes_in_order_on_its_own_thread(client, parent, store_uri):
    experiment, parent_id = parent
    recording = ThreadRecordingClient(store_uri)

    writer = TrialWriter(recording, experiment, parent_id)
    futures = [writer.submit(record(n, metrics={"rmse": float(n)})) for n in range(5)]
    writer.close()

    assert [trial for _, trial in recording.created] == ["0", "1", "2", "3", "4"]
    assert all(name.startswith("trial-writer") for name, _ in recording.created)
    assert threading.current_thread().name not in {name for name, _ in recording.created}
    for number, future in enumerate(futures):
        run = client.get_run(future.result())
        assert run.data.tags["trial_number"] == str(number)
        assert run.data.metrics["rmse"] == float(number)


def test_trial_writer_close_reraises_the_first_write_failure(client, parent):
    experiment, parent_id = parent
    writer = TrialWriter(client, experiment, parent_id)
    first_good = writer.submit(record(0))
    not_a_number = writer.submit(record(1, metrics={"rmse": "not-a-number"}))
    bad_key = writer.submit(record(2, params={"bad*key": 1}))  # '*' is not allowed in a param name
    last_good = writer.submit(record(3))

    with pytest.raises(TrackingError, match=r"trial 1 .*not-a-number") as raised:
        writer.close()
    assert isinstance(raised.value.__cause__, ValueError)

    assert "bad*key" in str(bad_key.exception())  # failed too, but close reported the first failure
    assert isinstance(bad_key.exception(), MlflowException)
    assert isinstance(not_a_number.exception(), ValueError)
    assert client.get_run(first_good.result()).info.status == "FINISHED"
    assert client.get_run(last_good.result()).info.status == "FINISHED"  # a failure does not stop later writes
    with pytest.raises(RuntimeError):  # the pool was shut down even though close raised
        writer.submit(record(4))
    runs = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    statuses = sorted((r.data.tags["trial_number"], r.info.status) for r in runs)
    assert statuses == [("0", "FINISHED"), ("2", "FAILED"), ("3", "FINISHED")]  # none left RUNNING


def test_trial_writer_reports_a_failed_write_before_the_next_trial(client, parent):
    experiment, parent_id = parent
    writer = TrialWriter(client, experiment, parent_id)
    failing = writer.submit(record(0, metrics={"rmse": "not-a-number"}))
    failing.exception()  # wait for the write to finish

    with pytest.raises(TrackingError, match="trial 0"):
        writer.raise_if_failed()
    with pytest.raises(TrackingError):
        writer.close()


def test_trial_writer_surfaces_an_unknown_experiment(client, parent):
    _, parent_id = parent
    writer = TrialWriter(client, "987654321", parent_id)
    pending = writer.submit(record(0))

    with pytest.raises(TrackingError, match="987654321"):
        writer.close()

    assert isinstance(pending.exception(), MlflowException)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connect_to_an_unreachable_server_raises_a_one_line_tracking_error(client, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(TrackingError) as raised:
        tracking.connect(uri)

    message = str(raised.value)
    assert uri in message
    assert "\n" not in message
    assert raised.value.exit_code == 1


def test_connect_to_a_sqlite_store_points_mlflow_at_it(client, store_uri, monkeypatch):
    mlflow.set_tracking_uri(None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    connected = tracking.connect(store_uri)

    assert mlflow.get_tracking_uri() == store_uri
    assert connected.get_experiment_by_name("Default") is not None


def test_resolve_uri_prefers_the_flag_then_the_environment_then_sqlite(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert tracking.resolve_uri("http://from-flag:5000") == "http://from-flag:5000"
    assert tracking.resolve_uri(None) == "http://from-env:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.resolve_uri(None) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert tracking.resolve_uri(None) == "sqlite:///mlflow.db"


def test_experiment_id_creates_once_and_returns_the_same_id_after(client):
    first = tracking.experiment_id(client, "created-once")
    second = tracking.experiment_id(client, "created-once")

    assert first == second
    assert [e.experiment_id for e in client.search_experiments(filter_string="name = 'created-once'")] == [first]


def test_experiment_id_restores_a_deleted_experiment(client):
    first = tracking.experiment_id(client, "deleted-then-used")
    client.delete_experiment(first)

    assert tracking.experiment_id(client, "deleted-then-used") == first
    assert client.get_experiment(first).lifecycle_stage == "active"


def test_log_params_batches_params_and_tags_and_truncates_long_values(client, parent):
    _, run_id = parent
    params = {f"p{i:03d}": i for i in range(250)} | {"long": "x" * 7000}
    tags = {f"t{i:03d}": str(i) for i in range(150)}

    tracking.log_params(client, run_id, params, tags)

    run = client.get_run(run_id)
    assert len(run.data.params) == 251
    assert run.data.params["p249"] == "249"
    assert run.data.params["long"] == "x" * 6000
    assert {k: v for k, v in run.data.tags.items() if k.startswith("t")} == tags


def test_signature_of_integer_columns_emits_no_integer_hint():
    frame = pd.DataFrame({"hour": np.arange(5, dtype=np.int64), "distance": np.linspace(100.0, 500.0, 5)})
    frame["origin"] = pd.Series(["JFK", "LGA", "EWR", "JFK", "LGA"], dtype="string")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        signature = tracking.signature(frame, np.zeros(5))

    assert not [w for w in caught if "Inferred schema contains integer column" in str(w.message)]
    assert signature.inputs.input_names() == ["hour", "distance", "origin"]
    assert str(signature.inputs.input_types()[0]) == "Any"  # a row to score may lack the value or hold a float
    assert signature.inputs.input_types()[2] == DataType.string
    assert signature.outputs is not None


def test_git_commit_of_this_checkout_and_of_a_plain_folder(tmp_path: Path):
    repo = Path(__file__).resolve().parent
    commit = tracking.git_commit(repo)
    if commit is not None:  # a source tree without .git has no commit to report
        assert re.fullmatch(r"[0-9a-f]{40}", commit)
    assert tracking.git_commit(tmp_path) is None
