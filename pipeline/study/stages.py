"""The study's stages around the search: its inputs checked and logged, the data each trial trains on, the
pruning rule, and the report step. ``Study`` (``study/__init__.py``) runs them in order."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import data, families, spaces, tracking
from pipeline.config import PruningConfig, StudyConfig
from pipeline.errors import InputError, PipelineError
from pipeline.families import CrossValidation, TrainingData
from pipeline.features import Preprocessor
from pipeline.metrics import BINARY, METRICS, Metric
from pipeline.search import continuation
from pipeline.search.loop import SearchResult, best_of
from pipeline.search.pruning import PruningRule
from pipeline.search.trial import TrialOutcome
from pipeline.tracking import ParentRun, names

log = logging.getLogger(__name__)


def continued_tags(identity: dict[str, Any], inheritance: continuation.Inheritance) -> dict[str, str]:
    """The parent run's record of a continuation: the source study's parent run, trials kept and dropped."""
    return {
        names.CONTINUED_FROM: identity[names.CONTINUED_FROM],
        names.INHERITED_TRIALS: str(len(inheritance.inherited)),
        names.DROPPED_TRIALS: str(len(inheritance.dropped)),
    }


def searched_before(past: list[TrialOutcome], metric: Metric, stop_reason: str) -> SearchResult:
    """The search of a study that stopped after it: its trials as the history holds them."""
    best = best_of(past, metric)
    if best is None:
        raise PipelineError("the study's search finished without a completed trial; rerun with --fresh")
    return SearchResult(trials=past, best=best, wall_seconds=0.0, stop_reason=stop_reason, resumed_trials=len(past))


def training_data(dataset: data.Dataset, space: spaces.SearchSpace) -> TrainingData | CrossValidation:
    """The training and validation splits with one preprocessor, fitted on training rows only, per encoding
    the space's model families need; for a k-fold split, one such pair per fold (its validation rows the
    fold, its training rows the other folds)."""
    roles = dataset.roles
    encodings = {families.get(name).encoding for name in space.families}

    def split(train: tuple[pd.DataFrame, np.ndarray], validation: tuple[pd.DataFrame, np.ndarray]) -> TrainingData:
        x_train = train[0]
        preprocessors = {
            e: Preprocessor.fit(x_train, roles.categorical, roles.numeric, roles.crossed, encoding=e) for e in encodings
        }
        return TrainingData(*train, *validation, preprocessors)

    if dataset.folds is None:
        return split(dataset.xy("train"), dataset.xy("validation"))
    return CrossValidation(tuple(split(train, held_out) for train, held_out in dataset.fold_xy()))


def check_compatible(study: StudyConfig, where: Path | str, dataset: data.Dataset, space: spaces.SearchSpace) -> None:
    """The metric fits the dataset's task, and every family of the space handles that task."""
    metric = METRICS[study.metric]
    if dataset.task.kind not in metric.tasks:
        allowed = ", ".join(name for name, m in METRICS.items() if dataset.task.kind in m.tasks)
        raise InputError(
            where, "metric", f"{metric.name} does not apply to a {dataset.task.kind} task", f"allowed: {allowed}"
        )
    if study.device != "cpu" and not any(families.get(n).placed({}, study.device) for n in space.families):
        raise InputError(
            where, "device", f"no model family of {space.file.name} trains on {study.device}", "use device: cpu"
        )
    for name in space.families:
        if dataset.task.kind not in families.get(name).tasks:
            key = f"models.{name}" if len(space.families) > 1 else "model"
            raise InputError(
                space.file,
                key,
                f"{name} does not handle a {dataset.task.kind} task",
                f"it handles: {', '.join(families.get(name).tasks)}",
            )
    if dataset.task.kind != BINARY:
        _check_binary_only(space, dataset.task.kind)


def _check_binary_only(space: spaces.SearchSpace, kind: str) -> None:
    """No parameter that acts on a binary task alone, for another task: its family would ignore it at every
    trial (xgboost warns each time) while the search spends a dimension on it."""
    for name, params in space.branches.items():
        key = f"models.{name}.parameters" if space.config.models is not None else "parameters"
        for path, _ in spaces.walk(params):
            if path[-1] in families.get(name).binary_only:
                raise InputError(
                    space.file,
                    f"{key}.{'.'.join(path)}",
                    f"weights the positive class, which only a binary task has; this dataset's task is {kind}",
                    "remove it from the space for this task",
                )


def pruning_rule(config: PruningConfig) -> PruningRule | None:
    if not config.enabled:
        return None
    return PruningRule(
        config.startup_trials, config.warmup_rounds, config.quantile, config.fall_margin, config.stall_rounds
    )


def log_inputs(
    parent: ParentRun,
    dataset: data.Dataset,
    study: StudyConfig,
    space: spaces.SearchSpace,
    sources: Mapping[str, Path | str],
) -> None:
    """The study's configuration as params, its three files as artifacts, and the splits as datasets."""
    params: dict[str, Any] = dict(study.model_dump(mode="json"))
    params |= {
        "dataset_name": dataset.config.name,
        "target": dataset.config.target,
        "train_rows": len(dataset.train),
        "validation_rows": len(dataset.validation),
        "test_rows": len(dataset.test),
        "dropped_missing_target": dataset.dropped_missing_target,
    }
    params |= {f"fixed.{family}.{k}": v for family in space.families for k, v in space.fixed(family).items()}
    params |= {"model_families": ",".join(space.families), "task": dataset.task.kind}
    parent.log_params(params)
    roles = dataset.roles.table()
    parent.log_texts({"roles.json": roles.to_json(orient="records", indent=1)}, names.FEATURES_FOLDER)
    parent.set_tags({names.FEATURES: ",".join(dataset.feature_columns)})
    parent.log_files([p for p in sources.values() if isinstance(p, Path)], names.CONFIG_FOLDER)
    parent.log_texts({k: v for k, v in sources.items() if isinstance(v, str)}, names.CONFIG_FOLDER)
    parent.log_splits(
        [
            (split, getattr(dataset, split), f"{dataset.fingerprint}-{split}")
            for split in ("train", "validation", "test")
        ],
        source=str(dataset.config.path),
        target=dataset.config.target,
        name=dataset.config.name,
    )


def report_step(client: tracking.Client, parent: ParentRun, enabled: bool) -> None:
    """The report step: drawn and logged once; a report that fails is a warning, never a failed study."""
    if names.STEP_REPORT in parent.tags:
        return
    if not enabled:
        parent.set_tags({names.STEP_REPORT: "skipped"})
        return
    try:
        from pipeline.reporting import report  # matplotlib's import (about 1 s) is paid only here

        report.publish(client, parent.run_id)
        parent.set_tags({names.STEP_REPORT: "done"})
    except Exception as error:  # the study is complete and registered; a plot that fails must not undo that
        log.warning("study report not logged (%s: %s); rebuild it: python -m pipeline report --run-id %s",
                    type(error).__name__, error, parent.run_id)  # fmt: skip
        parent.set_tags({names.STEP_REPORT: f"failed: {type(error).__name__}"})
