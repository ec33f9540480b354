"""pipeline.model.gate: the paired-bootstrap promotion gate, on real metrics and real-sized holdouts."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.config import GateConfig, RetrainConfig
from pipeline.metrics import METRICS, Metric
from pipeline.model import gate

ROWS = 30_000


def regression(seed: int = 0, rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(10.0, 3.0, rows)
    return y, y + rng.normal(0.0, 2.0, rows)


def binary(seed: int = 0, rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Labels and a calibrated-ish positive-class probability."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(0.0, 1.0, rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(-2 * signal))).astype(int)
    return y, 1 / (1 + np.exp(-1.5 * (signal + rng.normal(0.0, 0.5, rows))))


def multiclass(seed: int = 0, rows: int = ROWS, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    logits = rng.normal(0.0, 1.0, (rows, classes))
    logits[np.arange(rows), y] += 1.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba.astype(np.float32)


def decide(y, champion, challenger, metric: str, margin: float = 0.0, **rule):
    rule = {"method": "paired_bootstrap", "confidence": 0.95, "resamples": 2000, "seed": 7} | rule
    return gate.decide(y, champion, challenger, METRICS[metric], margin=margin, **rule)


def test_a_clearly_better_challenger_is_promoted():
    y, champion = regression()
    challenger = y + (champion - y) * 0.8  # errors 20 % smaller on every row

    decision = decide(y, champion, challenger, "rmse")

    assert decision.promote
    assert decision.gain == pytest.approx(METRICS["rmse"].score(y, champion) - METRICS["rmse"].score(y, challenger))
    assert 0 < decision.low <= decision.gain <= decision.high
    assert decision.champion_score == pytest.approx(METRICS["rmse"].score(y, champion))


def test_an_identical_challenger_is_not_promoted_under_either_rule():
    y, champion = regression()

    for method in ("paired_bootstrap", "point"):
        decision = decide(y, champion, champion.copy(), "rmse", method=method)
        assert not decision.promote
        assert decision.gain == 0.0
    assert decide(y, champion, champion.copy(), "rmse").low == 0.0 == decide(y, champion, champion, "rmse").high


def test_a_noisy_tiny_gain_is_promoted_by_the_point_rule_only():
    """Two models of equal skill whose errors differ by noise: one is ahead on this holdout by chance."""
    y, champion = regression(seed=1)
    rng = np.random.default_rng(2)
    challenger = y + rng.normal(0.0, 2.0, len(y))
    if METRICS["rmse"].score(y, challenger) > METRICS["rmse"].score(y, champion):
        champion, challenger = challenger, champion  # make the challenger the lucky one

    point = decide(y, champion, challenger, "rmse", method="point")
    bootstrap = decide(y, champion, challenger, "rmse")

    assert point.promote and point.low is None and point.high is None
    assert 0 < bootstrap.gain == pytest.approx(point.gain)
    assert not bootstrap.promote
    assert bootstrap.low < 0 < bootstrap.gain < bootstrap.high


def test_the_margin_applies_to_the_lower_bound():
    y, champion = regression()
    challenger = y + (champion - y) * 0.8

    decision = decide(y, champion, challenger, "rmse")
    assert not decide(y, champion, challenger, "rmse", margin=decision.low + 1e-9).promote
    assert decide(y, champion, challenger, "rmse", margin=decision.low - 1e-9).promote
    assert not decide(y, champion, challenger, "rmse", method="point", margin=decision.gain).promote


def test_the_interval_is_deterministic_for_a_seed_and_moves_with_it():
    y, champion = regression()
    challenger = y + (champion - y) * 0.99

    first, again, other = (decide(y, champion, challenger, "mae", seed=s) for s in (3, 3, 4))

    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)


def test_higher_confidence_widens_the_interval():
    y, champion = regression()
    challenger = y + (champion - y) * 0.99

    narrow, wide = (decide(y, champion, challenger, "rmse", confidence=c) for c in (0.8, 0.99))

    assert wide.low < narrow.low <= narrow.high < wide.high


CASES = {
    "rmse": regression,
    "mae": regression,
    "r2": regression,
    "log_loss": binary,
    "brier": binary,
    "auc": binary,
    "accuracy": multiclass,
}


@pytest.mark.parametrize("name", [*CASES, "log_loss-multiclass"])
def test_each_metric_resampled_fast_equals_the_real_metric_on_the_same_rows(name):
    """The fast path (row statistics or weighted ranks, on row counts) gives, per resample, what the metric
    itself gives on the resampled rows: checked against ``Metric.score`` on a few resamples."""
    metric = METRICS[name.split("-")[0]]
    y, pred = (multiclass if name.endswith("multiclass") else CASES[name])(rows=500)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(y), size=(5, len(y)))

    fast = gate.resampled_scores(metric, y, pred, rows)

    expected = [metric.score(y[r], pred[r]) for r in rows]
    np.testing.assert_allclose(fast, expected, rtol=1e-9, atol=1e-12)


def test_auc_with_ties_matches_the_real_metric():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    pred = rng.integers(0, 5, 400) / 4  # many tied scores
    rows = rng.integers(0, 400, size=(4, 400))

    np.testing.assert_allclose(
        gate.resampled_scores(METRICS["auc"], y, pred, rows), [METRICS["auc"].score(y[r], pred[r]) for r in rows]
    )


def test_a_metric_without_a_fast_path_is_scored_on_each_resample():
    median_ae = Metric("median_ae", False, lambda y, p: float(np.median(np.abs(y - p))), ("regression",), {})
    y, champion = regression(rows=2000)
    challenger = y + (champion - y) * 0.5
    rows = np.random.default_rng(0).integers(0, 2000, size=(3, 2000))

    fast = gate.resampled_scores(median_ae, y, champion, rows)
    decision = gate.decide(y, champion, challenger, median_ae, margin=0.0, resamples=200, seed=1)

    np.testing.assert_allclose(fast, [median_ae.score(y[r], champion[r]) for r in rows])
    assert decision.promote and decision.low > 0


@pytest.mark.parametrize("name", ["auc", "log_loss", "r2"])
def test_greater_is_better_metrics_count_gain_in_loss_units(name):
    y, champion = CASES[name]()
    metric = METRICS[name]
    if name == "r2":
        challenger = y + (champion - y) * 0.8
    else:
        challenger = np.clip(champion + (y - champion) * 0.3, 1e-6, 1 - 1e-6)

    decision = decide(y, champion, challenger, name, resamples=300)

    assert decision.gain == pytest.approx(
        metric.loss(metric.score(y, champion)) - metric.loss(metric.score(y, challenger))
    )
    assert decision.gain > 0 and decision.promote


def test_decision_records_its_rule_and_says_why_in_one_line():
    y, champion = regression()
    decision = decide(y, champion, champion, "rmse", margin=0.01)

    record = decision.as_dict()
    assert record["method"] == "paired_bootstrap" and record["confidence"] == 0.95 and record["resamples"] == 2000
    assert record["promote"] is False and record["margin"] == 0.01
    assert "\n" not in decision.reason("rmse") and "95%" in decision.reason("rmse")


def test_inputs_of_different_lengths_are_refused():
    y, champion = regression(rows=100)

    with pytest.raises(ValueError, match="rows"):
        decide(y, champion, champion[:50], "rmse")


def test_gate_configuration_defaults_and_refusals():
    assert RetrainConfig().gate == GateConfig(method="paired_bootstrap", confidence=0.95, resamples=2000)
    assert RetrainConfig(gate={"method": "point"}).gate.method == "point"
    for bad in ({"method": "bayes"}, {"confidence": 1.0}, {"confidence": 0}, {"resamples": 10}, {"typo": 1}):
        with pytest.raises(ValidationError):
            RetrainConfig(gate=bad)
