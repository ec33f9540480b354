"""Continuing a study in an edited space (``run --continue-from``): which trials of a source study the new
space can express, turned into the new study's first trials, already evaluated.

The inherited trials are evidence the new study's algorithm starts from, as a resumed study's own trials
are (``optimizer.Plan.past``): each is copied into the new study as a trial with its own number and run
(tagged with the run that trained it), never trained again, and none counts against the new study's
``max_evals``. The study's best is the best over its own trials and the inherited ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from pipeline import spaces
from pipeline.errors import InputError
from pipeline.metrics import Metric
from pipeline.search.resume import from_logged
from pipeline.search.trial import TrialOutcome, TrialRecord
from pipeline.spaces import SearchSpace
from pipeline.tracking import Client, names
from pipeline.tracking.queries import LoggedStudy, LoggedTrial, find_run, is_study, studies_in


@dataclass(frozen=True)
class DroppedTrial:
    """A source study's trial the continued study left out, and why."""

    number: int
    """Its number in the source study."""
    run_id: str
    reason: str


@dataclass(frozen=True)
class Inheritance:
    """What a continued study takes from its source: the trials it inherits (numbered from 0, as they enter
    its history) and those it leaves out."""

    inherited: list[tuple[TrialOutcome, TrialRecord]]
    dropped: list[DroppedTrial]

    def history_entries(self) -> list[dict[str, Any]]:
        """The inherited trials as the study's history holds a trial (``History.start(trials=...)``)."""
        return [{"number": o.number, "outcome": asdict(o), "record": asdict(r)} for o, r in self.inherited]


def inherit(trials: Sequence[LoggedTrial], space: SearchSpace, metric: Metric) -> Inheritance:
    """The source study's ``trials`` (in trial order) sorted into those ``space`` inherits and those it drops.

    A trial is inherited when it finished with a value and ``spaces.express`` finds its parameters in
    ``space``; it keeps its value, best iteration, curves and metrics, and its run is tagged with the run
    that trained it. A failed trial is dropped: it has no value to learn from, and a failure in the source's
    space says nothing certain of this one. A pruned trial is inherited with the value it had when it was
    pruned, as its own study reported it to the algorithm (and as a resumed study does): the best over the
    rounds it ran, which more rounds could only have improved, so the algorithm sees it no better than it
    was judged; it never becomes the best (``best_of`` skips pruned trials) and its curve stays out of the
    pruning rule's reference (only completed trials' curves enter it).
    """
    inherited: list[tuple[TrialOutcome, TrialRecord]] = []
    dropped: list[DroppedTrial] = []
    for trial in trials:
        point, reason = spaces.express(space, trial.params)
        outcome, record = from_logged(trial, space, metric)
        if not outcome.ok:
            reason = f"it failed in the source study ({outcome.error})"
        elif not math.isfinite(outcome.value):
            reason = f"it has no {metric.name} value"
        if point is None or reason:
            dropped.append(DroppedTrial(trial.number, trial.run_id, reason))
            continue
        number = len(inherited)
        source = trial.tags.get(names.INHERITED_FROM) or trial.run_id
        outcome = replace(outcome, number=number, params=point, run_id="", warm_start=False, inherited_from=source)
        record.number, record.params = number, point
        record.tags = {k: v for k, v in record.tags.items() if k != names.WARM_START} | {names.INHERITED_FROM: source}
        inherited.append((outcome, record))
    return Inheritance(inherited, dropped)


def find_source(client: Client, request: str, experiment: str, study: str, identity: dict[str, Any]) -> LoggedStudy:
    """The study ``request`` names: a study's parent run id (in any experiment), else the latest study of
    that name in ``experiment``. Reading it writes nothing; raises InputError when there is none.

    The latest study of that name can be this very study, continued before (the same command run again, a
    study continuing one of its own name): when it is named ``study``, has this ``identity`` but for its
    source and was itself continued, its own source is the one returned, so that a rerun finds the
    study it started (and returns it unchanged, or resumes it) rather than continuing it.
    """
    found = find_run(client, request)
    if found is not None and is_study(found):
        return found
    named = studies_in(client, experiment, request)
    if not named:
        raise InputError(
            "command line",
            "--continue-from",
            f"no study {request!r}: neither a study of experiment {experiment!r} nor a study's parent run id",
            "name a study of this experiment or give a study's parent run id (python -m pipeline runs lists them)",
        )
    latest = named[0]
    saved = json.loads(latest.tags.get(names.IDENTITY, "{}"))
    earlier = saved.get(names.CONTINUED_FROM)
    if latest.name == study and earlier and _without_source(saved) == _without_source(identity):
        previous = find_run(client, earlier)
        if previous is not None:
            return previous
    return latest


def check_source(source: LoggedStudy, request: str, data_fingerprint: str, metric: str) -> None:
    """Trials inherit only from a study of the same data scored by the same metric: their values would
    mean something else. Raises InputError naming the flag, what differs and the fix."""
    what = f"study {request!r} (parent run {source.run_id})"
    then = source.tags.get(names.DATA_FINGERPRINT)
    if then != data_fingerprint:
        raise InputError(
            "command line",
            "--continue-from",
            f"{what} was run on other data (fingerprint {then}, now {data_fingerprint})",
            "continue from a study of the same dataset and split, or run without --continue-from",
        )
    scored = json.loads(source.tags.get(names.IDENTITY, "{}")).get("metric", source.params.get("metric"))
    if scored != metric:
        raise InputError(
            "command line",
            "--continue-from",
            f"{what} was scored by {scored}, this study by {metric}",
            "continue from a study with the same metric, or run without --continue-from",
        )


def _without_source(identity: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in identity.items() if k not in (names.CONTINUED_FROM, "parent_run_id")}
