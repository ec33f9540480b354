"""The preprocessor: raw columns in, one float32 matrix out, fitted on the training rows only.

Categorical columns become integer codes of the categories seen in training (xgboost's native categorical
support reads them with feature type ``c``); a category never seen in training, or a missing value, becomes
NaN, which the booster routes down its learned default branch. Numeric columns pass through as float32.
The fitted state is plain JSON, so the preprocessor is logged as a readable artifact and loads without
unpickling anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CROSS_SEPARATOR = "_"


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

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        categorical: list[str],
        numeric: list[str],
        crossed: list[list[str]] | None = None,
        encoding: str = "codes",
    ) -> Preprocessor:
        crossed = [list(group) for group in crossed or []]
        text = _categorical_text(frame, categorical, crossed)
        categories = {name: sorted(values.dropna().unique().tolist()) for name, values in text.items()}
        values = frame[list(numeric)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
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
        )

    @property
    def raw_columns(self) -> list[str]:
        """The input columns a caller must provide."""
        derived = {cross_name(group) for group in self.crossed}
        return [c for c in self.categories if c not in derived] + self.numeric

    @property
    def feature_names(self) -> list[str]:
        if self.encoding == "onehot":
            return [f"{name}={value}" for name, seen in self.categories.items() for value in seen] + self.numeric
        return [*self.categories, *self.numeric]

    @property
    def feature_types(self) -> list[str]:
        if self.encoding == "onehot":
            return ["q"] * len(self.feature_names)
        return ["c"] * len(self.categories) + ["q"] * len(self.numeric)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.raw_columns if c not in frame.columns]
        if missing:
            raise KeyError(f"input lacks column(s) {missing}; the model needs {self.raw_columns}")
        base = [c for c in self.categories if c in frame.columns]
        text = _categorical_text(frame, base, self.crossed)
        codes = {}
        for name, seen in self.categories.items():
            codes[name] = pd.Index(seen).get_indexer(text[name])
        numbers = (
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

    def _onehot(self, codes: dict[str, np.ndarray], numbers: np.ndarray) -> np.ndarray:
        width = sum(len(seen) for seen in self.categories.values())
        out = np.zeros((len(numbers), width + len(self.numeric)), dtype=np.float32)
        offset = 0
        for name, seen in self.categories.items():
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


def cross_name(group: list[str]) -> str:
    return CROSS_SEPARATOR.join(group)


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
