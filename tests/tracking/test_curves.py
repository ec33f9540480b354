"""pipeline.tracking.curves: a per-round curve logged as its changes and rebuilt round by round."""

from __future__ import annotations

import pytest

from pipeline.tracking.curves import logged_points, rebuilt


@pytest.mark.parametrize(
    "curve",
    [
        [5.0],
        [5.0, 4.0, 3.0],
        [5.0, 5.0, 5.0, 4.0, 4.0, 4.0, 3.0],
        [5.0, 5.0, 5.0],
        [5.0, 4.0, 4.0, 4.0],
        [0.7, 0.7, 0.8, 0.8, 0.8, 0.75],
    ],
)
def test_a_curve_is_rebuilt_exactly_from_its_logged_points(curve):
    assert rebuilt(logged_points(curve)) == curve


def test_a_curve_scored_every_few_rounds_logs_its_scored_rounds_and_its_last():
    scored_every_3 = [9.0, 9.0, 9.0, 7.0, 7.0, 7.0, 6.0, 6.0]
    assert logged_points(scored_every_3) == [(0, 9.0), (3, 7.0), (6, 6.0), (7, 6.0)]


def test_a_point_logged_twice_counts_once():
    assert rebuilt([(0, 9.0), (3, 7.0), (3, 7.0), (5, 6.0)]) == [9.0, 9.0, 9.0, 7.0, 7.0, 6.0]
