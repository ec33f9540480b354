"""A search space as hyperopt reads it: the expression it samples, and a configuration as its trial record
holds it (per label, ``[value]`` when active, a choice as its option's index)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hyperopt import hp, space_eval
from hyperopt.pyll import stochastic

from pipeline.config import MODEL_KEY, Choice, ConditionalOption, Parameter, PChoice, Scalar, option_value
from pipeline.spaces import SearchSpace

Key = frozenset[tuple[str, type, Any]]
"""A configuration's identity: its typed parameters, each with its type (``1``, ``1.0`` and ``True`` differ)."""


def compile_space(space: SearchSpace) -> Any:
    """The space as a hyperopt expression; ``SearchSpace.typed`` turns a sample of it into trial parameters.

    Several families become a choice labelled ``model``; labels are prefixed by the family
    (``ridge.alpha``) and by a conditional option (``booster=dart.rate_drop``) so that each is unique.
    Log bounds turn into the exponents hyperopt wants.
    """
    branches = space.branches
    if len(branches) == 1:
        ((family, params),) = branches.items()
        return {MODEL_KEY: family, **_compile(params, "")}
    return hp.choice(MODEL_KEY, [{MODEL_KEY: f, **_compile(p, f"{f}.")} for f, p in branches.items()])


def _compile(params: dict[str, Parameter], prefix: str) -> dict[str, Any]:
    compiled: dict[str, Any] = {}
    for name, parameter in params.items():
        label = prefix + name
        if isinstance(parameter, Scalar):
            compiled[name] = parameter
        elif isinstance(parameter, Choice) and parameter.conditional:
            options = []
            for option in parameter.options:
                value = option_value(option)
                nested = option.parameters if isinstance(option, ConditionalOption) else {}
                options.append({name: value, **_compile(nested, f"{label}={value}.")})
            compiled[name] = hp.choice(label, options)
        else:
            compiled[name] = _distribution(label, parameter)
    return compiled


def _distribution(label: str, d: Any) -> Any:
    kind = d.distribution
    if kind == "uniform":
        return hp.uniform(label, d.low, d.high)
    if kind == "quniform":  # hyperopt's own bounds would give the first and last values half a step each
        return hp.quniform(label, *d.drawn_bounds, d.q)
    if kind == "loguniform":
        return hp.loguniform(label, math.log(d.low), math.log(d.high))
    if kind == "qloguniform":
        return hp.qloguniform(label, *map(math.log, d.drawn_bounds), d.q)
    if kind == "normal":
        return hp.normal(label, d.mu, d.sigma)
    if kind == "qnormal":
        return hp.qnormal(label, d.mu, d.sigma, d.q)
    if kind == "lognormal":
        return hp.lognormal(label, d.mu, d.sigma)
    if kind == "qlognormal":
        return hp.qlognormal(label, d.mu, d.sigma, d.q)
    if kind == "randint":
        return hp.randint(label, d.low, d.high + 1)
    if kind == "choice":
        return hp.choice(label, d.options)
    if kind == "pchoice":
        return hp.pchoice(label, list(zip(d.probabilities, d.options, strict=True)))
    raise ValueError(f"unsupported distribution {kind}")  # config.Distribution lists exactly the kinds above


def key_of(space: SearchSpace, compiled: Any, vals: dict[str, list[Any]]) -> Key:
    """The key of a configuration as hyperopt records it (per label, ``[value]`` when active)."""
    typed = space.typed(space_eval(compiled, {label: value[0] for label, value in vals.items() if value}))
    return frozenset((name, type(value), value) for name, value in typed.items())


def misc(space: SearchSpace, tid: int, params: dict[str, Any]) -> dict[str, Any]:
    return misc_of(tid, encode(space, params))


def misc_of(tid: int, vals: dict[str, list[Any]]) -> dict[str, Any]:
    """hyperopt's record of a trial's sampled values (``vals``: per label, ``[value]`` or ``[]``)."""
    idxs = {label: [tid] if value else [] for label, value in vals.items()}
    return {"tid": tid, "cmd": ("domain_attachment", "FMinIter_Domain"), "workdir": None, "idxs": idxs, "vals": vals}


def encode(space: SearchSpace, params: dict[str, Any]) -> dict[str, list[Any]]:
    """Trial parameters as hyperopt records them: per label, ``[value]`` when active, ``[]`` when not;
    a choice's value is its option's index."""
    vals: dict[str, list[Any]] = {}
    branches = space.branches
    if len(branches) > 1:
        vals[MODEL_KEY] = [list(branches).index(params[MODEL_KEY])]
    for family, family_params in branches.items():
        prefix = f"{family}." if len(branches) > 1 else ""
        _encode(family_params, prefix, params if family == params[MODEL_KEY] else None, vals)
    return vals


def _encode(params: dict[str, Parameter], prefix: str, active: dict[str, Any] | None, vals: dict) -> None:
    for name, parameter in params.items():
        label = prefix + name
        if isinstance(parameter, Scalar):
            continue
        if not isinstance(parameter, Choice | PChoice):
            vals[label] = [] if active is None else [active[name]]
            continue
        index = None if active is None else _index(parameter, active[name])
        vals[label] = [] if index is None else [index]
        for i, option in enumerate(parameter.options):
            if isinstance(option, ConditionalOption):
                _encode(option.parameters, f"{label}={option.value}.", active if i == index else None, vals)


def _index(choice: Any, value: Any) -> int:
    return next(
        i for i, o in enumerate(choice.options) if option_value(o) == value and type(option_value(o)) is type(value)
    )


def sample(space: SearchSpace, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` configurations drawn from the prior, typed as a trial would receive them."""
    compiled, rng = compile_space(space), np.random.default_rng(seed)
    return [space.typed(stochastic.sample(compiled, rng=rng)) for _ in range(count)]
