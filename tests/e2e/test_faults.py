"""Fault injection with real processes: SIGKILL mid-study, a scheduler firing twice, SIGTERM, a tracking
server that dies mid-study. After each, nothing finished is lost, nothing is duplicated, nothing stays RUNNING."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import yaml
from cli import free_port, run_cli, start_cli, start_server, stop_server, summary_of, wait_for_trials, write_study
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

EXPERIMENT, STUDY = "e2e-faults", "faults"


def history_file(workdir: Path) -> Path:
    return workdir / ".pipeline" / EXPERIMENT / STUDY / "history.jsonl"


def setup_study(workdir: Path, flights_spec: dict, **overrides) -> Path:
    dataset = workdir / "flights.yaml"
    dataset.write_text(yaml.safe_dump(flights_spec))
    settings = {"name": STUDY, "experiment": EXPERIMENT, "model_name": "faults-model", "seed": 11} | overrides
    return write_study(workdir, dataset, **settings)


def parent_id_from_history(workdir: Path) -> str:
    first = history_file(workdir).read_text().splitlines()[0]
    return yaml.safe_load(first)["parent_run_id"]


def trial_runs(client: MlflowClient, experiment_id: str, parent_id: str, view=ViewType.ACTIVE_ONLY):
    return client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", run_view_type=view
    )


def test_a_study_killed_with_sigkill_resumes_without_losing_or_repeating_trials(tmp_path, flights_spec):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    killed.mkdir(), reference.mkdir()
    study = setup_study(killed, flights_spec, max_evals=9)
    args = ("run", "--study", str(study), "--json", "--no-progress")

    process = start_cli(killed, *args)
    wait_for_trials(history_file(killed), 3, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    parent_id = parent_id_from_history(killed)
    client = MlflowClient(f"sqlite:///{killed / 'mlflow.db'}")
    assert client.get_run(parent_id).info.status == "RUNNING"  # what the dead process left

    summary = summary_of(run_cli(killed, *args))

    assert summary["parent_run_id"] == parent_id  # one study, one parent run
    assert summary["resumed_trials"] >= 3
    assert summary["trials"] + summary["trials_failed"] == 9
    assert client.get_run(parent_id).info.status == "FINISHED"
    runs = trial_runs(client, summary["experiment_id"], parent_id)
    numbers = sorted(int(r.data.tags["trial_number"]) for r in runs)
    assert numbers == list(range(9))  # every trial once, none lost, none repeated
    assert all(r.info.status == "FINISHED" for r in runs)
    active = {r.info.run_id for r in runs}
    everything = trial_runs(client, summary["experiment_id"], parent_id, ViewType.ALL)
    retired = [r for r in everything if r.info.run_id not in active]
    assert all(r.info.status == "KILLED" for r in retired)  # a run torn by the kill, if any, is retired
    assert not history_file(killed).exists()  # the finished study's history is archived under its parent id
    assert (history_file(killed).parent / f"{parent_id}.jsonl").exists()

    # The resumed study proposed exactly what an uninterrupted one with the same seed proposes.
    reference_study = setup_study(reference, flights_spec, max_evals=9)
    uninterrupted = summary_of(run_cli(reference, "run", "--study", str(reference_study), "--json", "--no-progress"))
    other = MlflowClient(f"sqlite:///{reference / 'mlflow.db'}")
    by_number = {int(r.data.tags["trial_number"]): r.data.params for r in runs}
    expected = trial_runs(other, uninterrupted["experiment_id"], uninterrupted["parent_run_id"])
    assert by_number == {int(r.data.tags["trial_number"]): r.data.params for r in expected}
    assert summary["best_val_metric"] == pytest.approx(uninterrupted["best_val_metric"], rel=1e-9)


def test_a_second_process_on_the_same_study_exits_3_and_sigterm_ends_the_first_killed(tmp_path, flights_spec):
    study = setup_study(tmp_path, flights_spec, max_evals=200)
    args = ("run", "--study", str(study), "--no-progress")
    first = start_cli(tmp_path, *args)
    wait_for_trials(history_file(tmp_path), 1, first)

    second = run_cli(tmp_path, *args)

    assert second.returncode == 3
    assert "already running" in second.stderr and "Traceback" not in second.stderr
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 130
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(parent_id_from_history(tmp_path))
    assert parent.info.status == "KILLED"
    runs = trial_runs(client, parent.info.experiment_id, parent.info.run_id)
    assert runs and all(r.info.status != "RUNNING" for r in runs)


def test_a_tracking_server_that_dies_mid_study_fails_it_cleanly_and_the_rerun_completes(tmp_path, flights_spec):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    study = setup_study(tmp_path, flights_spec, max_evals=8)
    args = ("run", "--study", str(study), "--tracking-uri", uri, "--json", "--no-progress")
    quick_retries = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    server = start_server(tmp_path, port)
    try:
        process = start_cli(tmp_path, *args, **quick_retries)
        wait_for_trials(history_file(tmp_path), 2, process)
        stop_server(server)
        _, stderr = process.communicate(timeout=180)

        assert process.returncode == 1
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "tracking store" in errors[0] and "Traceback" not in stderr
        assert history_file(tmp_path).exists()  # the finished trials are kept for the rerun

        server = start_server(tmp_path, port)
        summary = summary_of(run_cli(tmp_path, *args, **quick_retries))

        client = MlflowClient(uri)
        parent = client.get_run(summary["parent_run_id"])
        assert parent.info.status == "FINISHED" and summary["resumed_trials"] >= 2
        runs = trial_runs(client, summary["experiment_id"], parent.info.run_id)
        assert sorted(int(r.data.tags["trial_number"]) for r in runs) == list(range(8))
        assert all(r.info.status == "FINISHED" for r in runs)
        assert str(client.get_model_version_by_alias("faults-model", "champion").version) == "1"
    finally:
        stop_server(server)
