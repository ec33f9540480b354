"""Reading a dataset's table: parquet or CSV (plain, compressed, zipped), one file or a partitioned folder."""

from __future__ import annotations

import codecs
import decimal
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import (
    DatasetConfig,
    PartitionSplit,
    ReadOptions,
)
from pipeline.data.splitting import PARTITION, SPLITS
from pipeline.errors import InputError

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".zip")
"""CSV files, plain or compressed (a ``.zip`` holding one CSV file)."""
DATA_SUFFIXES = (".parquet", *CSV_SUFFIXES)

# --- reading -------------------------------------------------------------------------------------------


def table_suffix(path: Path) -> str | None:
    """The data suffix ``path`` ends with (``.csv.gz``, ``.parquet``, ...), or None for another file."""
    name = path.name.lower()
    return next((suffix for suffix in DATA_SUFFIXES if name.endswith(suffix)), None)


def table_name(path: Path) -> str:
    """The name of a partition file without its data suffix: ``2013-01`` for ``2013-01.csv.gz``."""
    suffix = table_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.stem


def read_declared(config: DatasetConfig, file: Path) -> tuple[pd.DataFrame, list[Path]]:
    """The table ``config.path`` holds (a folder's partitions together, with their names in ``PARTITION``)
    and the files read; InputError for a table with no rows, before anything is asked of its columns."""
    frame, files = _read_path(config, file)
    if frame.empty:
        raise InputError(file, "path", f"{config.path} holds a header but no rows", "point path at a table with rows")
    return frame, files


def _read_path(config: DatasetConfig, file: Path) -> tuple[pd.DataFrame, list[Path]]:
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
            frame = pd.read_parquet(path)
        except Exception as error:  # any reader failure is the user's file being unreadable
            raise InputError(source, key, f"cannot read {path}: {_one_line(error)}") from None
    else:
        frame = _read_csv(path, source, key, options)
    return numbers_as_floats(frame)


NUMBER_OBJECTS = (decimal.Decimal, bool, np.bool_)
"""Python numbers pandas keeps in an object column: a Parquet decimal's values, and booleans with gaps."""


def numbers_as_floats(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each object column whose values are all decimals or all booleans (gaps aside) as
    float64: a database export's decimal price, a yes/no column with gaps. pandas leaves them as objects,
    which would read as text and be left out of the features. Text columns stay as they are."""
    for name in [c for c in frame.columns if frame[c].dtype == np.dtype("O")]:  # not str columns (pandas 3)
        present = frame[name].dropna()
        if (
            len(present)
            and isinstance(present.iloc[0], NUMBER_OBJECTS)
            and present.map(type).isin(NUMBER_OBJECTS).all()
        ):
            frame[name] = pd.to_numeric(frame[name]).astype(np.float64)
    return frame


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
            thousands=options.thousands,
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
