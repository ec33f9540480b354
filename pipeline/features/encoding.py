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

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

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
        text = categorical_text(frame, categorical, crossed)
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
        text = categorical_text(frame, base, self.crossed)
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


def categorical_text(frame: pd.DataFrame, categorical: list[str], crossed: list[list[str]]) -> dict[str, pd.Series]:
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
