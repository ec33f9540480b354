"""The study file: what to search, for how long, how trials are pruned and stopped, and what is registered."""

from __future__ import annotations

import posixpath
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PositiveInt,
)

from pipeline.config.base import _Strict

# --- study ---------------------------------------------------------------------------------------------


class TPEOptions(_Strict):
    """TPE's own knobs: random start-up trials, the share of trials that count as good, and how many
    candidates each proposal scores (hyperopt's defaults but the first)."""

    n_startup_jobs: Annotated[int, Field(ge=1)] | None = None
    """Random trials before TPE models the results; by default sized to the budget (``startup_trials``).
    hyperopt's own default, 20, is two thirds of a 30-trial study spent at random."""
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.25
    n_EI_candidates: Annotated[int, Field(ge=1)] = 24
    multivariate: bool = True
    """Model the parameters jointly where the space allows it (``optimizer.TPE``); false: hyperopt's
    univariate TPE, as before 2026-11-30."""

    def for_budget(self, max_evals: int) -> dict[str, Any]:
        """hyperopt's keywords for a study of ``max_evals`` trials."""
        startup = self.n_startup_jobs if self.n_startup_jobs is not None else startup_trials(max_evals)
        return self.model_dump() | {"n_startup_jobs": startup}


def startup_trials(max_evals: int) -> int:
    """Random start-up trials for a budget: a third of it, at least 5 (TPE's first model needs a few good and
    bad trials to tell apart) and at most 20 (hyperopt's default: past it, more random trials buy nothing)."""
    return min(20, max(5, max_evals // 3))


class StopConfig(_Strict):
    """When a study ends before ``max_evals``; checked after each trial."""

    timeout_s: Annotated[float, Field(gt=0)] | None = None
    """Wall-clock budget of one invocation, in seconds; the trial in progress is finished first."""
    metric_threshold: float | None = None
    """Stop once the best validation metric is at least this good."""
    patience: PositiveInt | None = None
    """Stop when the best has not improved for this many trials."""
    max_failed_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Fail the study (nothing registered) once more than this share of its trials failed (after 5)."""


class PruningConfig(_Strict):
    """Stop an xgboost trial that will not be among the good ones: its best so far, less what it may still
    gain, worse than a quantile of the completed trials at equal learning progress (rounds times learning
    rate; see ``search.pruning``). A pruned trial is recorded as such and never becomes the best."""

    enabled: bool = True
    startup_trials: PositiveInt = 5
    """Trials that must complete before any is stopped."""
    warmup_rounds: Annotated[int, Field(ge=0)] = 0
    """Rounds every trial runs before it may be stopped."""
    quantile: Annotated[float, Field(gt=0, lt=1)] = 0.33
    """A trial is pruned once its bound is worse than this share of the completed trials (0.5: the median)."""
    fall_margin: Annotated[float, Field(ge=0)] = 2.0
    """What a trial may still gain, in multiples of its gain over its last unit of learning progress (its
    last 1 / learning_rate rounds); 0 judges its best so far alone."""
    stall_rounds: PositiveInt | None = 10
    """A trial behind the study's best that has not improved for this many rounds stops, as completed with
    its best round's value (null: only early stopping ends it)."""


class GateConfig(_Strict):
    """How the retrain's champion/challenger gate tells a real gain from the new test month's noise."""

    method: Literal["paired_bootstrap", "point"] = "paired_bootstrap"
    """paired_bootstrap: promote when the lower bound of the gain's bootstrap interval (the same resampled
    rows for both models) clears the margin; point: when the gain on the test month itself does."""
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    """Two-sided confidence of the interval (paired_bootstrap)."""
    resamples: Annotated[int, Field(ge=100, le=100_000)] = 2000
    """Bootstrap resamples of the test month's rows (paired_bootstrap)."""


class TrackingConfig(_Strict):
    """How a study rides out a tracking store that goes away for a while (a server restarted or upgraded,
    a network cut): the trials go on, and what could not be written is kept and written once it is back."""

    grace_s: Annotated[float, Field(ge=0)] = 600.0
    """Seconds a failed write (a trial's run, a tag or metric of the study's run) is retried, with backoff
    (attempts at most 10 s apart), counted from its first failure; then the study stops with exit 1 and
    the same command resumes it. 0 gives up at the first failure (after MLflow's own HTTP retries)."""


class RetrainConfig(_Strict):
    """Scheduled retraining (``python -m pipeline retrain``) over monthly partitions named YYYY-MM."""

    train_months: PositiveInt = 1
    """Months of training data before the validation month."""
    margin: Annotated[float, Field(ge=0)] = 0.0
    """How much better (in the metric's units) the challenger must score than the champion on the new
    test month to be promoted."""
    max_evals: PositiveInt = 10
    """Trials per retrain: fewer than a fresh study, since it starts from the champion's best trials."""
    warm_start_trials: Annotated[int, Field(ge=0)] = 5
    """How many of the champion study's best trials are evaluated first."""
    gate: GateConfig = GateConfig()
    """When the challenger replaces the champion: ``margin`` is what the gain must clear."""


MAX_NAME_LENGTH = 200
"""The longest study, experiment or model name. Each names a folder of the study's state (a name that had
to be cleaned for the file system gets a 9-character hash suffix) and file systems cap a file name at 255
bytes; MLflow itself takes experiment names up to 500 characters and keeps registered names in a
256-character column."""

SEED_MAX = 2**32 - 1
"""The largest seed: scikit-learn's ``random_state`` takes 0..2**32-1, xgboost's up to 2**63-1, and
numpy's generators (hyperopt's) refuse a negative one; the study's seed goes to all of them."""


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a study, an experiment or a model, or None."""
    if not name.strip():
        return "is empty; give it a name"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; at most {MAX_NAME_LENGTH} (it names a folder of the study's state)"
    return None


def model_name_problem(name: str) -> str | None:
    """Why the model registry, or a ``models:/NAME@ALIAS`` URI, cannot take ``name``, or None.

    MLflow 3.17's registry refuses a blank name, '/' and ':', and a name that reads as another path
    (``.``, ``..x``). The pipeline also loads the model back by ``models:/NAME/VERSION`` and users by
    ``models:/NAME@ALIAS``: '@' and '?' split those URIs, and URL parsing drops tabs and newlines.
    """
    if problem := name_problem(name):
        return problem
    for char, reason in (
        ("/", "MLflow's registry"),
        (":", "MLflow's registry"),
        ("@", "a models:/ URI"),
        ("?", "a models:/ URI"),
    ):
        if char in name:
            return f"cannot contain {char!r} ({reason} refuses it); use letters, digits, spaces, '-', '_' or '.'"
    normalized = posixpath.normpath(name)
    if normalized != name or normalized == "." or normalized.startswith(".."):
        return f"would resolve to another name as a path ({normalized!r}), which MLflow's registry refuses"
    if any(unicodedata.category(char) == "Cc" for char in name):
        return "contains a control character (a tab or a newline); write the name on one line"
    return None


def _raise_if(problem: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        if message := problem(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _seed_in_range(seed: int) -> int:
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be 0..{SEED_MAX}, the range every estimator and sampler accepts")
    return seed


Name = Annotated[str, _raise_if(name_problem)]
ModelName = Annotated[str, _raise_if(model_name_problem)]
Seed = Annotated[int, AfterValidator(_seed_in_range)]
"""A seed every consumer takes (see ``SEED_MAX``)."""


class StudyConfig(_Strict):
    name: Name
    """The study's name: its history, its lock and its parent run go by it."""
    experiment: Name
    """The MLflow experiment that holds the study's runs; created when missing."""
    dataset: Path
    """The dataset file, relative to this file (``../data/flights.yaml``)."""
    space: Path
    """The search-space file, relative to this file (``../search_spaces/xgboost.yaml``)."""
    model_name: ModelName
    """The name the final model is registered under in MLflow's model registry."""
    metric: Literal["rmse", "mae", "r2", "log_loss", "auc", "brier", "accuracy"] = "rmse"
    """rmse, mae, r2 (regression); log_loss, auc, brier (binary); log_loss, accuracy (multiclass)."""
    max_evals: PositiveInt = 30
    seed: Seed = 42
    algorithm: Literal["tpe", "rand", "anneal", "atpe"] = "tpe"
    """tpe (default), rand, anneal, or atpe (adaptive TPE; needs lightgbm installed)."""
    tpe: TPEOptions = TPEOptions()
    refit_on: Literal["train", "train_validation"] = "train_validation"
    """Data the final model is retrained on; the number of boosting rounds comes from the best trial."""
    stop: StopConfig = StopConfig()
    pruning: PruningConfig = PruningConfig()
    device: Literal["cpu", "cuda"] = "cpu"
    """Where xgboost trials and the final refit train; other families always use the CPU."""
    retrain: RetrainConfig = RetrainConfig()
    tracking: TrackingConfig = TrackingConfig()
    train_curves: bool = False
    """Also score the training split at every boosting round of every trial: a train curve next to the
    validation curve on each child run and in the report's learning curves, to see overfitting. Off by
    default: it adds a metric pass over the training rows to every round of every trial."""
    report: bool = True
    """Draw the study's plots and report.html on its parent run at the end (a few seconds; `python -m pipeline
    report` draws them later from MLflow either way)."""


REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout the package runs from (its shipped studies, spaces and data files live there)."""
DEFAULT_STUDY = Path("studies/flights.yaml")


def default_study_file() -> Path:
    """``studies/flights.yaml`` of the working directory, else the one shipped next to the package."""
    return DEFAULT_STUDY if DEFAULT_STUDY.is_file() else REPO_ROOT / DEFAULT_STUDY
