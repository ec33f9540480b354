"""pipeline.run: how the command's flags and the study file combine, and what is refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline import data, spaces
from pipeline.config import load_dataset
from pipeline.errors import InputError
from pipeline.run import RunOptions, check_compatible, pruning_rule, resolve_study

REPO = Path(__file__).resolve().parents[1]


def study_file(folder: Path, dataset_file: Path, space: str = "xgboost.yaml", **overrides) -> Path:
    path = folder / "study.yaml"
    study = {"name": "s", "experiment": "e", "dataset": str(dataset_file), "model_name": "m",
             "space": str(REPO / "search_spaces" / space)} | overrides  # fmt: skip
    path.write_text(yaml.safe_dump(study))
    return path


def test_flags_override_pruning_and_device_and_leave_the_rest_as_the_file_says(tmp_path, dataset_file):
    path = study_file(tmp_path, dataset_file, pruning={"warmup_rounds": 7})
    study, _ = resolve_study(RunOptions(study=path, pruning=False, device="cuda"))
    assert study.pruning.enabled is False and study.pruning.warmup_rounds == 7
    assert study.device == "cuda"
    assert pruning_rule(study.pruning) is None
    default, _ = resolve_study(RunOptions(study=path))
    assert default.device == "cpu" and pruning_rule(default.pruning).warmup_rounds == 7


def test_an_unknown_device_names_the_key_and_what_is_allowed(tmp_path, dataset_file):
    with pytest.raises(InputError, match=r"device.*'cpu' or 'cuda'"):
        resolve_study(RunOptions(study=study_file(tmp_path, dataset_file, device="tpu")))


def test_fewer_than_one_parallel_trial_is_refused(tmp_path, dataset_file):
    with pytest.raises(InputError, match=r"--parallelism.*give 1 or more"):
        resolve_study(RunOptions(study=study_file(tmp_path, dataset_file), parallelism=0))


def test_cuda_is_refused_for_a_space_without_a_family_that_trains_on_a_gpu(tmp_path, dataset_file):
    path = study_file(tmp_path, dataset_file, space="ridge.yaml", device="cuda")
    study, _ = resolve_study(RunOptions(study=path))
    dataset = data.load_dataset(load_dataset(dataset_file), dataset_file)
    with pytest.raises(InputError, match=r"device.*no model family of ridge.yaml trains on cuda"):
        check_compatible(study, path, dataset, spaces.load(study.space))
    multi = study.model_copy(update={"space": REPO / "search_spaces" / "multi_family.yaml"})
    check_compatible(multi, path, dataset, spaces.load(multi.space))  # its xgboost trials can use the GPU


def test_a_metric_that_does_not_fit_the_task_is_refused_with_the_allowed_ones(tmp_path, dataset_file):
    path = study_file(tmp_path, dataset_file, metric="auc")
    study, _ = resolve_study(RunOptions(study=path))
    dataset = data.load_dataset(load_dataset(dataset_file), dataset_file)
    with pytest.raises(InputError, match=r"metric: auc does not apply to a regression task.*rmse, mae, r2"):
        check_compatible(study, path, dataset, spaces.load(study.space))
