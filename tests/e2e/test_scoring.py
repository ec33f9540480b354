"""Batch scoring from the registry, promotion and rollback, through the real CLI on small real data."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from cli import run_cli, summary_of, write_study
from mlflow.tracking import MlflowClient

from pipeline import registry
from pipeline.errors import InputError

RAW_COLUMNS = ["origin", "dest", "carrier", "distance", "dep_time", "sched_dep_time", "hour", "minute"]


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, flights_spec):
    """Two studies registering versions 1 (champion) and 2 (challenger) of one model."""
    workdir = tmp_path_factory.mktemp("scoring")
    dataset = workdir / "flights.yaml"
    dataset.write_text(yaml.safe_dump(flights_spec))
    for seed in (1, 2):
        study = write_study(workdir, dataset, name=f"scoring-{seed}", model_name="scored", max_evals=2, seed=seed)
        summary_of(run_cli(workdir, "run", "--study", str(study), "--json", "--no-progress"))
    return workdir, MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_predict_writes_one_prediction_per_row_with_the_version_used(two_versions, flights_dir, suffix):
    workdir, _ = two_versions
    rows = pd.read_parquet(flights_dir / "2013-04.parquet").head(500)
    source = workdir / f"april{suffix}"
    rows.to_parquet(source) if suffix == ".parquet" else rows.to_csv(source, index=False)
    target = workdir / f"scored{suffix}"

    done = run_cli(workdir, "predict", "--model", "models:/scored@champion", "--input", str(source),
                   "--output", str(target), "--json")  # fmt: skip

    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["model_version"] == "1"
    scored = pd.read_parquet(target) if suffix == ".parquet" else pd.read_csv(target)
    assert len(scored) == len(rows) and list(scored.columns) == ["prediction", "model_version"]
    assert (scored["model_version"].astype(str) == "1").all()
    assert scored["prediction"].between(10, 800).all()  # minutes in the air


def test_predict_refuses_rows_missing_a_model_column_with_exit_2(two_versions, flights_dir):
    workdir, _ = two_versions
    source = workdir / "no-dest.parquet"
    pd.read_parquet(flights_dir / "2013-04.parquet").head(50).drop(columns=["dest"]).to_parquet(source)

    done = run_cli(workdir, "predict", "--model", "models:/scored@champion", "--input", str(source),
                   "--output", str(workdir / "never.parquet"))  # fmt: skip

    assert done.returncode == 2
    assert "no-dest.parquet" in done.stderr and "dest" in done.stderr and "Traceback" not in done.stderr
    assert not (workdir / "never.parquet").exists()


def test_an_unknown_model_uri_exits_2(two_versions, flights_dir):
    workdir, _ = two_versions
    done = run_cli(workdir, "predict", "--model", "models:/scored@nobody", "--input",
                   str(flights_dir / "2013-04.parquet"), "--output", str(workdir / "x.parquet"))  # fmt: skip
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_promote_then_rollback_moves_the_champion_and_records_it(two_versions):
    workdir, client = two_versions
    assert str(client.get_model_version_by_alias("scored", "challenger").version) == "2"

    promoted = run_cli(workdir, "promote", "--model-name", "scored", "--version", "2")
    assert promoted.returncode == 0, promoted.stderr
    assert str(client.get_model_version_by_alias("scored", "champion").version) == "2"
    assert client.get_model_version("scored", "2").tags["replaced_champion"] == "1"

    rolled = run_cli(workdir, "rollback", "--model-name", "scored")
    assert rolled.returncode == 0, rolled.stderr
    assert str(client.get_model_version_by_alias("scored", "champion").version) == "1"
    assert "rolled_back_at" in client.get_model_version("scored", "2").tags

    with pytest.raises(InputError, match="no previous champion"):  # the same check the CLI maps to exit 2
        registry.rollback(client, "scored")
    with pytest.raises(InputError, match="no version 9"):
        registry.promote(client, "scored", "9", reason="test")
