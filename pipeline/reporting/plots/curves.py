"""Learning curves of a boosted model: the early-stopping metric per round, zoomed on the rounds that matter."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.reporting.plots.base import BEST_COLOR, PAD

MIN_ROUNDS_TO_ZOOM = 10
ZOOM_SHARE = 0.95
"""Learning curves are zoomed on the rounds after the validation curve made this share of its gain."""


def learning_curves(curves: Mapping[str, pd.Series], best_iteration: int | None, title: str) -> Figure:
    """Per-round curves of one trial (``validation_rmse_curve``, ``train_rmse_curve``, ... as Series indexed
    by round: the rounds logged, see ``pipeline.tracking.curves``), with the round early stopping kept:
    where training and validation part shows overfitting.

    The y-axis is named after the curves' metric and zoomed on the rounds that matter (see
    :func:`curve_range`): the first rounds' large errors would otherwise flatten the part where the curves
    part and the validation curve turns; the x-axis label says from which round on the zoom holds.
    """
    figure = Figure(figsize=(9, 5), layout="constrained")
    axes = figure.subplots()
    for name, curve in sorted(curves.items()):
        axes.plot(curve.index, curve.to_numpy(), label=name.removesuffix("_curve").replace("_", " ", 1))
    if best_iteration is not None:
        axes.axvline(best_iteration, color=BEST_COLOR, ls="--", label=f"best iteration ({best_iteration})")
    metric = curve_metric(curves)
    zoom = curve_range(curves, best_iteration)
    xlabel = "boosting round"
    if zoom is not None:
        low, high, first = zoom
        axes.set_ylim(low, high)
        if first > min(int(c.index.min()) for c in curves.values()):
            xlabel += f" (y-axis zoomed on rounds {first} on; earlier rounds run off the plot)"
    axes.set(xlabel=xlabel, ylabel=f"{metric} per round" if metric else "metric per round", title=title)
    axes.legend(loc="best")
    return figure


def curve_metric(curves: Mapping[str, pd.Series]) -> str | None:
    """The metric the curves are in (``rmse`` for ``train_rmse_curve`` and ``validation_rmse_curve``), or
    None when they are in several or there is none."""
    names = {key.removesuffix("_curve").split("_", 1)[-1] for key in curves}
    return names.pop() if len(names) == 1 else None


def curve_range(curves: Mapping[str, pd.Series], best_iteration: int | None) -> tuple[float, float, int] | None:
    """The y-limits and first round of the zoom on learning curves: every curve from the round where the
    validation curve has made ``ZOOM_SHARE`` of its gain (from its first round to the best iteration, or to
    its extreme furthest from the start), padded by ``PAD``. None when there is no validation curve of at least
    ``MIN_ROUNDS_TO_ZOOM`` rounds, or it never moved."""
    validation = next((c for key, c in sorted(curves.items()) if key.startswith("validation_")), None)
    if validation is None or validation.empty or int(validation.index.max()) + 1 < MIN_ROUNDS_TO_ZOOM:
        return None
    values = validation.astype(float)
    start = float(values.iloc[0])
    if best_iteration is not None and best_iteration in values.index:
        best = float(values.loc[best_iteration])
    else:
        best = max((float(values.min()), float(values.max())), key=lambda v: abs(v - start))
    gain = best - start
    if gain == 0 or not np.isfinite(gain):
        return None
    first = int(values.index[np.argmax(((values - start) / gain).to_numpy() >= ZOOM_SHARE)])
    shown = pd.concat([c[c.index >= first].astype(float) for c in curves.values()])
    shown = shown[np.isfinite(shown)]
    low, high = float(shown.min()), float(shown.max())
    pad = PAD * (high - low) if high > low else max(abs(high) * PAD, 1e-9)
    return low - pad, high + pad, first
