"""Batch scoring from the registry, promotion and rollback, through the CLI's ``main`` (in this process) and the
functions behind it, on small real data."""

from __future__ import annotations

import json
import shutil

import mlflow
import pandas as pd
import pytest
from cli import main_here
from mlflow.tracking import MlflowClient

from pipeline.errors import InputError
from pipeline.model import registry, scoring

RAW_COLUMNS = ["origin", "dest", "carrier", "distance", "dep_time", "sched_dep_time", "hour", "minute"]


MODEL = "e2e-air-time"


@pytest.fixture(scope="module")
def two_versions(two_studies, tmp_path_factory):
    """A copy of the e2e store, whose model has versions 1 (champion) and 2 (challenger): this module moves
    aliases, which the other readers of that store must not see. Artifacts stay where the studies wrote them."""
    source, _, _ = two_studies
    workdir = tmp_path_factory.mktemp("scoring")
    shutil.copy(source / "mlflow.db", workdir / "mlflow.db")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)  # what scoring loads models from when called in-process
    yield workdir, MlflowClient(uri)
    mlflow.set_tracking_uri(None)


def april(flights_dir, rows: int) -> pd.DataFrame:
    return pd.read_parquet(flights_dir / "2013-04.parquet").head(rows)


def check_scored(scored: pd.DataFrame, rows: pd.DataFrame) -> None:
    assert len(scored) == len(rows) and list(scored.columns) == ["prediction", "model_version"]
    assert (scored["model_version"].astype(str) == "1").all()
    assert scored["prediction"].between(10, 800).all()  # minutes in the air


def test_predict_writes_one_prediction_per_row_with_the_version_used(two_versions, flights_dir):
    workdir, _ = two_versions
    rows, source, target = april(flights_dir, 500), workdir / "april.parquet", workdir / "scored.parquet"
    rows.to_parquet(source)

    done = main_here(workdir, "predict", "--model", f"models:/{MODEL}@champion", "--input", str(source),
                     "--output", str(target), "--json")  # fmt: skip

    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["model_version"] == "1"
    check_scored(pd.read_parquet(target), rows)


def test_csv_in_gives_csv_out(two_versions, flights_dir):
    workdir, client = two_versions
    rows, source, target = april(flights_dir, 200), workdir / "april.csv", workdir / "scored.csv"
    rows.to_csv(source, index=False)
    assert scoring.score_file(client, f"models:/{MODEL}@champion", source, target).model_version == "1"
    check_scored(pd.read_csv(target), rows)


def test_a_csv_written_as_the_dataset_file_declares_is_read_with_its_read_options(two_versions, flights_dir):
    """A European export (';' between fields, decimal commas, '.' between thousands), as the study read its
    table: ``--dataset`` gives predict that file's ``read:`` options."""
    workdir, _ = two_versions
    rows, source, target = april(flights_dir, 100), workdir / "april-eu.csv", workdir / "scored-eu.csv"
    rows = rows.assign(distance=rows["distance"] + 0.5)  # thousands and decimals in one column: 1.089,5
    text = rows.to_csv(index=False, sep=";", decimal=",")
    source.write_text(text.replace("1089,5", "1.089,5").replace("2475,5", "2.475,5"))
    dataset = workdir / "eu.yaml"
    dataset.write_text(
        "name: eu\npath: april-eu.csv\ntarget: air_time\nsplit: {by: random, validation: 0.2, test: 0.2}\n"
        "read: {separator: ';', decimal: ',', thousands: '.'}\n"
    )
    args = ("predict", "--model", f"models:/{MODEL}@champion", "--input", str(source), "--output", str(target))

    refused = main_here(workdir, *args)
    done = main_here(workdir, *args, "--dataset", str(dataset))

    assert refused.returncode == 2 and "april-eu.csv" in refused.stderr
    assert done.returncode == 0, done.stderr[-2000:]
    check_scored(pd.read_csv(target), rows)


def test_rows_missing_a_model_column_are_refused_naming_file_and_column(two_versions, flights_dir):
    workdir, client = two_versions
    source = workdir / "no-dest.parquet"
    april(flights_dir, 50).drop(columns=["dest"]).to_parquet(source)
    with pytest.raises(InputError, match=r"no-dest\.parquet.*dest"):  # the CLI maps InputError to exit 2
        scoring.score_file(client, f"models:/{MODEL}@champion", source, workdir / "never.parquet")
    assert not (workdir / "never.parquet").exists()


def test_rows_with_a_gap_in_every_column_are_scored(two_versions, flights_dir):
    """Integer columns (hour, minute, distance) included: the signature types numbers as ``any``."""
    workdir, client = two_versions
    rows = april(flights_dir, len(RAW_COLUMNS) + 5)[RAW_COLUMNS].reset_index(drop=True)
    rows = rows.astype({c: "float64" for c in RAW_COLUMNS if pd.api.types.is_integer_dtype(rows[c])})
    for i, column in enumerate(RAW_COLUMNS):
        rows.loc[i, column] = None
    source, target = workdir / "gaps.csv", workdir / "gaps-scored.csv"
    rows.to_csv(source, index=False)

    scoring.score_file(client, f"models:/{MODEL}@champion", source, target)

    assert pd.read_csv(target)["prediction"].notna().all()


def test_text_in_a_numeric_column_is_refused_naming_the_column_and_value(two_versions, flights_dir):
    workdir, client = two_versions
    rows = april(flights_dir, 20).astype({"distance": "object"})
    rows.loc[3, "distance"] = "far"
    source = workdir / "text.csv"
    rows.to_csv(source, index=False)
    with pytest.raises(
        InputError, match=r"text\.csv: .*column distance holds text such as 'far' where the model expects numbers"
    ):
        scoring.score_file(client, f"models:/{MODEL}@champion", source, workdir / "never.csv")


def test_an_output_that_is_not_csv_or_parquet_is_refused_before_scoring(two_versions, flights_dir):
    workdir, client = two_versions
    with pytest.raises(InputError, match=r"scored\.xlsx: --output: must end in \.csv or \.parquet"):
        scoring.score_file(client, f"models:/{MODEL}@nobody", flights_dir / "2013-04.parquet", workdir / "scored.xlsx")


def test_an_unknown_alias_is_refused(two_versions, flights_dir):
    workdir, client = two_versions
    with pytest.raises(InputError, match="does not exist"):
        scoring.score_file(client, f"models:/{MODEL}@nobody", flights_dir / "2013-04.parquet", workdir / "x.parquet")


def test_promote_then_rollback_moves_the_champion_and_records_it(two_versions):
    workdir, client = two_versions
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "2"

    promoted = main_here(workdir, "promote", "--model-name", MODEL, "--model-version", "2")
    assert promoted.returncode == 0, promoted.stderr
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    assert client.get_model_version(MODEL, "2").tags["replaced_champion"] == "1"

    registry.rollback(client, MODEL)  # the command-line side is the same as promote's
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert "rolled_back_at" in client.get_model_version(MODEL, "2").tags

    with pytest.raises(InputError, match="no previous champion"):  # the same check the CLI maps to exit 2
        registry.rollback(client, MODEL)
    with pytest.raises(InputError, match="no version 9"):
        registry.promote(client, MODEL, "9", reason="test")
