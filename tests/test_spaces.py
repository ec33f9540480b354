"""Search-space files: the shipped one loads, sampled values get their declared type, bad files are refused."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import spaces
from pipeline.config import QUniform, RandInt, Scalar, SpaceConfig, Uniform
from pipeline.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "search_spaces" / "xgboost.yaml"
INVALID = sorted((Path(__file__).parent / "invalid_spaces").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str) -> spaces.SearchSpace:
    return spaces.load(write(tmp_path, text))


def searched(space: spaces.SearchSpace, family: str) -> set[str]:
    """Names the family samples, at any depth."""
    return {path[-1] for path, p in spaces.walk(space.branches[family]) if not isinstance(p, Scalar)}


# --- the shipped space ----------------------------------------------------------------------------------------


def test_shipped_space_loads_with_its_searched_and_fixed_parameters():
    space = spaces.load(SHIPPED)

    assert space.file == SHIPPED
    assert space.config.model == "xgboost"
    assert space.families == ["xgboost"]
    assert searched(space, "xgboost") == {
        "max_depth",
        "learning_rate",
        "min_child_weight",
        "subsample",
        "colsample_bytree",
        "reg_alpha",
        "reg_lambda",
        "gamma",
    }
    assert all(space.searches(name) for name in searched(space, "xgboost"))
    assert space.fixed("xgboost") == {"max_bin": 256, "num_boost_round": 2000, "early_stopping_rounds": 50}
    assert not space.searches("max_bin")
    assert space.sha256 == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()


def test_shipped_space_types_sampled_values_like_xgboost_expects():
    space = spaces.load(SHIPPED)
    # hyperopt hands back floats (numpy or not) even for quantized parameters, and the fixed values as written.
    fixed = {"max_bin": 256, "num_boost_round": 2000, "early_stopping_rounds": 50}
    raw = {
        "model": "xgboost",
        **fixed,
        "max_depth": np.float64(7.0),
        "learning_rate": 0.05,
        "min_child_weight": np.float64(3.2),
        "subsample": 0.8,
        "colsample_bytree": 0.9,
        "reg_alpha": 0.01,
        "reg_lambda": 1.0,
        "gamma": 0.1,
    }

    typed = space.typed(raw)

    assert typed["max_depth"] == 7
    assert type(typed["max_depth"]) is int
    assert typed["model"] == "xgboost"
    for name in raw.keys() - {"model", "max_depth", *fixed}:
        assert type(typed[name]) is float, name
        assert typed[name] == pytest.approx(float(raw[name]))
    assert typed["max_bin"] == 256
    assert type(typed["max_bin"]) is int
    assert typed["num_boost_round"] == 2000
    assert typed["early_stopping_rounds"] == 50
    assert set(typed) == {"model", *space.config.parameters}


def test_sha256_follows_the_file_bytes(tmp_path):
    text = "parameters:\n  subsample: {distribution: uniform, low: 0.5, high: 1.0}\n"
    first = load_text(tmp_path, text)
    second = load_text(tmp_path, text + "# a comment changes the bytes\n")

    assert first.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert second.sha256 != first.sha256


def test_describe_names_every_parameter_with_its_type():
    space = spaces.load(SHIPPED)
    text = space.describe()
    lines = text.splitlines()

    assert lines[0] == "model: xgboost"
    assert len(lines) == 1 + len(space.config.parameters)
    for name in space.config.parameters:
        assert re.search(rf"^\s+{name}\s", text, flags=re.MULTILINE), name
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert by_name["max_depth"].endswith("-> int")
    assert "quniform(" in by_name["max_depth"]
    assert by_name["learning_rate"].endswith("-> float")
    assert "low=0.02" in by_name["learning_rate"]
    assert "high=0.3" in by_name["learning_rate"]
    assert by_name["max_bin"].endswith("fixed 256")


def test_describe_shows_choices_and_fixed_strings(tmp_path):
    space = load_text(
        tmp_path,
        "parameters:\n  grow_policy: {distribution: choice, options: [depthwise, lossguide]}\n  tree_method: hist\n",
    )
    text = space.describe()

    assert "grow_policy" in text
    assert "choice(['depthwise', 'lossguide']) -> one of the options" in text
    assert "tree_method" in text
    assert "fixed 'hist'" in text


# --- typing of sampled values ---------------------------------------------------------------------------------

TYPING = [
    ("{distribution: quniform, low: 1, high: 10, q: 1}", 6.0, int, 6),
    ("{distribution: quniform, low: 1, high: 10, q: 2}", 4.0, int, 4),
    ("{distribution: quniform, low: 0.1, high: 0.9, q: 0.1}", 0.30000000000000004, float, 0.30000000000000004),
    ("{distribution: quniform, low: 1, high: 10, q: 1.0}", 6.0, float, 6.0),
    ("{distribution: qloguniform, low: 1, high: 1000, q: 1}", 17.0, int, 17),
    ("{distribution: qloguniform, low: 0.01, high: 1, q: 0.01}", 0.07, float, 0.07),
    ("{distribution: qnormal, mu: 0, sigma: 5, q: 1}", -3.0, int, -3),
    ("{distribution: qlognormal, mu: 1, sigma: 1, q: 1}", 2.0, int, 2),
    ("{distribution: qlognormal, mu: 1, sigma: 1, q: 0.5}", 2.5, float, 2.5),
    ("{distribution: randint, low: 0, high: 9}", np.int64(3), int, 3),
    ("{distribution: randint, low: 0, high: 9}", 3.0, int, 3),
    ("{distribution: uniform, low: 0, high: 10}", 3, float, 3.0),
    ("{distribution: uniform, low: 0, high: 10}", np.float64(2.5), float, 2.5),
    ("{distribution: loguniform, low: 0.001, high: 1}", 0.01, float, 0.01),
    ("{distribution: normal, mu: 0, sigma: 1}", -0.25, float, -0.25),
    ("{distribution: lognormal, mu: 0, sigma: 1}", 1.5, float, 1.5),
    # Float noise around an integer step still yields the integer.
    ("{distribution: quniform, low: 1, high: 10, q: 1}", 5.999999999, int, 6),
]


@pytest.mark.parametrize(("declared", "sampled", "kind", "expected"), TYPING, ids=[t[0] for t in TYPING])
def test_typed_casts_to_the_declared_type(tmp_path, declared, sampled, kind, expected):
    space = load_text(tmp_path, f"parameters:\n  max_depth: {declared}\n")

    value = space.typed({"model": "xgboost", "max_depth": sampled})["max_depth"]

    assert type(value) is kind
    assert value == expected


@pytest.mark.parametrize("option", [True, False, 3, 2.5, "lossguide", "3"], ids=repr)
@pytest.mark.parametrize("kind", ["choice", "pchoice"])
def test_choice_returns_the_option_itself(tmp_path, kind, option):
    options = [option, "other"]
    probabilities = ", probabilities: [0.25, 0.75]" if kind == "pchoice" else ""
    space = load_text(
        tmp_path,
        f"parameters:\n  grow_policy: {{distribution: {kind}, options: [{option!r}, other]{probabilities}}}\n",
    )
    assert space.config.parameters["grow_policy"].options == options

    value = space.typed({"model": "xgboost", "grow_policy": option})["grow_policy"]

    assert value == option
    assert type(value) is type(option)


def test_fixed_values_keep_their_yaml_type(tmp_path):
    space = load_text(
        tmp_path,
        "parameters:\n"
        "  subsample: {distribution: uniform, low: 0.5, high: 1.0}\n"
        "  max_depth: 6\n"
        "  learning_rate: 0.1\n"
        "  validate_parameters: true\n"
        "  tree_method: hist\n"
        "  max_bin: '256'\n",
    )

    # A sample holds the fixed values as the space compiled them: straight from the file.
    typed = space.typed({"model": "xgboost", **space.fixed("xgboost"), "subsample": 0.75})

    assert typed == {
        "model": "xgboost",
        "subsample": 0.75,
        "max_depth": 6,
        "learning_rate": 0.1,
        "validate_parameters": True,
        "tree_method": "hist",
        "max_bin": "256",
    }
    assert [type(typed[k]) for k in ("max_depth", "learning_rate", "validate_parameters", "max_bin")] == [
        int,
        float,
        bool,
        str,
    ]


def test_typed_needs_every_searched_value(tmp_path):
    space = load_text(tmp_path, "parameters:\n  subsample: {distribution: uniform, low: 0.5, high: 1.0}\n")

    with pytest.raises(KeyError, match="subsample"):
        space.typed({"model": "xgboost"})


@settings(max_examples=50, deadline=None)
@given(
    q=st.integers(min_value=1, max_value=20),
    sampled=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
def test_integer_step_always_yields_the_nearest_int(q, sampled):
    space = spaces.SearchSpace(
        file=Path("space.yaml"),
        config=SpaceConfig(parameters={"max_depth": QUniform(distribution="quniform", low=0, high=1, q=q)}),
        sha256="x",
    )

    value = space.typed({"model": "xgboost", "max_depth": sampled})["max_depth"]

    assert type(value) is int
    assert abs(value - sampled) <= 0.5


@settings(max_examples=50, deadline=None)
@given(low=st.integers(-100, 100), width=st.integers(1, 100), sampled=st.floats(-1e6, 1e6))
def test_randint_and_uniform_typing(low, width, sampled):
    space = spaces.SearchSpace(
        file=Path("space.yaml"),
        config=SpaceConfig(
            parameters={
                "max_leaves": RandInt(distribution="randint", low=low, high=low + width),
                "subsample": Uniform(distribution="uniform", low=low, high=low + width),
            }
        ),
        sha256="x",
    )

    typed = space.typed({"model": "xgboost", "max_leaves": float(round(sampled)), "subsample": sampled})

    assert type(typed["max_leaves"]) is int
    assert typed["max_leaves"] == round(sampled)
    assert type(typed["subsample"]) is float
    assert typed["subsample"] == sampled


# --- names the model family accepts ---------------------------------------------------------------------------


def test_misspelled_hyperparameter_is_refused_with_a_hint(tmp_path):
    path = write(tmp_path, "parameters:\n  max_dept: {distribution: quniform, low: 3, high: 12, q: 1}\n")

    with pytest.raises(InputError) as caught:
        spaces.load(path)

    error = caught.value
    assert error.exit_code == 2
    assert error.file == path
    assert error.key == "parameters.max_dept"
    assert str(error).startswith(f"{path}: parameters.max_dept: ")
    assert "did you mean max_depth" in str(error)


def test_misspelled_fixed_hyperparameter_is_refused_too(tmp_path):
    path = write(
        tmp_path,
        "parameters:\n  max_depth: {distribution: quniform, low: 3, high: 12, q: 1}\n  learning_rat: 0.1\n",
    )

    with pytest.raises(InputError, match=r"parameters\.learning_rat: .*did you mean learning_rate"):
        spaces.load(path)


def test_name_with_no_close_match_lists_what_is_allowed(tmp_path):
    path = write(tmp_path, "parameters:\n  zzzzzzzz: {distribution: uniform, low: 0, high: 1}\n")

    with pytest.raises(InputError) as caught:
        spaces.load(path)

    message = str(caught.value)
    assert "did you mean" not in message
    assert "allowed: " in message
    for name in ("max_depth", "learning_rate", "subsample"):
        assert name in message


@pytest.mark.parametrize("name", ["eta", "alpha", "lambda", "num_boost_round", "early_stopping_rounds"])
def test_native_aliases_and_training_knobs_are_accepted(tmp_path, name):
    space = load_text(
        tmp_path,
        f"parameters:\n  {name}: {{distribution: uniform, low: 0.1, high: 0.5}}\n",
    )

    assert space.searches(name)


def test_missing_file_is_an_input_error(tmp_path):
    path = tmp_path / "absent.yaml"

    with pytest.raises(InputError, match="file not found") as caught:
        spaces.load(path)

    assert caught.value.exit_code == 2
    assert str(path) in str(caught.value)


def test_misspelled_bound_names_the_misspelled_key(tmp_path):
    """A typo of a required key (``hgih`` for ``high``) should point at the key the user wrote."""
    path = write(tmp_path, "parameters:\n  subsample: {distribution: uniform, low: 0.5, hgih: 1.0}\n")

    with pytest.raises(InputError) as caught:
        spaces.load(path)

    assert "hgih" in str(caught.value)


# --- the folder of invalid files ------------------------------------------------------------------------------


def expectations(path: Path) -> tuple[str, str | None]:
    """The ``# expect:`` substring and optional ``# key:`` path declared at the top of an invalid file."""
    lines = path.read_text().splitlines()
    match = re.fullmatch(r"# expect: (.+)", lines[0])
    assert match, f"{path.name} must start with '# expect: <substring>'"
    key = re.fullmatch(r"# key: (.+)", lines[1]) if len(lines) > 1 else None
    return match.group(1), key.group(1) if key else None


def test_invalid_folder_covers_each_problem():
    names = {path.stem for path in INVALID}
    assert {
        "unknown_distribution",
        "low_not_below_high",
        "q_not_positive",
        "loguniform_low_not_positive",
        "choice_empty_options",
        "choice_duplicate_options",
        "pchoice_probabilities_not_summing_to_one",
        "unknown_hyperparameter",
        "unknown_key_in_distribution",
        "missing_distribution",
        "not_a_mapping",
        "invalid_yaml",
        "nothing_to_search",
    } <= names


@pytest.mark.parametrize("path", INVALID, ids=[path.stem for path in INVALID])
def test_invalid_space_is_refused(path):
    expected, key = expectations(path)

    with pytest.raises(InputError) as caught:
        spaces.load(path)

    error = caught.value
    message = str(error)
    assert error.exit_code == 2
    assert path.name in message
    assert message.startswith(f"{path}: ")
    assert expected in message
    if key is not None:
        assert error.key == key
        assert f"{path}: {key}: " in message
