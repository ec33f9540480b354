"""The only package that imports hyperopt: a study's search as hyperopt's fmin (or an ask/tell loop over its
trial record, for trials run several at once), with resume, warm-start points and no configuration twice.

hyperopt is barely maintained; keeping it behind this package means a replacement touches one folder:
``space`` (a search space as hyperopt samples and records it), ``algorithms`` (the suggest functions a
study names, TPE with its joint model) and this module (the plan and its loops).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

import numpy as np
from hyperopt import (
    JOB_STATE_DONE,
    JOB_STATE_RUNNING,
    STATUS_FAIL,
    STATUS_OK,
    STATUS_RUNNING,
    Trials,
    fmin,
    rand,
    space_eval,
)
from hyperopt.base import Domain, spec_from_misc
from hyperopt.exceptions import AllTrialsFailed

from pipeline.errors import PipelineError
from pipeline.search.optimizer.algorithms import TPE, algorithm_for
from pipeline.search.optimizer.space import Key, compile_space, encode, key_of, misc, sample
from pipeline.spaces import SearchSpace

__all__ = [
    "FAIL",
    "OK",
    "TPE",
    "PastTrial",
    "Plan",
    "algorithm_for",
    "compile_space",
    "derived_seed",
    "encode",
    "minimize",
    "minimize_parallel",
    "sample",
]

OK, FAIL = STATUS_OK, STATUS_FAIL
DEFAULT_ALGORITHM = TPE()
"""TPE at hyperopt's defaults, with the joint model where the space allows it."""


def derived_seed(seed: int, *parts: str) -> int:
    """A seed in ``[0, 2**31 - 1)`` derived from ``seed`` and ``parts`` (a retrain's as-of month, say).

    Stable across processes, machines and Python versions (SHA-256, not the salted ``hash()``), so a rerun
    draws exactly what the first run drew while each month's study explores differently. Parts are kept
    apart: ``("2013", "05")`` and ``("2013-05",)`` give different seeds.

    >>> derived_seed(42, "2013-05") == derived_seed(42, "2013-05") != derived_seed(42, "2013-06")
    True
    """
    text = "\x1f".join([str(seed), *parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % (2**31 - 1)


@dataclass(frozen=True)
class PastTrial:
    """A finished trial fed back to the algorithm on resume: its typed parameters and its loss."""

    number: int
    params: dict[str, Any]
    loss: float | None
    """None for a failed trial (hyperopt's STATUS_FAIL)."""
    warm_start: bool = False
    """It evaluated one of the study's warm-start points (``Plan.first``), as its history records."""


REDRAWS = 8
"""Proposals asked of the algorithm (with derived seeds) before a repeated configuration is given up on."""
PRIOR_DRAWS = 256
"""Then draws from the prior; when none is new either, the space counts as exhausted."""


@dataclass(frozen=True)
class Plan:
    """What to search and for how long, whether trials run one at a time or several at once.

    Past trials are inserted as already evaluated, and the random stream is advanced past the draws they
    used, so a study resumed after a crash proposes what the uninterrupted study would have proposed.
    ``first`` are typed parameters to evaluate before the algorithm proposes anything (a warm start from
    earlier studies): each is one proposal of the budget, so a budget smaller than ``first`` runs its first
    points only. A resumed study must pass the same ``first`` (its history records them): those already
    evaluated are skipped, the others still come first. The search ends at ``max_evals`` trials (past ones
    included), once ``should_stop()``, or when the space is exhausted.

    A study never evaluates one configuration (typed parameters) twice: a proposal equal to an evaluated or
    queued trial, or to a warm-start point, is asked again of the algorithm with seeds derived from the
    proposal's own (``REDRAWS`` times), then drawn from the prior (``PRIOR_DRAWS`` times). When none is new,
    as in a small discrete space whose every configuration was evaluated, the search stops and ``run`` says
    why. Derived seeds leave hyperopt's random stream alone, so seeds still replay and resumes stay exact.
    """

    space: SearchSpace
    max_evals: int
    seed: int
    algorithm: Callable[..., Any] = DEFAULT_ALGORITHM
    past: Sequence[PastTrial] = ()
    first: Sequence[dict[str, Any]] = ()
    should_stop: Callable[[], bool] = lambda: False

    @cached_property
    def compiled(self) -> Any:
        return compile_space(self.space)

    @cached_property
    def _warm_keys(self) -> list[Key]:
        return [self.key(params) for params in self.first]

    def key(self, params: dict[str, Any]) -> Key:
        """The identity of typed parameters, read back as a trial would receive them (so ``1`` given for a
        float parameter is the same configuration as ``1.0`` sampled)."""
        return key_of(self.space, self.compiled, encode(self.space, params))

    def is_warm_start(self, params: dict[str, Any]) -> bool:
        """Whether a trial's typed parameters are one of the warm-start points: the flag its history records.
        (No proposal of the algorithm equals a warm-start point, so this tells them apart.)"""
        return self.key(params) in self._warm_keys

    def run(
        self, objective: Callable[[dict[str, Any]], dict[str, Any]], trials: Trials, compiled: Any, **fmin_args: Any
    ) -> str | None:
        """fmin over ``trials``, which proposes nothing once ``should_stop()``; returns why the search stopped
        before ``max_evals`` on its own account (the space exhausted), or None. fmin's last step looks up the
        best trial and raises if all failed: the caller reports those."""
        self._check_warm_start()
        proposer = _Proposer(self)
        with contextlib.suppress(AllTrialsFailed):
            fmin(
                objective,
                compiled,
                algo=partial(_unless_stopped, proposer, self.should_stop),
                max_evals=self.max_evals,
                trials=_trials_from(trials, self.space, self.past),
                rstate=_advanced_rng(self.seed, len(self.past)),
                show_progressbar=False,
                **fmin_args,
            )
        return proposer.exhausted

    def _check_warm_start(self) -> None:
        """Raises ValueError when a past trial is marked as a warm-start point that ``first`` lacks: the caller
        resumed without the study's warm-start points, and the resume would not replay the study."""
        unknown = [t.number for t in self.past if t.warm_start and self.key(t.params) not in self._warm_keys]
        if unknown:
            raise ValueError(
                f"past trials {unknown} ran warm-start points that Plan.first lacks: "
                "resume with the warm-start points the study started with (its history records them)"
            )


def minimize(objective: Callable[[dict[str, Any]], dict[str, Any]], plan: Plan) -> str | None:
    """Run ``plan``'s trials one after the other; the objective receives the sampled values (choices
    resolved, not yet typed). Returns ``Plan.run``'s stop reason."""
    if len(plan.past) >= plan.max_evals:
        return None
    # A stop is checked after each trial, not only before a proposal.
    return plan.run(objective, Trials(), plan.compiled, early_stop_fn=lambda _, *a: (plan.should_stop(), a))


def minimize_parallel(
    submit: Callable[[dict[str, Any]], Future[Any]],
    plan: Plan,
    parallelism: int,
    on_finished: Callable[[dict[str, Any], Any, str | None], dict[str, Any]],
) -> str | None:
    """``plan``'s trials, up to ``parallelism`` at once: an ask/tell loop over hyperopt's record, shared by the
    parallel engines (worker processes here, resident Spark workers).

    ``submit(values)`` starts a trial (the sampled values, as ``minimize``'s objective receives them) and
    returns its future; ``on_finished(values, payload, error)`` runs here, once per trial in the order they
    finish, with the future's result (``payload``) or, when it raised (a worker that died), its error, and
    returns hyperopt's result (``{"status": OK, "loss": ...}`` or ``{"status": FAIL}``). A future that
    raises a PipelineError (an engine that can run no trial, e.g. Spark tasks that cannot reach the driver)
    ends the search with it.

    Each proposal is asked of ``Plan.run``'s proposer (warm-start points first, no configuration twice)
    against a record in which the trials still running carry a constant liar: the worst loss finished so
    far (as Optuna's ``constant_liar``; hyperopt's own TPE would count them as infinitely bad, a loss no
    finished trial has). The worst, not the best or the mean, keeps the next proposals away from the running
    ones, so that N trials at once explore N places, and tells TPE nothing better than it has seen. Before
    any trial has finished there is no loss to lie with: the running trials stay at hyperopt's infinity
    (TPE draws from the prior for its first ``n_startup_jobs`` trials anyway).

    Once ``should_stop()`` is true (or ``max_evals`` trials, past ones included, were proposed, or the
    space is exhausted) nothing more is proposed and the running trials are waited for, not lost. An
    exception of ``on_finished`` ends the search at once (the caller's engine then stops its workers).
    Proposals depend on the order trials finish in, so a parallel study is not replayed exactly; one draw
    of the seed stream per proposal keeps a resume's stream where the sequential study would have it.
    """
    if len(plan.past) >= plan.max_evals:
        return None
    plan._check_warm_start()
    trials = _trials_from(Trials(), plan.space, plan.past)
    domain = Domain(_not_called, plan.compiled)
    rstate = _advanced_rng(plan.seed, len(plan.past))
    proposer = _Proposer(plan)
    running: dict[Future[Any], int] = {}
    while True:
        while len(running) < parallelism and _may_propose(plan, trials, proposer):
            doc = _ask(proposer, domain, trials, rstate, list(running.values()))
            if doc is None:
                break
            running[submit(_values(plan.compiled, doc))] = doc["tid"]
        if not running:
            return proposer.exhausted
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in sorted(finished, key=running.__getitem__):
            doc = _doc(trials, running.pop(future))
            error = future.exception()
            if isinstance(error, PipelineError):  # the engine cannot run trials at all, not a failed trial
                raise error
            payload = None if error is not None else future.result()
            message = None if error is None else f"{type(error).__name__}: {error}"
            _tell(trials, doc, on_finished(_values(plan.compiled, doc), payload, message))


def _may_propose(plan: Plan, trials: Trials, proposer: _Proposer) -> bool:
    """Whether the parallel driver asks for another trial: budget left (past, running and finished trials
    count), no stop rule met, the space not exhausted."""
    return len(trials.trials) < plan.max_evals and proposer.exhausted is None and not plan.should_stop()


def _ask(
    proposer: _Proposer, domain: Any, trials: Trials, rstate: np.random.Generator, running: Sequence[int]
) -> dict[str, Any] | None:
    """One new trial, queued in ``trials`` as running, or None when the space is exhausted. The running
    trials carry the constant liar while the algorithm proposes."""
    done = [d["result"]["loss"] for d in trials.trials if d["state"] == JOB_STATE_DONE and d["result"]["status"] == OK]
    liar = max(done) if done else None
    for tid in running:
        _doc(trials, tid)["result"] = {"status": STATUS_RUNNING, "loss": liar}
    docs = proposer(trials.new_trial_ids(1), domain, trials, int(rstate.integers(2**31 - 1)))
    if not docs:
        return None
    doc = docs[0]
    doc["state"], doc["result"] = JOB_STATE_RUNNING, {"status": STATUS_RUNNING, "loss": liar}
    trials.insert_trial_docs([doc])
    trials.refresh()
    return _doc(trials, doc["tid"])


def _tell(trials: Trials, doc: dict[str, Any], result: dict[str, Any]) -> None:
    doc["state"], doc["result"] = JOB_STATE_DONE, result
    trials.refresh()


def _doc(trials: Trials, tid: int) -> dict[str, Any]:
    return next(d for d in trials.trials if d["tid"] == tid)


def _values(compiled: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """A trial's sampled values (choices resolved, not yet typed), as fmin hands them to its objective."""
    return dict(space_eval(compiled, spec_from_misc(doc["misc"])))


def _not_called(values: dict[str, Any]) -> None:
    raise AssertionError("the parallel driver runs trials through its engine, never through hyperopt's Domain")


class _Proposer:
    """hyperopt's ``algo`` for one search: the warm-start points first, then the algorithm's proposals, never
    a configuration already evaluated, running or queued.

    It proposes one trial per call: fmin's queue holds one, and the parallel driver asks for each in turn.
    """

    def __init__(self, plan: Plan):
        self.plan = plan
        algorithm = plan.algorithm
        self.algorithm = algorithm.for_space(plan.space) if isinstance(algorithm, TPE) else algorithm
        self.keys: dict[int, Key] = {}
        """Trial id -> key, for the trials already in hyperopt's record."""
        self.exhausted: str | None = None

    def __call__(self, new_ids: Sequence[int], domain: Any, trials: Trials, seed: int) -> list[dict[str, Any]]:
        (tid,) = new_ids
        doc = self._propose(tid, domain, trials, seed, {self._key_of(doc) for doc in trials.trials})
        return [] if doc is None else [doc]

    def _propose(self, tid: int, domain: Any, trials: Trials, seed: int, taken: set[Key]) -> dict[str, Any] | None:
        space = self.plan.space
        for params, key in zip(self.plan.first, self.plan._warm_keys, strict=True):
            if key not in taken:  # not evaluated before a resume, nor a repeat of an earlier point
                return trials.new_trial_docs([tid], [None], [domain.new_result()], [misc(space, tid, params)])[0]
        taken = taken | set(self.plan._warm_keys)
        attempts = [(self.algorithm, seed)]
        attempts += [(self.algorithm, derived_seed(seed, "redraw", str(i))) for i in range(1, REDRAWS)]
        attempts += [(rand.suggest, derived_seed(seed, "prior", str(i))) for i in range(PRIOR_DRAWS)]
        for algorithm, attempt_seed in attempts:
            docs = algorithm([tid], domain, trials, attempt_seed)
            if not docs:
                return None
            if key_of(space, self.plan.compiled, docs[0]["misc"]["vals"]) not in taken:
                return docs[0]
        self.exhausted = (
            f"search space exhausted: {len(taken)} distinct configurations evaluated, and neither "
            f"{REDRAWS} proposals nor {PRIOR_DRAWS} draws from the prior found a new one"
        )
        return None

    def _key_of(self, doc: dict[str, Any]) -> Key:
        tid = doc["tid"]
        if tid not in self.keys:
            self.keys[tid] = key_of(self.plan.space, self.plan.compiled, doc["misc"]["vals"])
        return self.keys[tid]


def _unless_stopped(algorithm: Callable[..., Any], should_stop: Callable[[], bool], *args: Any) -> list[Any]:
    """No proposal once the study should stop: fmin then waits for the running trials and returns."""
    return [] if should_stop() else algorithm(*args)


def _advanced_rng(seed: int, past: int) -> np.random.Generator:
    """The random stream moved past the draws of ``past`` trials: hyperopt draws one seed per proposal."""
    rstate = np.random.default_rng(seed)
    for _ in range(past):
        rstate.integers(2**31 - 1)
    return rstate


def _trials_from(trials: Trials, space: SearchSpace, past: Sequence[PastTrial]) -> Trials:
    """``trials`` with the past trials inserted as evaluated, under their own numbers."""
    if not past:
        return trials
    docs = []
    for trial in past:
        result = {"status": STATUS_FAIL} if trial.loss is None else {"status": STATUS_OK, "loss": trial.loss}
        docs.extend(trials.new_trial_docs([trial.number], [None], [result], [misc(space, trial.number, trial.params)]))
    for doc in docs:
        doc["state"] = JOB_STATE_DONE
    trials.insert_trial_docs(docs)
    trials.refresh()
    return trials
