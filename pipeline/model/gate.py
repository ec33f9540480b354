"""The champion/challenger gate: promote only a gain that the holdout's noise does not explain.

Both models are scored on the same fresh holdout. The ``point`` rule promotes when the challenger's gain
beats the margin on that one sample of rows. The ``paired_bootstrap`` rule resamples the holdout's rows
with replacement (the same rows for both models, so what they share cancels out), recomputes the gain on
each resample, and promotes only when the lower bound of the gain's two-sided percentile interval at
``confidence`` clears the margin: a one-sided test at ``(1 + confidence) / 2`` that the gain exceeds it.

Resamples are drawn as a matrix of row indices, a chunk at a time. Metrics that are a function of means
of per-row statistics (rmse, mae, r2, brier, log loss, accuracy) compute those statistics once and average
them over each resample's rows; auc counts each resample's positives and negatives per distinct score;
any other metric is computed by ``Metric.score`` on each resample's rows (exact, slower).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from pipeline.metrics import Metric

Method = Literal["paired_bootstrap", "point"]
CHUNK_CELLS = 2_000_000
"""Resampled rows drawn at once (resamples per chunk x holdout rows): about 16 MB of row indices."""


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and everything needed to audit it (logged on the version, the run, the JSON)."""

    method: Method
    promote: bool
    gain: float
    """Champion loss minus challenger loss on the holdout, in the metric's units: positive when the
    challenger is better (``Metric.loss``: the metric, negated when greater is better)."""
    low: float | None
    """Lower bound of the gain's bootstrap interval (None under ``point``)."""
    high: float | None
    margin: float
    champion_score: float
    challenger_score: float
    confidence: float | None = None
    resamples: int | None = None

    def reason(self, metric: str) -> str:
        """One line for the log and the tags."""
        scores = f"challenger {metric} {self.challenger_score:.6g} vs champion {self.champion_score:.6g}"
        verdict = "promoted" if self.promote else "kept"
        if self.low is None:
            compare = ">" if self.promote else "<="
            return f"{verdict}: {scores}, gain {self.gain:.6g} {compare} margin {self.margin:g}"
        compare = ">" if self.promote else "<="
        return (
            f"{verdict}: {scores}, gain {self.gain:.6g}, {self.confidence:.0%} interval "
            f"[{self.low:.6g}, {self.high:.6g}] ({self.resamples} paired resamples), "
            f"lower bound {compare} margin {self.margin:g}"
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def decide(
    y_true: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    metric: Metric,
    *,
    margin: float,
    method: Method = "paired_bootstrap",
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> GateDecision:
    """Whether the challenger replaces the champion, from their predictions on the same holdout rows.

    Predictions are what ``Metric.score`` takes: values for regression, the positive class's probability
    (binary) or one probability column per class (multiclass). The interval is deterministic for ``seed``;
    resamples whose metric is undefined (an auc resample with one class) are left out of it. Raises
    ValueError when the three arrays do not have the same number of rows.
    """
    y_true, champion, challenger = np.asarray(y_true), np.asarray(champion), np.asarray(challenger)
    if not len(y_true) == len(champion) == len(challenger):
        raise ValueError(f"rows differ: {len(y_true)} targets, {len(champion)} and {len(challenger)} predictions")
    champion_score, challenger_score = metric.score(y_true, champion), metric.score(y_true, challenger)
    gain = metric.loss(champion_score) - metric.loss(challenger_score)
    if method == "point":
        return GateDecision("point", bool(gain > margin), gain, None, None, margin, champion_score, challenger_score)
    gains = resampled_gains(y_true, champion, challenger, metric, resamples, seed)
    tail = (1 - confidence) / 2
    low, high = (float(q) for q in np.nanquantile(gains, [tail, 1 - tail]))
    return GateDecision(
        "paired_bootstrap",
        bool(low > margin),
        gain,
        low,
        high,
        margin,
        champion_score,
        challenger_score,
        confidence=confidence,
        resamples=resamples,
    )


def resampled_gains(
    y_true: np.ndarray, champion: np.ndarray, challenger: np.ndarray, metric: Metric, resamples: int, seed: int
) -> np.ndarray:
    """The gain on each of ``resamples`` paired resamples of the rows, drawn in chunks from ``seed``."""
    rng, rows = np.random.default_rng(seed), len(y_true)
    per_chunk = max(1, CHUNK_CELLS // max(rows, 1))
    gains = []
    for start in range(0, resamples, per_chunk):
        drawn = rng.integers(0, rows, size=(min(per_chunk, resamples - start), rows), dtype=np.int32)
        before = resampled_scores(metric, y_true, champion, drawn)
        after = resampled_scores(metric, y_true, challenger, drawn)
        gains.append(metric.loss(before) - metric.loss(after))
    return np.concatenate(gains)


def resampled_scores(metric: Metric, y_true: np.ndarray, predictions: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``metric`` on each resample, one per line of ``rows`` (row indices into the holdout)."""
    y_true, predictions = np.asarray(y_true), np.asarray(predictions)
    if metric.name == "auc":
        return _auc(y_true, predictions, rows)
    if metric.name in ROW_STATISTICS:
        statistics, combine = ROW_STATISTICS[metric.name]
        means = statistics(y_true, predictions)[rows].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return combine(means)
    return np.array([metric.score(y_true[r], predictions[r]) for r in rows])


def _squared(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return ((np.asarray(y, np.float64) - p) ** 2)[:, None]


def _absolute(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(y, np.float64) - p)[:, None]


def _r2_parts(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    y = np.asarray(y, np.float64)
    return np.column_stack([(y - p) ** 2, y, y**2])


def _r2(means: np.ndarray) -> np.ndarray:
    variance = means[:, 2] - means[:, 1] ** 2
    return np.where(variance > 0, 1 - means[:, 0] / variance, np.nan)


def _log_losses(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per-row log loss as ``metrics.log_loss`` (sklearn) computes it: rows renormalised, clipped to eps."""
    proba = np.asarray(proba, np.float64)
    if proba.ndim == 2:
        proba = proba / proba.sum(axis=1, keepdims=True)
        chosen = proba[np.arange(len(y)), np.asarray(y, int)]
    else:
        chosen = np.where(np.asarray(y) == 1, proba, 1 - proba)
    eps = np.finfo(np.float64).eps
    return -np.log(np.clip(chosen, eps, 1 - eps))[:, None]


def _correct(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    return (np.argmax(proba, axis=1) == np.asarray(y)).astype(float)[:, None]


def _first(means: np.ndarray) -> np.ndarray:
    return means[:, 0]


ROW_STATISTICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "rmse": (_squared, lambda means: np.sqrt(means[:, 0])),
    "mae": (_absolute, _first),
    "r2": (_r2_parts, _r2),
    "brier": (_squared, _first),
    "log_loss": (_log_losses, _first),
    "accuracy": (_correct, _first),
}
"""Per metric: the per-row statistics whose means it is a function of, and that function."""


def _auc(y: np.ndarray, scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """ROC AUC of each resample, ties counted half as sklearn does, without sorting each resample.

    Rows with equal scores form a group, groups ordered by score; per resample, bincount gives each group's
    drawn positives and negatives, and AUC = sum over groups of positives x (negatives in lower groups +
    half the group's own) / (positives x negatives).
    """
    distinct, group = np.unique(np.asarray(scores, np.float64), return_inverse=True)
    groups = len(distinct)
    codes = group * 2 + (y == 1)
    offsets = (np.arange(len(rows)) * 2 * groups)[:, None]
    drawn = np.bincount((codes[rows] + offsets).ravel(), minlength=len(rows) * 2 * groups)
    drawn = drawn.reshape(len(rows), groups, 2).astype(np.float64)
    neg, pos = drawn[..., 0], drawn[..., 1]
    below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / total, np.nan)
