"""A study's three inputs, read and validated: from its files (``Study.from_file``) or from configurations
in memory (``Study.from_config``), with the run's overrides applied; and the text of each, logged on the
parent run as the study's sources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import config, spaces
from pipeline.config import DatasetConfig, SpaceConfig, StudyConfig, default_study_file
from pipeline.study.options import IN_MEMORY, with_overrides


@dataclass(frozen=True)
class Inputs:
    study: StudyConfig
    dataset: DatasetConfig
    space: spaces.SearchSpace
    sources: dict[str, Path | str]
    """File name -> the file, or the YAML text of a configuration given in memory."""
    study_file: Path | None = None


def from_files(
    study: str | Path | None, dataset: str | Path | None, space: str | Path | None, overrides: dict[str, Any]
) -> Inputs:
    """The study file (default ``studies/flights.yaml``) with ``overrides`` over it, and the dataset and space
    files it names (or ``dataset``, ``space``). Raises InputError naming the file and key of the first problem."""
    named = Path(study) if study is not None else default_study_file()
    study_file = config.resolve_path(named, "command line", "--study")
    raw = config.load_study(study_file).model_dump()
    for key, path in (("dataset", dataset), ("space", space)):
        if path is not None:
            raw[key] = config.resolve_path(Path(path), "command line", f"--{key}")
    merged = with_overrides(raw, "command line", overrides)
    dataset_config = config.load_dataset(merged.dataset)
    search_space = spaces.load(merged.space)
    sources: dict[str, Path | str] = {p.name: p for p in (study_file, merged.dataset, merged.space)}
    return Inputs(merged, dataset_config, search_space, sources, study_file)


def from_mappings(
    study: Mapping[str, Any] | StudyConfig,
    dataset: Mapping[str, Any] | DatasetConfig,
    space: Mapping[str, Any] | SpaceConfig,
    base_dir: str | Path | None,
    overrides: dict[str, Any],
) -> Inputs:
    """Configurations in memory, validated as the files are; the dataset's relative ``path`` starts at
    ``base_dir`` (default: the working directory)."""
    where = f"study config {IN_MEMORY}"
    raw_study = study.model_dump() if isinstance(study, StudyConfig) else dict(study)
    placeholders = {"dataset": Path(f"dataset {IN_MEMORY}"), "space": Path(f"space {IN_MEMORY}")}
    raw_study = placeholders | {k: v for k, v in raw_study.items() if v is not None}
    merged = with_overrides(config.validate_mapping(StudyConfig, raw_study, where).model_dump(), where, overrides)
    raw_dataset = dataset.model_dump() if isinstance(dataset, DatasetConfig) else dict(dataset)
    if "path" in raw_dataset and not Path(raw_dataset["path"]).is_absolute():
        raw_dataset["path"] = (Path(base_dir or Path.cwd()) / raw_dataset["path"]).resolve()
    dataset_config = config.validate_mapping(DatasetConfig, raw_dataset, f"dataset config {IN_MEMORY}")
    search_space = spaces.from_mapping(
        space.model_dump() if isinstance(space, SpaceConfig) else dict(space), f"space config {IN_MEMORY}"
    )
    sources: dict[str, Path | str] = {
        "study.yaml": config.to_yaml(merged),
        "dataset.yaml": config.to_yaml(dataset_config),
        "space.yaml": config.to_yaml(search_space.config),
    }
    return Inputs(merged, dataset_config, search_space, sources)
