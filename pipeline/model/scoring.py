"""Batch scoring: raw rows from a CSV or Parquet file through a registered model, to a file.

The input's columns are checked against the model's signature before anything is predicted, and the
output is written to a temporary name and renamed, so a failed run never leaves a half-written file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.data import read_table
from pipeline.errors import InputError, PipelineError

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class Scored:
    rows: int
    model_name: str
    model_version: str
    output: Path


def score_file(client: MlflowClient, model_uri: str, input_file: Path, output_file: Path) -> Scored:
    """Predict every row of ``input_file`` with ``model_uri`` and write them, with the version used."""
    name, version = resolve_version(client, model_uri)
    if not input_file.is_file():
        raise InputError(input_file, None, "file not found", "give a .csv or .parquet file")
    frame = read_table(input_file)
    pinned = f"models:/{name}/{version}"  # the alias could move while we score: use the version it named
    try:
        model = mlflow.pyfunc.load_model(pinned)
    except (MlflowException, OSError) as error:
        raise PipelineError(f"cannot load {pinned}: {str(error).splitlines()[0][:300]}") from None
    schema = model.metadata.get_input_schema()
    if schema is not None:
        missing = [c for c in schema.input_names() if c not in frame.columns]
        if missing:
            raise InputError(
                input_file,
                None,
                f"lacks the column(s) {', '.join(missing)} that {pinned} needs",
                f"the model reads: {', '.join(schema.input_names())}",
            )
        frame = frame[schema.input_names()]
    try:
        predictions = model.predict(frame)
    except MlflowException as error:
        raise InputError(
            input_file,
            None,
            f"does not match {pinned}'s signature: {str(error).splitlines()[0][:300]}",
            "convert the columns to the types the model was trained on",
        ) from None
    out = (
        predictions.copy()
        if isinstance(predictions, pd.DataFrame)
        else pd.DataFrame({"prediction": np.asarray(predictions)})
    )
    out["model_version"] = version
    write_table(out.reset_index(drop=True), output_file)
    return Scored(rows=len(out), model_name=name, model_version=version, output=output_file)


def resolve_version(client: MlflowClient, model_uri: str) -> tuple[str, str]:
    match = MODEL_URI.match(model_uri)
    if not match:
        raise InputError(
            None,
            "--model",
            f"{model_uri!r} is not a registered model URI",
            "write models:/NAME@ALIAS or models:/NAME/VERSION",
        )
    name = match["name"]
    try:
        if match["alias"]:
            return name, str(client.get_model_version_by_alias(name, match["alias"]).version)
        return name, str(client.get_model_version(name, match["version"]).version)
    except MlflowException:
        raise InputError(
            None,
            "--model",
            f"{model_uri} does not exist in the registry",
            "check the model name and the alias or version",
        ) from None


def write_table(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix not in (".csv", ".parquet"):
        raise InputError(path, None, "output must end in .csv or .parquet", "rename the output file")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    tmp.replace(path)
