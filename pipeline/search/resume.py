"""Resuming a study: what must not have changed, and matching the history's trials with MLflow's runs.

The local history (``search/history.py``) is the durable copy of a study's trials; MLflow may lack the
last few (their write was queued when the process died) or hold one half-written run.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.config import StudyConfig
from pipeline.errors import InputError
from pipeline.search.history import History, StudyState
from pipeline.search.loop import outcome_from_history, record_from_history
from pipeline.search.trial import TrialOutcome
from pipeline.spaces import SearchSpace
from pipeline.tracking import Client, child_runs, log_trial, names, retire_run

log = logging.getLogger(__name__)

RESUME_KEYS = {
    "tpe": "the TPE options",
    "space_sha256": "the space file",
    "data_fingerprint": "the data",
    "seed": "the seed",
    "metric": "the metric",
    "algorithm": "the algorithm",
    "pruning": "the pruning rule",
}


def identity(study: StudyConfig, space: SearchSpace, data_fingerprint: str) -> dict[str, Any]:
    """What decides which trials a study proposes and how they score: all of it must match to resume."""
    return {
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
            return f"{what} ({saved.get(key)} then, {now[key]} now)"
    return None


def check_resumable(saved: dict[str, Any], now: dict[str, Any], study: str) -> None:
    """An unfinished study resumes only with what it started with; anything else is a new study."""
    if (difference := changed(saved, now)) is not None:
        raise InputError(
            None,
            None,
            f"study {study!r} has an unfinished run (parent {saved['parent_run_id']}) started with different "
            f"{difference}",
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
