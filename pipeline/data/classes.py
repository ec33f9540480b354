"""The target's task: regression, binary (which label is positive) or multiclass, and its checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import (
    DatasetConfig,
    PositiveWhen,
)
from pipeline.errors import InputError
from pipeline.metrics import BINARY, REGRESSION, Task

# --- classes -------------------------------------------------------------------------------------------


def binary_labels(target: pd.Series, rule: PositiveWhen, file: Path) -> tuple[pd.Series, tuple]:
    """The class of each row under ``positive_when``, and the classes as (negative, positive); a missing
    target stays missing (dropped later).

    ``equals``: the classes keep the target's names: its two values when it has two (``good``, ``bad``),
    else ``not_<value>`` and ``<value>``, so a served model answers ``probability_bad``. ``above``: 0 and
    1, the usual coding of "above the threshold".
    """
    key = "positive_when.above" if rule.above is not None else "positive_when.equals"
    if rule.above is not None:
        if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
            raise InputError(file, key, f"column {target.name!r} is {target.dtype}, not numeric", "use equals: VALUE")
        return (target > rule.above).astype("Int64").where(target.notna()), (0, 1)
    present = pd.unique(target.dropna())
    positive = target == rule.equals
    if not positive.any():
        shown = ", ".join(map(repr, present[:10].tolist()))
        fix = (
            "quote it ('Yes'): YAML reads an unquoted yes/no/on/off as a boolean"
            if isinstance(rule.equals, bool)
            else ""
        )
        raise InputError(
            file, key, f"no row of {target.name!r} equals {rule.equals!r}; its values include {shown}", fix or None
        )
    if len(present) == 2:
        value = _plain(target[positive].iloc[0])
        classes = (_plain(next(v for v in present if v != value)), value)
    else:
        classes = (f"not_{rule.equals}", str(rule.equals))
    named = np.array([classes[0], classes[1]], dtype=object)[
        np.asarray(positive.fillna(False), dtype=bool).astype(np.int64)
    ]
    labels = pd.Series(named, index=target.index, dtype=object)
    return labels.where(target.notna()), classes


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, so class names serialize to JSON."""
    return value.item() if isinstance(value, np.generic) else value


def infer_task(
    config: DatasetConfig,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test: pd.DataFrame,
    classes: tuple,
    file: Path,
) -> Task:
    """The task, with its classes: those ``positive_when`` made, else the sorted values seen.

    Refuses a target the training split holds one value of: a regression target that is constant, a
    classification with one class."""
    target = train[config.target]
    if config.task == REGRESSION:
        if target.nunique() < 2:
            raise InputError(
                file,
                "target",
                f"column {config.target!r} holds one value ({target.iloc[0]}) in the training split",
                "a constant cannot be learnt: check the target column and the split",
            )
        return Task(REGRESSION)
    if not classes:
        seen = pd.concat([target, validation[config.target], test[config.target]])
        classes = tuple(sorted(seen.unique().tolist()))
    in_train = target.nunique()
    if in_train < 2:
        raise InputError(
            file,
            "target",
            f"column {config.target!r} has {in_train} class in the training split",
            "classification needs at least two classes there",
        )
    if config.task == BINARY and len(classes) != 2:
        raise InputError(
            file,
            "task",
            f"binary task but column {config.target!r} has {len(classes)} classes "
            f"({', '.join(map(str, classes[:10]))})",
            "use task: multiclass, or positive_when",
        )
    return Task(config.task, classes)


def check_target(frame: pd.DataFrame, config: DatasetConfig, file: Path) -> None:
    target = frame[config.target]
    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    if config.task == REGRESSION and not numeric:
        raise InputError(
            file,
            "target",
            f"column {config.target!r} is {target.dtype}, not numeric",
            "regression needs a numeric target",
        )
    if numeric and np.isinf(target.to_numpy(dtype=np.float64)).any():
        raise InputError(file, "target", f"column {config.target!r} holds infinite values", "clean the data")
