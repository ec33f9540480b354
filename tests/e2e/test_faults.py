"""Fault injection with real processes: SIGKILL mid-study, a scheduler firing twice, SIGTERM, a tracking
server that goes away mid-study for less, or more, than the grace period. After each, nothing finished is lost,
nothing is duplicated, nothing stays RUNNING. The process hit by the fault is a real one; what runs after it
(the rerun, a reference study, the second command refused) is the CLI's ``main`` in this process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cli import (
    cli_env,
    free_port,
    main_here,
    start_cli,
    start_server,
    stop_server,
    summary_of,
    wait_for_trials,
    write_study,
)
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

EXPERIMENT, STUDY = "e2e-faults", "faults"


def history_file(workdir: Path, study: str = STUDY) -> Path:
    return workdir / ".pipeline" / EXPERIMENT / study / "history.jsonl"


def setup_study(workdir: Path, flights_spec: dict, new_store: Callable[[Path], str] | None = None, **overrides) -> Path:
    """The study file in ``workdir``; with ``new_store``, an empty store where the CLI looks by default."""
    if new_store is not None:
        new_store(workdir / "mlflow.db")
    dataset = workdir / "flights.yaml"
    dataset.write_text(yaml.safe_dump(flights_spec))
    settings = {"name": STUDY, "experiment": EXPERIMENT, "model_name": "faults-model", "seed": 11} | overrides
    return write_study(workdir, dataset, **settings)


def parent_id_from_history(workdir: Path, study: str = STUDY) -> str:
    first = history_file(workdir, study).read_text().splitlines()[0]
    return yaml.safe_load(first)["parent_run_id"]


def trial_runs(client: MlflowClient, experiment_id: str, parent_id: str, view=ViewType.ACTIVE_ONLY):
    return client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", run_view_type=view
    )


def test_a_study_killed_with_sigkill_resumes_without_losing_or_repeating_trials_even_with_its_history_gone(
    tmp_path, flights_spec, new_store
):
    """A fresh container after a kill -9: the local history is deleted too, and the study is rebuilt from the
    tracking store. (Resuming from the local history: tests/search/test_loop.py, tests/e2e/test_steps.py.)"""
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    killed.mkdir(), reference.mkdir()
    study = setup_study(killed, flights_spec, new_store, max_evals=9)
    args = ("run", "--study", str(study), "--json", "--no-progress")

    process = start_cli(killed, *args)
    wait_for_trials(history_file(killed), 3, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    parent_id = parent_id_from_history(killed)
    client = MlflowClient(f"sqlite:///{killed / 'mlflow.db'}")
    assert client.get_run(parent_id).info.status == "RUNNING"  # what the dead process left
    shutil.rmtree(killed / ".pipeline")

    done = main_here(killed, *args)
    summary = summary_of(done)

    assert "no local history; rebuilt from the tracking store" in done.stderr
    assert summary["parent_run_id"] == parent_id  # one study, one parent run
    assert summary["resumed_trials"] >= 1  # what MLflow held when the process died
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
    reference_study = setup_study(reference, flights_spec, new_store, max_evals=9)
    uninterrupted = summary_of(main_here(reference, "run", "--study", str(reference_study), "--json", "--no-progress"))
    other = MlflowClient(f"sqlite:///{reference / 'mlflow.db'}")
    by_number = {int(r.data.tags["trial_number"]): r.data.params for r in runs}
    expected = trial_runs(other, uninterrupted["experiment_id"], uninterrupted["parent_run_id"])
    assert by_number == {int(r.data.tags["trial_number"]): r.data.params for r in expected}
    assert summary["best_val_metric"] == pytest.approx(uninterrupted["best_val_metric"], rel=1e-9)


def test_a_second_command_on_the_same_study_exits_3_and_sigterm_ends_the_first_killed(
    tmp_path, flights_spec, new_store
):
    study = setup_study(tmp_path, flights_spec, new_store, max_evals=200)
    args = ("run", "--study", str(study), "--no-progress")
    first = start_cli(tmp_path, *args)
    wait_for_trials(history_file(tmp_path), 1, first)

    second = main_here(tmp_path, *args)  # the lock is the first process's flock: this process is refused too

    assert second.returncode == 3
    assert "already running" in second.stderr and "Traceback" not in second.stderr
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 130
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(parent_id_from_history(tmp_path))
    assert parent.info.status == "KILLED"
    runs = trial_runs(client, parent.info.experiment_id, parent.info.run_id)
    assert runs and all(r.info.status != "RUNNING" for r in runs)


def test_ctrl_c_on_a_parallel_study_ends_it_killed_with_no_worker_left(
    tmp_path, flights_spec, new_store, local_workers
):
    """Ctrl-C in a terminal signals the whole foreground process group, workers included: they leave it to the
    driver, which stops them, ends the study KILLED and exits 130 with one line."""
    study = setup_study(tmp_path, flights_spec, new_store, max_evals=200)
    driver = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--study", str(study), "--no-progress", "--parallelism", "2"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a shell's background job ignores it
    )
    workers = local_workers.wait_for(driver.pid, 2)
    wait_for_trials(history_file(tmp_path), 2, driver)

    os.killpg(driver.pid, signal.SIGINT)

    _, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 130
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("error: interrupted")
    assert not local_workers.wait_gone(workers)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(parent_id_from_history(tmp_path))
    assert parent.info.status == "KILLED"
    runs = trial_runs(client, parent.info.experiment_id, parent.info.run_id)
    assert runs and all(r.info.status != "RUNNING" for r in runs)


QUICK_FAILURES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
"""MLflow's own HTTP retries off: a call to a server that is down fails at once, so the grace period alone
decides how long the study waits (MLflow's default retries would add about 15 s per attempt)."""


@dataclass
class Server:
    """One ``mlflow server`` for the module, killed and restarted on the same port and database by the tests."""

    folder: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process is not None:
            stop_server(self.process)
            self.process = None

    def start(self) -> None:
        if self.process is None:
            self.process = start_server(self.folder, self.port)


@pytest.fixture(scope="module")
def server(tmp_path_factory, new_store):
    """Over a copy of an empty store: the server itself would spend seconds creating its tables."""
    shared = Server(tmp_path_factory.mktemp("server"), free_port())
    new_store(shared.folder / "server.db")
    shared.start()
    yield shared
    shared.kill()


@pytest.fixture
def running_server(server):
    """The module's server, up when the test starts (a failed test may have left it down)."""
    server.start()
    return server


def assert_one_finished_run_per_trial(client: MlflowClient, experiment_id: str, parent_id: str, trials: int) -> None:
    """Each trial ended with exactly one run, FINISHED; any other run is retired (KILLED and deleted)."""
    runs = trial_runs(client, experiment_id, parent_id)
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == list(range(trials))
    assert all(r.info.status == "FINISHED" for r in runs)
    active = {r.info.run_id for r in runs}
    retired = [r for r in trial_runs(client, experiment_id, parent_id, ViewType.ALL) if r.info.run_id not in active]
    assert all(r.info.status == "KILLED" and r.info.lifecycle_stage == "deleted" for r in retired)


def study_losing_its_server(running_server, tmp_path: Path, flights_spec: dict, name: str, grace_s: float):
    """An 8-trial study ``name`` (model ``<name>-model``) started against the server with a grace period of
    ``grace_s``, and the server killed once two trials are in its history: the still-running process, and the
    command's arguments (for a rerun)."""
    study = setup_study(tmp_path, flights_spec, name=name, model_name=f"{name}-model", max_evals=8,
                        tracking={"grace_s": grace_s})  # fmt: skip
    args = ("run", "--study", str(study), "--tracking-uri", running_server.uri, "--json", "--no-progress")
    process = start_cli(tmp_path, *args, **QUICK_FAILURES)
    wait_for_trials(history_file(tmp_path, name), 2, process)
    running_server.kill()
    return process, args


def test_a_tracking_server_back_within_the_grace_period_loses_nothing_and_the_study_completes(
    running_server, tmp_path, flights_spec
):
    process, _ = study_losing_its_server(running_server, tmp_path, flights_spec, "outage", grace_s=300)
    time.sleep(2)  # the trials go on meanwhile; the restart itself keeps the server away several seconds more
    running_server.start()
    stdout, stderr = process.communicate(timeout=300)

    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "retrying" in stderr  # the outage was seen and waited out, not missed
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["trials"] == 8 and summary["resumed_trials"] == 0
    client = MlflowClient(running_server.uri)
    assert client.get_run(summary["parent_run_id"]).info.status == "FINISHED"
    assert_one_finished_run_per_trial(client, summary["experiment_id"], summary["parent_run_id"], 8)
    assert str(client.get_model_version_by_alias("outage-model", "champion").version) == "1"


def test_a_tracking_server_away_past_the_grace_period_fails_the_study_and_the_rerun_completes(
    running_server, tmp_path, flights_spec
):
    process, args = study_losing_its_server(running_server, tmp_path, flights_spec, "gone", grace_s=2)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        running_server.start()

    assert process.returncode == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tracking store" in errors[0] and "grace" in errors[0], stderr[-3000:]
    assert "Traceback" not in stderr
    parent_id = parent_id_from_history(tmp_path, "gone")  # the finished trials are kept for the rerun
    client = MlflowClient(running_server.uri)
    assert client.get_run(parent_id).info.status != "FINISHED"

    summary = summary_of(main_here(tmp_path, *args, **QUICK_FAILURES))

    assert summary["parent_run_id"] == parent_id and summary["resumed_trials"] >= 2
    assert client.get_run(parent_id).info.status == "FINISHED"
    assert_one_finished_run_per_trial(client, summary["experiment_id"], parent_id, 8)
    assert str(client.get_model_version_by_alias("gone-model", "champion").version) == "1"
