"""Property tests of the search: whatever the declared space (one family or several, conditional options nested
at any depth), every trial's values respect it, seeds replay, and a resumed search continues the same sequence."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hyperopt import Trials, fmin
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import spaces
from pipeline.config import (
    FAMILIES,
    Choice,
    ConditionalOption,
    FamilySpace,
    LogNormal,
    LogUniform,
    Normal,
    PChoice,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    RandInt,
    Scalar,
    SpaceConfig,
    Uniform,
    option_value,
)
from pipeline.errors import InputError
from pipeline.search import optimizer
from pipeline.search.history import History

ROOT = Path(__file__).resolve().parents[2]
FEW = settings(max_examples=20, deadline=None)


@functools.cache
def shipped_space() -> spaces.SearchSpace:
    """search_spaces/xgboost.yaml, loaded once: loading checks each fixed value with a real fit (seconds)."""
    return spaces.load(ROOT / "search_spaces" / "xgboost.yaml")


# --- strategies: one per distribution kind --------------------------------------------------------------------

steps = st.one_of(
    st.integers(min_value=1, max_value=5),
    st.floats(min_value=0.01, max_value=5, allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-10, max_value=10),
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
options = st.lists(scalars, min_size=1, max_size=5, unique_by=str)  # a choice refuses 1 and "1" (and True, "True")


@st.composite
def bounds(draw) -> tuple[float, float]:
    low = draw(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False))
    width = draw(st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False))
    return low, low + width


@st.composite
def log_bounds(draw) -> tuple[float, float]:
    low = draw(st.floats(min_value=1e-4, max_value=1e2, allow_nan=False, allow_infinity=False))
    factor = draw(st.floats(min_value=1.01, max_value=1e3, allow_nan=False, allow_infinity=False))
    return low, low * factor


@st.composite
def gaussians(draw, mu_range: float) -> tuple[float, float]:
    mu = draw(st.floats(min_value=-mu_range, max_value=mu_range, allow_nan=False, allow_infinity=False))
    sigma = draw(st.floats(min_value=0.01, max_value=mu_range, allow_nan=False, allow_infinity=False))
    return mu, sigma


@st.composite
def pchoices(draw) -> PChoice:
    opts = draw(options)
    weights = draw(st.lists(st.floats(min_value=0.05, max_value=1.0), min_size=len(opts), max_size=len(opts)))
    total = sum(weights)
    return PChoice(distribution="pchoice", options=opts, probabilities=[w / total for w in weights])


@st.composite
def randints(draw) -> RandInt:
    low = draw(st.integers(min_value=-50, max_value=50))
    return RandInt(distribution="randint", low=low, high=low + draw(st.integers(min_value=1, max_value=50)))


def bounded(kind: type, pair: st.SearchStrategy, **extra: st.SearchStrategy) -> st.SearchStrategy:
    name = kind.model_fields["distribution"].annotation.__args__[0]
    return st.builds(
        lambda lh, **kw: kind(distribution=name, low=lh[0], high=lh[1], **kw),
        pair,
        **extra,
    )


@st.composite
def grids(draw, kind: type, pair: st.SearchStrategy) -> Any:
    """A quantized bounded distribution whose bounds hold at least one multiple of its step (the file is
    refused otherwise); for a log one, a multiple from q on."""
    low, high = draw(pair)
    q = draw(steps)
    first = max(math.ceil(low / q), 1 if kind is QLogUniform else -math.inf) * q
    if high < first:
        high = first + draw(st.sampled_from([0, q, 3 * q]))
    return kind(distribution=kind.model_fields["distribution"].annotation.__args__[0], low=low, high=high, q=q)


def gaussian(kind: type, mu_range: float, **extra: st.SearchStrategy) -> st.SearchStrategy:
    name = kind.model_fields["distribution"].annotation.__args__[0]
    return st.builds(
        lambda ms, **kw: kind(distribution=name, mu=ms[0], sigma=ms[1], **kw),
        gaussians(mu_range),
        **extra,
    )


DISTRIBUTIONS = {
    "uniform": bounded(Uniform, bounds()),
    "quniform": grids(QUniform, bounds()),
    "loguniform": bounded(LogUniform, log_bounds()),
    "qloguniform": grids(QLogUniform, log_bounds()),
    "normal": gaussian(Normal, 100.0),
    "qnormal": gaussian(QNormal, 100.0, q=steps),
    # mu and sigma of the logarithm: keep exp() far from overflow.
    "lognormal": gaussian(LogNormal, 3.0),
    "qlognormal": gaussian(QLogNormal, 3.0, q=steps),
    "randint": randints(),
    "choice": st.builds(lambda o: Choice(distribution="choice", options=o), options),
    "pchoice": pchoices(),
}
any_distribution = st.one_of(*DISTRIBUTIONS.values())


@st.composite
def search_spaces(draw, always: tuple[str, ...] = ()) -> spaces.SearchSpace:
    """A valid space: each kind in ``always`` once, then a few random distributions and fixed values."""
    parameters: dict[str, Any] = {f"p_{kind}": draw(DISTRIBUTIONS[kind]) for kind in always}
    for i, dist in enumerate(draw(st.lists(any_distribution, min_size=0 if always else 1, max_size=5))):
        parameters[f"p{i}_{dist.distribution}"] = dist
    for i, value in enumerate(draw(st.lists(scalars, max_size=3))):
        parameters[f"fixed{i}"] = value
    return spaces.SearchSpace(file=Path("space.yaml"), config=SpaceConfig(parameters=parameters), sha256="x")


# Values of a conditional option: labels are built from them (``c3=dart.p4_uniform``), so they are kept
# distinct as text too (``1`` and ``'1'`` would give one label: see the test of that case below), and -0.0 is
# folded into 0.0 (equal to it, so the chosen option would be ambiguous).
option_values = st.lists(
    st.one_of(
        st.booleans(),
        st.integers(min_value=-10, max_value=10),
        st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False).map(lambda f: f + 0.0),
        st.text(alphabet="abxyz019_-", max_size=4),
    ),
    min_size=1,
    max_size=3,
    unique_by=str,
)


@st.composite
def parameter_sets(draw, names: itertools.count, depth: int, min_searched: int = 0) -> dict[str, Any]:
    """A family's parameters: a few distributions, fixed values and, while ``depth`` allows, a conditional
    choice whose options bring parameters of their own. Names are unique across depths (``names``)."""
    parameters: dict[str, Any] = {}
    for dist in draw(st.lists(any_distribution, min_size=min_searched, max_size=3)):
        parameters[f"p{next(names)}_{dist.distribution}"] = dist
    for value in draw(st.lists(scalars, max_size=2)):
        parameters[f"fixed{next(names)}"] = value
    if depth > 0 and draw(st.booleans()):
        name = f"c{next(names)}"
        opts: list[Any] = []
        for value in draw(option_values):
            if draw(st.booleans()):
                opts.append(ConditionalOption(value=value, parameters=draw(parameter_sets(names, depth - 1))))
            else:
                opts.append(value)
        parameters[name] = Choice(distribution="choice", options=opts)
    return parameters


@st.composite
def nested_spaces(draw, several: bool = True) -> spaces.SearchSpace:
    """A space over one to three families (``models:``), each with conditional choices up to two deep."""
    families = draw(st.lists(st.sampled_from(FAMILIES), min_size=2 if several else 1, max_size=3, unique=True))
    names = itertools.count()
    models = {
        family: FamilySpace(parameters=draw(parameter_sets(names, depth=2, min_searched=0 if several else 1)))
        for family in families
    }
    return spaces.SearchSpace(file=Path("space.yaml"), config=SpaceConfig(models=models), sha256="x")


def loss_of(params: dict[str, Any]) -> float:
    """A loss that depends on the parameters (numbers, and which family and options were chosen)."""
    loss = sum(float(v) for v in params.values() if isinstance(v, int | float) and math.isfinite(v))
    loss += len(params) + FAMILIES.index(params["model"])
    return loss if math.isfinite(loss) and abs(loss) < 1e300 else 0.0


def run(
    space: spaces.SearchSpace, *, max_evals: int, seed: int, algorithm: str, **options: Any
) -> list[dict[str, Any]]:
    """The typed parameters of every trial, in order; the loss depends on them so TPE has something to model."""
    seen: list[dict[str, Any]] = []

    def objective(values: dict[str, Any]) -> dict[str, Any]:
        params = space.typed(values)
        seen.append(params)
        return {"loss": loss_of(params), "status": optimizer.OK}

    suggest = optimizer.algorithm_for(algorithm, options or None)
    stopped = optimizer.minimize(objective, optimizer.Plan(space, max_evals, seed, suggest))
    # A space with fewer configurations than the budget (a lone randint, say) is exhausted early.
    assert len(seen) == max_evals or "exhausted" in (stopped or ""), (len(seen), stopped)
    assert len({repr(sorted(p.items())) for p in seen}) == len(seen), "a configuration was evaluated twice"
    return seen


# --- what a sampled value must satisfy ------------------------------------------------------------------------


def is_multiple(value: float, q: float) -> bool:
    ratio = value / q
    return abs(ratio - round(ratio)) <= 1e-6 * max(1.0, abs(ratio))


def check(name: str, dist: Any, value: Any) -> None:
    kind = dist.distribution
    if kind in ("choice", "pchoice"):
        values = [option_value(o) for o in dist.options]
        assert any(value == o and type(value) is type(o) for o in values), (name, value, values)
        return
    integer = isinstance(dist, RandInt) or type(getattr(dist, "q", None)) is int
    assert type(value) is (int if integer else float), (name, type(value), dist)
    assert math.isfinite(value), (name, value)
    if kind == "randint":
        assert dist.low <= value <= dist.high, (name, value, dist)
        return
    q = getattr(dist, "q", None)
    if q is not None:
        assert is_multiple(value, q), (name, value, q)
    if kind in ("uniform", "quniform"):  # a quantized value too: its grid lies within the bounds
        tol = 1e-6 * max(1.0, abs(dist.low), abs(dist.high))
        assert dist.low - tol <= value <= dist.high + tol, (name, value, dist)
    elif kind in ("loguniform", "qloguniform"):
        # Sampled as exp(uniform(log low, log high)): allow the rounding of exp/log.
        assert dist.low * (1 - 1e-6) <= value <= dist.high * (1 + 1e-6), (name, value, dist)
    elif kind == "lognormal":
        assert value > 0, (name, value)
    elif kind == "qlognormal":
        assert value >= 0, (name, value)


def active(declared: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The declarations a trial must have followed: every parameter of the branch, and the parameters of
    each conditional option that the trial chose (recursively)."""
    out: dict[str, Any] = {}
    for name, parameter in declared.items():
        out[name] = parameter
        if isinstance(parameter, Choice) and parameter.conditional:
            chosen = [o for o in parameter.options if option_value(o) == params[name]]
            chosen = [o for o in chosen if type(option_value(o)) is type(params[name])]
            assert len(chosen) == 1, (name, params[name], parameter.options)
            if isinstance(chosen[0], ConditionalOption):
                out |= active(chosen[0].parameters, params)
    return out


def check_trial(space: spaces.SearchSpace, params: dict[str, Any]) -> None:
    """The trial names one of the families, holds exactly that family's parameters (with the chosen options'
    own), the fixed ones as written and each sampled one inside its bounds with its declared type."""
    family = params["model"]
    assert family in space.families, (family, space.families)
    declared = active(space.branches[family], params)
    assert set(params) == {"model", *declared}, (params, declared)
    for name, parameter in declared.items():
        if isinstance(parameter, Scalar):
            assert params[name] == parameter, (name, params[name], parameter)
            assert type(params[name]) is type(parameter), name
        else:
            check(name, parameter, params[name])


# --- properties -----------------------------------------------------------------------------------------------


@FEW
@given(
    space=search_spaces(),
    max_evals=st.integers(min_value=5, max_value=15),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    algorithm=st.sampled_from(["tpe", "rand"]),
)
def test_every_sampled_value_respects_its_declaration(space, max_evals, seed, algorithm):
    for params in run(space, max_evals=max_evals, seed=seed, algorithm=algorithm):
        check_trial(space, params)


@FEW
@given(space=search_spaces(always=tuple(DISTRIBUTIONS)), seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_every_kind_together_respects_its_declaration(space, seed):
    for params in run(space, max_evals=5, seed=seed, algorithm="tpe"):
        check_trial(space, params)


@FEW
@given(
    space=st.one_of(nested_spaces(), nested_spaces(several=False)),
    max_evals=st.integers(min_value=5, max_value=12),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    algorithm=st.sampled_from(["tpe", "rand", "anneal"]),
)
def test_several_families_and_nested_options_respect_their_declaration(space, max_evals, seed, algorithm):
    # n_startup_jobs=3: most of these trials come from TPE's model, not from its random start-up.
    options = {"n_startup_jobs": 3} if algorithm == "tpe" else {}
    for params in run(space, max_evals=max_evals, seed=seed, algorithm=algorithm, **options):
        check_trial(space, params)


@FEW
@given(
    space=st.one_of(search_spaces(), nested_spaces()),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    algorithm=st.sampled_from(["tpe", "rand", "anneal"]),
)
def test_same_seed_replays_the_same_parameters(space, seed, algorithm):
    first = run(space, max_evals=6, seed=seed, algorithm=algorithm)
    second = run(space, max_evals=6, seed=seed, algorithm=algorithm)

    assert [repr(p) for p in first] == [repr(p) for p in second]


@FEW
@given(
    space=search_spaces(always=("uniform",)),
    seeds=st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=2, max_size=2, unique=True),
    algorithm=st.sampled_from(["tpe", "rand"]),
)
def test_different_seeds_sample_differently(space, seeds, algorithm):
    first = run(space, max_evals=5, seed=seeds[0], algorithm=algorithm)
    second = run(space, max_evals=5, seed=seeds[1], algorithm=algorithm)

    # p_uniform is continuous: two seeds drawing the same five values would be a seeding bug.
    assert [p["p_uniform"] for p in first] != [p["p_uniform"] for p in second]


# --- encode: typed parameters back to what hyperopt records ---------------------------------------------------


def searched_with_hyperopt(space: spaces.SearchSpace, max_evals: int, seed: int) -> tuple[list[dict], Trials]:
    """fmin on the compiled space, straight: the typed parameters and hyperopt's own record of each trial."""
    seen: list[dict[str, Any]] = []

    def objective(values: dict[str, Any]) -> float:
        seen.append(space.typed(values))
        return loss_of(seen[-1])

    trials = Trials()
    fmin(
        objective,
        optimizer.compile_space(space),
        algo=optimizer.algorithm_for("tpe", {"n_startup_jobs": 3}),
        max_evals=max_evals,
        trials=trials,
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
    )
    return seen, trials


def recorded(vals: dict[str, list]) -> dict[str, list[float]]:
    return {label: [float(v) for v in values] for label, values in vals.items()}


@FEW
@given(
    space=st.one_of(search_spaces(), nested_spaces(), nested_spaces(several=False)),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_encode_gives_back_what_hyperopt_recorded(space, seed):
    seen, trials = searched_with_hyperopt(space, max_evals=6, seed=seed)

    for params, trial in zip(seen, trials.trials, strict=True):
        assert recorded(optimizer.encode(space, params)) == recorded(trial["misc"]["vals"]), params


@FEW
@given(
    space=st.one_of(nested_spaces(), nested_spaces(several=False)),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    stop_after=st.integers(min_value=1, max_value=7),
    algorithm=st.sampled_from(["tpe", "rand", "anneal"]),
)
def test_resumed_nested_search_continues_the_uninterrupted_one(space, seed, stop_after, algorithm):
    options = {"n_startup_jobs": 3} if algorithm == "tpe" else None
    suggest = optimizer.algorithm_for(algorithm, options)

    def search(max_evals: int, past=()) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []

        def objective(values: dict[str, Any]) -> dict[str, Any]:
            seen.append(space.typed(values))
            return {"status": optimizer.OK, "loss": loss_of(seen[-1])}

        optimizer.minimize(objective, optimizer.Plan(space, max_evals, seed, suggest, past=past))
        return seen

    uninterrupted = search(8)
    past = [optimizer.PastTrial(i, p, loss_of(p)) for i, p in enumerate(uninterrupted[:stop_after])]

    assert [repr(p) for p in search(8, past)] == [repr(p) for p in uninterrupted[stop_after:]]


NESTED_SPACE = """\
models:
  xgboost:
    parameters:
      max_depth: {distribution: quniform, low: 3, high: 12, q: 1}
      learning_rate: {distribution: loguniform, low: 0.02, high: 0.3}
      max_bin: {distribution: randint, low: 16, high: 64}
      grow_policy: {distribution: pchoice, options: [depthwise, lossguide], probabilities: [0.4, 0.6]}
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
  random_forest:
    parameters:
      n_estimators: {distribution: quniform, low: 50, high: 150, q: 10}
      max_features: {distribution: choice, options: [sqrt, 0.5, 1.0]}
  ridge:
    parameters:
      alpha: {distribution: loguniform, low: 0.001, high: 100}
"""


@pytest.fixture(scope="module")
def nested_space(tmp_path_factory) -> spaces.SearchSpace:
    path = tmp_path_factory.mktemp("nested") / "space.yaml"
    path.write_text(NESTED_SPACE)
    return spaces.load(path)


def nested_loss(params: dict[str, Any]) -> float | None:
    """None (a failed trial) for large forests: resume must replay failures too."""
    if params["model"] == "random_forest":
        return None if params["n_estimators"] > 120 else params["n_estimators"] / 100
    if params["model"] == "ridge":
        return 1 + math.log(params["alpha"])
    return params["learning_rate"] * params["max_depth"] + params.get("rate_drop", 0.5)


def search_nested(space: spaces.SearchSpace, max_evals: int, past=(), **options: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def objective(values: dict[str, Any]) -> dict[str, Any]:
        seen.append(space.typed(values))
        loss = nested_loss(seen[-1])
        return {"status": optimizer.FAIL} if loss is None else {"status": optimizer.OK, "loss": loss}

    suggest = optimizer.algorithm_for("tpe", options or None)
    optimizer.minimize(objective, optimizer.Plan(space, max_evals, 11, suggest, past=past))
    return seen


def test_resumed_nested_multi_family_search_proposes_what_the_uninterrupted_one_did(nested_space):
    """Beyond TPE's 20 random start-up trials: the resumed search's model is built from encoded past trials."""
    uninterrupted = search_nested(nested_space, 26)
    before_crash = uninterrupted[:11]
    past = [optimizer.PastTrial(i, p, nested_loss(p)) for i, p in enumerate(before_crash)]

    after_resume = search_nested(nested_space, 26, past)

    for params in uninterrupted:
        check_trial(nested_space, params)
    # The history exercises what encode must get right: each family, both boosters, a failed trial.
    assert {p["model"] for p in before_crash} == {"xgboost", "random_forest", "ridge"}
    assert {p["booster"] for p in uninterrupted if p["model"] == "xgboost"} == {"gbtree", "dart"}
    assert any(nested_loss(p) is None for p in before_crash)
    assert len(after_resume) == 15
    assert [repr(p) for p in before_crash + after_resume] == [repr(p) for p in uninterrupted]
    assert search_nested(nested_space, 11, past) == []


def test_tpe_startup_jobs_option_changes_proposals_after_the_startup_trials(nested_space):
    default = search_nested(nested_space, 10)
    tuned = search_nested(nested_space, 10, n_startup_jobs=3)

    # The same random start-up trials, then TPE's model instead of more random draws.
    assert [repr(p) for p in tuned[:3]] == [repr(p) for p in default[:3]]
    assert all(repr(t) != repr(d) for t, d in zip(tuned[3:], default[3:], strict=True))
    assert [repr(p) for p in search_nested(nested_space, 10, n_startup_jobs=3)] == [repr(p) for p in tuned]


def test_tpe_options_reach_the_algorithm(nested_space):
    default = search_nested(nested_space, 8, n_startup_jobs=3)
    other_gamma = search_nested(nested_space, 8, n_startup_jobs=3, gamma=0.9, n_EI_candidates=2)

    assert [repr(p) for p in other_gamma[:3]] == [repr(p) for p in default[:3]]
    assert [repr(p) for p in other_gamma[3:]] != [repr(p) for p in default[3:]]


def test_a_space_of_one_family_is_modelled_jointly_and_a_nested_one_by_hyperopts_tpe(nested_space):
    """The joint model applies where every parameter is present in every trial: after the same random
    start-up trials it proposes otherwise than hyperopt's univariate TPE. A nested space keeps hyperopt's."""
    flat = shipped_space()
    joint = run(flat, max_evals=14, seed=2, algorithm="tpe", n_startup_jobs=6)
    univariate = run(flat, max_evals=14, seed=2, algorithm="tpe", n_startup_jobs=6, multivariate=False)
    assert [repr(p) for p in joint[:6]] == [repr(p) for p in univariate[:6]]
    assert all(repr(j) != repr(u) for j, u in zip(joint[6:], univariate[6:], strict=True))

    nested = search_nested(nested_space, 10, n_startup_jobs=3)
    assert [repr(p) for p in nested] == [repr(p) for p in search_nested(nested_space, 10, n_startup_jobs=3,
                                                                        multivariate=False)]  # fmt: skip


@pytest.mark.parametrize("algorithm", ["rand", "anneal"])
def test_rand_and_anneal_search_the_nested_space(nested_space, algorithm):
    first = run(nested_space, max_evals=25, seed=4, algorithm=algorithm)
    again = run(nested_space, max_evals=25, seed=4, algorithm=algorithm)
    tpe = run(nested_space, max_evals=25, seed=4, algorithm="tpe", n_startup_jobs=3)

    for params in first:
        check_trial(nested_space, params)
    assert {p["model"] for p in first} == {"xgboost", "random_forest", "ridge"}
    assert [repr(p) for p in again] == [repr(p) for p in first]
    assert [repr(p) for p in first[3:]] != [repr(p) for p in tpe[3:]]


def test_atpe_without_lightgbm_is_an_input_error_naming_it(tmp_path):
    study = tmp_path / "study.yaml"
    if importlib.util.find_spec("lightgbm") is not None:
        assert callable(optimizer.algorithm_for("atpe", None, study))
        return

    with pytest.raises(InputError) as caught:
        optimizer.algorithm_for("atpe", None, study)

    error = caught.value
    assert error.exit_code == 2
    assert error.file == study
    assert error.key == "algorithm"
    assert "lightgbm" in str(error)
    assert str(error).startswith(f"{study}: algorithm: ")


def test_options_equal_as_text_with_nested_parameters_of_one_name_can_be_searched(tmp_path):
    """``1`` and ``'1'`` are distinct options, but labelled alike (``max_leaves=1.max_depth``): hyperopt
    refuses duplicate labels, so such a file must be refused when loaded or searched without error."""
    path = tmp_path / "space.yaml"
    path.write_text(
        "parameters:\n"
        "  max_leaves:\n"
        "    distribution: choice\n"
        "    options:\n"
        "      - {value: 1, parameters: {max_depth: {distribution: quniform, low: 1, high: 3, q: 1}}}\n"
        "      - {value: '1', parameters: {max_depth: {distribution: quniform, low: 5, high: 8, q: 1}}}\n"
    )
    try:
        space = spaces.load(path)
    except InputError as error:
        assert "max_leaves" in str(error)
        return

    seen = run(space, max_evals=4, seed=0, algorithm="tpe")

    for params in seen:
        check_trial(space, params)


# --- quantized ranges ------------------------------------------------------------------------------------------


def test_every_value_of_a_quantized_range_is_drawn_alike_its_ends_included(tmp_path):
    """hyperopt rounds a draw from low..high, which gives the first and last values half a step each: with
    max_depth 3..12, depth 3 came up half as often as depth 4, in the random start-up and in TPE's model
    alike. The pipeline widens the range by half a step on each side, as Optuna does for integers."""
    path = tmp_path / "space.yaml"
    path.write_text(
        "parameters:\n"
        "  max_depth: {distribution: quniform, low: 3, high: 12, q: 1}\n"
        "  max_delta_step: {distribution: quniform, low: 0, high: 1, q: 0.25}\n"
        "  max_leaves: {distribution: qloguniform, low: 1, high: 4, q: 1}\n"
        "  subsample: {distribution: uniform, low: 0.5, high: 1}\n"  # no configuration drawn twice
    )
    space = spaces.load(path)

    seen = run(space, max_evals=600, seed=0, algorithm="rand")

    depths = Counter(p["max_depth"] for p in seen)
    assert sorted(depths) == list(range(3, 13))
    assert min(depths.values()) > 0.75 * len(seen) / 10  # 3 and 12 as often as the others (binomial sd 13%)
    steps = Counter(p["max_delta_step"] for p in seen)
    assert sorted(steps) == [0.0, 0.25, 0.5, 0.75, 1.0] and min(steps.values()) > 0.8 * len(seen) / 5
    leaves = Counter(p["max_leaves"] for p in seen)  # log-uniform over 0.5..4.5: each value its log interval
    expected = {v: math.log((v + 0.5) / (v - 0.5)) / math.log(4.5 / 0.5) for v in range(1, 5)}
    assert sorted(leaves) == [1, 2, 3, 4]
    assert all(abs(leaves[v] / len(seen) - share) < 0.05 for v, share in expected.items())  # sd < 0.021


# --- beyond TPE's random start-up trials ----------------------------------------------------------------------


def test_tpe_model_phase_stays_inside_the_shipped_space():
    """TPE samples at random for its first 20 trials; only later ones come from its model of the losses."""
    space = shipped_space()

    seen = run(space, max_evals=30, seed=7, algorithm="tpe")

    for params in seen:
        check_trial(space, params)
    depths = {p["max_depth"] for p in seen}
    assert depths <= set(range(3, 13))
    assert len(depths) > 1


def test_tpe_model_phase_stays_inside_every_kind(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "parameters:\n"
        "  max_depth: {distribution: quniform, low: 3, high: 12, q: 1}\n"
        "  max_leaves: {distribution: qloguniform, low: 8, high: 256, q: 8}\n"
        "  learning_rate: {distribution: loguniform, low: 0.01, high: 0.3}\n"
        "  subsample: {distribution: uniform, low: 0.5, high: 1.0}\n"
        "  max_bin: {distribution: randint, low: 16, high: 64}\n"
        "  gamma: {distribution: lognormal, mu: -2, sigma: 1}\n"
        "  min_child_weight: {distribution: qlognormal, mu: 1, sigma: 0.5, q: 0.5}\n"
        "  reg_alpha: {distribution: normal, mu: 0, sigma: 1}\n"
        "  reg_lambda: {distribution: qnormal, mu: 5, sigma: 2, q: 1}\n"
        "  max_delta_step: {distribution: quniform, low: 0, high: 1, q: 0.25}\n"
        "  grow_policy: {distribution: choice, options: [depthwise, lossguide]}\n"
        "  tree_method: {distribution: pchoice, options: [hist, approx, exact], probabilities: [0.6, 0.3, 0.1]}\n"
        "  validate_parameters: {distribution: choice, options: [true, false]}\n"
        "  num_boost_round: 100\n"
    )
    space = spaces.load(path)

    seen = run(space, max_evals=30, seed=3, algorithm="tpe")

    for params in seen:
        check_trial(space, params)
    assert {p["validate_parameters"] for p in seen} <= {True, False}


def test_a_resumed_search_proposes_what_the_uninterrupted_one_did():
    """Past trials fed back (with the random stream advanced past them) continue the same sequence,
    beyond TPE's 20 random start-up trials too."""
    space = shipped_space()

    def loss(params: dict[str, Any]) -> float:
        return params["learning_rate"] * params["max_depth"] + params["subsample"]

    def search(max_evals: int, past=()) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []

        def objective(values: dict[str, Any]) -> dict[str, Any]:
            seen.append(space.typed(values))
            return {"status": "ok", "loss": loss(seen[-1])}

        optimizer.minimize(objective, optimizer.Plan(space, max_evals, 5, past=past))
        return seen

    uninterrupted = search(26)
    before_crash = search(11)
    past = [optimizer.PastTrial(i, p, loss(p)) for i, p in enumerate(before_crash)]
    after_resume = search(26, past)

    assert len(after_resume) == 15
    assert before_crash + after_resume == uninterrupted
    assert search(11, past) == []  # the budget counts past trials


def test_should_stop_ends_the_search_after_the_current_trial():
    space = shipped_space()
    seen: list[dict[str, Any]] = []

    def objective(values: dict[str, Any]) -> dict[str, Any]:
        seen.append(values)
        return {"status": "ok", "loss": 1.0}

    optimizer.minimize(objective, optimizer.Plan(space, 10, 1, should_stop=lambda: len(seen) >= 3))

    assert len(seen) == 3


# --- warm start, no repeated configuration, seeds per retrain month ---------------------------------------------

WARM_SPACE = """\
parameters:
  max_depth: {distribution: quniform, low: 3, high: 12, q: 1}
  learning_rate: {distribution: loguniform, low: 0.02, high: 0.3}
  booster: {distribution: choice, options: [gbtree, dart]}
  num_boost_round: 100
"""
# 3 x 3 = 9 configurations: small enough for TPE to propose one it already evaluated.
TINY_SPACE = """\
parameters:
  max_depth: {distribution: quniform, low: 3, high: 5, q: 1}
  booster: {distribution: choice, options: [gbtree, dart, gblinear]}
"""


def load_space(tmp_path_factory, text: str) -> spaces.SearchSpace:
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(text)
    return spaces.load(path)


@pytest.fixture(scope="module")
def warm_space(tmp_path_factory) -> spaces.SearchSpace:
    return load_space(tmp_path_factory, WARM_SPACE)


@pytest.fixture(scope="module")
def tiny_space(tmp_path_factory) -> spaces.SearchSpace:
    return load_space(tmp_path_factory, TINY_SPACE)


def cheap_loss(params: dict[str, Any]) -> float:
    return params["max_depth"] * params.get("learning_rate", 0.1) + (params["booster"] == "dart")


def search_plan(plan: optimizer.Plan) -> tuple[list[dict[str, Any]], str | None]:
    """The typed parameters of each trial the plan ran, in order, and the optimizer's own stop reason."""
    seen: list[dict[str, Any]] = []

    def objective(values: dict[str, Any]) -> dict[str, Any]:
        seen.append(plan.space.typed(values))
        return {"status": optimizer.OK, "loss": cheap_loss(seen[-1])}

    return seen, optimizer.minimize(objective, plan)


def keys(trials: list[dict[str, Any]]) -> list[str]:
    return [repr(sorted(p.items())) for p in trials]


WARM = 4
DERIVED_42_2013_05 = 1012290579


@pytest.mark.parametrize("budget", range(1, WARM + 2))
def test_warm_start_points_run_first_whatever_the_budget(warm_space, budget):
    """hyperopt counts queued points toward max_evals: with points >= budget nothing used to run at all."""
    points = optimizer.sample(warm_space, WARM, seed=1)
    suggest = optimizer.algorithm_for("tpe", {"n_startup_jobs": 2})

    seen, stopped = search_plan(optimizer.Plan(warm_space, budget, 3, suggest, first=points))

    assert stopped is None
    assert len(seen) == budget
    assert seen[: min(budget, WARM)] == points[:budget]
    assert len(set(keys(seen))) == budget, "the proposal after the warm start repeats one of its points"
    for params in seen:
        check_trial(warm_space, params)


def test_should_stop_also_stops_between_warm_start_points(warm_space):
    points = optimizer.sample(warm_space, WARM, seed=1)
    seen: list[dict[str, Any]] = []

    def objective(values: dict[str, Any]) -> dict[str, Any]:
        seen.append(warm_space.typed(values))
        return {"status": optimizer.OK, "loss": 1.0}

    plan = optimizer.Plan(warm_space, 10, 3, first=points, should_stop=lambda: len(seen) >= 2)
    optimizer.minimize(objective, plan)

    assert seen == points[:2]


def test_duplicate_warm_start_points_run_once(warm_space):
    points = optimizer.sample(warm_space, 2, seed=1)

    seen, _ = search_plan(optimizer.Plan(warm_space, 3, 3, first=[points[0], points[1], points[0]]))

    assert seen[:2] == points
    assert len(set(keys(seen))) == 3


@pytest.mark.parametrize("seed", range(4))
def test_a_study_never_evaluates_a_configuration_twice(tiny_space, seed):
    suggest = optimizer.algorithm_for("tpe", {"n_startup_jobs": 2})
    points = optimizer.sample(tiny_space, 2, seed=seed)

    for first in ((), points):
        seen, stopped = search_plan(optimizer.Plan(tiny_space, 8, seed, suggest, first=first))

        assert len(seen) == 8 and stopped is None
        assert len(set(keys(seen))) == 8, keys(seen)


def test_an_exhausted_space_stops_the_study_with_a_reason(tiny_space):
    seen, stopped = search_plan(optimizer.Plan(tiny_space, 12, 0, optimizer.algorithm_for("tpe")))

    assert len(seen) == 9
    assert len(set(keys(seen))) == 9
    assert stopped is not None and "exhausted" in stopped and "9 distinct" in stopped


@pytest.mark.parametrize("algorithm", ["tpe", "rand", "anneal"])
def test_proposals_without_repeats_replay_for_a_seed_and_after_a_resume(tiny_space, algorithm):
    """Re-draws use seeds derived from hyperopt's, not its random stream: a resume still replays."""
    suggest = optimizer.algorithm_for(algorithm, {"n_startup_jobs": 2} if algorithm == "tpe" else None)

    def plan(past=()) -> optimizer.Plan:
        return optimizer.Plan(tiny_space, 8, 5, suggest, past=past)

    uninterrupted, _ = search_plan(plan())
    assert search_plan(plan())[0] == uninterrupted
    for stop_after in (1, 4, 7):
        past = [optimizer.PastTrial(i, p, cheap_loss(p)) for i, p in enumerate(uninterrupted[:stop_after])]
        assert search_plan(plan(past))[0] == uninterrupted[stop_after:]


def test_a_resumed_warm_started_study_replays_exactly_from_its_history(tmp_path, warm_space):
    """The history records the warm-start points and marks the trials that ran them; a resume built from it
    alone proposes what the uninterrupted study did, whether it stopped inside the warm start or after."""
    points = optimizer.sample(warm_space, WARM, seed=2)
    suggest = optimizer.algorithm_for("tpe", {"n_startup_jobs": 3})

    def study(path: Path, max_evals: int, kill_after: int | None = None) -> list[dict[str, Any]]:
        """A study that records its trials as run_search does, killed (its process gone) after a few."""
        history = History(path)
        state = history.read()
        if state is None:
            history.start({"parent_run_id": "p"}, warm_start=points)
            state = history.read()
        past = [
            optimizer.PastTrial(t["number"], t["params"], t["loss"], warm_start=t["number"] in state.warm_start_numbers)
            for t in state.trials
        ]
        plan = optimizer.Plan(warm_space, max_evals, 9, suggest, past=past, first=state.warm_start)
        seen: list[dict[str, Any]] = []

        def objective(values: dict[str, Any]) -> dict[str, Any]:
            if kill_after is not None and len(seen) == kill_after:
                raise KeyboardInterrupt  # the process dies before this trial finishes
            params = warm_space.typed(values)
            seen.append(params)
            number = len(past) + len(seen) - 1
            history.append_trial(
                {"number": number, "params": params, "loss": cheap_loss(params)}, warm_start=plan.is_warm_start(params)
            )
            return {"status": optimizer.OK, "loss": cheap_loss(params)}

        with contextlib.suppress(KeyboardInterrupt):
            optimizer.minimize(objective, plan)
        return seen

    uninterrupted = study(tmp_path / "whole.jsonl", 9)
    assert uninterrupted[:WARM] == points
    assert History(tmp_path / "whole.jsonl").read().warm_start_numbers == set(range(WARM))
    for kill_after in (1, WARM - 1, WARM, WARM + 2):
        path = tmp_path / f"killed-{kill_after}.jsonl"
        before = study(path, 9, kill_after)
        after = study(path, 9)
        assert before + after == uninterrupted, kill_after


def test_a_resume_that_lacks_the_warm_start_points_it_used_is_refused(warm_space):
    points = optimizer.sample(warm_space, 2, seed=2)
    past = [optimizer.PastTrial(0, points[0], 1.0, warm_start=True)]

    with pytest.raises(ValueError, match="warm-start"):
        optimizer.minimize(
            lambda values: {"status": optimizer.OK, "loss": 1.0}, optimizer.Plan(warm_space, 3, 1, past=past)
        )


def test_derived_seed_is_stable_31_bit_and_differs_by_month():
    months = [f"2013-{m:02d}" for m in range(1, 13)]
    seeds = [optimizer.derived_seed(42, month) for month in months]

    assert len(set(seeds)) == len(months)
    assert all(0 <= s < 2**31 for s in seeds)
    assert seeds == [optimizer.derived_seed(42, month) for month in months]
    assert optimizer.derived_seed(43, "2013-01") != seeds[0]
    assert optimizer.derived_seed(42, "2013", "01") != seeds[0], "parts are kept apart, not concatenated"
    # A fixed value: the same in every process and Python version (no salted hash()).
    assert optimizer.derived_seed(42, "2013-05") == DERIVED_42_2013_05
