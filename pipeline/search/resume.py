"""Resuming a study: what must not have changed, and matching the history's trials with MLflow's runs.

The local history (``search/history.py``) is the durable copy of a study's trials; MLflow may lack the
last few (their write was queued when the process died) or hold one half-written run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from typing import Any

from pipeline import spaces
from pipeline.config import StudyConfig
from pipeline.errors import InputError
from pipeline.metrics import METRICS, Metric
from pipeline.search.history import History, StudyState
from pipeline.search.loop import outcome_from_history, record_from_history
from pipeline.search.trial import TrialOutcome, TrialRecord
from pipeline.spaces import SearchSpace
from pipeline.tracking import Client, child_runs, log_trial, names, retire_run
from pipeline.tracking.queries import LoggedStudy, LoggedTrial, latest_study, logged_trials
from pipeline.tracking.runs import delete_tags

log = logging.getLogger(__name__)

RESUME_KEYS = {
    "tpe": "the TPE options",
    "space_sha256": "the space file",
    "data_fingerprint": "the data",
    "seed": "the seed",
    "metric": "the metric",
    "algorithm": "the algorithm",
    "pruning": "the pruning rule",
    names.CONTINUED_FROM: "the study continued from",
}


def identity(
    study: StudyConfig, space: SearchSpace, data_fingerprint: str, continued_from: str | None = None
) -> dict[str, Any]:
    """What decides which trials a study proposes and how they score: all of it must match to resume.
    ``continued_from``: the parent run id of the study whose trials it inherited (``--continue-from``)."""
    return {
        names.CONTINUED_FROM: continued_from,
        "space_sha256": space.sha256,
        "data_fingerprint": data_fingerprint,
        "seed": study.seed,
        "metric": study.metric,
        "algorithm": study.algorithm,
        "tpe": study.tpe.model_dump(),
        "pruning": study.pruning.model_dump(),
    }


def changed(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The first thing that differs between a saved identity and the current one, said for a person."""
    for key, what in RESUME_KEYS.items():
        if saved.get(key) != now[key]:
            return f"{what} changed since it started ({saved.get(key)} then, {now[key]} now)"
    return None


def check_resumable(saved: dict[str, Any], now: dict[str, Any], study: str) -> None:
    """An unfinished study resumes only with what it started with; anything else is a new study."""
    if (difference := changed(saved, now)) is not None:
        raise InputError(
            None,
            None,
            f"study {study!r} has an unfinished run (parent {saved['parent_run_id']}): {difference}",
            "rerun with --fresh to start a new study, or restore what changed to resume it",
        )


def reconcile(client: Client, experiment_id: str, history: History, state: StudyState) -> list[TrialOutcome]:
    """Match the history's trials with the parent's child runs: re-log those MLflow lacks, retire torn ones.

    A trial is in the history before its run is written, so MLflow can lack the last few trials (their
    write was queued when the process died) or hold one run RUNNING (killed mid-write): that run is marked
    KILLED and deleted, and the trial logged again in full, so each trial ends with exactly one run.
    """
    parent_id = state.study["parent_run_id"]
    try:
        client.get_run(parent_id)
    except Exception as error:  # a deleted or foreign parent run cannot be resumed
        raise InputError(
            history.path,
            None,
            f"parent run {parent_id} of the unfinished study cannot be read ({type(error).__name__})",
            "rerun with --fresh to start a new study",
        ) from None
    by_number: dict[int, str] = {}
    for run in child_runs(client, experiment_id, parent_id):
        number = int(run.data.tags.get(names.TRIAL_NUMBER, -1))
        if run.info.status == "RUNNING" or number >= len(state.trials) or number in by_number:
            retire_run(client, run.info.run_id)
            log.info(
                "retired child run %s of trial %d: left RUNNING or duplicated by a dead process",
                run.info.run_id,
                number,
            )
        else:
            by_number[number] = run.info.run_id
    past = []
    for entry in state.trials:
        number = entry["outcome"]["number"]
        run_id = by_number.get(number)
        if run_id is None:
            run_id = log_trial(client, experiment_id, parent_id, record_from_history(entry))
            history.append_logged(number, run_id)
        past.append(outcome_from_history(entry, run_id))
    return past


def from_logged(trial: LoggedTrial, space: SearchSpace, metric: Metric) -> tuple[TrialOutcome, TrialRecord]:
    """A trial as its MLflow run holds it, turned back into what the history keeps (outcome and record)."""
    params: dict[str, Any] = spaces.point_from_logged(space, trial.params) or dict(trial.params)
    pruned = trial.tags.get(names.TRIAL_STATE) == "PRUNED"
    ok = trial.status == "FINISHED"
    value = trial.metrics.get(metric.name, trial.metrics.get(f"{metric.name}_when_pruned", math.nan))
    error = f"{trial.tags.get(names.ERROR_CLASS, 'Error')}: {trial.tags.get(names.ERROR_MESSAGE, '')}"
    curve = next((v for k, v in trial.curves.items() if k.startswith("validation_")), [])
    best_iteration = trial.metrics.get("best_iteration")
    outcome = TrialOutcome(
        number=trial.number,
        params=params,
        value=value if ok else math.nan,
        best_iteration=int(best_iteration) if best_iteration is not None else None,
        run_id=trial.run_id,
        train_seconds=trial.metrics.get("train_seconds", 0.0),
        ok=ok,
        error=None if ok else error,
        pruned=pruned,
        curve=list(curve),
        warm_start=trial.tags.get(names.WARM_START) == "true",
        inherited_from=trial.tags.get(names.INHERITED_FROM, ""),
    )
    record = TrialRecord(
        number=trial.number,
        params=params,
        metrics=dict(trial.metrics),
        curves={k: list(v) for k, v in trial.curves.items()},
        tags={k: v for k, v in trial.tags.items() if k != names.TRIAL_NUMBER},
        status=trial.status,
        start_ms=trial.start_ms,
        end_ms=trial.end_ms,
    )
    return outcome, record


def contiguous(trials: list[LoggedTrial]) -> list[LoggedTrial]:
    """The trials numbered 0, 1, ... up to the first gap (a later one outlived a lost write)."""
    kept = []
    for expected, trial in enumerate(trials):
        if trial.number != expected:
            break
        kept.append(trial)
    return kept


def rebuild(
    history: History, study: LoggedStudy, trials: list[LoggedTrial], space: SearchSpace, metric: Metric
) -> StudyState:
    """Write ``history`` anew from the tracking store: the study's parent run and its trial runs hold
    parameters, metrics, curves, trial numbers and states, so a study whose local history is gone (a fresh
    container, a deleted ``.pipeline/``) resumes, extends and replays as if it had never left. Trials are
    taken in order up to the first gap; a later one (its write outlived a lost one) is run again."""
    identity = json.loads(study.tags.get(names.IDENTITY, "{}"))
    history.start(
        {"parent_run_id": study.run_id, "experiment_id": study.experiment_id, "study": study.tags.get(names.STUDY)}
        | identity,
        warm_start=json.loads(study.tags.get(names.WARM_START, "[]")),
    )
    for trial in contiguous(trials):
        outcome, record = from_logged(trial, space, metric)
        entry = {"number": trial.number, "outcome": asdict(outcome), "record": asdict(record)}
        history.append_trial(entry, warm_start=outcome.warm_start)
        history.append_logged(trial.number, trial.run_id)
    state = history.read()
    assert state is not None, "a history just written has its study line"
    return state


def starting_point(
    client: Client,
    experiment_id: str,
    history: History,
    identity: dict[str, Any],
    study: StudyConfig,
    space: SearchSpace,
    *,
    fresh: bool = False,
) -> StudyState | LoggedStudy | None:
    """Where a study's run starts: the state to resume or extend, the finished study to return as it is,
    or None for a new study.

    The local history comes first (an unfinished study resumes only with the inputs it started with); when
    it is gone, the study's newest parent run in the tracking store decides: finished with these inputs and
    at least ``max_evals`` trials, it is returned as it is; finished with fewer, it is extended (its step
    tags cleared, its history rebuilt); finished with other inputs, a new study starts; unfinished, its
    history is rebuilt from its runs. ``fresh`` sets an unfinished history aside and starts a new study."""
    name = study.name
    if fresh:
        if history.path.exists():
            set_aside = history.archive(f"abandoned-{int(time.time())}")
            log.info("--fresh: the unfinished study's history was moved to %s", set_aside)
        return None
    state = history.read()
    if state is not None:
        check_resumable(state.study, identity, name)
        return state
    latest = latest_study(client, experiment_id, name)
    if latest is None or names.IDENTITY not in latest.tags:
        return None
    saved = json.loads(latest.tags[names.IDENTITY]) | {"parent_run_id": latest.run_id}
    difference = changed(saved, identity)
    if names.STEP_DONE in latest.tags and difference is not None:
        log.info("study %r, finished: %s; a new study", name, difference)
        return None
    check_resumable(saved, identity, name)  # an unfinished study resumes only as it started
    metric = METRICS[study.metric]
    if names.STEP_DONE in latest.tags:
        logged = contiguous(logged_trials(client, latest, with_curves=False))
        done = sum(names.INHERITED_FROM not in t.tags for t in logged)  # inherited ones come on top
        if done >= study.max_evals:
            log.info("study %r is complete with these inputs (%d trials): nothing to do", name, done)
            return latest
        log.info("extending study %r (parent run %s) from %d to %d trials", name, latest.run_id, done,
                 study.max_evals)  # fmt: skip
        delete_tags(client, latest.run_id, names.STEPS)
    trials = contiguous(logged_trials(client, latest))  # curves: pruning replays them
    if names.STEP_DONE not in latest.tags:
        log.info("study %r: no local history; rebuilt from the tracking store (parent run %s, %d trials)",
                 name, latest.run_id, len(trials))  # fmt: skip
    return rebuild(history, latest, trials, space, metric)
