"""A multivariate tree-structured Parzen estimator: the next configuration to try, from the trials so far.

Why not hyperopt's TPE alone: it models each parameter on its own and draws each one's candidate separately,
so a proposal mixes the depth of one good trial with the learning rate of another. Optuna's default sampler
(``TPESampler``, multivariate since v4) draws whole configurations near the good trials instead, and found
better models at equal budget on our benchmark tables. This is that estimator, in numpy, for spaces whose
every parameter is present in every trial (one model family, no conditional options); ``optimizer`` keeps
hyperopt's for the others.

The estimator (Watanabe 2023, "Tree-structured Parzen estimator: understanding its algorithm components"):
the finished trials are split into the best ``n_below`` and the rest; each set becomes a mixture with one
product kernel per trial (a truncated normal per numeric parameter, a smoothed one-hot per categorical one)
plus a prior component spanning the whole range; ``candidates`` configurations are drawn from the good
set's mixture and the one with the highest ratio of good to bad density is proposed. Bandwidths follow the
neighbouring observations (clipped to at least range / (kernels + 1)); a quantized parameter is drawn on its
grid and scored by the mass of its grid cell. Pure functions of their inputs and ``rng``: the same trials
and seed propose the same configuration, which is what makes a resumed study replay the uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri

from pipeline.config import Choice, LogUniform, QLogUniform, QUniform, Scalar, Uniform
from pipeline.spaces import SearchSpace

PRIOR_WEIGHT = 1.0
"""The prior component's weight, against 1 for each trial's kernel (Optuna's and hyperopt's default)."""
RECENT_FULL_WEIGHT = 25
"""Trials beyond this many, the oldest count less in a mixture (weights ramp up to 1; Optuna's default)."""


@dataclass(frozen=True)
class Dimension:
    """One searched parameter, as the estimator sees it.

    Numeric values lie from ``first`` to ``last`` (natural units) and are modelled on ``[low, high]`` in
    working coordinates (the logarithm for a log distribution); a quantized parameter's values are
    ``first + k * step``, and ``low``/``high`` reach half a step beyond its ends so that every grid value
    owns an equal cell. A categorical parameter's values are option indices ``0 .. choices - 1``.
    """

    low: float = 0.0
    high: float = 1.0
    log: bool = False
    step: float | None = None
    first: float = 0.0
    last: float = 0.0
    choices: int = 0

    @classmethod
    def continuous(cls, low: float, high: float, log: bool = False) -> Dimension:
        working = (math.log(low), math.log(high)) if log else (low, high)
        return cls(*working, log=log, first=low, last=high)

    @classmethod
    def grid(cls, first: float, last: float, step: float, log: bool = False) -> Dimension:
        low, high = first - step / 2, last + step / 2
        if log:
            low, high = math.log(low), math.log(high)
        return cls(low, high, log=log, step=step, first=first, last=last)

    @classmethod
    def categorical(cls, choices: int) -> Dimension:
        return cls(choices=choices)

    @property
    def is_categorical(self) -> bool:
        return self.choices > 0

    def working(self, values: np.ndarray) -> np.ndarray:
        return np.log(values) if self.log else values

    def natural(self, working: np.ndarray) -> np.ndarray:
        """Working coordinates back to values the space can give: on the grid for a quantized parameter."""
        values = np.exp(working) if self.log else working
        if self.step is not None:
            values = self.first + np.round((values - self.first) / self.step) * self.step
        return np.clip(values, self.first, self.last)  # exp(log(high)) can be a hair above high


def dimensions_of(space: SearchSpace) -> dict[str, Dimension] | None:
    """The estimator's view of ``space``: its searched parameters by name (hyperopt's labels), or None when
    it does not apply: several families, a conditional option, or a distribution without bounds, with its
    own option weights, or without order (randint)."""
    if len(space.branches) != 1:
        return None
    ((_, params),) = space.branches.items()
    dimensions = {}
    for name, parameter in params.items():
        if isinstance(parameter, Scalar):
            continue
        if isinstance(parameter, Choice) and not parameter.conditional:
            dimensions[name] = Dimension.categorical(len(parameter.options))
        elif isinstance(parameter, Uniform | LogUniform):
            log = isinstance(parameter, LogUniform)
            dimensions[name] = Dimension.continuous(parameter.low, parameter.high, log)
        elif isinstance(parameter, QUniform | QLogUniform):
            first, last = parameter.steps()
            log, q = isinstance(parameter, QLogUniform), parameter.q
            dimensions[name] = Dimension.grid(first * q, last * q, q, log)
        else:
            return None
    return dimensions or None


def n_below(observed: int, gamma: float) -> int:
    """How many of ``observed`` finished trials make the good set: ``ceil(gamma * sqrt(n))`` (hyperopt's
    rule, which the study file's ``tpe.gamma`` sets), at least 1."""
    return max(1, math.ceil(gamma * math.sqrt(observed)))


def weights(count: int) -> np.ndarray:
    """Kernel weights of ``count`` trials in the order they ran: 1 each, except that past
    ``RECENT_FULL_WEIGHT`` trials the older ones ramp down towards ``1 / count``."""
    if count <= RECENT_FULL_WEIGHT:
        return np.ones(count)
    return np.concatenate([np.linspace(1.0 / count, 1.0, count - RECENT_FULL_WEIGHT), np.ones(RECENT_FULL_WEIGHT)])


class Mixture:
    """One product kernel per observation (rows of ``points``, natural units or option indices), plus the
    prior, weighted by ``weights`` (the prior ``PRIOR_WEIGHT``)."""

    def __init__(self, dimensions: list[Dimension], points: np.ndarray, point_weights: np.ndarray):
        self.dimensions = dimensions
        mixture = np.append(point_weights, PRIOR_WEIGHT)
        self.log_weights = np.log(mixture / mixture.sum())
        self.kernels = [self._kernels(d, points[:, i]) for i, d in enumerate(dimensions)]

    @staticmethod
    def _kernels(dimension: Dimension, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per kernel (the observations', then the prior's): a categorical dimension's option
        probabilities; a numeric one's centre and bandwidth in working coordinates."""
        count = len(observed) + 1
        if dimension.is_categorical:
            probabilities = np.full((count, dimension.choices), PRIOR_WEIGHT / count)
            probabilities[np.arange(count - 1), observed.astype(int)] += 1.0
            return probabilities / probabilities.sum(axis=1, keepdims=True), np.empty(0)
        low, high = dimension.low, dimension.high
        centres = dimension.working(observed.astype(float))
        order = np.argsort(centres)
        around = np.concatenate([[low], centres[order], [high]])
        widths = np.maximum(around[1:-1] - around[:-2], around[2:] - around[1:-1])
        if len(widths) >= 2:  # the outermost look inwards, not at the range's ends
            widths[0], widths[-1] = around[2] - around[1], around[-2] - around[-3]
        bandwidths = np.empty_like(widths)
        bandwidths[order] = widths
        bandwidths = np.clip(bandwidths, (high - low) / min(100.0, 1.0 + count), high - low)
        return np.append(centres, (low + high) / 2), np.append(bandwidths, high - low)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` configurations (rows, natural units or option indices), each from one kernel."""
        chosen = rng.choice(len(self.log_weights), p=np.exp(self.log_weights), size=size)
        drawn = np.empty((size, len(self.dimensions)))
        for i, (dimension, (centres, bandwidths)) in enumerate(zip(self.dimensions, self.kernels, strict=True)):
            if dimension.is_categorical:
                cumulative = np.cumsum(centres[chosen], axis=1)
                drawn[:, i] = np.minimum((cumulative < rng.random(size)[:, None]).sum(axis=1), dimension.choices - 1)
                continue
            mu, sigma = centres[chosen], bandwidths[chosen]
            below, above = ndtr((dimension.low - mu) / sigma), ndtr((dimension.high - mu) / sigma)
            z = ndtri(below + rng.random(size) * (above - below))
            drawn[:, i] = dimension.natural(np.clip(mu + sigma * z, dimension.low, dimension.high))
        return drawn

    def log_density(self, points: np.ndarray) -> np.ndarray:
        """Log density (quantized and categorical parameters: log mass) of each row of ``points``."""
        total = np.tile(self.log_weights, (len(points), 1))
        for i, (dimension, (centres, bandwidths)) in enumerate(zip(self.dimensions, self.kernels, strict=True)):
            values = points[:, i]
            if dimension.is_categorical:
                total += np.log(centres[:, values.astype(int)].T)
                continue
            within = _log_mass((dimension.low - centres) / bandwidths, (dimension.high - centres) / bandwidths)
            if dimension.step is None:
                z = (dimension.working(values)[:, None] - centres) / bandwidths
                total += -0.5 * z**2 - math.log(math.sqrt(2 * math.pi)) - np.log(bandwidths) - within
            else:
                left = dimension.working(values - dimension.step / 2)[:, None]
                right = dimension.working(values + dimension.step / 2)[:, None]
                total += _log_mass((left - centres) / bandwidths, (right - centres) / bandwidths) - within
        peak = total.max(axis=1, keepdims=True)
        return (peak + np.log(np.exp(total - peak).sum(axis=1, keepdims=True)))[:, 0]


def _log_mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``log(Phi(b) - Phi(a))`` for ``a <= b``, accurate in either tail."""
    upper = a > 0  # both in the upper tail: use the mirrored lower tail
    a, b = np.where(upper, -b, a), np.where(upper, -a, b)
    with np.errstate(divide="ignore"):
        return log_ndtr(b) + np.log1p(-np.exp(np.minimum(log_ndtr(a) - log_ndtr(b), 0.0)))


def propose(
    dimensions: list[Dimension],
    points: np.ndarray,
    losses: np.ndarray,
    rng: np.random.Generator,
    *,
    gamma: float,
    candidates: int,
    liars: np.ndarray | None = None,
) -> np.ndarray:
    """The next configuration (natural units, option indices) given finished trials ``points`` (rows, in
    the order they ran) and their ``losses`` (lower is better); ``liars`` are the configurations of trials
    still running, counted among the bad ones (a parallel study's constant liar)."""
    good_count = min(n_below(len(points), gamma), len(points))
    ranked = np.argsort(losses, kind="stable")
    good = np.sort(ranked[:good_count])
    bad = np.sort(ranked[good_count:])
    bad_points = points[bad] if liars is None or not len(liars) else np.vstack([points[bad], liars])
    below = Mixture(dimensions, points[good], weights(len(good)))
    above = Mixture(dimensions, bad_points, weights(len(bad_points)))
    drawn = below.sample(rng, candidates)
    return drawn[int(np.argmax(below.log_density(drawn) - above.log_density(drawn)))]
