"""What a study found and registered, as the CLI prints it and a notebook reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.search.continuation import DroppedTrial
from pipeline.search.trial import TrialOutcome


@dataclass(frozen=True)
class StudyResult:
    """What a finished study found and registered. ``to_dict()`` is the CLI's ``--json`` summary."""

    study_name: str
    experiment_id: str
    parent_run_id: str
    metric: str
    best_params: dict[str, Any]
    """The best trial's parameters, typed as the trial received them (``model`` names the family)."""
    best_value: float
    """The best trial's validation metric."""
    best_iteration: int | None
    test_metric: float
    """The registered model's metric on the test split, scored once."""
    model_name: str
    model_version: str
    alias: str | None
    """The alias the version holds after the study: ``champion``, ``challenger``, or None for a version
    that has since lost its role (a study returned as it was, whose challenger a later one replaced)."""
    model_id: str
    stop_reason: str
    resumed_trials: int
    """Trials of its own that were already finished when this invocation started."""
    tracking_uri: str
    trials: tuple[TrialOutcome, ...] = field(repr=False)
    origin: str = "new"
    """``new``; ``continued`` (resumed or extended); ``unchanged``: the study was complete with these inputs
    and is returned as it was, nothing run or registered."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: ``search_s``, ``search_train_s``, ``finalize_s``, ``final_train_s``, ``wall_s``."""
    continued_from: str | None = None
    """The parent run id of the study this one continued from (``--continue-from``), or None."""
    dropped: tuple[DroppedTrial, ...] = ()
    """The source study's trials this one left out, each with why (failed, or not expressible in its space)."""

    @property
    def inherited_trials(self) -> int:
        """Trials copied from the source study (among ``trials``, and on top of ``max_evals``)."""
        return sum(1 for t in self.trials if t.inherited_from)

    @property
    def model_uri(self) -> str:
        if self.alias is None:
            return f"models:/{self.model_name}/{self.model_version}"
        return f"models:/{self.model_name}@{self.alias}"

    @property
    def finished(self) -> int:
        """Trials that completed (pruned ones excluded)."""
        return sum(t.ok and not t.pruned for t in self.trials)

    @property
    def pruned(self) -> int:
        return sum(t.pruned for t in self.trials)

    @property
    def failed(self) -> int:
        return sum(not t.ok for t in self.trials)

    def trials_dataframe(self) -> pd.DataFrame:
        """One row per trial: ``number``, ``state`` (COMPLETE, PRUNED, FAIL), ``value``, ``run_id``,
        ``train_seconds``, ``best_iteration``, ``error``, ``inherited_from`` (the run that trained an
        inherited trial, else empty) and one ``params_<name>`` column per parameter."""
        rows = [
            {
                "number": t.number,
                "state": "FAIL" if not t.ok else "PRUNED" if t.pruned else "COMPLETE",
                "value": t.value,
                "run_id": t.run_id,
                "train_seconds": t.train_seconds,
                "best_iteration": t.best_iteration,
                "error": t.error,
                "inherited_from": t.inherited_from,
            }
            | {f"params_{k}": v for k, v in t.params.items()}
            for t in self.trials
        ]
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "study_name": self.study_name,
            "trials": self.finished + self.pruned,
            "trials_completed": self.finished,
            "trials_pruned": self.pruned,
            "trials_failed": self.failed,
            "resumed_trials": self.resumed_trials,
            "stop_reason": self.stop_reason,
            "best_params": self.best_params,
            "best_val_metric": self.best_value,
            "best_iteration": self.best_iteration,
            "metric": self.metric,
            "test_metric": self.test_metric,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_uri": self.model_uri,
            "alias": self.alias,
            "model_id": self.model_id,
            "tracking_uri": self.tracking_uri,
            "origin": self.origin,
            "continued_from": self.continued_from,
            "inherited_trials": self.inherited_trials,
            "dropped_trials": [{"number": d.number, "run_id": d.run_id, "reason": d.reason} for d in self.dropped],
            **self.timings,
        }
