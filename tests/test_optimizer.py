"""Property tests of the search: whatever the declared space, every trial's values respect it, and seeds replay."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import optimizer, spaces
from pipeline.config import (
    Choice,
    LogNormal,
    LogUniform,
    Normal,
    PChoice,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    RandInt,
    SpaceConfig,
    Uniform,
)

ROOT = Path(__file__).resolve().parent.parent
FEW = settings(max_examples=25, deadline=None)

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
options = st.lists(scalars, min_size=1, max_size=5, unique_by=repr)


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


def gaussian(kind: type, mu_range: float, **extra: st.SearchStrategy) -> st.SearchStrategy:
    name = kind.model_fields["distribution"].annotation.__args__[0]
    return st.builds(
        lambda ms, **kw: kind(distribution=name, mu=ms[0], sigma=ms[1], **kw),
        gaussians(mu_range),
        **extra,
    )


DISTRIBUTIONS = {
    "uniform": bounded(Uniform, bounds()),
    "quniform": bounded(QUniform, bounds(), q=steps),
    "loguniform": bounded(LogUniform, log_bounds()),
    "qloguniform": bounded(QLogUniform, log_bounds(), q=steps),
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


def run(space: spaces.SearchSpace, *, max_evals: int, seed: int, algorithm: str) -> list[dict[str, Any]]:
    """The typed parameters of every trial, in order; the loss depends on them so TPE has something to model."""
    seen: list[dict[str, Any]] = []

    def objective(values: dict[str, Any]) -> dict[str, Any]:
        params = space.typed(values)
        seen.append(params)
        loss = sum(float(v) for v in params.values() if isinstance(v, int | float) and math.isfinite(v))
        return {"loss": loss if math.isfinite(loss) else 0.0, "status": optimizer.OK}

    optimizer.minimize(objective, space, max_evals=max_evals, seed=seed, algorithm=algorithm)
    assert len(seen) == max_evals
    return seen


# --- what a sampled value must satisfy ------------------------------------------------------------------------


def is_multiple(value: float, q: float) -> bool:
    ratio = value / q
    return abs(ratio - round(ratio)) <= 1e-6 * max(1.0, abs(ratio))


def check(name: str, dist: Any, value: Any) -> None:
    kind = dist.distribution
    if kind in ("choice", "pchoice"):
        assert any(value == o and type(value) is type(o) for o in dist.options), (name, value, dist.options)
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
    slack = q / 2 if q is not None else 0.0
    if kind in ("uniform", "quniform"):
        tol = 1e-9 * max(1.0, abs(dist.low), abs(dist.high))
        assert dist.low - slack - tol <= value <= dist.high + slack + tol, (name, value, dist)
    elif kind in ("loguniform", "qloguniform"):
        # Sampled as exp(uniform(log low, log high)): allow the rounding of exp/log.
        assert dist.low * (1 - 1e-9) - slack <= value <= dist.high * (1 + 1e-9) + slack, (name, value, dist)
    elif kind == "lognormal":
        assert value > 0, (name, value)
    elif kind == "qlognormal":
        assert value >= 0, (name, value)


def check_trial(space: spaces.SearchSpace, params: dict[str, Any]) -> None:
    assert set(params) == set(space.config.parameters)
    for name, value in space.fixed.items():
        assert params[name] == value
        assert type(params[name]) is type(value)
    for name, dist in space.searched.items():
        check(name, dist, params[name])


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
    space=search_spaces(),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    algorithm=st.sampled_from(["tpe", "rand"]),
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


# --- beyond TPE's random start-up trials ----------------------------------------------------------------------


def test_tpe_model_phase_stays_inside_the_shipped_space():
    """TPE samples at random for its first 20 trials; only later ones come from its model of the losses."""
    space = spaces.load(ROOT / "search_spaces" / "xgboost.yaml")

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
    space = spaces.load(ROOT / "search_spaces" / "xgboost.yaml")

    def loss(params: dict[str, Any]) -> float:
        return params["learning_rate"] * params["max_depth"] + params["subsample"]

    def search(max_evals: int, past=()) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []

        def objective(values: dict[str, Any]) -> dict[str, Any]:
            seen.append(space.typed(values))
            return {"status": "ok", "loss": loss(seen[-1])}

        optimizer.minimize(objective, space, max_evals=max_evals, seed=5, past=past)
        return seen

    uninterrupted = search(26)
    before_crash = search(11)
    past = [optimizer.PastTrial(i, p, loss(p)) for i, p in enumerate(before_crash)]
    after_resume = search(26, past)

    assert len(after_resume) == 15
    assert before_crash + after_resume == uninterrupted
    assert search(11, past) == []  # the budget counts past trials


def test_should_stop_ends_the_search_after_the_current_trial():
    space = spaces.load(ROOT / "search_spaces" / "xgboost.yaml")
    seen: list[dict[str, Any]] = []

    def objective(values: dict[str, Any]) -> dict[str, Any]:
        seen.append(values)
        return {"status": "ok", "loss": 1.0}

    optimizer.minimize(objective, space, max_evals=10, seed=1, should_stop=lambda: len(seen) >= 3)

    assert len(seen) == 3
