"""Figures of a study and of its final model: plain data in (pandas, numpy), matplotlib figures out.

Nothing here knows MLflow, so a figure can be drawn from a study logged long ago or from data a test makes.
Figures are ``matplotlib.figure.Figure`` objects, never pyplot's: no global registry of open figures to
leak from in a long process, no interactive backend to look for on a server; PNGs are rendered by Agg.

One module a kind of figure: ``trials`` (the study's trials), ``curves`` (a model's learning curves),
``model`` (the final model on the test split); ``base`` what they share. Everything public is importable
from ``pipeline.reporting.plots``.
"""

from pipeline.reporting.plots.base import BEST_COLOR, FINISHED, PAD, PRUNED, SEQUENTIAL
from pipeline.reporting.plots.curves import MIN_ROUNDS_TO_ZOOM, ZOOM_SHARE, curve_metric, curve_range, learning_curves
from pipeline.reporting.plots.model import (
    DENSE_POINTS,
    calibration,
    feature_importance,
    predicted_vs_actual,
    residuals,
    roc,
)
from pipeline.reporting.plots.trials import (
    CORRELATION,
    FOREST,
    IMPORTANCE_SCALES,
    LOG_SCALE_SPAN,
    MIN_TRIALS_FOR_FOREST,
    MIN_TRIALS_FOR_IMPORTANCE,
    OUTLIER_IQR,
    RELIABLE_IMPORTANCE_TRIALS,
    STATUS_MARKERS,
    Hotspot,
    Trials,
    hotspots,
    importances,
    optimization_history,
    parallel_coordinates,
    parameter_importance,
    slices,
    value_range,
)

__all__ = [
    "BEST_COLOR",
    "CORRELATION",
    "DENSE_POINTS",
    "FINISHED",
    "FOREST",
    "IMPORTANCE_SCALES",
    "LOG_SCALE_SPAN",
    "MIN_ROUNDS_TO_ZOOM",
    "MIN_TRIALS_FOR_FOREST",
    "MIN_TRIALS_FOR_IMPORTANCE",
    "OUTLIER_IQR",
    "PAD",
    "PRUNED",
    "RELIABLE_IMPORTANCE_TRIALS",
    "SEQUENTIAL",
    "STATUS_MARKERS",
    "ZOOM_SHARE",
    "Hotspot",
    "Trials",
    "calibration",
    "curve_metric",
    "curve_range",
    "feature_importance",
    "hotspots",
    "importances",
    "learning_curves",
    "optimization_history",
    "parallel_coordinates",
    "parameter_importance",
    "predicted_vs_actual",
    "residuals",
    "roc",
    "slices",
    "value_range",
]
