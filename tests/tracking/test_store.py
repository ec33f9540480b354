"""pipeline.tracking against the real embedded MLflow store (SQLite in a temporary folder)."""

from __future__ import annotations

import re
import socket
import threading
import time
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import ViewType
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


def test_a_carried_curve_is_logged_at_its_changes_and_read_back_round_by_round(client, parent):
    experiment, parent_id = parent
    curve = [9.0] * 10 + [7.5] * 10 + [7.25] * 5
    run_id = tracking.log_trial(client, experiment, parent_id, record(4, curves={"validation_rmse_curve": curve}))

    history = client.get_metric_history(run_id, "validation_rmse_curve")
    assert sorted((m.step, m.value) for m in history) == [(0, 9.0), (10, 7.5), (20, 7.25), (24, 7.25)]
    study = tracking.queries.LoggedStudy(parent_id, experiment, "FINISHED", {}, {}, {})
    (trial,) = tracking.queries.logged_trials(client, study)
    assert trial.curves == {"validation_rmse_curve": curve}


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


class Outage:
    """The module's SQLite store made unavailable for real: its folder moved away (a volume unmounted, a
    network share gone), so writes fail with MLflow's TEMPORARILY_UNAVAILABLE, then moved back."""

    def __init__(self, store_uri: str):
        self.folder = Path(store_uri.removeprefix("sqlite:///")).parent
        self.away = self.folder.with_name(f"{self.folder.name}-away")

    def begin(self) -> None:
        self.folder.rename(self.away)

    def end(self) -> None:
        if self.away.exists():
            self.away.rename(self.folder)

    def end_in(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.end)
        timer.start()
        return timer


@pytest.fixture
def outage(client, store_uri):
    made = Outage(store_uri)
    yield made
    made.end()  # never leave the module's store away, whatever the test did


class CreationRecordingClient(MlflowClient):
    """The real client, noting each attempt to create a trial's run and each run created (in order); with
    ``tear`` set, the store goes away right after that trial's run is created (a write torn in the middle)."""

    def __init__(self, uri: str, outage: Outage | None = None, tear: str | None = None):
        super().__init__(uri)
        self.outage, self.tear = outage, tear
        self.attempts: list[str] = []
        self.created: list[str] = []

    def create_run(self, experiment_id, start_time=None, tags=None, run_name=None):
        self.attempts.append(tags["trial_number"])
        run = super().create_run(experiment_id, start_time=start_time, tags=tags, run_name=run_name)
        self.created.append(tags["trial_number"])
        if self.outage is not None and tags["trial_number"] == self.tear:
            self.tear = None
            self.outage.begin()
        return run


def runs_by_trial(client: MlflowClient, experiment: str, parent_id: str) -> dict[str, list[tuple[str, str]]]:
    """Trial number -> (status, lifecycle stage) of each of its runs, deleted ones included."""
    runs = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", run_view_type=ViewType.ALL
    )
    found: dict[str, list[tuple[str, str]]] = {}
    for run in runs:
        found.setdefault(run.data.tags["trial_number"], []).append((run.info.status, run.info.lifecycle_stage))
    return {number: sorted(states) for number, states in sorted(found.items())}


def test_trial_writer_keeps_writes_queued_through_an_outage_and_writes_them_in_order_after(
    client, parent, store_uri, outage
):
    experiment, parent_id = parent
    recording = CreationRecordingClient(store_uri, outage, tear="1")
    writer = TrialWriter(recording, experiment, parent_id, grace_s=60)
    writer.submit(record(0)).result()

    futures = [writer.submit(record(n, metrics={"rmse": float(n)})) for n in (1, 2, 3)]  # 1 is torn: store away
    time.sleep(1.5)  # the torn write is retried (after 0.5 s, then 1 s) while the next trials queue up

    writer.raise_if_failed()  # not a failure while the grace period lasts
    assert not any(f.done() for f in futures)
    outage.end()
    writer.close()

    assert recording.created == ["0", "1", "1", "2", "3"]  # in trial order; trial 1 created again
    assert [client.get_run(f.result()).data.metrics["rmse"] for f in futures] == [1.0, 2.0, 3.0]
    assert runs_by_trial(client, experiment, parent_id) == {
        "0": [("FINISHED", "active")],
        "1": [("FINISHED", "active"), ("KILLED", "deleted")],  # the torn run retired, never left RUNNING
        "2": [("FINISHED", "active")],
        "3": [("FINISHED", "active")],
    }
    retired = client.search_runs([experiment], "tags.retired_by = 'pipeline retry'", ViewType.DELETED_ONLY)
    assert [r.data.tags["trial_number"] for r in retired] == ["1"]


def test_trial_writer_gives_up_after_the_grace_period_in_one_line_and_fails_the_queued_writes(
    client, parent, store_uri, outage
):
    experiment, parent_id = parent
    recording = CreationRecordingClient(store_uri)
    writer = TrialWriter(recording, experiment, parent_id, grace_s=0.5)
    outage.begin()
    futures = [writer.submit(record(n)) for n in range(3)]

    with pytest.raises(TrackingError, match=r"trial 0's run .*0\.5 s grace period") as raised:
        writer.close()

    assert "\n" not in str(raised.value) and "rerun the same command" in str(raised.value)
    assert recording.attempts.count("0") >= 2 and "1" not in recording.attempts  # retried, then the rest left
    assert all(f.exception() is raised.value for f in futures)
    outage.end()
    assert runs_by_trial(client, experiment, parent_id) == {}  # the history holds them for the next run


def test_the_study_run_waits_out_an_outage_shorter_than_the_grace_period(client, parent, outage):
    experiment, _ = parent
    with tracking.open_parent(client, experiment_id=experiment, run_name="outlived", grace_s=60) as study_run:
        outage.begin()
        outage.end_in(0.5)
        study_run.set_tags({"step.search": "done"})
        study_run.log_metrics({"best_val_rmse": 10.5})

    run = client.get_run(study_run.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["step.search"] == "done" and run.data.metrics["best_val_rmse"] == 10.5


def test_the_study_run_ends_failed_never_finished_when_the_store_answers_after_the_grace_period(client, parent, outage):
    experiment, _ = parent
    opened = tracking.open_parent(client, experiment_id=experiment, run_name="gave-up", grace_s=0.3)
    with pytest.raises(TrackingError, match="the study run's tags"), opened as study_run:
        outage.begin()
        try:
            study_run.set_tags({"step.search": "done"})
        finally:
            outage.end()  # back by the time the study gives up: the run is ended in one call

    assert client.get_run(study_run.run_id).info.status == "FAILED"
    assert mlflow.active_run() is None


def test_the_study_run_is_left_running_for_the_rerun_when_the_store_stays_away(client, parent, outage):
    experiment, _ = parent
    opened = tracking.open_parent(client, experiment_id=experiment, run_name="away", grace_s=0.3)
    with pytest.raises(TrackingError, match="the study run's metrics"), opened as study_run:
        outage.begin()
        study_run.log_metrics({"best_val_rmse": 10.5})
    outage.end()

    assert client.get_run(study_run.run_id).info.status == "RUNNING"  # what the next run resumes
    assert mlflow.active_run() is None  # the next study in this process starts clean


def test_transient_tells_a_store_that_is_away_from_a_write_it_refuses(client, parent, outage, monkeypatch):
    _, run_id = parent
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException) as refused:
        client.log_param(run_id, "bad*key", 1)
    with pytest.raises(MlflowException) as unreachable:
        MlflowClient(f"http://127.0.0.1:{free_port()}").get_run(run_id)
    outage.begin()
    with pytest.raises(MlflowException) as away:
        client.set_tag(run_id, "k", "v")

    assert not tracking.retry.transient(refused.value)
    assert not tracking.retry.transient(ValueError("could not convert string to float"))
    assert tracking.retry.transient(unreachable.value)
    assert tracking.retry.transient(away.value)


def test_retry_delays_double_up_to_ten_seconds():
    assert [tracking.retry.retry_delay(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]


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


@pytest.mark.parametrize("kind", ["unknown scheme", "folder store"])
def test_connect_to_a_store_mlflow_cannot_use_raises_a_one_line_tracking_error(tmp_path, kind, monkeypatch):
    """A URI MLflow has no store for, or a plain folder (refused by MLflow 3 unless MLFLOW_ALLOW_FILE_STORE):
    the same one line as a server that is down, not an unexpected error."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = "ftp://example.org/store" if kind == "unknown scheme" else f"file://{tmp_path / 'mlruns'}"

    with pytest.raises(TrackingError) as raised:
        tracking.connect(uri)

    message = str(raised.value)
    assert message.startswith(f"tracking store {uri} cannot be used (") and "\n" not in message
    assert message.endswith("fix --tracking-uri / MLFLOW_TRACKING_URI")


def test_connect_to_a_sqlite_store_points_mlflow_at_it(client, store_uri, monkeypatch):
    mlflow.set_tracking_uri(None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    connected = tracking.connect(store_uri)

    assert mlflow.get_tracking_uri() == store_uri
    assert connected.get_experiment_by_name("Default") is not None


def test_resolve_uri_prefers_the_flag_then_the_environment_then_sqlite_here(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert tracking.resolve_uri("http://from-flag:5000") == "http://from-flag:5000"
    assert tracking.resolve_uri(None) == "http://from-env:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"  # absolute: one store per folder
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert tracking.resolve_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"


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
