"""Search-space files: the shipped one loads, sampled values get their declared type, bad files are refused."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from invalid_files import assert_refused_as_declared, invalid_files

from pipeline import config, spaces
from pipeline.config import MAX_CHOICE_OPTIONS, QUniform, RandInt, Scalar, SpaceConfig, Uniform
from pipeline.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "search_spaces" / "xgboost.yaml"
INVALID = invalid_files("invalid_spaces")


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str) -> spaces.SearchSpace:
    return spaces.load(write(tmp_path, text))


@functools.cache
def shipped(path: Path) -> spaces.SearchSpace:
    """A shipped space, loaded once per module: loading checks each fixed value with a real fit (seconds)."""
    return spaces.load(path)


def searched(space: spaces.SearchSpace, family: str) -> set[str]:
    """Names the family samples, at any depth."""
    return {path[-1] for path, p in spaces.walk(space.branches[family]) if not isinstance(p, Scalar)}


# --- the shipped space ----------------------------------------------------------------------------------------


def test_shipped_space_loads_with_its_searched_and_fixed_parameters():
    space = shipped(SHIPPED)

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
    assert space.fixed("xgboost") == {"max_bin": 256, "num_boost_round": 2000, "early_stopping_rounds": 50}
    assert "max_bin" not in searched(space, "xgboost")
    assert space.sha256 == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()


def test_shipped_space_types_sampled_values_like_xgboost_expects():
    space = shipped(SHIPPED)
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
    space = shipped(SHIPPED)
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
    space = load_text(tmp_path, f"parameters:\n  gamma: {declared}\n")  # xgboost takes an int or a float

    value = space.typed({"model": "xgboost", "gamma": sampled})["gamma"]

    assert type(value) is kind
    assert value == expected


@pytest.mark.parametrize("option", [True, False, 3, 2.5, "lossguide", "3"], ids=repr)
@pytest.mark.parametrize("kind", ["choice", "pchoice"])
def test_choice_returns_the_option_itself(tmp_path, kind, option):
    options = [option, "other"]
    probabilities = ", probabilities: [0.25, 0.75]" if kind == "pchoice" else ""
    path = write(
        tmp_path, f"parameters:\n  grow_policy: {{distribution: {kind}, options: [{option!r}, other]{probabilities}}}\n"
    )
    # The schema and the typing only: xgboost itself refuses most of these options (see spaces.load).
    space = spaces.SearchSpace(path, config.load_space(path), sha256="")
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
        config=SpaceConfig(parameters={"max_depth": QUniform(distribution="quniform", low=-2e6, high=2e6, q=q)}),
        sha256="x",
    )

    value = space.typed({"model": "xgboost", "max_depth": sampled})["max_depth"]

    assert type(value) is int
    assert abs(value - sampled) <= 0.5


@pytest.mark.parametrize(
    ("declared", "sampled", "typed"),
    [
        ("max_depth: {distribution: quniform, low: 3, high: 12, q: 1}", 2.0, 3),
        ("max_depth: {distribution: quniform, low: 3, high: 12, q: 1}", 13.0, 12),
        ("subsample: {distribution: quniform, low: 0.05, high: 0.95, q: 0.1}", 0.0, 0.1),
        ("max_leaves: {distribution: qloguniform, low: 0.001, high: 5, q: 1}", 0.0, 1),
    ],
)
def test_a_draw_one_step_beyond_the_grid_is_typed_as_its_nearest_end(tmp_path, declared, sampled, typed):
    """A draw on the very edge of its range rounds one step beyond; a trial never gets a value outside the
    grid (a log distribution's grid starts at q: it draws no zero)."""
    space = load_text(tmp_path, f"parameters:\n  {declared}\n")
    name = declared.split(":")[0]

    value = space.typed({"model": "xgboost", name: sampled})[name]

    assert value == pytest.approx(typed) and type(value) is type(typed)


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


@pytest.mark.parametrize(
    ("name", "drawn"),
    [
        ("eta", "uniform, low: 0.1, high: 0.5"),
        ("alpha", "uniform, low: 0.1, high: 0.5"),
        ("lambda", "uniform, low: 0.1, high: 0.5"),
        ("num_boost_round", "quniform, low: 10, high: 500, q: 10"),
        ("early_stopping_rounds", "quniform, low: 5, high: 50, q: 1"),
    ],
)
def test_native_aliases_and_training_knobs_are_accepted(tmp_path, name, drawn):
    space = load_text(tmp_path, f"parameters:\n  {name}: {{distribution: {drawn}}}\n")

    assert name in searched(space, "xgboost")


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


# --- several families, conditional options ---------------------------------------------------------------------

SHIPPED_MULTI = ROOT / "search_spaces" / "multi_family.yaml"
NESTED = """\
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
              sample_type:
                distribution: choice
                options:
                  - uniform
                  - value: weighted
                    parameters:
                      skip_drop: {distribution: uniform, low: 0.0, high: 0.5}
              one_drop: 1
      num_boost_round: 100
  ridge:
    parameters:
      alpha: {distribution: loguniform, low: 0.001, high: 100}
      fit_intercept: true
"""


def test_several_families_load_with_their_own_parameters(tmp_path):
    space = load_text(tmp_path, NESTED)

    assert space.families == ["xgboost", "ridge"]
    assert set(space.branches["xgboost"]) == {"max_depth", "booster", "num_boost_round"}
    assert set(space.branches["ridge"]) == {"alpha", "fit_intercept"}
    assert searched(space, "xgboost") == {"max_depth", "booster", "rate_drop", "sample_type", "skip_drop"}
    assert searched(space, "ridge") == {"alpha"}
    assert space.fixed("xgboost") == {"num_boost_round": 100}
    assert space.fixed("ridge") == {"fit_intercept": True}
    assert "skip_drop" in searched(space, "xgboost")
    assert "one_drop" not in searched(space, "xgboost")
    assert "fit_intercept" not in searched(space, "ridge")


def test_describe_shows_every_family_and_the_nested_paths(tmp_path):
    lines = load_text(tmp_path, NESTED).describe().splitlines()

    headers = [i for i, line in enumerate(lines) if not line.startswith(" ")]
    assert [lines[i] for i in headers] == ["model: xgboost", "model: ridge"]
    xgboost = {line.split()[0]: line for line in lines[headers[0] + 1 : headers[1]]}
    ridge = {line.split()[0]: line for line in lines[headers[1] + 1 :]}
    assert list(xgboost) == [
        "max_depth",
        "booster",
        "booster=dart.rate_drop",
        "booster=dart.sample_type",
        "booster=dart.sample_type=weighted.skip_drop",
        "booster=dart.one_drop",
        "num_boost_round",
    ]
    assert list(ridge) == ["alpha", "fit_intercept"]
    assert "choice(['gbtree', 'dart'])" in xgboost["booster"]
    assert xgboost["booster=dart.rate_drop"].endswith("-> float")
    assert "high=0.3" in xgboost["booster=dart.rate_drop"]
    assert xgboost["booster=dart.one_drop"].endswith("fixed 1")
    assert ridge["alpha"].endswith("-> float")
    assert ridge["fit_intercept"].endswith("fixed True")


def test_shipped_multi_family_space_loads_and_describes_each_family():
    space = shipped(SHIPPED_MULTI)
    text = space.describe()

    assert space.config.models is not None
    assert space.families == list(space.config.models)
    assert len(space.families) > 1
    for family in space.families:
        assert f"model: {family}" in text.splitlines()
    assert space.fixed("lasso") == {"max_iter": 5000}


def test_typed_flattens_a_nested_sample_with_the_chosen_options_parameters_only(tmp_path):
    space = load_text(tmp_path, NESTED)
    # hyperopt's sample of a conditional choice is the chosen option's mapping: the value under the choice's
    # own name, then the option's parameters.
    dart = {
        "model": "xgboost",
        "max_depth": 7.0,
        "num_boost_round": 100,
        "booster": {
            "booster": "dart",
            "rate_drop": np.float64(0.1),
            "one_drop": 1,
            "sample_type": {"sample_type": "weighted", "skip_drop": 0.25},
        },
    }
    gbtree = {"model": "xgboost", "max_depth": 4.0, "num_boost_round": 100, "booster": {"booster": "gbtree"}}
    uniform = {**dart, "booster": {**dart["booster"], "sample_type": {"sample_type": "uniform"}}}

    assert space.typed(dart) == {
        "model": "xgboost",
        "max_depth": 7,
        "booster": "dart",
        "rate_drop": 0.1,
        "sample_type": "weighted",
        "skip_drop": 0.25,
        "one_drop": 1,
        "num_boost_round": 100,
    }
    assert type(space.typed(dart)["rate_drop"]) is float
    assert type(space.typed(dart)["max_depth"]) is int
    assert space.typed(gbtree) == {"model": "xgboost", "max_depth": 4, "booster": "gbtree", "num_boost_round": 100}
    assert "skip_drop" not in space.typed(uniform)
    assert space.typed(uniform)["sample_type"] == "uniform"
    assert space.typed({"model": "ridge", "alpha": 0.5, "fit_intercept": True}) == {
        "model": "ridge",
        "alpha": 0.5,
        "fit_intercept": True,
    }


def test_sampled_configurations_hold_the_chosen_family_and_options_parameters(tmp_path):
    from pipeline.search import optimizer

    space = load_text(tmp_path, NESTED)

    samples = optimizer.sample(space, 300, seed=0)

    assert {p["model"] for p in samples} == {"xgboost", "ridge"}
    boosters = {p["booster"] for p in samples if p["model"] == "xgboost"}
    assert boosters == {"gbtree", "dart"}
    assert any(p.get("sample_type") == "weighted" for p in samples)
    for p in samples:
        if p["model"] == "ridge":
            assert set(p) == {"model", "alpha", "fit_intercept"}
            continue
        expected = {"model", "max_depth", "booster", "num_boost_round"}
        if p["booster"] == "dart":
            expected |= {"rate_drop", "sample_type", "one_drop"}
            if p["sample_type"] == "weighted":
                expected.add("skip_drop")
        assert set(p) == expected, p


def test_shipped_multi_family_samples_reach_every_family():
    from pipeline.search import optimizer

    space = shipped(SHIPPED_MULTI)

    samples = optimizer.sample(space, 300, seed=1)

    assert {p["model"] for p in samples} == set(space.families)
    for p in samples:
        assert set(p) == {"model", *space.branches[p["model"]]}, p


def test_a_family_of_fixed_values_only_is_allowed_among_several(tmp_path):
    space = load_text(
        tmp_path,
        "models:\n"
        "  ridge: {parameters: {alpha: 1.0}}\n"
        "  lasso: {parameters: {alpha: {distribution: loguniform, low: 0.001, high: 1}}}\n",
    )

    assert space.typed({"model": "ridge", "alpha": 1.0}) == {"model": "ridge", "alpha": 1.0}


NAME_PROBLEMS = [
    (
        "parameters:\n  booster:\n    distribution: choice\n    options:\n      - gbtree\n"
        "      - {value: dart, parameters: {rate_dorp: {distribution: uniform, low: 0, high: 0.3}}}\n",
        "parameters.booster=dart.rate_dorp",
        "not a xgboost hyperparameter; did you mean rate_drop?",
    ),
    (
        "parameters:\n  booster:\n    distribution: choice\n    options:\n      - gbtree\n"
        "      - value: dart\n        parameters:\n          sample_type:\n            distribution: choice\n"
        "            options: [uniform, {value: weighted, parameters: {skip_dorp: 0.1}}]\n",
        "parameters.booster=dart.sample_type=weighted.skip_dorp",
        "not a xgboost hyperparameter; did you mean skip_drop?",
    ),
    (
        "models:\n  ridge: {parameters: {max_depth: {distribution: quniform, low: 3, high: 12, q: 1}}}\n",
        "models.ridge.parameters.max_depth",
        "not a ridge hyperparameter; allowed: alpha,",
    ),
    (
        "models:\n"
        "  ridge: {parameters: {alpha: {distribution: loguniform, low: 0.001, high: 1}}}\n"
        "  xgboost: {parameters: {n_estimators: {distribution: quniform, low: 50, high: 150, q: 10}}}\n",
        "models.xgboost.parameters.n_estimators",
        "not a xgboost hyperparameter",
    ),
    (
        "parameters:\n  model: {distribution: choice, options: [a, b]}\n",
        "parameters.model",
        "not a xgboost hyperparameter",
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), NAME_PROBLEMS, ids=[n[1] for n in NAME_PROBLEMS])
def test_names_are_checked_per_family_at_every_depth(tmp_path, text, key, message):
    path = write(tmp_path, text)

    with pytest.raises(InputError) as caught:
        spaces.load(path)

    assert caught.value.key == key
    assert f"{path}: {key}: {message}" in str(caught.value)


FIXED_PROBLEMS = [
    (
        "model: xgboost\nparameters:\n"
        "  learning_rate: {distribution: loguniform, low: 0.02, high: 0.3}\n  max_depth: deep\n",
        "parameters.max_depth",
        "'deep' is refused by xgboost",
    ),
    (
        "models:\n"
        "  xgboost: {parameters: {learning_rate: {distribution: loguniform, low: 0.02, high: 0.3}}}\n"
        "  random_forest: {parameters: {n_estimators: many}}\n",
        "models.random_forest.parameters.n_estimators",
        "'many' is refused by random_forest",
    ),
    (
        "models:\n  ridge: {parameters: {alpha: {distribution: loguniform, low: 0.001, high: 1}, solver: fastest}}\n",
        "models.ridge.parameters.solver",
        "'fastest' is refused by ridge",
    ),
    # A fixed value inside an option is checked with that option chosen: xgboost ignores rate_drop (a
    # warning, no error) unless the booster is dart, and refuses 'lots' when it is.
    (
        "parameters:\n  max_depth: {distribution: quniform, low: 3, high: 12, q: 1}\n"
        "  booster: {distribution: choice, options: [gbtree, {value: dart, parameters: {rate_drop: lots}}]}\n",
        "parameters.booster=dart.rate_drop",
        "'lots' is refused by xgboost",
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), FIXED_PROBLEMS, ids=[f[1] for f in FIXED_PROBLEMS])
def test_fixed_value_the_estimator_refuses_is_refused_naming_the_key(tmp_path, text, key, message):
    path = write(tmp_path, text)

    with pytest.raises(InputError) as caught:
        spaces.load(path)

    assert caught.value.key == key
    assert f"{path}: {key}: {message}" in str(caught.value)
    assert "fix the value or sample it with a distribution" in str(caught.value)


DRAWN_PROBLEMS = [
    # xgboost takes max_depth as a whole number: a float step draws 5.5, and uniform draws any real
    ("model: xgboost\nparameters:\n  max_depth: {distribution: quniform, low: 3, high: 8, q: 0.5}\n", "5.5"),
    ("model: xgboost\nparameters:\n  max_depth: {distribution: uniform, low: 3, high: 8}\n", "5.5"),
    ("model: xgboost\nparameters:\n  max_depth: {distribution: quniform, low: 3, high: 9, q: 1.0}\n", "6.0"),
    ("model: random_forest\nparameters:\n  n_estimators: {distribution: loguniform, low: 10, high: 1000}\n", "100.0"),
]


@pytest.mark.parametrize(("text", "drawn"), DRAWN_PROBLEMS)
def test_a_distribution_that_draws_values_the_estimator_refuses_is_refused(tmp_path, text, drawn):
    """Every trial would fail, after the study had started writing to MLflow; a value from the middle of
    the range, typed as trials receive it, is fitted once, as a fixed value is."""
    path = write(tmp_path, text)

    with pytest.raises(InputError) as caught:
        spaces.load(path)

    message = str(caught.value)
    assert caught.value.key.endswith((".max_depth", ".n_estimators"))
    assert f"draws values such as {drawn}; {drawn} is refused by " in message
    assert message.endswith("; draw values it takes: an integer step (q: 1) draws whole numbers")


def test_fixed_values_the_estimators_accept_load(tmp_path):
    space = load_text(
        tmp_path,
        "models:\n"
        "  xgboost: {parameters: {max_depth: 6, tree_method: hist, learning_rate: {distribution: uniform, low: 0.1,"
        " high: 0.3}}}\n"
        "  random_forest: {parameters: {n_estimators: 20, max_features: 0.5, criterion: absolute_error}}\n",
    )

    assert space.fixed("random_forest") == {"n_estimators": 20, "max_features": 0.5, "criterion": "absolute_error"}


def test_a_name_both_outside_and_inside_a_conditional_option_is_refused(tmp_path):
    """A trial's parameters are one flat mapping: ``rate_drop`` sampled at the top level and again inside the
    dart option cannot both reach the estimator (``typed`` would keep one and drop the other)."""
    path = write(
        tmp_path,
        "parameters:\n"
        "  rate_drop: {distribution: uniform, low: 0.5, high: 0.6}\n"
        "  booster: {distribution: choice, options: [gbtree, {value: dart, parameters: "
        "{rate_drop: {distribution: uniform, low: 0.0, high: 0.1}}}]}\n",
    )

    with pytest.raises(InputError) as caught:
        spaces.load(path)

    assert "rate_drop" in caught.value.key


# --- the folder of invalid files ------------------------------------------------------------------------------


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
        "unknown_family",
        "model_and_models",
        "models_empty",
        "fixed_value_wrong_type",
        "fixed_value_wrong_type_in_models",
        "conditional_option_unknown_hyperparameter",
        "conditional_option_duplicate_value",
        "uniform_high_infinite",
        "loguniform_low_minus_infinite",
        "normal_mu_nan",
        "fixed_value_nan",
        "randint_beyond_int64",
        "quniform_beyond_int64",
        "choice_option_refused_by_estimator",
        "choice_option_refused_inside_a_conditional_option",
        "pchoice_option_refused_by_estimator",
        "duplicate_parameter",
        "choice_option_read_as_boolean",
    } <= names


@pytest.mark.parametrize("path", INVALID, ids=[path.stem for path in INVALID])
def test_invalid_space_is_refused(path):
    assert_refused_as_declared(spaces.load, path)


# --- choices: every option checked like a fixed value, and a sane number of them ------------------------------


def test_every_option_of_a_choice_is_checked_by_the_estimator_naming_the_option(tmp_path):
    text = (
        "model: xgboost\nparameters:\n"
        "  learning_rate: {distribution: loguniform, low: 0.02, high: 0.3}\n"
        "  tree_method: {distribution: choice, options: [hist, approx, histogram]}\n"
    )

    with pytest.raises(InputError) as caught:
        load_text(tmp_path, text)

    assert caught.value.key == "parameters.tree_method.options.2"
    assert "option 'histogram' is refused by xgboost" in str(caught.value)


def test_a_conditional_options_own_value_is_checked_too(tmp_path):
    text = (
        "model: xgboost\nparameters:\n  booster:\n    distribution: choice\n    options:\n      - gbtree\n"
        "      - value: dartt\n        parameters:\n          rate_drop: {distribution: uniform, low: 0, high: 0.3}\n"
    )

    with pytest.raises(InputError) as caught:
        load_text(tmp_path, text)

    assert caught.value.key == "parameters.booster.options.1"
    assert "option 'dartt' is refused by xgboost" in str(caught.value)


def test_options_every_estimator_accepts_load(tmp_path):
    text = (
        "models:\n"
        "  xgboost:\n    parameters:\n"
        "      tree_method: {distribution: choice, options: [hist, approx]}\n"
        "      grow_policy: {distribution: pchoice, options: [depthwise, lossguide], probabilities: [0.5, 0.5]}\n"
        "  random_forest:\n    parameters:\n"
        "      max_features: {distribution: choice, options: [sqrt, 0.5, 1.0]}\n"
    )

    space = load_text(tmp_path, text)

    assert space.families == ["xgboost", "random_forest"]


def test_a_choice_with_more_options_than_the_limit_is_refused_before_any_check(tmp_path):
    options = ", ".join(str(i) for i in range(MAX_CHOICE_OPTIONS + 1))
    path = write(tmp_path, f"model: xgboost\nparameters:\n  max_bin: {{distribution: choice, options: [{options}]}}\n")

    with pytest.raises(InputError) as caught:
        config.load_space(path)

    assert caught.value.key == "parameters.max_bin.options"
    assert f"{MAX_CHOICE_OPTIONS + 1} options, more than the {MAX_CHOICE_OPTIONS} allowed" in str(caught.value)
