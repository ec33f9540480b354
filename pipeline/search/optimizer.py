"""The only module that imports hyperopt: compile a search space to a hyperopt expression, run fmin.

hyperopt is barely maintained; keeping it behind this module means a replacement touches one file.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from hyperopt import (
    JOB_STATE_DONE,
    JOB_STATE_ERROR,
    STATUS_FAIL,
    STATUS_OK,
    Trials,
    anneal,
    fmin,
    hp,
    rand,
    space_eval,
    tpe,
)
from hyperopt.base import spec_from_misc
from hyperopt.exceptions import AllTrialsFailed
from hyperopt.pyll import stochastic

from pipeline.config import MODEL_KEY, Choice, ConditionalOption, Parameter, PChoice, Scalar, option_value
from pipeline.errors import InputError
from pipeline.spaces import SearchSpace


def algorithm_for(name: str, tpe_options: dict[str, Any] | None = None, file: Any = None) -> Callable[..., Any]:
    """hyperopt's suggest function; raises InputError when atpe's dependencies are missing."""
    if name == "tpe":
        return partial(tpe.suggest, **(tpe_options or {}))
    if name == "atpe":
        try:
            import lightgbm  # noqa: F401  (atpe imports it only on first use, deep inside a trial)
            from hyperopt import atpe
        except ImportError:
            raise InputError(file, "algorithm", "atpe needs lightgbm", "pip install lightgbm, or use tpe") from None
        return atpe.suggest
    return {"rand": rand.suggest, "anneal": anneal.suggest}[name]


OK, FAIL = STATUS_OK, STATUS_FAIL


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
    if kind == "quniform":
        return hp.quniform(label, d.low, d.high, d.q)
    if kind == "loguniform":
        return hp.loguniform(label, math.log(d.low), math.log(d.high))
    if kind == "qloguniform":
        return hp.qloguniform(label, math.log(d.low), math.log(d.high), d.q)
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


@dataclass(frozen=True)
class PastTrial:
    """A finished trial fed back to the algorithm on resume: its typed parameters and its loss."""

    number: int
    params: dict[str, Any]
    loss: float | None
    """None for a failed trial (hyperopt's STATUS_FAIL)."""


@dataclass(frozen=True)
class Plan:
    """What to search and for how long, whether trials run here or on Spark.

    Past trials are inserted as already evaluated, and the random stream is advanced past the draws they
    used, so a study resumed after a crash proposes what the uninterrupted study would have proposed.
    ``first`` are typed parameters to evaluate before the algorithm proposes anything (a warm start from
    earlier studies). The search ends at ``max_evals`` trials (past ones included) or once ``should_stop()``.
    """

    space: SearchSpace
    max_evals: int
    seed: int
    algorithm: Callable[..., Any] = tpe.suggest
    past: Sequence[PastTrial] = ()
    first: Sequence[dict[str, Any]] = ()
    should_stop: Callable[[], bool] = lambda: False

    def run(
        self, objective: Callable[[dict[str, Any]], dict[str, Any]], trials: Trials, compiled: Any, **fmin_args: Any
    ) -> None:
        """fmin over ``trials``, which proposes nothing once ``should_stop()``. fmin's last step looks up the
        best trial and raises if all failed: the caller reports those."""
        with contextlib.suppress(AllTrialsFailed):
            fmin(
                objective,
                compiled,
                algo=partial(_unless_stopped, self.algorithm, self.should_stop),
                max_evals=self.max_evals,
                trials=_queued(
                    _trials_from(trials, self.space, self.past),
                    self.space,
                    self.first[: self.max_evals - len(self.past)],
                    start=len(self.past),
                ),
                rstate=_advanced_rng(self.seed, len(self.past)),
                show_progressbar=False,
                **fmin_args,
            )


def minimize(objective: Callable[[dict[str, Any]], dict[str, Any]], plan: Plan) -> None:
    """Run ``plan``'s trials one after the other; the objective receives the sampled values (choices
    resolved, not yet typed)."""
    if len(plan.past) < plan.max_evals:  # a stop is checked after each trial, not only before a proposal
        plan.run(objective, Trials(), compile_space(plan.space), early_stop_fn=lambda _, *a: (plan.should_stop(), a))


def minimize_on_spark(
    objective: Callable[[dict[str, Any]], dict[str, Any]],
    plan: Plan,
    spark: Any,
    parallelism: int,
    on_finished: Callable[[dict[str, Any], dict[str, Any] | None, str | None], None],
) -> None:
    """``minimize`` with ``parallelism`` trials at once on Spark workers (hyperopt's SparkTrials).

    ``objective`` runs on a worker; ``on_finished(values, result, error)`` runs here, on the driver, once per
    trial in the order they finish (``result`` None and ``error`` set when the worker died). Once
    ``should_stop()`` is true no trial is proposed, and those already running are waited for, not lost.
    Proposals depend on which trials have finished, so a parallel study is not replayed exactly.
    """
    if len(plan.past) >= plan.max_evals:
        return
    compiled = compile_space(plan.space)
    settled = {t.number for t in plan.past}
    trials = _observed_spark_trials(compiled, on_finished, parallelism, spark, settled)
    plan.run(objective, trials, compiled)  # no early_stop_fn: SparkTrials would cancel the running trials
    trials.refresh()  # the trials that finished after fmin's last look


def _unless_stopped(algorithm: Callable[..., Any], should_stop: Callable[[], bool], *args: Any) -> list[Any]:
    """No proposal once the study should stop: fmin then waits for the running trials and returns."""
    return [] if should_stop() else algorithm(*args)


def _advanced_rng(seed: int, past: int) -> np.random.Generator:
    """The random stream moved past the draws of ``past`` trials: hyperopt draws one seed per proposal."""
    rstate = np.random.default_rng(seed)
    for _ in range(past):
        rstate.integers(2**31 - 1)
    return rstate


def _observed_spark_trials(
    compiled: Any, on_finished: Callable[..., None], parallelism: int, spark: Any, settled: set[int]
) -> Trials:
    """SparkTrials that hands each finished trial to the driver's callback when fmin refreshes it
    (``settled``: the trials already handed over). Imported here: hyperopt.spark imports pyspark."""
    from hyperopt.spark import SparkTrials

    class ObservedSparkTrials(SparkTrials):
        def __init__(self) -> None:
            self._settling = threading.Lock()
            super().__init__(parallelism=parallelism, spark_session=spark)

        def refresh(self) -> None:
            super().refresh()
            with self._settling:
                for doc in list(self._dynamic_trials):
                    if doc["tid"] in settled:
                        continue
                    status = doc["result"].get("status")
                    done = doc["state"] == JOB_STATE_DONE and status in (STATUS_OK, STATUS_FAIL)
                    died = doc["state"] == JOB_STATE_ERROR and "error" in doc["misc"]
                    if done or died:
                        settled.add(doc["tid"])
                        values = space_eval(compiled, spec_from_misc(doc["misc"]))
                        error = f"{doc['misc']['error'][0]}: the Spark task failed" if died else None
                        on_finished(values, None if died else doc["result"], error)

    return ObservedSparkTrials()


def _trials_from(trials: Trials, space: SearchSpace, past: Sequence[PastTrial]) -> Trials:
    """``trials`` with the past trials inserted as evaluated, under their own numbers."""
    if not past:
        return trials
    docs = []
    for trial in past:
        result = {"status": STATUS_FAIL} if trial.loss is None else {"status": STATUS_OK, "loss": trial.loss}
        docs.extend(trials.new_trial_docs([trial.number], [None], [result], [_misc(space, trial.number, trial.params)]))
    for doc in docs:
        doc["state"] = JOB_STATE_DONE
    trials.insert_trial_docs(docs)
    trials.refresh()
    return trials


def _queued(trials: Trials, space: SearchSpace, points: Sequence[dict[str, Any]], start: int) -> Trials:
    """``trials`` with typed parameters queued for hyperopt to evaluate before it proposes its own."""
    if not points:
        return trials
    tids = list(range(start, start + len(points)))
    miscs = [_misc(space, tid, params) for tid, params in zip(tids, points, strict=True)]
    trials.insert_trial_docs(trials.new_trial_docs(tids, [None] * len(tids), [{"status": "new"}] * len(tids), miscs))
    trials.refresh()
    return trials


def _misc(space: SearchSpace, tid: int, params: dict[str, Any]) -> dict[str, Any]:
    vals = encode(space, params)
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
