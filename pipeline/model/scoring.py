"""Batch scoring: raw rows from a CSV or Parquet file through a registered model, to a file.

The output's extension and the input's columns and types are checked against the model's signature
before anything is predicted, and the output is written to a temporary name and renamed, so a failed run
never leaves a half-written file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import ReadOptions
from pipeline.data.reading import read_table
from pipeline.errors import InputError
from pipeline.tracking import Client, models

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
OUTPUT_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class Scored:
    rows: int
    model_name: str
    model_version: str
    output: Path


def score_file(
    client: Client, model_uri: str, input_file: Path, output_file: Path, read: ReadOptions | None = None
) -> Scored:
    """Predict every row of ``input_file`` with ``model_uri`` and write them, with the version used; a CSV
    input is read with ``read`` (a dataset file's ``read:`` options; default: comma-separated UTF-8)."""
    if output_file.suffix not in OUTPUT_SUFFIXES:
        raise InputError(output_file, "--output", "must end in .csv or .parquet", "rename the output file")
    name, version = resolve_version(client, model_uri)
    if not input_file.is_file():
        raise InputError(input_file, "--input", "file not found", "give a .csv or .parquet file")
    frame = read_table(input_file, options=read)
    pinned = f"models:/{name}/{version}"  # the alias could move while we score: use the version it named
    model = models.load_pyfunc(pinned)
    columns = models.input_columns(model)
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InputError(
                input_file,
                None,
                f"lacks the column(s) {', '.join(missing)} that {pinned} needs",
                f"the model reads: {', '.join(columns)}",
            )
        frame = frame[columns]
    try:
        predictions = models.predict(model, frame)
    except models.SchemaError as error:
        raise InputError(
            input_file, None, f"does not match {pinned}'s signature: {error}", _type_fix(model, frame)
        ) from None
    out = (
        predictions.copy()
        if isinstance(predictions, pd.DataFrame)
        else pd.DataFrame({"prediction": np.asarray(predictions)})
    )
    out["model_version"] = version
    write_table(out.reset_index(drop=True), output_file)
    return Scored(rows=len(out), model_name=name, model_version=version, output=output_file)


def _type_fix(model: object, frame: pd.DataFrame) -> str:
    """Which columns hold another type than the model's signature expects, and what it expects."""
    expected = models.input_types(model)
    wrong = [
        f"{column} holds {frame[column].dtype} where the model expects {kind}"
        for column, kind in expected.items()
        if column in frame.columns and not models.compatible(frame[column], kind)
    ]
    return "; ".join(wrong) + "; convert them" if wrong else "convert the columns to the types the model was trained on"


def resolve_version(client: Client, model_uri: str) -> tuple[str, str]:
    match = MODEL_URI.match(model_uri)
    if not match:
        raise InputError(
            None,
            "--model",
            f"{model_uri!r} is not a registered model URI",
            "write models:/NAME@ALIAS or models:/NAME/VERSION",
        )
    name = match["name"]
    version = (
        models.version_by_alias(client, name, match["alias"])
        if match["alias"]
        else (match["version"] if models.version_exists(client, name, match["version"]) else None)
    )
    if version is None:
        raise InputError(
            None,
            "--model",
            f"{model_uri} does not exist in the registry",
            "check the model name and the alias or version",
        )
    return name, version


def write_table(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    tmp.replace(path)
