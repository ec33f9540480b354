"""The only module that imports hyperopt: compile a search space to a hyperopt expression, run fmin.

hyperopt is barely maintained; keeping it behind this module means a replacement touches one file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, Trials, anneal, fmin, hp, rand, tpe
from hyperopt.pyll import stochastic

from pipeline.spaces import SearchSpace

ALGORITHMS = {"tpe": tpe.suggest, "rand": rand.suggest, "anneal": anneal.suggest}
OK, FAIL = STATUS_OK, STATUS_FAIL


def compile_space(space: SearchSpace) -> dict[str, Any]:
    """One hyperopt expression per searched parameter; log bounds turn into the exponents hyperopt wants."""
    compiled = {}
    for name, d in space.searched.items():
        kind = d.distribution
        if kind == "uniform":
            compiled[name] = hp.uniform(name, d.low, d.high)
        elif kind == "quniform":
            compiled[name] = hp.quniform(name, d.low, d.high, d.q)
        elif kind == "loguniform":
            compiled[name] = hp.loguniform(name, math.log(d.low), math.log(d.high))
        elif kind == "qloguniform":
            compiled[name] = hp.qloguniform(name, math.log(d.low), math.log(d.high), d.q)
        elif kind == "normal":
            compiled[name] = hp.normal(name, d.mu, d.sigma)
        elif kind == "qnormal":
            compiled[name] = hp.qnormal(name, d.mu, d.sigma, d.q)
        elif kind == "lognormal":
            compiled[name] = hp.lognormal(name, d.mu, d.sigma)
        elif kind == "qlognormal":
            compiled[name] = hp.qlognormal(name, d.mu, d.sigma, d.q)
        elif kind == "randint":
            compiled[name] = hp.randint(name, d.low, d.high + 1)
        elif kind == "choice":
            compiled[name] = hp.choice(name, d.options)
        elif kind == "pchoice":
            compiled[name] = hp.pchoice(name, list(zip(d.probabilities, d.options, strict=True)))
        else:  # pragma: no cover - config.Distribution lists exactly the kinds above
            raise ValueError(f"unsupported distribution {kind}")
    return compiled


def minimize(
    objective: Callable[[dict[str, Any]], dict[str, Any]],
    space: SearchSpace,
    *,
    max_evals: int,
    seed: int,
    algorithm: str = "tpe",
    trials: Trials | None = None,
) -> Trials:
    """Run the search; the objective receives the sampled values (choices resolved, not yet typed)."""
    trials = trials if trials is not None else Trials()
    compiled = compile_space(space)
    fmin(
        objective,
        compiled,
        algo=ALGORITHMS[algorithm],
        max_evals=max_evals,
        trials=trials,
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
    )
    return trials


def sample(space: SearchSpace, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` configurations drawn from the prior, typed as a trial would receive them."""
    compiled, rng = compile_space(space), np.random.default_rng(seed)
    return [space.typed(stochastic.sample(compiled, rng=rng)) for _ in range(count)]
