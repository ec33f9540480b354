"""The tracking store: which one, connecting to it, experiments, schemas of logged frames, provenance."""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import pandas as pd
from mlflow.entities import Param, RunTag
from mlflow.models import ModelSignature, infer_signature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import AnyType, ColSpec, Schema

from pipeline.errors import TrackingError
from pipeline.tracking.bootstrap import ensure_store

T = TypeVar("T")
log = logging.getLogger(__name__)


def resolve_uri(uri: str | None) -> str:
    """Flag, then ``MLFLOW_TRACKING_URI``, then ``mlflow.db`` in the working directory, by its absolute path:
    MLflow keeps one store per URI for the life of the process, so two studies run from two folders in one
    process (a notebook that changes directory) must not share ``sqlite:///mlflow.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


@contextmanager
def pointed_at(uri: str | None) -> Iterator[str]:
    """MLflow's global tracking URI set to the study's store for the block (``connect`` sets it), and put
    back as it was after: two studies in one process (a notebook) never write to each other's store."""
    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    try:
        yield resolve_uri(uri)
    finally:
        if before is not None:
            mlflow.set_tracking_uri(before)


def connect(uri: str | None) -> MlflowClient:
    """Point MLflow at the store and prove it answers before any study work starts."""
    resolved = resolve_uri(uri)
    ensure_store(resolved)
    try:
        client = MlflowClient(resolved)  # a scheme MLflow has no store for, or a refused folder store, fails here
        client.search_experiments(max_results=1)
    except Exception as error:  # any failure here means the store cannot be used at all
        raise TrackingError(
            f"tracking store {resolved} cannot be used ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
            "start the server or fix --tracking-uri / MLFLOW_TRACKING_URI"
        ) from None
    mlflow.set_tracking_uri(resolved)
    return client


def experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(name)


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any], tags: dict[str, str] | None = None) -> None:
    """One batched call (MLflow splits it past its per-call limits); values cut to MLflow's 6000 characters."""
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    client.log_batch(run_id, params=items, tags=[RunTag(k, v) for k, v in (tags or {}).items()])


def signature(inputs: pd.DataFrame, outputs: Any = None) -> ModelSignature:
    """A served model's schema: every raw column required by name, numeric columns typed ``any``.

    Real tables have gaps and whole numbers: typed ``long``, one missing value in a row to score fails
    MLflow's schema enforcement ("Can not safely convert float64 to int64"), and typed ``double``, an
    integer column does ("Can not safely convert int64 to float64"), in ``mlflow.pyfunc``, in ``mlflow
    models serve`` and so in ``predict``. As ``any`` they take integers, floats and missing values alike;
    the preprocessor turns them into numbers (``predict`` names a column holding text instead).
    """
    with warnings.catch_warnings():  # MLflow's hint about integer columns: what the ``any`` type settles
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        inferred = infer_signature(inputs) if outputs is None else infer_signature(inputs, outputs)
    columns = [
        ColSpec(AnyType(), spec.name, required=spec.required)
        if spec.name is not None and _any_typed(inputs[spec.name])
        else spec
        for spec in inferred.inputs.inputs
    ]
    return ModelSignature(inputs=Schema(columns), outputs=inferred.outputs)


def _any_typed(values: pd.Series) -> bool:
    """Numbers and booleans: the columns whose values a served row may hold as int, float, bool or missing."""
    return pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def schema(frame: pd.DataFrame) -> Schema:
    """The schema of a logged dataset: its columns with their dtypes as they are in the data."""
    with warnings.catch_warnings():  # the hint that integer columns cannot hold missing values is for models
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        return infer_signature(frame).inputs


def git_commit(path: Path) -> str | None:
    """The commit of the checkout holding ``path``, if it is one (for provenance tags)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
