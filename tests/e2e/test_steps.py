"""The steps after the search and the same command again, with real processes and a real ``kill -9``.

A study killed right after a step (the failpoint kills the process with SIGKILL just before the step's tag
is recorded) is finished by the same command: one study, one model version, nothing left RUNNING. A
finished study run again with identical inputs writes nothing; a larger budget extends it; ``--fresh``
starts over (tests/e2e/conftest.py's two_studies). A study whose local history is gone:
tests/e2e/test_faults.py.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from cli import main_here, run_cli, summary_of, write_study
from mlflow.tracking import MlflowClient

from pipeline.study import Study

EXPERIMENT, STUDY, MODEL = "e2e-steps", "steps", "steps-model"


def setup(workdir: Path, flights_spec: dict, new_store: Callable[[Path], str], **overrides) -> Path:
    """The study file in ``workdir``, next to an empty store where the CLI looks by default."""
    new_store(workdir / "mlflow.db")
    dataset = workdir / "flights.yaml"
    dataset.write_text(yaml.safe_dump(flights_spec))
    settings = {"name": STUDY, "experiment": EXPERIMENT, "model_name": MODEL, "max_evals": 3, "seed": 5}
    return write_study(workdir, dataset, **(settings | overrides))


def client_of(workdir: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def parents(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.study = '{STUDY}'")
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def versions(client: MlflowClient) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))


def killed_at(workdir: Path, study: Path, step: str) -> None:
    """Run the study until just before ``step`` is recorded, where the process kills itself (SIGKILL)."""
    done = run_cli(workdir, "run", "--study", str(study), "--no-progress", PIPELINE_FAILPOINT=step)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


@pytest.mark.parametrize("step", ["step.registered", "step.report"])
def test_a_study_killed_after_a_step_is_finished_by_the_same_command_with_one_version(
    tmp_path, flights_spec, new_store, step
):
    """step.registered: killed right after "Created version 1", before anything recorded it; step.report:
    killed once the report is drawn, before it is recorded. The rerun registers nothing new."""
    study = setup(tmp_path, flights_spec, new_store, report=step == "step.report")
    killed_at(tmp_path, study, step)
    client = client_of(tmp_path)
    assert versions(client) == ["1"]
    (parent,) = parents(client)
    assert parent.info.status == "RUNNING" and "step.done" not in parent.data.tags

    summary = summary_of(main_here(tmp_path, "run", "--study", str(study), "--json", "--no-progress"))

    assert summary["parent_run_id"] == parent.info.run_id and summary["model_version"] == "1"
    assert versions(client) == ["1"]  # one study, one version
    version = client.get_model_version(MODEL, "1")
    assert version.tags["validation_status"] == "passed" and version.aliases == ["champion"]
    assert float(version.tags["test_rmse"]) == pytest.approx(summary["test_metric"], rel=1e-5)
    assert f"Study **{STUDY}**" in version.description and "test rmse" in version.description  # the registry page
    finished = client.get_run(parent.info.run_id)
    assert finished.info.status == "FINISHED" and finished.data.tags["step.done"] == "true"
    assert finished.data.tags["step.report"] == ("done" if step == "step.report" else "skipped")
    assert summary["trials"] + summary["trials_failed"] == 3  # the search was not run again
    children = client.search_runs([finished.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(int(r.data.tags["trial_number"]) for r in children) == [0, 1, 2]


def test_the_same_command_again_returns_the_study_and_a_larger_budget_extends_it(tmp_path, flights_spec, new_store):
    study = setup(tmp_path, flights_spec, new_store)
    uri, state = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / ".pipeline"
    first = Study.from_file(study, tracking_uri=uri, state_dir=state, progress=False).run()

    again = main_here(tmp_path, "run", "--study", str(study), "--json", "--no-progress")

    repeated = summary_of(again)
    assert "is complete with these inputs (3 trials): nothing was run or registered" in again.stdout
    assert repeated["origin"] == "unchanged" and repeated["parent_run_id"] == first.parent_run_id
    assert repeated["model_version"] == "1" and repeated["best_val_metric"] == first.best_value
    assert versions(client_of(tmp_path)) == ["1"]

    extended = Study.from_file(study, max_evals=5, tracking_uri=uri, state_dir=state, progress=False).run()

    assert extended.origin == "continued" and extended.parent_run_id == first.parent_run_id
    assert [t.number for t in extended.trials] == [0, 1, 2, 3, 4]
    assert [t.params for t in extended.trials[:3]] == [t.params for t in first.trials]  # known, not re-run
    assert extended.best_value <= first.best_value
    assert (extended.model_version, extended.alias) == ("2", "challenger")
    tags = client_of(tmp_path).get_model_version(MODEL, "2").tags
    assert tags["parent_run_id"] == first.parent_run_id and tags["study_trials"] == "5"
