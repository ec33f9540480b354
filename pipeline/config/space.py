"""The search-space file: each hyperparameter a fixed value or a distribution (hyperopt's, in natural units),
for one model family or several."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    StrictFloat,
    StrictInt,
    model_validator,
)

from pipeline.config.base import Scalar, _Strict

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


GRID_TOLERANCE = 1e-6
"""How far from a multiple of ``q`` a number may be and still count as on the grid (a float step's rounding)."""


def grid(low: float, high: float, q: float) -> tuple[int, int]:
    """The steps ``k`` of the first and last multiples ``k * q`` within ``low..high``: the values a quantized
    distribution with these bounds draws (an empty grid when the first is past the last)."""
    return math.ceil(low / q - GRID_TOLERANCE), math.floor(high / q + GRID_TOLERANCE)


class Grid(_Bounded, _Quantized):
    """A bounded quantized distribution: the multiples of ``q`` from ``low`` to ``high``, each as likely a priori
    as its interval of the continuous distribution (``quniform``: all alike; ``high`` and ``low`` included)."""

    def steps(self) -> tuple[int, int]:
        """The steps ``k`` of the first and last values ``k * q`` drawn."""
        return grid(self.low, self.high, self.q)

    @model_validator(mode="after")
    def _a_multiple_within(self):
        first, last = self.steps()
        if first > last:
            raise ValueError(
                f"no multiple of q ({self.q}) lies between low ({self.low}) and high ({self.high}); "
                "widen the bounds or use a smaller q"
            )
        return self

    @property
    def drawn_bounds(self) -> tuple[float, float]:
        """The continuous range whose draws, rounded to a multiple of ``q``, give each value of the grid its
        whole interval: half a step beyond the first and last multiples."""
        first, last = self.steps()
        return (first - 0.5) * self.q, (last + 0.5) * self.q


class QUniform(Grid):
    distribution: Literal["quniform"]


class LogUniform(_Positive):
    distribution: Literal["loguniform"]


class QLogUniform(_Positive, Grid):
    distribution: Literal["qloguniform"]

    def steps(self) -> tuple[int, int]:
        """As for ``quniform``, from ``q`` on: a log distribution draws no zero."""
        first, last = grid(self.low, self.high, self.q)
        return max(first, 1), last


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
    """The option's value, as it would be written among plain options."""
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
    """A mapping of the family's hyperparameters: each a fixed value or a mapping with a ``distribution``."""


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
