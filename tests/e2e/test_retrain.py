"""Scheduled retraining through the real CLI on the real monthly flights partitions (small budgets)."""

from __future__ import annotations

import json
import signal

import mlflow
import pytest
import yaml
from cli import main_here, run_cli, write_study
from mlflow.tracking import MlflowClient

from pipeline.errors import InputError
from pipeline.retrain import retrain as run_retrain
from pipeline.retrain import windows
from pipeline.study import Study

DEGENERATE_SPACE = {
    "model": "xgboost",
    "parameters": {
        "max_depth": 1,
        "learning_rate": {"distribution": "uniform", "low": 0.001, "high": 0.002},
        "num_boost_round": 1,
    },
}


def retrain_here(workdir, study, as_of: str) -> dict:
    """The retrain command's work in this process, on the CLI's store and state folder: for checks whose
    command-line side the monthly fixture already covers."""
    loaded = Study.from_file(study, tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                             state_dir=workdir / ".pipeline", progress=False)  # fmt: skip
    try:
        return run_retrain(loaded, as_of=as_of).to_dict()
    finally:
        mlflow.set_tracking_uri(None)


def retrain(workdir, study, *extra):
    """The retrain command through the CLI's ``main`` in this process (the killed April run is the process)."""
    done = main_here(workdir, "retrain", "--study", str(study), "--json", "--no-progress", *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def monthly(tmp_path_factory, flights_spec, new_store):
    """Two consecutive monthly retrains (March, April) of one model: the first makes the champion, the
    second goes through the gate."""
    workdir = tmp_path_factory.mktemp("retrain")
    new_store(workdir / "mlflow.db")
    dataset = workdir / "flights.yaml"
    dataset.write_text(yaml.safe_dump(flights_spec))
    study = write_study(
        workdir,
        dataset,
        name="monthly",
        model_name="monthly",
        max_evals=2,
    )
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    march = retrain(workdir, study, "--as-of", "2013-03")
    # April is killed (kill -9) between its gate's decision and the retrain's completion tag, then rerun.
    killed = run_cli(workdir, "retrain", "--study", str(study), "--as-of", "2013-04", "--no-progress",
                     PIPELINE_FAILPOINT="retrain_key")  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    after_kill = {str(v.version) for v in client.search_model_versions("name = 'monthly'")}
    april = retrain(workdir, study, "--as-of", "2013-04")
    return workdir, study, dataset, [march, april], client, after_kill


def test_the_first_retrain_makes_a_champion_and_later_ones_follow_the_gate(monthly):
    _, _, _, (march, april), client, _ = monthly
    assert march["action"] == "promoted" and march["model_version"] == "1"
    assert march["windows"] == {"train": ["2013-01"], "validation": ["2013-02"], "test": ["2013-03"]}
    assert april["windows"] == {"train": ["2013-02"], "validation": ["2013-03"], "test": ["2013-04"]}
    gate = april["gate"]  # rmse: the gain is the champion's minus the challenger's
    assert gate["method"] == "paired_bootstrap" and gate["low"] <= gate["gain"] <= gate["high"]
    assert gate["gain"] == pytest.approx(gate["champion_score"] - gate["challenger_score"])
    assert april["action"] == ("promoted" if gate["low"] > gate["margin"] else "kept")
    assert april["champion_version"] == "1" and april["model_version"] == "2"
    assert april["warm_start_points"] > 0  # started from the champion study's best trials
    assert client.get_model_version("monthly", "2").tags["gate_action"] == april["action"]
    champion = "2" if april["action"] == "promoted" else "1"
    assert str(client.get_model_version_by_alias("monthly", "champion").version) == champion
    assert april["alias"] == ("champion" if april["action"] == "promoted" else "challenger")  # as after the gate
    roles = {a: str(client.get_model_version_by_alias("monthly", a).version) for a in ("champion", "challenger")
             if client.get_registered_model("monthly").aliases.get(a)}  # fmt: skip
    assert len(set(roles.values())) == len(roles), "one version holds one role"


def test_a_repeat_with_unchanged_inputs_is_skipped(monthly):
    workdir, study, _, results, client, _ = monthly
    versions = len(client.search_model_versions("name = 'monthly'"))

    again = retrain_here(workdir, study, "2013-04")

    assert again["action"] == "skipped" and again["previous_run_id"] == results[-1]["parent_run_id"]
    assert len(client.search_model_versions("name = 'monthly'")) == versions


def test_a_worse_challenger_keeps_the_champion(monthly):
    workdir, _, dataset, _, client, _ = monthly
    space = workdir / "degenerate.yaml"
    space.write_text(yaml.safe_dump(DEGENERATE_SPACE))
    study = write_study(workdir, dataset, name="monthly", model_name="monthly", max_evals=1, space=str(space))
    champion = str(client.get_model_version_by_alias("monthly", "champion").version)

    result = retrain_here(workdir, study, "2013-04")

    assert result["action"] == "kept" and result["gate"]["challenger_score"] > result["gate"]["champion_score"]
    assert str(client.get_model_version_by_alias("monthly", "champion").version) == champion
    assert str(client.get_model_version_by_alias("monthly", "challenger").version) == result["model_version"]


def test_a_retrain_killed_after_its_gate_is_completed_by_the_same_command_without_a_second_version(monthly):
    """April's first run was killed between the gate's decision and the retrain's completion tag: the rerun
    neither repeated the month's study nor registered another version, and reported the decision made."""
    _, _, _, (_, april), client, after_kill = monthly
    assert after_kill == {"1", "2"}  # the killed run had registered April's version
    assert {str(v.version) for v in client.search_model_versions("name = 'monthly'")} >= after_kill
    assert april["model_version"] == "2" and april["origin"] == "unchanged"
    assert april["action"] == client.get_model_version("monthly", "2").tags["gate_action"]
    assert client.get_run(april["parent_run_id"]).data.tags["retrain_key"] == april["key"]


def test_an_as_of_month_without_enough_history_is_refused_naming_the_first_possible():
    months = ["2013-01", "2013-02", "2013-03", "2013-04"]
    assert windows(months, "2013-04", 2).train == ["2013-01", "2013-02"]
    with pytest.raises(InputError, match=r"2013-02 leaves fewer than 1 training month.*first possible is 2013-03"):
        windows(months, "2013-02", 1)
    with pytest.raises(InputError, match="no partition '2014-01'"):
        windows(months, "2014-01", 1)
