"""How a per-round curve is stored on a run: as the rounds where its value changes.

A boosting trial scores its validation split every few rounds at a low learning rate and carries the score
in between (``pipeline.families.xgboost.scoring_interval``), so its curve repeats each score. Logging only
the first round, each round whose value differs from the round before, and the last round keeps what was
measured (MLflow's chart draws its line through the scored rounds, not a staircase), writes a fraction of
the points, and loses nothing: ``rebuilt`` carries each point forward to rebuild the curve round by round.
"""

from __future__ import annotations

from collections.abc import Sequence


def logged_points(curve: Sequence[float]) -> list[tuple[int, float]]:
    """The (round, value) pairs to log for ``curve``: its first and last rounds and every change."""
    last = len(curve) - 1
    return [(r, float(v)) for r, v in enumerate(curve) if r in (0, last) or v != curve[r - 1]]


def rebuilt(logged: Sequence[tuple[int, float]]) -> list[float]:
    """The curve round by round from its logged (round, value) pairs sorted by round, each value carried
    to the next logged round (a pair logged twice, as a retried write can leave it, counts once)."""
    curve: list[float] = []
    following = [round_ for round_, _ in logged[1:]] + [logged[-1][0] + 1]
    for (round_, value), next_round in zip(logged, following, strict=True):
        curve.extend([value] * (next_round - round_))
    return curve
