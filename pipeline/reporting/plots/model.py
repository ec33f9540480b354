"""Figures of the final model on the test split: predicted against actual, residuals, ROC, calibration and
feature importance."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

from pipeline.reporting.plots.base import BEST_COLOR, SEQUENTIAL

DENSE_POINTS = 2000
"""Past this many test rows, scatter plots become hexbin densities."""


def predicted_vs_actual(y_true: np.ndarray, y_pred: np.ndarray, target: str) -> Figure:
    """The final model's test predictions against the truth; the diagonal is a perfect model."""
    figure = Figure(figsize=(6.5, 6), layout="constrained")
    axes = figure.subplots()
    _points(figure, axes, y_true, y_pred)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    axes.plot([low, high], [low, high], color=BEST_COLOR, lw=1, label="predicted = actual")
    axes.set(xlabel=f"actual {target}", ylabel=f"predicted {target}")
    axes.set_title(f"Test split: predicted vs actual ({len(y_true)} rows)")
    axes.legend(loc="upper left")
    return figure


def residuals(y_true: np.ndarray, y_pred: np.ndarray, target: str) -> Figure:
    """Residuals (actual - predicted) against the prediction, and their distribution: a trend or a funnel
    on the left, or a skew on the right, is error the metric alone hides."""
    figure = Figure(figsize=(11, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    errors = np.asarray(y_true, np.float64) - y_pred
    _points(figure, left, y_pred, errors)
    left.axhline(0, color=BEST_COLOR, lw=1)
    left.set(xlabel=f"predicted {target}", ylabel="residual (actual - predicted)", title="Residuals vs predicted")
    right.hist(errors, bins=60, color="tab:blue")
    right.axvline(0, color=BEST_COLOR, lw=1)
    right.set(xlabel="residual", ylabel="rows", title=f"Residuals: mean {errors.mean():.3g}, std {errors.std():.3g}")
    figure.suptitle(f"Test split residuals of {target}")
    return figure


def roc(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> Figure:
    """ROC curve of the positive class (binary) or of each class against the rest (multiclass), with AUC.

    ``proba`` has one column per class in ``classes`` order; ``y_true`` holds class indices.
    """
    figure = Figure(figsize=(6.5, 6), layout="constrained")
    axes = figure.subplots()
    for index in _scored_classes(classes):
        positive = np.asarray(y_true) == index
        if positive.all() or not positive.any():
            continue  # ROC is undefined for a class the test split holds all or none of
        fpr, tpr, _ = roc_curve(positive, proba[:, index])
        auc = roc_auc_score(positive, proba[:, index])
        axes.plot(fpr, tpr, label=f"{classes[index]} (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], color="grey", ls="--", label="chance")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="Test split: ROC curve")
    axes.legend(loc="lower right")
    return figure


def calibration(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> Figure:
    """Observed frequency against predicted probability in ten quantile bins (on the diagonal when the
    probabilities can be read as frequencies), above the distribution of the predicted probabilities."""
    figure = Figure(figsize=(6.5, 7), layout="constrained")
    curve_axes, histogram = figure.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    for index in _scored_classes(classes):
        positive = np.asarray(y_true) == index
        observed, predicted = calibration_curve(positive, proba[:, index], n_bins=10, strategy="quantile")
        curve_axes.plot(predicted, observed, marker="o", label=str(classes[index]))
        histogram.hist(proba[:, index], bins=40, range=(0, 1), histtype="step", label=str(classes[index]))
    curve_axes.plot([0, 1], [0, 1], color="grey", ls="--", label="perfectly calibrated")
    curve_axes.set(ylabel="observed frequency", title="Test split: calibration (quantile bins)")
    curve_axes.legend(loc="upper left")
    histogram.set(xlabel="predicted probability", ylabel="rows")
    return figure


def feature_importance(importance: pd.Series, metric: str, maximize: bool) -> Figure:
    """Raw input columns by how much the final model's test metric worsens when the column is shuffled
    (in the metric's units; near zero or negative: the model does not rely on the column)."""
    figure = Figure(figsize=(8, 1.5 + 0.45 * max(len(importance), 1)), layout="constrained")
    axes = figure.subplots()
    ordered = importance.sort_values()
    axes.barh(ordered.index.astype(str), ordered.to_numpy(), color="tab:blue")
    axes.axvline(0, color="grey", lw=0.8)
    worse = "decrease" if maximize else "increase"
    axes.set(
        xlabel=f"test {metric} {worse} when the column is shuffled",
        title="Final model: permutation importance of the raw columns (test split)",
    )
    return figure


def _points(figure: Figure, axes, x: np.ndarray, y: np.ndarray) -> None:
    """Points, or their density once there are too many to see."""
    if len(x) > DENSE_POINTS:
        cells = axes.hexbin(x, y, gridsize=60, mincnt=1, cmap=SEQUENTIAL, norm=LogNorm())
        figure.colorbar(cells, ax=axes, label="rows")
    else:
        axes.scatter(x, y, s=8, alpha=0.5, color="tab:blue")


def _scored_classes(classes: list[str]) -> range:
    """The positive class alone for a binary task (the other's curve mirrors it), else every class."""
    return range(1, 2) if len(classes) == 2 else range(len(classes))
