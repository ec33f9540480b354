"""Figures of a study and of its final model: plain data in (pandas, numpy), matplotlib figures out.

Nothing here knows MLflow, so a figure can be drawn from a study logged long ago or from data a test makes.
Figures are ``matplotlib.figure.Figure`` objects, never pyplot's: no global registry of open figures to
leak from in a long process, no interactive backend to look for on a server; PNGs are rendered by Agg.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import roc_auc_score, roc_curve

FINISHED, PRUNED = "FINISHED", "PRUNED"
MIN_TRIALS_FOR_FOREST = 10
"""Below this many finished trials a random forest over the parameters fits noise; rank correlation is
the more honest estimate."""
MIN_TRIALS_FOR_IMPORTANCE = 3
LOG_SCALE_SPAN = 100.0
"""A positive parameter whose values span this factor or more is drawn on a log axis (log-uniform ones)."""
DENSE_POINTS = 2000
"""Past this many test rows, scatter plots become hexbin densities."""
BEST_COLOR = "tab:red"
STATUS_MARKERS = {PRUNED: "o", "FAILED": "x", "KILLED": "v"}


@dataclass(frozen=True)
class Trials:
    """A study's trials, as the parameter plots read them."""

    frame: pd.DataFrame
    """One row per trial: ``number``, ``status`` (FINISHED, PRUNED, FAILED, KILLED), ``value`` (the
    validation metric; for a pruned trial its best before it was stopped; NaN for the others), and one column
    per searched parameter: float for numbers, str for choices, missing where the trial did not have the
    parameter (another family, another option)."""
    params: list[str]
    metric: str
    maximize: bool

    @property
    def finished(self) -> pd.DataFrame:
        ok = (self.frame["status"] == FINISHED) & np.isfinite(self.frame["value"].astype(float))
        return self.frame[ok].sort_values("number")

    @property
    def best(self) -> pd.Series | None:
        finished = self.finished
        if finished.empty:
            return None
        values = finished["value"].astype(float)
        return finished.loc[values.idxmax() if self.maximize else values.idxmin()]

    @property
    def direction(self) -> str:
        return "higher is better" if self.maximize else "lower is better"

    def categorical(self, param: str) -> bool:
        return not pd.api.types.is_numeric_dtype(self.frame[param])


def optimization_history(trials: Trials) -> Figure:
    """The metric of each finished trial and the best so far. A pruned trial is drawn hollow at the value it
    had when stopped and does not count for the best; a trial without a value (failed, killed) is marked
    along the bottom with its status."""
    figure = Figure(figsize=(9, 5), layout="constrained")
    axes = figure.subplots()
    finished = trials.finished
    values = finished["value"].astype(float)
    axes.scatter(finished["number"], values, s=24, color="tab:blue", label=f"trial {trials.metric}")
    best = values.cummax() if trials.maximize else values.cummin()
    axes.step(finished["number"], best, where="post", color=BEST_COLOR, label="best so far")
    others = trials.frame[~trials.frame.index.isin(finished.index)]
    for status, group in others.groupby("status"):
        marker = STATUS_MARKERS.get(status, "s")
        label = f"{status.lower()} ({len(group)})"
        valued = np.isfinite(group["value"].astype(float))
        if valued.any():
            axes.scatter(
                group["number"][valued],
                group["value"][valued],
                marker=marker,
                s=30,
                facecolors="none",
                edgecolors="grey",
                label=label,
            )
            label = None
        if not valued.all():
            axes.scatter(
                group["number"][~valued],
                np.full(int((~valued).sum()), 0.03),
                transform=axes.get_xaxis_transform(),  # x in trial numbers, y in axes fractions
                marker=marker,
                color="black",
                label=label,
            )
    axes.set(
        xlabel="trial",
        ylabel=f"validation {trials.metric}",
        title=f"Optimization history: validation {trials.metric} ({trials.direction})",
    )
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.legend(loc="best")
    return figure


def parameter_importance(trials: Trials) -> Figure:
    """How much of the metric's variation across trials each parameter accounts for (see
    :func:`importances` for the estimate and why it changes with the number of trials)."""
    figure = Figure(figsize=(8, 1.5 + 0.45 * max(len(trials.params), 1)), layout="constrained")
    axes = figure.subplots()
    estimate = importances(trials)
    if estimate is None:
        _note(axes, f"{len(trials.finished)} finished trial(s): too few to tell which parameter matters")
        axes.set_title("Parameter importance")
        return figure
    scores, method = estimate
    scores = scores.sort_values()
    axes.barh(scores.index, scores.to_numpy(), color="tab:blue")
    axes.set(xlabel=method, title=f"Parameter importance for validation {trials.metric}\n({method})")
    return figure


def importances(trials: Trials) -> tuple[pd.Series, str] | None:
    """Each parameter's importance, with a phrase naming the estimate; None with too few finished trials.

    From ``MIN_TRIALS_FOR_FOREST`` finished trials on: a random forest is fitted from the parameters to the
    metric and each parameter scored by its mean decrease in impurity, normalised to sum to 1 (Optuna's
    ``MeanDecreaseImpurityImportanceEvaluator``, a cheap stand-in for its fANOVA). A parameter a trial
    lacks is missing to the forest, which splits on that too. With fewer trials, the absolute Spearman
    rank correlation of a numeric parameter with the metric, and the correlation ratio (eta) of a choice,
    each over the trials that have the parameter.
    """
    finished = trials.finished
    if len(finished) < MIN_TRIALS_FOR_IMPORTANCE or not trials.params:
        return None
    y = finished["value"].astype(float)
    if len(finished) >= MIN_TRIALS_FOR_FOREST:
        x = np.column_stack([_as_numbers(finished[p], trials.categorical(p)) for p in trials.params])
        if y.nunique() < 2:
            scores = np.zeros(len(trials.params))
        else:
            forest = RandomForestRegressor(n_estimators=64, min_samples_leaf=2, random_state=0, n_jobs=1)
            scores = forest.fit(x, y).feature_importances_
        return pd.Series(scores, index=trials.params), "random-forest impurity decrease, sums to 1"
    scores = [
        _correlation_ratio(finished[p], y) if trials.categorical(p) else _spearman(finished[p], y)
        for p in trials.params
    ]
    return pd.Series(scores, index=trials.params), "|Spearman rho|, eta for choices: too few trials for a forest"


def parallel_coordinates(trials: Trials) -> Figure:
    """Each finished trial as one line across the parameters' axes to the metric's, coloured by the metric
    (darker is better); the best trial in red. A trial's line joins only the axes of the parameters it has,
    so trials of another family or option still reach the metric's axis."""
    columns = [*trials.params, "value"]
    figure = Figure(figsize=(min(max(6, 1.2 * len(columns)), 24), 5.5), layout="constrained")
    axes = figure.subplots()
    finished = trials.finished
    if finished.empty:
        _note(axes, "no finished trial")
        return figure
    positions = pd.DataFrame({p: _scaled(trials, p, finished) for p in trials.params}, index=finished.index)
    values = finished["value"].astype(float)
    positions["value"] = _unit(values)
    norm = Normalize(values.min(), values.max())
    colormap = colormaps["viridis" if trials.maximize else "viridis_r"]
    best = trials.best
    for index, row in positions.iterrows():
        x = np.flatnonzero(row.notna().to_numpy())
        if best is not None and index == best.name:
            axes.plot(x, row.iloc[x].to_numpy(), color=BEST_COLOR, lw=2.5, label="best", zorder=3)
        else:
            axes.plot(x, row.iloc[x].to_numpy(), color=colormap(norm(values[index])), alpha=0.7, lw=1.2)
    if best is not None:
        axes.legend(loc="upper right")
    for i, name in enumerate(columns):
        axes.axvline(i, color="grey", lw=0.8)
        for position, label in _axis_labels(trials, name, finished):
            axes.annotate(label, (i, position), xytext=(3, 0), textcoords="offset points", fontsize=7, va="center")
    figure.colorbar(
        ScalarMappable(norm=norm, cmap=colormap), ax=axes, label=f"validation {trials.metric}", fraction=0.04, pad=0.02
    )
    axes.set_xticks(range(len(columns)), [*trials.params, trials.metric], rotation=30, ha="right")
    axes.set(yticks=[], ylim=(-0.05, 1.05), xlim=(-0.2, len(columns) - 0.5))
    axes.set_title(f"Parallel coordinates: {len(finished)} finished trials ({trials.direction})")
    return figure


def slices(trials: Trials) -> Figure:
    """The metric against each parameter alone, one subplot per parameter, coloured by trial number (later
    trials darker: where TPE converged); only the trials that have the parameter appear in its subplot."""
    finished = trials.finished
    if finished.empty or not trials.params:
        figure = Figure(figsize=(6, 3))
        _note(figure.subplots(), "no finished trial" if finished.empty else "no searched parameter")
        return figure
    count = len(trials.params)
    columns, rows = min(3, count), math.ceil(count / min(3, count))
    width, height = 3.6 * columns + 1.3, 2.9 * rows + 0.8
    # Fixed margins in inches rather than constrained layout, which costs about 0.1 s per subplot here.
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(
        left=0.8 / width, right=1 - 1.3 / width, bottom=0.6 / height, top=1 - 0.8 / height, wspace=0.35, hspace=0.5
    )
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    norm = Normalize(0, max(trials.frame["number"].max(), 1))
    best = trials.best
    for axes, param in zip(grid, trials.params, strict=False):
        present = finished[finished[param].notna()]
        x = _slice_positions(trials, param, present)
        axes.scatter(x, present["value"].astype(float), c=present["number"], cmap="Blues", norm=norm, s=22)
        if best is not None and pd.notna(best[param]):
            axes.scatter(x[present.index.get_loc(best.name)], best["value"], color=BEST_COLOR, marker="*", s=160)
        if trials.categorical(param):
            categories = sorted(present[param].unique())
            axes.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        elif _log_scaled(present[param]):
            axes.set_xscale("log")
        shown = f"{param} ({len(present)} of {len(finished)} trials)" if len(present) < len(finished) else param
        axes.set(xlabel=shown, ylabel=trials.metric)
    for axes in grid[len(trials.params) :]:
        axes.set_visible(False)
    colorbar = figure.add_axes((1 - 0.95 / width, 0.6 / height, 0.15 / width, 1 - 1.4 / height))
    figure.colorbar(ScalarMappable(norm=norm, cmap="Blues"), cax=colorbar, label="trial")
    figure.suptitle(f"Slices: validation {trials.metric} against each parameter ({trials.direction}; red: best)")
    return figure


def learning_curves(curves: Mapping[str, pd.Series], best_iteration: int | None, title: str) -> Figure:
    """Per-round curves of one trial (``validation_rmse_curve``, ``train_rmse_curve``, ... as Series indexed
    by round), with the round early stopping kept: where training and validation part shows overfitting."""
    figure = Figure(figsize=(9, 5), layout="constrained")
    axes = figure.subplots()
    for name, curve in sorted(curves.items()):
        axes.plot(curve.index, curve.to_numpy(), label=name.removesuffix("_curve").replace("_", " ", 1))
    if best_iteration is not None:
        axes.axvline(best_iteration, color=BEST_COLOR, ls="--", label=f"best iteration ({best_iteration})")
    axes.set(xlabel="boosting round", ylabel="metric", title=title)
    axes.legend(loc="best")
    return figure


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


def _note(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, wrap=True)
    axes.set_axis_off()


def _as_numbers(column: pd.Series, categorical: bool) -> np.ndarray:
    """A parameter as one float column for a tree: choices as codes of their sorted values, absent as NaN."""
    if not categorical:
        return column.astype(float).to_numpy()
    codes = pd.Categorical(column, categories=sorted(column.dropna().unique())).codes.astype(float)
    codes[codes < 0] = np.nan
    return codes


def _spearman(x: pd.Series, y: pd.Series) -> float:
    present = x.notna()
    x, y = x[present].astype(float), y[present]
    if len(x) < 3 or x.nunique() < 2 or y.nunique() < 2:
        return 0.0  # no spread, no correlation to speak of
    return abs(float(x.corr(y, method="spearman")))


def _correlation_ratio(x: pd.Series, y: pd.Series) -> float:
    """Share of the metric's spread between a choice's options, as a correlation in [0, 1]."""
    present = x.notna()
    x, y = x[present], y[present]
    total = float(((y - y.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    groups = y.groupby(x)
    between = float((groups.count() * (groups.mean() - y.mean()) ** 2).sum())
    return math.sqrt(between / total)


def _log_scaled(values: pd.Series) -> bool:
    present = values.dropna().astype(float)
    return bool(len(present)) and present.min() > 0 and present.max() / present.min() >= LOG_SCALE_SPAN


def _unit(values: pd.Series) -> pd.Series:
    """Min-max to [0, 1]; a constant column sits in the middle."""
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else values * 0 + 0.5


def _categories(trials: Trials, param: str) -> list[str]:
    return sorted(trials.frame[param].dropna().unique())


def _scaled(trials: Trials, param: str, rows: pd.DataFrame) -> pd.Series:
    """A parameter's values on its parallel-coordinates axis, [0, 1], over the range of every trial."""
    column = trials.frame[param]
    if trials.categorical(param):
        categories = _categories(trials, param)
        spacing = max(len(categories) - 1, 1)
        return rows[param].map({c: i / spacing for i, c in enumerate(categories)}).astype(float)
    numbers = column.astype(float)
    if _log_scaled(numbers):
        numbers = np.log10(numbers)
    low, high = numbers.min(), numbers.max()
    own = np.log10(rows[param].astype(float)) if _log_scaled(column) else rows[param].astype(float)
    return (own - low) / (high - low) if high > low else own * 0 + 0.5


def _axis_labels(trials: Trials, name: str, rows: pd.DataFrame) -> list[tuple[float, str]]:
    """Where to write what on one parallel-coordinates axis: each choice, or the two ends of a range."""
    if name == "value":
        values = rows["value"].astype(float)
        return [(0.0, f"{values.min():.4g}"), (1.0, f"{values.max():.4g}")] if len(values) else []
    if trials.categorical(name):
        categories = _categories(trials, name)
        spacing = max(len(categories) - 1, 1)
        return [(i / spacing, str(c)) for i, c in enumerate(categories)]
    numbers = trials.frame[name].dropna().astype(float)
    return [(0.0, f"{numbers.min():.4g}"), (1.0, f"{numbers.max():.4g}")] if len(numbers) else []


def _slice_positions(trials: Trials, param: str, rows: pd.DataFrame) -> np.ndarray:
    """x of each trial in a slice: the value, or a choice's index with a little seeded jitter so that
    trials with the same option do not hide each other."""
    if not trials.categorical(param):
        return rows[param].astype(float).to_numpy()
    categories = sorted(rows[param].unique())
    codes = rows[param].map({c: i for i, c in enumerate(categories)}).to_numpy(dtype=float)
    return codes + np.random.default_rng(0).uniform(-0.15, 0.15, len(codes))


def _points(figure: Figure, axes, x: np.ndarray, y: np.ndarray) -> None:
    """Points, or their density once there are too many to see."""
    if len(x) > DENSE_POINTS:
        cells = axes.hexbin(x, y, gridsize=60, mincnt=1, cmap="Blues", norm=LogNorm())
        figure.colorbar(cells, ax=axes, label="rows")
    else:
        axes.scatter(x, y, s=8, alpha=0.5, color="tab:blue")


def _scored_classes(classes: list[str]) -> range:
    """The positive class alone for a binary task (the other's curve mirrors it), else every class."""
    return range(1, 2) if len(classes) == 2 else range(len(classes))
