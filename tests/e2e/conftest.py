"""The end-to-end store that more than one module reads."""

from __future__ import annotations

import pytest
import yaml
from cli import main_here, run_cli, summary_of, write_study
from mlflow.tracking import MlflowClient


@pytest.fixture(scope="session")
def two_studies(tmp_path_factory, flights_spec):
    """Two runs of the same study and seed in one store, the second with ``--fresh`` (the same command
    without it would return the finished study): the second registers version 2 as challenger.

    Built once per session: test_cli.py checks what the studies wrote, test_mlflow_ui.py how MLflow's UI shows
    it. Only read it."""
    workdir = tmp_path_factory.mktemp("e2e")
    dataset = workdir / "flights.yaml"
    dataset.write_text(yaml.safe_dump(flights_spec))
    study = write_study(workdir, dataset, report=True)
    command = ("run", "--study", str(study), "--json", "--no-progress")
    # The first through a real process, creating the store; the second (which needs no process) in this one.
    results = [summary_of(run_cli(workdir, *command)), summary_of(main_here(workdir, *command, "--fresh"))]
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    return workdir, results, client
