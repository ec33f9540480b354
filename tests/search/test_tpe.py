"""pipeline.search.tpe: the joint Parzen estimator's densities, its draws, and what it proposes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.search.tpe import Dimension, Mixture, n_below, propose, weights

CONTINUOUS = Dimension.continuous(0.0, 1.0)
LOG = Dimension.continuous(0.01, 100.0, log=True)
GRID = Dimension.grid(3, 12, 1)
LOG_GRID = Dimension.grid(1, 50, 1, log=True)
CATEGORICAL = Dimension.categorical(4)
ALL = [CONTINUOUS, LOG, GRID, LOG_GRID, CATEGORICAL]


def observations(count: int, seed: int) -> np.ndarray:
    """``count`` configurations of ``ALL``, drawn from its prior."""
    return Mixture(ALL, np.empty((0, len(ALL))), np.empty(0)).sample(np.random.default_rng(seed), count)


def test_draws_are_values_each_dimension_can_take():
    drawn = Mixture(ALL, observations(12, 0), np.ones(12)).sample(np.random.default_rng(1), 2000)
    continuous, log, grid, log_grid, categorical = drawn.T
    assert continuous.min() >= 0 and continuous.max() <= 1
    assert log.min() >= 0.01 and log.max() <= 100
    assert set(grid) <= set(range(3, 13)) and {3, 12} <= set(grid)  # the ends are drawn too
    assert set(log_grid) <= set(range(1, 51)) and {1, 50} <= set(log_grid)
    assert set(categorical) == {0, 1, 2, 3}
    edge = Dimension.continuous(0.02, 0.3, log=True)  # exp(log(0.3)) is 0.30000000000000004
    assert list(edge.natural(np.array([edge.low, edge.high]))) == [0.02, 0.3]


@pytest.mark.parametrize("seed", [0, 1])
def test_each_kernel_is_a_distribution_over_its_dimension(seed):
    """A continuous density integrates to 1 over the range, a grid's masses and a categorical's
    probabilities sum to 1: the truncation and the cells are accounted for."""
    points = observations(7, seed)
    for i, dimension in enumerate(ALL):
        mixture = Mixture([dimension], points[:, [i]], weights(7))
        if dimension is CONTINUOUS:
            x = np.linspace(0, 1, 20001)
            density = np.exp(mixture.log_density(x[:, None]))
            assert np.trapezoid(density, x) == pytest.approx(1, abs=1e-3)
        elif dimension is LOG:  # a density in log coordinates
            x = np.linspace(math.log(0.01), math.log(100), 20001)
            density = np.exp(mixture.log_density(np.exp(x)[:, None]))
            assert np.trapezoid(density, x) == pytest.approx(1, abs=1e-3)
        else:
            values = np.arange(4) if dimension is CATEGORICAL else np.arange(dimension.first, dimension.last + 1)
            assert np.exp(mixture.log_density(values[:, None].astype(float))).sum() == pytest.approx(1, abs=1e-9)


def test_a_proposal_is_drawn_near_a_good_trial_in_every_parameter_at_once():
    """The good trials lie on the diagonal x = y, spread along it: each parameter on its own is uniform
    among them, so only a joint model keeps x and y together. Drawing x and y independently from the good
    trials' values gives |x - y| about 0.3; the joint proposals stay near the diagonal."""
    rng = np.random.default_rng(0)
    points = rng.random((60, 2))
    losses = np.abs(points[:, 0] - points[:, 1])
    proposals = np.array(
        [propose([CONTINUOUS, CONTINUOUS], points, losses, np.random.default_rng(s), gamma=1.0, candidates=24)
         for s in range(60)]
    )  # fmt: skip
    assert np.median(np.abs(proposals[:, 0] - proposals[:, 1])) < 0.1


def test_the_same_trials_and_seed_propose_the_same_configuration():
    points = observations(15, 3)
    losses = np.random.default_rng(3).random(15)
    first, again = (propose(ALL, points, losses, np.random.default_rng(9), gamma=0.25, candidates=24) for _ in "ab")
    assert np.array_equal(first, again)
    other = propose(ALL, points, losses, np.random.default_rng(10), gamma=0.25, candidates=24)
    assert not np.array_equal(first, other)


def test_running_trials_push_proposals_away_from_themselves():
    """A parallel study's trials in flight count as bad (the constant liar): with several running at the
    best trial's configuration, proposals land farther from it."""
    rng = np.random.default_rng(1)
    points = rng.random((20, 2))
    losses = np.linalg.norm(points - 0.5, axis=1)
    best = points[np.argmin(losses)]

    def distance(liars):
        proposals = [propose([CONTINUOUS, CONTINUOUS], points, losses, np.random.default_rng(s), gamma=0.25,
                             candidates=24, liars=liars) for s in range(40)]  # fmt: skip
        return np.median(np.linalg.norm(np.array(proposals) - best, axis=1))

    assert distance(np.repeat(best[None], 4, axis=0)) > distance(None)


def test_the_good_set_and_the_weights_follow_hyperopt_and_optuna():
    assert [n_below(n, 0.25) for n in (1, 10, 16, 17, 30, 100)] == [1, 1, 1, 2, 2, 3]
    assert list(weights(3)) == [1, 1, 1]
    ramp = weights(30)
    assert len(ramp) == 30 and ramp[0] == pytest.approx(1 / 30) and all(ramp[-25:] == 1)
    assert all(np.diff(ramp) >= 0)
