"""The only module that imports hyperopt: compile a search space to a hyperopt expression, run fmin.

hyperopt is barely maintained; keeping it behind this module means a replacement touches one file.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK, Trials, anneal, fmin, hp, rand, tpe
from hyperopt.exceptions import AllTrialsFailed
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


@dataclass(frozen=True)
class PastTrial:
    """A finished trial fed back to the algorithm on resume: its typed parameters and its loss."""

    number: int
    params: dict[str, Any]
    loss: float | None
    """None for a failed trial (hyperopt's STATUS_FAIL)."""


def minimize(
    objective: Callable[[dict[str, Any]], dict[str, Any]],
    space: SearchSpace,
    *,
    max_evals: int,
    seed: int,
    algorithm: str = "tpe",
    past: Sequence[PastTrial] = (),
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Run trials until ``max_evals`` (past ones included) or until ``should_stop()`` says so.

    The objective receives the sampled values (choices resolved, not yet typed). Past trials are inserted
    as already evaluated, and the random stream is advanced past the draws they used, so a study resumed
    after a crash proposes what the uninterrupted study would have proposed.
    """
    if len(past) >= max_evals:
        return
    trials = _trials_from(space, past)
    rstate = np.random.default_rng(seed)
    for _ in past:
        rstate.integers(2**31 - 1)  # hyperopt draws one seed per proposed trial
    # fmin's last step looks up the best trial and raises if all failed; the caller reports those.
    with contextlib.suppress(AllTrialsFailed):
        fmin(
            objective,
            compile_space(space),
            algo=ALGORITHMS[algorithm],
            max_evals=max_evals,
            trials=trials,
            rstate=rstate,
            show_progressbar=False,
            early_stop_fn=lambda _trials, *args: (should_stop(), args),
        )


def _trials_from(space: SearchSpace, past: Sequence[PastTrial]) -> Trials:
    trials = Trials()
    if not past:
        return trials
    docs = []
    for trial in past:
        vals = {name: [_encode(dist, trial.params[name])] for name, dist in space.searched.items()}
        misc = {
            "tid": trial.number,
            "cmd": ("domain_attachment", "FMinIter_Domain"),
            "workdir": None,
            "idxs": {name: [trial.number] for name in vals},
            "vals": vals,
        }
        result = {"status": STATUS_FAIL} if trial.loss is None else {"status": STATUS_OK, "loss": trial.loss}
        docs.extend(trials.new_trial_docs([trial.number], [None], [result], [misc]))
    for doc in docs:
        doc["state"] = JOB_STATE_DONE
    trials.insert_trial_docs(docs)
    trials.refresh()
    return trials


def _encode(dist: Any, value: Any) -> Any:
    """A typed value as hyperopt stores it: the option's index for a choice, the value otherwise."""
    if dist.distribution in ("choice", "pchoice"):
        return next(i for i, option in enumerate(dist.options) if option == value and type(option) is type(value))
    return value


def sample(space: SearchSpace, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` configurations drawn from the prior, typed as a trial would receive them."""
    compiled, rng = compile_space(space), np.random.default_rng(seed)
    return [space.typed(stochastic.sample(compiled, rng=rng)) for _ in range(count)]
