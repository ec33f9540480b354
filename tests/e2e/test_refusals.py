"""Bad files are refused by the real CLI with exit 2 and one line, before anything is written to MLflow:
``space check`` reaches the space checks, ``run --study`` the study, dataset and space checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli import REPO, main_here, run_cli, write_study

INVALID = REPO / "tests"


def assert_refused(done, file: Path, key: str, workdir: Path) -> None:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith(f"error: {file}: {key}: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not (workdir / "mlflow.db").exists()


def test_space_check_refuses_a_choice_option_the_estimator_refuses(tmp_path):
    space = INVALID / "invalid_spaces" / "choice_option_refused_by_estimator.yaml"

    done = main_here(tmp_path, "space", "check", str(space))

    assert_refused(done, space, "parameters.tree_method.options.2", tmp_path)
    assert "'histogram'" in done.stderr


def test_run_refuses_a_study_file_with_a_model_name_the_registry_refuses(tmp_path):
    study = INVALID / "invalid_studies" / "model_name_with_slash.yaml"

    done = main_here(tmp_path, "run", "--study", str(study), "--no-progress")

    assert_refused(done, study, "model_name", tmp_path)


def test_run_refuses_a_dataset_file_listing_the_target_as_a_feature(tmp_path):
    dataset = INVALID / "invalid_datasets" / "target_listed_as_categorical.yaml"
    study = write_study(tmp_path, dataset)

    done = main_here(tmp_path, "run", "--study", str(study), "--no-progress")

    assert_refused(done, dataset, "features.categorical.1", tmp_path)


def test_run_refuses_a_nan_metric_threshold_from_the_command_line(tmp_path):
    study = write_study(tmp_path, tmp_path / "never-read.yaml")

    done = main_here(tmp_path, "run", "--study", str(study), "--metric-threshold", "nan", "--no-progress")

    assert_refused(done, Path("command line"), "stop.metric_threshold", tmp_path)


@pytest.mark.parametrize(
    ("command", "flag", "value", "least"),
    [
        (["runs"], "--top", "0", 1),
        (["serve", "--model", "models:/m@champion"], "--workers", "0", 1),
        (["space", "check", str(REPO / "search_spaces" / "xgboost.yaml")], "--samples", "-1", 0),
    ],
)
def test_a_count_flag_below_its_least_value_is_refused_by_the_parser(tmp_path, command, flag, value, least):
    """Not MLflow's error on --top 0 (exit 1, "unexpected"), not a server started and stopped at once with no
    worker, not an empty sample."""
    done = run_cli(tmp_path, *command, flag, value)

    assert done.returncode == 2
    assert f"argument {flag}: {value} is too small; give {least} or more" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr and not (tmp_path / "mlflow.db").exists()
