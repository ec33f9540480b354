"""Models in MLflow: logging the served pyfunc, registering versions, loading them back, aliases and tags, and
the command line of MLflow's scoring server.

The policy (which version becomes champion, the gate, rollback) lives in ``pipeline.model``; this module
only speaks MLflow, and turns its exceptions into ``PipelineError`` or ``None`` where a caller can act.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.errors import PipelineError
from pipeline.tracking.store import signature


@dataclass(frozen=True)
class LoggedModel:
    model_id: str
    uri: str
    """Where the logged model can be registered or loaded from (``models:/m-<id>``)."""


def log_pyfunc(
    *,
    loader: Path,
    artifacts: Mapping[str, Path],
    code_paths: list[Path],
    example: pd.DataFrame,
    example_output: Any,
    requirements: list[str],
    tags: Mapping[str, str],
) -> LoggedModel:
    """Log a models-from-code pyfunc (``loader`` calls ``mlflow.models.set_model``) on the active run, with a
    signature and an input example of raw rows."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(loader),
        artifacts={k: str(v) for k, v in artifacts.items()},
        code_paths=[str(p) for p in code_paths],
        signature=signature(example, example_output),
        input_example=example,
        pip_requirements=requirements,
        tags=dict(tags),
    )
    return LoggedModel(model_id=info.model_id, uri=info.model_uri)


def register(client: MlflowClient, model_uri: str, name: str, tags: Mapping[str, str]) -> str:
    """Register ``model_uri`` as a new version of ``name`` (created if needed); returns the version."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Registered model .* already exists")
        version = mlflow.register_model(model_uri, name, tags=dict(tags))
    return str(version.version)


def load_pyfunc(uri: str) -> Any:
    """The served model at ``uri`` (``models:/NAME/VERSION``), as ``mlflow.pyfunc`` loads it for anyone."""
    try:
        return mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError, ValueError, KeyError) as error:
        raise PipelineError(f"cannot load {uri}: {str(error).splitlines()[0][:300] if str(error) else error}") from None


def predict(model: Any, frame: pd.DataFrame) -> Any:
    """``model.predict``, with MLflow's schema errors as a one-line PipelineError (``SchemaError``)."""
    try:
        return model.predict(frame)
    except MlflowException as error:
        raise SchemaError(str(error).splitlines()[0][:500] if str(error) else type(error).__name__) from None


class SchemaError(PipelineError):
    """Rows that do not match a model's signature (the caller says which file they came from)."""


def input_columns(model: Any) -> list[str] | None:
    """The raw columns a loaded model's signature names, or None if it has none."""
    schema = model.metadata.get_input_schema()
    return None if schema is None else list(schema.input_names())


def input_types(model: Any) -> dict[str, str]:
    """Column -> the type a loaded model's signature gives it (``long``, ``double``, ``string``, ...)."""
    schema = model.metadata.get_input_schema()
    return {} if schema is None else {spec.name: str(spec.type) for spec in schema.inputs if spec.name}


def compatible(values: pd.Series, kind: str) -> bool:
    """Whether MLflow's schema enforcement takes ``values`` for a column typed ``kind``."""
    if kind in ("long", "integer"):
        return pd.api.types.is_integer_dtype(values)
    if kind in ("double", "float"):
        return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if kind == "boolean":
        return pd.api.types.is_bool_dtype(values)
    if kind == "string":
        return pd.api.types.is_string_dtype(values) or pd.api.types.is_object_dtype(values)
    return True


def aliases_by_version(client: MlflowClient, name: str) -> dict[str, list[str]]:
    """The registered model's aliases as they are now, by version (``{"3": ["champion"]}``); empty when the
    model is not (or no longer) registered."""
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        return {}
    by_version: dict[str, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        by_version.setdefault(str(version), []).append(alias)
    return by_version


def version_by_alias(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_exists(client: MlflowClient, name: str, version: str) -> bool:
    try:
        client.get_model_version(name, version)
    except MlflowException:
        return False
    return True


def version_tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    return dict(client.get_model_version(name, version).tags)


def versions_tagged(client: MlflowClient, name: str, tag: str, value: str) -> list[str]:
    """Versions of ``name`` whose tag ``tag`` is ``value``, oldest first."""
    try:
        found = client.search_model_versions(f"name = '{name}' and tags.`{tag}` = '{value}'")
    except MlflowException:
        return []
    return sorted((str(v.version) for v in found), key=int)


def find_version(client: MlflowClient, name: str, tags: Mapping[str, str]) -> str | None:
    """The newest version of ``name`` carrying every one of ``tags``, or None."""
    (first, value), *rest = tags.items()
    for version in reversed(versions_tagged(client, name, first, value)):
        held = version_tags(client, name, version)
        if all(held.get(k) == v for k, v in rest):
            return version
    return None


def version_model_id(client: MlflowClient, name: str, version: str) -> str:
    """The id of the logged model a version was registered from (``m-...``), or '' if MLflow has none.

    A version registered from ``models:/m-...`` names it in its source; MLflow 3 fills the version's own
    ``model_id`` field on some stores only (not on SQLite's)."""
    found = client.get_model_version(name, version)
    model_id = str(getattr(found, "model_id", "") or "")
    source = str(found.source or "")
    if not model_id and source.startswith("models:/m-"):
        model_id = source.removeprefix("models:/")
    return model_id


def set_version_tags(client: MlflowClient, name: str, version: str, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def set_description(client: MlflowClient, name: str, version: str, text: str) -> None:
    client.update_model_version(name, version, description=text)


def model_tags(client: MlflowClient, name: str) -> dict[str, str]:
    return dict(client.get_registered_model(name).tags)


def set_model_tag(client: MlflowClient, name: str, key: str, value: str) -> None:
    client.set_registered_model_tag(name, key, value)


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)


def delete_alias(client: MlflowClient, name: str, alias: str) -> None:
    with contextlib.suppress(MlflowException):  # no such alias: nothing to delete
        client.delete_registered_model_alias(name, alias)


def scoring_server_command(model_uri: str, host: str, port: int, workers: int | None) -> list[str]:
    """MLflow's own scoring server (``mlflow models serve``) for ``model_uri``, run by this interpreter, in
    this environment (``--env-manager local``: no virtualenv or conda built for the model).

    It starts ``uvicorn`` by name: the caller must put this interpreter's ``bin/`` on the child's PATH. MLflow
    reads the model from the store ``MLFLOW_TRACKING_URI`` names in the child's environment. ``workers``
    None leaves MLflow's default (``$MLFLOW_MODELS_WORKERS``, else 1).
    """
    command = [sys.executable, "-m", "mlflow", "models", "serve", "--model-uri", model_uri, "--env-manager", "local",
               "--host", host, "--port", str(port)]  # fmt: skip
    return command if workers is None else [*command, "--workers", str(workers)]
