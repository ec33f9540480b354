"""The preprocessor: raw columns in, one float32 matrix out, fitted on the training rows only.

Categorical columns become integer codes of the categories seen in training (xgboost's native categorical
support reads them with feature type ``c``); a category never seen in training, or a missing value, becomes
NaN, which the booster routes down its learned default branch. A column with more than ``MAX_CATEGORIES``
categories keeps its most frequent ones and gives all others (unseen ones included) one shared "other"
code. Numeric columns pass through as float32. The encoded columns carry names xgboost accepts; the raw
columns keep the names the data has, so a served model reads raw rows as they come. The fitted state is
plain JSON, so the preprocessor is logged as a readable artifact and loads without unpickling anything.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import DatasetConfig
from pipeline.errors import InputError

log = logging.getLogger(__name__)

CROSS_SEPARATOR = "_"
MAX_CATEGORIES = 1000
"""Categories kept per categorical feature; the rest share one "other" code.

xgboost 3.2 takes category codes up to 2**24, and its ``max_bin`` does not bound them, but every split on a
categorical feature stores a bitfield over all its categories: 50 trees on a 50,000-category column made a
29 MB model (1.2 MB for 300 categories) and fitted the training rows worse, since most categories hold a
handful of rows. A thousand keeps zip-code-like columns whole and bounds the model's size."""
OTHER = "(other)"
"""How the shared code of the categories beyond ``MAX_CATEGORIES`` shows in one-hot feature names."""
XGBOOST_REFUSED = {"[": "(", "]": ")", "<": "lt"}
"""Characters xgboost refuses in a feature name, and what the encoded column names use instead."""


@dataclass(frozen=True)
class Preprocessor:
    categories: dict[str, list[str]]
    """Per categorical feature (crossed ones included), the categories seen in training, in code order."""
    numeric: list[str]
    crossed: list[list[str]]
    encoding: str = "codes"
    """``codes``: one column of category codes per categorical feature, numeric columns as they are (for
    tree models). ``onehot``: one 0/1 column per category, numeric columns standardized with training
    means and deviations and missing values set to the mean (for linear models)."""
    means: list[float] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    """Categorical features that had more than ``MAX_CATEGORIES`` categories in training: every category not
    kept in ``categories`` (unseen ones included) gets the code ``len(categories[name])``."""

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        categorical: list[str],
        numeric: list[str],
        crossed: list[list[str]] | None = None,
        encoding: str = "codes",
        max_categories: int = MAX_CATEGORIES,
    ) -> Preprocessor:
        crossed = [list(group) for group in crossed or []]
        text = _categorical_text(frame, categorical, crossed)
        categories = {name: most_frequent(values, max_categories) for name, values in text.items()}
        other = [name for name, values in text.items() if values.nunique() > max_categories]
        values = finite_or_missing(
            frame[list(numeric)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        )
        means = np.nan_to_num(np.nanmean(values, axis=0)) if len(frame) else np.zeros(len(numeric))
        scales = np.nan_to_num(np.nanstd(values, axis=0)) if len(frame) else np.ones(len(numeric))
        scales[scales == 0] = 1.0
        return cls(
            categories=categories,
            numeric=list(numeric),
            crossed=crossed,
            encoding=encoding,
            means=means.tolist() if encoding == "onehot" else [],
            scales=scales.tolist() if encoding == "onehot" else [],
            other=other,
        )

    @property
    def raw_columns(self) -> list[str]:
        """The input columns a caller must provide."""
        derived = {cross_name(group) for group in self.crossed}
        return [c for c in self.categories if c not in derived] + self.numeric

    @property
    def feature_names(self) -> list[str]:
        """The encoded columns' names, unique and free of what xgboost refuses (``[``, ``]``, ``<``)."""
        if self.encoding == "onehot":
            names = [f"{name}={value}" for name, seen in self._levels().items() for value in seen] + self.numeric
        else:
            names = [*self.categories, *self.numeric]
        return xgboost_names(names)

    @property
    def feature_types(self) -> list[str]:
        if self.encoding == "onehot":
            return ["q"] * len(self.feature_names)
        return ["c"] * len(self.categories) + ["q"] * len(self.numeric)

    def text_in_numbers(self, frame: pd.DataFrame) -> str:
        """The numeric columns of ``frame`` that hold text, each with an example (``transform`` would read them
        as missing, silently); empty when there are none."""
        found = []
        for column in self.numeric:
            if column not in frame.columns or pd.api.types.is_numeric_dtype(frame[column]):
                continue
            values = frame[column].dropna()
            text = values[pd.to_numeric(values, errors="coerce").isna()]
            if len(text):
                found.append(f"column {column} holds text such as {text.iloc[0]!r}")
        return "; ".join(found)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.raw_columns if c not in frame.columns]
        if missing:
            raise KeyError(f"input lacks column(s) {missing}; the model needs {self.raw_columns}")
        base = [c for c in self.categories if c in frame.columns]
        text = _categorical_text(frame, base, self.crossed)
        codes = {}
        for name, seen in self.categories.items():
            codes[name] = pd.Index(seen).get_indexer(text[name])
            if name in self.other:
                codes[name][(codes[name] < 0) & text[name].notna().to_numpy()] = len(seen)
        numbers = finite_or_missing(
            np.column_stack(
                [pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64) for name in self.numeric]
            )
            if self.numeric
            else np.empty((len(frame), 0))
        )
        if self.encoding == "onehot":
            return self._onehot(codes, numbers)
        out = np.empty((len(frame), len(self.categories) + len(self.numeric)), dtype=np.float32)
        for i, name in enumerate(self.categories):
            column = codes[name].astype(np.float32)
            column[column < 0] = np.nan
            out[:, i] = column
        out[:, len(self.categories) :] = numbers
        return out

    def _levels(self) -> dict[str, list[str]]:
        """Per categorical feature, what each code stands for: its categories, then "other" if it has one."""
        return {name: [*seen, OTHER] if name in self.other else seen for name, seen in self.categories.items()}

    def _onehot(self, codes: dict[str, np.ndarray], numbers: np.ndarray) -> np.ndarray:
        width = sum(len(levels) for levels in self._levels().values())
        out = np.zeros((len(numbers), width + len(self.numeric)), dtype=np.float32)
        offset = 0
        for name, seen in self._levels().items():
            rows = np.flatnonzero(codes[name] >= 0)  # unseen and missing: all zeros
            out[rows, offset + codes[name][rows]] = 1.0
            offset += len(seen)
        standardized = (numbers - np.asarray(self.means)) / np.asarray(self.scales)
        out[:, width:] = np.nan_to_num(standardized, nan=0.0)
        return out

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: Path | str) -> Preprocessor:
        return cls(**json.loads(Path(path).read_text()))


FLOAT32_MAX = float(np.finfo(np.float32).max)


def finite_or_missing(numbers: np.ndarray) -> np.ndarray:
    """``numbers`` with every value a model cannot take read as missing (NaN): +-inf (a ratio divided by
    zero), and beyond float32's range, the number type the models train on (it would become inf there).
    xgboost and scikit-learn refuse both; as gaps, the row still counts, as a row with a missing value does."""
    out = np.array(numbers, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out[~(np.abs(out) <= FLOAT32_MAX)] = np.nan
    return out


def cross_name(group: list[str]) -> str:
    return CROSS_SEPARATOR.join(group)


def most_frequent(values: pd.Series, limit: int) -> list[str]:
    """The distinct values present, sorted; only the ``limit`` most frequent when there are more (ties go
    to the value that sorts first, so the choice does not depend on row order)."""
    counts = values.value_counts(dropna=True).sort_index()
    if len(counts) > limit:
        counts = counts.sort_values(ascending=False, kind="stable").head(limit)
    return sorted(counts.index.tolist())


def xgboost_names(names: list[str]) -> list[str]:
    """``names`` with the characters xgboost refuses replaced, made unique by a ``__2``, ``__3`` suffix."""
    safe: dict[str, None] = {}
    for name in names:
        clean = "".join(XGBOOST_REFUSED.get(char, char) for char in name)
        candidate, n = clean, 1
        while candidate in safe:
            n += 1
            candidate = f"{clean}__{n}"
        safe[candidate] = None
    return list(safe)


def _categorical_text(frame: pd.DataFrame, categorical: list[str], crossed: list[list[str]]) -> dict[str, pd.Series]:
    """Categorical columns as strings (missing stays missing), plus one column per crossed group."""
    text = {name: _as_text(frame[name]) for name in categorical}
    for group in crossed:
        combined = text[group[0]]
        for name in group[1:]:
            combined = combined + CROSS_SEPARATOR + text[name]
        text[cross_name(group)] = combined
    return text


def _as_text(values: pd.Series) -> pd.Series:
    """Category labels as text, the same for 14, 14.0 and "14": an integer column that holds one missing
    value arrives as float, and JSON carries no distinction between them either."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values.astype("string")
    numbers = values.astype("Float64")
    whole = (numbers.round() == numbers).fillna(False)
    text = numbers.astype("string")
    text[whole] = numbers[whole].astype("Int64").astype("string")
    return text


# --- which columns are features ------------------------------------------------------------------------

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
    columns |= _categorical_text(train, list(config.features.categorical), crossed)
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
                f"set read.thousands: {mark!r}" if mark else "list it under features.categorical",
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
        return DROPPED, f"{_read_with_thousands(values, mark)}: set read.thousands: {mark!r}", True
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


THOUSANDS_MARKS = (".", ",", " ", "'", "\u00a0")
"""Marks files put between thousands: a point or a comma (by locale), a space, an apostrophe (Swiss)."""


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
