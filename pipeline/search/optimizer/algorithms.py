"""The algorithms a study may name (``tpe``, ``rand``, ``anneal``, ``atpe``) as hyperopt's suggest functions;
``tpe`` proposes from the joint model of ``search.tpe`` where the space allows it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from hyperopt import JOB_STATE_DONE, JOB_STATE_RUNNING, STATUS_OK, Trials, anneal, rand, tpe

from pipeline.errors import InputError
from pipeline.search import tpe as multivariate
from pipeline.search.optimizer.space import misc_of
from pipeline.spaces import SearchSpace


def algorithm_for(name: str, tpe_options: dict[str, Any] | None = None, file: Any = None) -> Callable[..., Any]:
    """The suggest function of algorithm ``name`` (hyperopt's ``algo``); raises InputError when atpe's
    dependencies are missing. ``tpe`` is :class:`TPE`, with ``tpe_options`` (the study file's ``tpe``)."""
    if name == "tpe":
        return TPE(**(tpe_options or {}))
    if name == "atpe":
        try:
            import lightgbm  # noqa: F401  (atpe imports it only on first use, deep inside a trial)
            from hyperopt import atpe
        except ImportError:
            raise InputError(file, "algorithm", "atpe needs lightgbm", "pip install lightgbm, or use tpe") from None
        return atpe.suggest
    return {"rand": rand.suggest, "anneal": anneal.suggest}[name]


Dimensions = dict[str, multivariate.Dimension]


@dataclass(frozen=True)
class TPE:
    """Tree-structured Parzen estimators, as a study's ``algorithm: tpe`` runs them.

    ``n_startup_jobs`` proposals are drawn from the prior (hyperopt's random search), then each comes from
    TPE. With ``multivariate`` (the default) and a space whose every parameter is present in every trial
    (one model family, no conditional options, distributions bounded or categorical), TPE models the
    parameters jointly (``search.tpe``, as Optuna's default sampler): each proposal is drawn near one good
    trial in all its parameters at once. Otherwise, and when called without a space, it is hyperopt's
    univariate TPE with the same options.
    """

    n_startup_jobs: int = 20
    gamma: float = 0.25
    n_EI_candidates: int = 24
    multivariate: bool = True

    def __call__(self, new_ids: Sequence[int], domain: Any, trials: Trials, seed: int) -> list[dict[str, Any]]:
        return self._univariate(new_ids, domain, trials, seed)

    def _univariate(self, new_ids: Sequence[int], domain: Any, trials: Trials, seed: int) -> list[dict[str, Any]]:
        options = {"n_startup_jobs": self.n_startup_jobs, "gamma": self.gamma, "n_EI_candidates": self.n_EI_candidates}
        return tpe.suggest(new_ids, domain, trials, seed, **options)

    def for_space(self, space: SearchSpace) -> Callable[..., list[dict[str, Any]]]:
        """The suggest function for ``space``: the joint model when it applies, else hyperopt's."""
        dimensions = multivariate.dimensions_of(space) if self.multivariate else None
        return self._univariate if dimensions is None else partial(self._joint, dimensions)

    def _joint(
        self, dimensions: Dimensions, new_ids: Sequence[int], domain: Any, trials: Trials, seed: int
    ) -> list[dict[str, Any]]:
        if len(trials.trials) < self.n_startup_jobs:  # hyperopt's count: failed and running trials included
            return rand.suggest(new_ids, domain, trials, seed)
        labels = list(dimensions)
        finished, running = [], []
        for doc in sorted(trials.trials, key=lambda d: d["tid"]):
            loss = doc["result"].get("loss")
            point = [float(doc["misc"]["vals"][label][0]) for label in labels]
            if doc["state"] == JOB_STATE_DONE and doc["result"]["status"] == STATUS_OK:
                finished.append((point, float(loss)))
            elif doc["state"] == JOB_STATE_RUNNING and loss is not None:
                running.append(point)  # a parallel study's constant liar
        if not finished:
            return rand.suggest(new_ids, domain, trials, seed)
        points, losses = np.array([p for p, _ in finished]), np.array([loss for _, loss in finished])
        liars = np.array(running) if running else None
        proposal = multivariate.propose(list(dimensions.values()), points, losses, np.random.default_rng(seed),
                                        gamma=self.gamma, candidates=self.n_EI_candidates, liars=liars)  # fmt: skip
        vals = {label: [_recorded(dimensions[label], value)] for label, value in zip(labels, proposal, strict=True)}
        return trials.new_trial_docs(list(new_ids[:1]), [None], [domain.new_result()], [misc_of(new_ids[0], vals)])


def _recorded(dimension: multivariate.Dimension, value: float) -> Any:
    """A proposed value as hyperopt records it: an option's index or a grid value as an int, else a float."""
    if dimension.is_categorical or (dimension.step is not None and float(dimension.step).is_integer()):
        return round(value)
    return float(value)
