"""Model families behind one interface: what a search-space file may set, fit with the validation split,
retrain for the final model, predict, save and load.

A study over several families (``models:`` in a space file) trains each trial through its family's
adapter; the search, the final stage, the logged pyfunc and the registration do not know which it was.
"""

from __future__ import annotations

import functools
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import FAMILIES
from pipeline.features import Preprocessor
from pipeline.metrics import METRICS, REGRESSION, Task
from pipeline.search.pruning import RoundCheck


@dataclass(frozen=True)
class Fitted:
    model: Any
    best_iteration: int | None
    """For boosting with early stopping: the last round kept (0-based); None for other estimators."""
    curve: list[float]
    """The early-stopping metric on the validation split after each round (empty when there is none); a
    family that scores every few rounds carries each score to the next (see ``xgboost.scoring_interval``)."""
    curve_metric: str | None
    seconds: float
    """Time spent inside the estimator's fit."""
    train_curve: list[float] = field(default_factory=list)
    """The same metric on the training split, for learning-curve plots (empty when not computed)."""
    pruned: bool = False
    """Stopped by the study's pruning rule before early stopping or the round budget ended it."""
    stalled: bool = False
    """Stopped as completed by the pruning rule: it trailed the study's best and had stopped improving."""


@dataclass
class TrainingData:
    """The training and validation splits of one study, encoded once per encoding the families need and
    shared by every trial; ``cache`` holds structures a family builds once (xgboost's matrices)."""

    train: pd.DataFrame
    y_train: np.ndarray
    validation: pd.DataFrame
    y_validation: np.ndarray
    preprocessors: dict[str, Preprocessor]
    cache: dict[Any, Any] = field(default_factory=dict)

    def encoded(self, encoding: str) -> tuple[np.ndarray, np.ndarray]:
        key = ("encoded", encoding)
        if key not in self.cache:
            preprocessor = self.preprocessors[encoding]
            self.cache[key] = (preprocessor.transform(self.train), preprocessor.transform(self.validation))
        return self.cache[key]

    @property
    def folds(self) -> tuple[TrainingData, ...]:
        """What a trial fits, one split after the other: this split alone."""
        return (self,)


@dataclass
class CrossValidation:
    """The folds of a k-fold split, each a ``TrainingData`` whose validation rows are the fold and whose
    training rows are the other folds, with its own preprocessors fitted on its training rows only (a
    category seen only in the fold is unseen, as it would be in production).

    Each fold keeps what its families build (xgboost's matrices) in an entry of ``cache``: replacing
    ``cache`` with an empty dict, as Spark does before it ships the data, empties every fold's.
    """

    folds: tuple[TrainingData, ...]
    cache: dict[Any, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folds = tuple(replace(f, cache=self.cache.setdefault(k, {})) for k, f in enumerate(self.folds))


class Family(ABC):
    """One model family; subclasses are registered in ``FAMILIES`` under their ``name``."""

    name: str
    tasks: tuple[str, ...]
    encoding: str
    """The preprocessor's encoding it needs: ``codes`` (categories as codes, NaN kept) or ``onehot``."""
    binary_only: frozenset[str] = frozenset()
    """Parameters that act on a binary task alone (the positive class's weight): another task ignores them."""

    def placed(self, params: dict[str, Any], device: str) -> dict[str, Any]:
        """The trial's parameters set to train on ``device``; families without a GPU mode train on the CPU."""
        return params

    def learning_rate(self, params: dict[str, Any]) -> float:
        """How much of each round's step a trial with ``params`` takes (its shrinkage): the pruning rule
        compares trials at equal rounds times rate. 1 for a family without rounds."""
        return 1.0

    @abstractmethod
    def accepted_parameters(self) -> frozenset[str]:
        """Names a search-space file may set for this family; anything else is a typo."""

    @abstractmethod
    def fit(
        self,
        params: dict[str, Any],
        data: TrainingData,
        task: Task,
        metric_name: str,
        seed: int,
        should_prune: RoundCheck | None = None,
        train_curve: bool = False,
    ) -> Fitted:
        """Fit on the training split, using the validation split for early stopping where the family can;
        a family that trains in rounds also stops when ``should_prune`` says so, and with ``train_curve``
        scores the training split at every round too (``Fitted.train_curve``; a cost the search skips)."""

    @abstractmethod
    def refit(
        self,
        params: dict[str, Any],
        rounds: int | None,
        x: np.ndarray,
        y: np.ndarray,
        task: Task,
        seed: int,
        preprocessor: Preprocessor | None = None,
    ) -> Any:
        """The final model on ``x`` with the trial's parameters, for ``rounds`` boosting rounds where the
        family has rounds; ``preprocessor`` (fitted on ``x``'s rows) tells which columns are category codes."""

    def trained_model(self, fitted: Fitted) -> Any:
        """The model a trial's fit produced, as it should predict (truncated to its best round)."""
        return fitted.model

    def validation_score(self, fitted: Fitted, data: TrainingData, task: Task, metric_name: str) -> float:
        _, x_validation = data.encoded(self.encoding)
        predictions = self.predict(self.trained_model(fitted), x_validation, task)
        return METRICS[metric_name].score(data.y_validation, predictions)

    @abstractmethod
    def predict(self, model: Any, x: np.ndarray, task: Task) -> np.ndarray:
        """Values (regression), the positive class's probability (binary), or per-class probabilities."""

    @abstractmethod
    def save(self, model: Any, folder: Path) -> Path: ...

    @abstractmethod
    def load(self, path: Path) -> Any: ...

    def check_fixed(self, name: str, value: Any, context: dict[str, Any] | None = None) -> str | None:
        """Why a fixed value is refused by the estimator, or None: a tiny real fit (one round) with it and
        with the ``context`` it applies in (the conditional options that make it active)."""
        rng = np.random.default_rng(0)
        x = rng.normal(size=(40, 3)).astype(np.float32)
        task = Task(self.tasks[0], (0, 1) if self.tasks[0] != REGRESSION else ())
        y = (x[:, 0] > 0).astype(np.float64) if task.classification else x[:, 0].astype(np.float64)
        try:
            self.refit((context or {}) | {name: value}, 1, x, y, task, seed=0)
        except Exception as error:  # whatever the estimator raises is the user's value being refused
            return f"{value!r} is refused by {self.name}: {str(error).splitlines()[0][:300]}"
        return None


@functools.cache
def threads() -> int:
    """Threads for one fit: ``PIPELINE_THREADS``, else the cores other processes leave idle when the study
    starts (sampled once from /proc/stat over 0.1 s).

    OpenMP threads on a core another process keeps busy wait on each other at every boosting round: with
    one of two cores taken, two xgboost threads ran 2.2x slower than one here, while on an idle machine two
    threads ran 1.4x faster than one (see README, Performance). Forcing OpenMP's passive waiting instead
    made two threads no faster than one, and scikit-learn's histogram boosting 5-10x slower.
    """
    if os.environ.get("PIPELINE_THREADS"):
        return max(1, int(os.environ["PIPELINE_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - round(_busy_cores(cores)))


def _busy_cores(cores: int, window_s: float = 0.1) -> float:
    """How many cores other processes keep busy (this process is idle while it samples)."""
    try:
        first = _cpu_times()
        time.sleep(window_s)
        second = _cpu_times()
    except OSError:  # not Linux: assume the machine is ours
        return 0.0
    total = sum(second) - sum(first)
    idle = (second[3] + second[4]) - (first[3] + first[4])
    return cores * (1 - idle / total) if total > 0 else 0.0


def _cpu_times() -> list[int]:
    with open("/proc/stat") as handle:
        return [int(v) for v in handle.readline().split()[1:8]]


_REGISTRY: dict[str, Family] = {}


def get(name: str) -> Family:
    if not _REGISTRY:
        from pipeline.families import sklearn, xgboost

        for family in (xgboost.XGBoostFamily(), *sklearn.FAMILIES):
            _REGISTRY[family.name] = family
        assert set(_REGISTRY) == set(FAMILIES), "config.FAMILIES and the registry must list the same families"
    return _REGISTRY[name]
