"""What a study is run with besides its files: the keywords of ``Study.from_file`` / ``from_config`` (one
per flag of ``python -m pipeline run``), how they override the study file, and how this invocation runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from pydantic import ValidationError

from pipeline import config
from pipeline.config import StudyConfig
from pipeline.errors import InputError
from pipeline.search.history import DEFAULT_STATE_DIR

IN_MEMORY = "(in memory)"


class RunKeywords(TypedDict, total=False):
    """The keywords of ``Study.from_file`` and ``Study.from_config``, one per flag of ``python -m pipeline
    run``; None (or left out) means "as the study file says"."""

    max_evals: int | None
    seed: int | None
    study_name: str | None
    experiment: str | None
    model_name: str | None
    timeout: float | None
    """Seconds after which no new trial starts (``stop.timeout_s``)."""
    patience: int | None
    metric_threshold: float | None
    pruning: bool | None
    device: str | None
    tracking_uri: str | None
    parallelism: int
    spark_master: str | None
    fresh: bool
    continue_from: str | None
    """A study name (its latest study in the experiment) or a study's parent run id: the new study inherits
    that study's trials its space can express, as already evaluated ones, and runs ``max_evals`` more."""
    state_dir: str | Path
    progress: bool


STUDY_KEYS = {
    "max_evals": "max_evals",
    "seed": "seed",
    "study_name": "name",
    "experiment": "experiment",
    "model_name": "model_name",
    "device": "device",
    "timeout": "stop.timeout_s",
    "patience": "stop.patience",
    "metric_threshold": "stop.metric_threshold",
    "pruning": "pruning.enabled",
}
"""The keywords that override a study-file key, and its key path."""


@dataclass(frozen=True)
class Execution:
    """How this invocation runs the study: none of it changes which trials the study proposes."""

    tracking_uri: str | None = None
    """MLflow tracking URI; None: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` here."""
    parallelism: int = 1
    """Trials at once; more than one runs them in worker processes here, or on Spark with ``spark_master``."""
    spark_master: str | None = None
    """Spark master URL (``local[N]``, ``spark://host:7077``): trials run on Spark, ``parallelism`` at once."""
    fresh: bool = False
    """Start a new study even if an unfinished one with this name exists (it is set aside, not deleted)."""
    state_dir: Path = DEFAULT_STATE_DIR
    """Where trial histories and locks live."""
    progress: bool = True


def split_keywords(keywords: RunKeywords, caller: str) -> tuple[dict[str, Any], Execution]:
    """The study-file overrides (by key path) and the execution settings in ``keywords``; a keyword this API
    does not know is a TypeError, as for any Python function."""
    unknown = sorted(set(keywords) - set(RunKeywords.__annotations__))
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    overrides = {STUDY_KEYS[k]: v for k, v in keywords.items() if k in STUDY_KEYS and v is not None}
    execution = Execution(
        tracking_uri=keywords.get("tracking_uri"),
        parallelism=keywords.get("parallelism", 1),
        spark_master=keywords.get("spark_master"),
        fresh=keywords.get("fresh", False),
        state_dir=Path(keywords.get("state_dir", DEFAULT_STATE_DIR)),
        progress=keywords.get("progress", True),
    )
    return overrides, execution


def with_overrides(raw: dict[str, Any], where: str, overrides: dict[str, Any]) -> StudyConfig:
    """``raw`` with ``overrides`` (dotted key paths) applied, validated; errors name ``where``."""
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        target = raw
        for part in parents:
            target = target.setdefault(part, {})
        target[key] = value
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as error:
        raise InputError(where, *config.first_problem(error, raw)) from None
