"""Which rows train, validate and test: by partition, by a column's values, at random (seeded, stratified,
grouped) or in k folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import (
    ColumnSplit,
    DatasetConfig,
    KFoldSplit,
    RandomSplit,
)
from pipeline.errors import InputError
from pipeline.metrics import REGRESSION

PARTITION = "__partition__"
"""The column that says which file of a partitioned folder a row came from, while splitting."""
TRAIN, VALIDATION, TEST = 0, 1, 2
SPLITS = ("train", "validation", "test")
IN_TEST = -1
"""The fold of a test row in a k-fold split (training rows have folds 0, 1, ...)."""

# --- splitting -----------------------------------------------------------------------------------------


def split_rows(frame: pd.DataFrame, config: DatasetConfig, file: Path) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The positions of the training, validation and test rows of ``frame``, each in file order, and for a
    k-fold split the fold of each training row (its validation split is then empty), else None.

    Every split kind reduces to giving each row a split; a k-fold split gives each row a fold the same
    way (``assign_units``, one fold after the other)."""
    split = config.split
    if isinstance(split, KFoldSplit):
        fold = _kfold_assignment(frame, split, config, file)
        _check_folds(fold[frame[config.target].notna().to_numpy()], split, file)
        train = np.flatnonzero(fold != IN_TEST)
        return [train, np.array([], dtype=np.int64), np.flatnonzero(fold == IN_TEST)], fold[train]
    if isinstance(split, RandomSplit):
        assignment = _random_assignment(frame, split, config, file)
    else:
        if isinstance(split, ColumnSplit):
            if split.column not in frame.columns:
                raise InputError(file, "split.column", f"column {split.column!r} is not in the data")
            key = frame[split.column]
        else:
            key = frame[PARTITION]
        assignment = np.full(len(frame), -1)
        for index, name in enumerate(SPLITS):
            assignment[key.isin(getattr(split, name)).to_numpy()] = index
    return [np.flatnonzero(assignment == index) for index in range(len(SPLITS))], None


def _random_assignment(frame: pd.DataFrame, split: RandomSplit, config: DatasetConfig, file: Path) -> np.ndarray:
    """Each row's split: rows (or whole groups) drawn at random, per class when stratified."""
    units, sizes, strata = _units(frame, split, config, file)
    total = int(sizes.sum())
    quotas = (int(total * split.test), int(total * split.validation))
    parts = assign_units(sizes, strata, quotas, np.random.default_rng(split.seed))
    return np.array([TRAIN, TEST, VALIDATION])[parts][units]


def _kfold_assignment(frame: pd.DataFrame, split: KFoldSplit, config: DatasetConfig, file: Path) -> np.ndarray:
    """Each row's fold (0..folds-1), or ``IN_TEST``: the test rows drawn first, then each fold in turn from
    the rows left, ``left // folds_left`` rows at a time, so that fold sizes differ by at most one row
    (whole groups: by about a group) and each class keeps its share in every fold when stratified (a fold
    is apportioned among the classes by what each has left, so no class drifts into the last fold)."""
    units, sizes, strata = _units(frame, split, config, file)
    rng = np.random.default_rng(split.seed)
    unassigned = split.folds
    fold = np.where(assign_units(sizes, strata, (int(sizes.sum() * split.test),), rng) == 1, IN_TEST, unassigned)
    for index in range(split.folds - 1):
        left = np.flatnonzero(fold == unassigned)
        if not len(left):
            break
        quota = int(sizes[left].sum()) // (split.folds - index)
        fold[left[assign_units(sizes[left], strata[left], (quota,), rng) == 1]] = index
    fold[fold == unassigned] = split.folds - 1
    return fold[units]


def _units(
    frame: pd.DataFrame, split: RandomSplit | KFoldSplit, config: DatasetConfig, file: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a random split draws: the unit of each row (the row itself, or its ``group``), the rows per unit,
    and each unit's stratum (its class, a group's most frequent class; one stratum unless stratified)."""
    if split.group is None:
        units = np.arange(len(frame))
    else:
        if split.group not in frame.columns:
            raise InputError(file, "split.group", f"column {split.group!r} is not in the data")
        if (gaps := int(frame[split.group].isna().sum())) > 0:
            raise InputError(
                file,
                "split.group",
                f"column {split.group!r} is missing in {gaps} rows",
                "fill it: every row needs a group",
            )
        units = pd.factorize(frame[split.group])[0]
    sizes = np.bincount(units, minlength=1)
    if split.stratify and config.task != REGRESSION:
        labels = pd.factorize(frame[config.target], use_na_sentinel=False)[0]
        strata = labels if split.group is None else _majority(units, labels)
    else:
        strata = np.zeros(len(sizes), dtype=np.int64)
    return units, sizes, strata


def _check_folds(folds: np.ndarray, split: KFoldSplit, file: Path) -> None:
    """Every fold validates some rows: with fewer rows or groups than folds outside the test split, one
    would validate none (and every trial would fail on it)."""
    counts = np.bincount(folds[folds != IN_TEST], minlength=split.folds)
    if (counts == 0).any():
        units = f"{split.group} groups" if split.group else "rows with a target"
        raise InputError(
            file,
            "split.folds",
            f"{split.folds} folds, but fold {int(np.argmin(counts))} gets none of the {units} outside the test split",
            "use fewer folds, or a smaller test share",
        )


def _majority(units: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per group, its most frequent label (the first of tied ones)."""
    counts = pd.DataFrame({"unit": units, "label": labels}).value_counts().reset_index(name="n")
    counts = counts.sort_values(["unit", "n", "label"], ascending=[True, False, True])
    return counts.drop_duplicates("unit")["label"].to_numpy()


def assign_units(sizes: np.ndarray, strata: np.ndarray, rows: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Give each unit (a row, or a group of ``sizes[u]`` rows) a part: ``1 + i`` for the ``i``-th part of
    ``rows[i]`` rows, 0 for the rows left.

    Each part's rows are apportioned among the strata (classes) by largest remainder so that each keeps its
    proportion; within a stratum the units are taken in a random order and fill the parts in turn (a group
    that crosses a boundary goes whole to the earlier part).
    """
    stratum_of = np.unique(strata, return_inverse=True)[1]
    stratum_rows = np.bincount(stratum_of, weights=sizes).astype(np.int64)
    quotas = np.column_stack([_apportion(count, stratum_rows) for count in rows])
    parts = np.zeros(len(sizes), dtype=np.int64)
    for stratum in range(len(stratum_rows)):
        members = np.flatnonzero(stratum_of == stratum)
        members = members[rng.permutation(len(members))]
        before = np.cumsum(sizes[members]) - sizes[members]
        bounds = np.cumsum(quotas[stratum])
        part = np.searchsorted(bounds, before, side="right")
        parts[members] = np.where(part < len(bounds), part + 1, 0)
    return parts


def _apportion(count: int, weights: np.ndarray) -> np.ndarray:
    """``count`` split in proportion to ``weights`` in whole numbers (largest remainder; ties to the first)."""
    ideal = count * weights / weights.sum()
    whole = np.floor(ideal).astype(np.int64)
    order = np.argsort(-(ideal - whole), kind="stable")
    whole[order[: count - int(whole.sum())]] += 1
    return whole
