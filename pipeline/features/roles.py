"""Which columns of the data are features, decided on the training rows alone, each with its role and why.

Declared features are taken as declared; the others are inferred from the training split, with a warning for
every column left out or kept for a reason the user did not write (a row index, a constant, a likely leak,
numbers written with a thousands mark, values read as missing). The result is recorded with every study.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from pipeline.config.dataset import DatasetConfig, ThousandsMark
from pipeline.errors import InputError
from pipeline.features.encoding import MAX_CATEGORIES, categorical_text, cross_name, finite_or_missing

log = logging.getLogger(__name__)

CATEGORICAL, NUMERIC, CROSSED, DROPPED, TARGET = "categorical", "numeric", "crossed", "dropped", "target"
INDEX_NAMES = re.compile(r"(unnamed: ?\d+|index|level_0|id|row_?id|row_?names?|row_?num(ber)?|row)", re.IGNORECASE)
"""Names that mark a column of row numbers or row labels: pandas' and R's written indexes, ``id``, ..."""
MIN_INDEX_ROWS = 20
"""Rows a unique, monotonic integer column needs before it counts as a row index rather than a coincidence."""
LEAK_SCORE = 0.995
"""A numeric column whose one-feature tree scores at least this on held-out training rows (R² of the
target's ranks for regression, balanced accuracy for classification) is reported as a likely leak.

On the flights, ``distance`` explains air time with a rank R² of 0.977 and is a fair feature; the target
itself, in other units or its absolute value, scores 0.9999."""
LEAK_SAMPLE_ROWS = 4000
"""Training rows the leak test reads at most (half to fit, half to score): it is a screen, not a study."""


@dataclass(frozen=True)
class ColumnRole:
    """What one column of the data is to the model, and why."""

    column: str
    role: str
    """categorical, numeric, crossed (derived from categorical columns), dropped, or target."""
    reason: str


@dataclass(frozen=True)
class FeatureRoles:
    """Every column of the data (and each crossed feature) with its role: exactly what the model uses.

    In the order the model takes them: categorical then numeric features (as declared, or in the data's
    order when inferred), crossed ones, then the dropped columns and the target."""

    columns: tuple[ColumnRole, ...]
    crossed_groups: tuple[tuple[str, ...], ...] = ()

    def named(self, role: str) -> list[str]:
        return [c.column for c in self.columns if c.role == role]

    @property
    def categorical(self) -> list[str]:
        return self.named(CATEGORICAL)

    @property
    def numeric(self) -> list[str]:
        return self.named(NUMERIC)

    @property
    def crossed(self) -> list[list[str]]:
        return [list(group) for group in self.crossed_groups]

    @property
    def raw_features(self) -> list[str]:
        """The raw columns the model reads: categorical, then numeric."""
        return [*self.categorical, *self.numeric]

    def table(self) -> pd.DataFrame:
        """One row per column (``column``, ``role``, ``reason``): the record to log with a study."""
        return pd.DataFrame([asdict(c) for c in self.columns], columns=["column", "role", "reason"])


def check_declared(config: DatasetConfig, columns: list[str], file: Path) -> None:
    """The columns the dataset file names exist in the data, and crossed groups are made of categorical
    features; raises InputError naming the key. (A column in two roles is refused earlier, by the dataset
    file's own validation: ``config.DatasetConfig``.)"""
    declared = {
        "target": [config.target],
        "features.categorical": config.features.categorical,
        "features.numeric": config.features.numeric or [],
        "drop": config.drop,
        "features.crossed": [c for group in config.features.crossed for c in group],
    }
    for key, names in declared.items():
        for name in names:
            if name not in columns:
                close = difflib.get_close_matches(name, columns, n=3)
                fix = f"did you mean {', '.join(map(repr, close))}?" if close else f"columns are: {', '.join(columns)}"
                raise InputError(file, key, f"column {name!r} is not in the data", fix)
    for group in config.features.crossed:
        for name in group:
            if name not in config.features.categorical:
                raise InputError(
                    file,
                    "features.crossed",
                    f"{name!r} is not a categorical feature",
                    "list it under features.categorical too",
                )


def feature_roles(config: DatasetConfig, train: pd.DataFrame, file: Path, classification: bool) -> FeatureRoles:
    """Each column's role, decided from the dataset file and the training rows alone (never validation or
    test rows), with a warning for every column left out or kept for a reason the user did not write.

    Declared features are taken as declared. When ``features.numeric`` is left out, every other numeric
    column is a feature unless it is a row index (named like one, or unique, whole and monotonic), holds no
    value or holds one value. A numeric feature that predicts the target almost alone is kept, with a
    warning that it likely leaks; a categorical feature (or cross) with more than ``MAX_CATEGORIES``
    categories keeps its most frequent ones, with a warning. Raises InputError for a declared feature the
    model cannot use (a number column of text, a category column with one value) or when none is left.
    """
    crossed = [list(group) for group in config.features.crossed]
    columns = {name: train[name] for name in train.columns}
    columns |= categorical_text(train, list(config.features.categorical), crossed)
    roles = []
    for name in train.columns:
        role, reason, warn = _role(config, name, train[name], file)
        roles.append((ColumnRole(name, role, reason), warn))
    roles += [
        (ColumnRole(cross_name(group), CROSSED, f"features.crossed: {' x '.join(group)}"), False) for group in crossed
    ]
    screened = [_screen(role, warn, columns[role.column], train[config.target], classification) for role, warn in roles]
    for column, warn in screened:
        if warn:
            log.warning("column %r (%s): %s", column.column, column.role, column.reason)
    declared = [*config.features.categorical, *(config.features.numeric or [])]
    rank = {CATEGORICAL: 0, NUMERIC: 1, CROSSED: 2, DROPPED: 3, TARGET: 4}
    screened.sort(
        key=lambda pair: (rank[pair[0].role], declared.index(pair[0].column) if pair[0].column in declared else 0)
    )
    result = FeatureRoles(tuple(role for role, _ in screened), tuple(map(tuple, crossed)))
    if not result.raw_features:
        raise InputError(file, "features", "no feature columns", "list features.categorical or features.numeric")
    return result


def _screen(
    role: ColumnRole, warn: bool, values: pd.Series, target: pd.Series, classification: bool
) -> tuple[ColumnRole, bool]:
    """A feature's role with what the user should know: values read as missing, a likely leak, categories
    beyond the limit."""
    notes = []
    if role.role == NUMERIC:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        if unusable := int(np.isnan(finite_or_missing(numbers)).sum() - np.isnan(numbers).sum()):
            notes.append(f"{unusable} infinite or too large values in the training split: read as missing")
        if (score := leak_score(values, target, classification)) >= LEAK_SCORE:
            notes.append(
                f"predicts the target almost alone (held-out score {score:.4f}): check it is known when predicting"
            )
    if role.role in (CATEGORICAL, CROSSED) and (count := values.nunique()) > MAX_CATEGORIES:
        notes.append(f"{count} categories: the {MAX_CATEGORIES} most frequent are kept, the others share one code")
    if not notes:
        return role, warn
    return ColumnRole(role.column, role.role, "; ".join([role.reason, *notes])), True


def _role(config: DatasetConfig, name: str, values: pd.Series, file: Path) -> tuple[str, str, bool]:
    """The role of one raw column, why, and whether the reason deserves a warning (a column left out that
    the user may have counted on)."""
    numbers = pd.api.types.is_numeric_dtype(values)
    if name == config.target:
        return TARGET, "target", False
    if name in config.drop:
        return DROPPED, "listed under drop", False
    if name in config.features.categorical:
        if values.nunique() < 2:
            raise InputError(
                file,
                "features.categorical",
                f"column {name!r} has {values.nunique()} distinct value(s) in the training split",
                "remove it: a constant column cannot inform the model",
            )
        return CATEGORICAL, "features.categorical", False
    if config.features.numeric is not None:
        if name not in config.features.numeric:
            return DROPPED, "not listed under features", False
        if not numbers:
            mark = thousands_mark(values, config.read.decimal)
            raise InputError(
                file,
                "features.numeric",
                f"column {name!r} is {values.dtype}, not numeric"
                + (f": {_read_with_thousands(values, mark)}" if mark else ""),
                f"set read.thousands: {_as_yaml(mark)}" if mark else "list it under features.categorical",
            )
        return NUMERIC, "features.numeric", False
    split = config.split
    for key in ("column", "group"):
        if name == getattr(split, key, None):
            return DROPPED, f"the split's {key} (split.{key})", False
    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(values):
        return (
            DROPPED,
            "a date or time column: derive numbers from it (hour, weekday, days since an event) to use it",
            False,
        )
    if not numbers and (mark := thousands_mark(values, config.read.decimal)):
        return DROPPED, f"{_read_with_thousands(values, mark)}: set read.thousands: {_as_yaml(mark)}", True
    if not numbers:
        return DROPPED, f"{values.dtype} column: list it under features.categorical to use it", False
    present = values.dropna()
    if present.empty:
        return DROPPED, "no value in the training split", True
    if present.nunique() == 1:
        return DROPPED, f"one value ({present.iloc[0]}) in the training split", True
    if INDEX_NAMES.fullmatch(str(name)):
        return DROPPED, "named like a row index: list it under features.numeric to use it", True
    if looks_like_row_index(values):
        return DROPPED, "a row index (unique, whole, monotonic): list it under features.numeric to use it", True
    return NUMERIC, "numeric column (features.numeric left out)", False


THOUSANDS_MARKS: tuple[str, ...] = get_args(ThousandsMark)
"""The marks ``read.thousands`` takes, in the order a column is tried with them."""


def thousands_mark(values: pd.Series, decimal: str) -> str | None:
    """The thousands mark that makes a text column numbers (``1.234,56`` with ``decimal`` ``,``), or None:
    in a sample, the values holding the mark group digits by three (``1,5`` is a decimal comma, not this),
    and every value reads as a number once the mark is dropped."""
    sample = values.dropna().astype(str).str.strip().head(1000)
    if sample.empty:
        return None
    for mark in THOUSANDS_MARKS:
        holding = sample[sample.str.contains(mark, regex=False)]
        if mark == decimal or holding.empty:
            continue
        grouped = rf"[+-]?\d{{1,3}}(?:{re.escape(mark)}\d{{3}})+(?:{re.escape(decimal)}\d*)?"
        plain = sample.str.replace(mark, "", regex=False).str.replace(decimal, ".", regex=False)
        if holding.str.fullmatch(grouped).all() and pd.to_numeric(plain, errors="coerce").notna().all():
            return mark
    return None


def _as_yaml(mark: str) -> str:
    """A mark as the dataset file takes it: quoted, with an escape YAML reads for a no-break space."""
    return repr(mark) if mark.isprintable() else json.dumps(mark)


def _read_with_thousands(values: pd.Series, mark: str) -> str:
    """What a column that ``thousands_mark`` found holds, said with an example value."""
    example = next(v for v in values.dropna().astype(str) if mark in v)
    return f"text that reads as numbers with {mark!r} between thousands (such as {example!r})"


def looks_like_row_index(values: pd.Series) -> bool:
    """Whole numbers, one per row, in increasing or decreasing order: a row number, not a measurement."""
    if len(values) < MIN_INDEX_ROWS or pd.api.types.is_bool_dtype(values) or values.isna().any():
        return False
    numbers = values.to_numpy(dtype=np.float64)
    whole = bool(np.all(numbers == np.round(numbers)))
    return whole and values.is_unique and (values.is_monotonic_increasing or values.is_monotonic_decreasing)


def leak_score(feature: pd.Series, target: pd.Series, classification: bool, seed: int = 0) -> float:
    """How well ``feature`` alone predicts ``target`` on held-out training rows: a one-feature decision tree
    fitted on half a sample and scored on the other half (R² of the target's ranks for regression, so
    heavy tails do not hide an identity; balanced accuracy for classification, so imbalance does not pass
    for skill). NaN when fewer than 100 rows hold both, or one half holds one class or value."""
    from sklearn.metrics import balanced_accuracy_score, r2_score
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    numbers = finite_or_missing(pd.to_numeric(feature, errors="coerce").to_numpy(dtype=np.float64))
    both = pd.DataFrame({"x": numbers, "y": target.to_numpy()}).dropna()
    if len(both) < 100:
        return float("nan")
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(both))[:LEAK_SAMPLE_ROWS]
    x = both["x"].to_numpy(dtype=np.float64)[rows, None]
    if classification:
        y, model, score = pd.factorize(both["y"])[0][rows], DecisionTreeClassifier, balanced_accuracy_score
    else:
        y, model, score = both["y"].rank(pct=True).to_numpy()[rows], DecisionTreeRegressor, r2_score
    half = len(rows) // 2
    if len(np.unique(y[:half])) < 2 or len(np.unique(y[half:])) < 2:
        return float("nan")
    leaf = int(np.clip(half // 100, 1, 20))  # coarse leaves average noise away, but small samples need fine ones
    tree = model(min_samples_leaf=leaf, random_state=seed).fit(x[:half], y[:half])
    return float(score(y[half:], tree.predict(x[half:])))
