"""Figures of a study's trials: the optimization history, parameter importances, parallel coordinates and
slices, and the hotspots that link their points to the trials' runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.ensemble import RandomForestRegressor

from pipeline.reporting.plots.base import BEST_COLOR, FINISHED, PAD, PRUNED, SEQUENTIAL

LOG_SCALE_SPAN = 100.0
"""A positive parameter whose values span this factor or more is drawn on a log axis (log-uniform ones)."""
MIN_TRIALS_FOR_FOREST = 10
"""Below this many finished trials a random forest over the parameters fits noise; rank correlation is
the more honest estimate."""
MIN_TRIALS_FOR_IMPORTANCE = 3
OUTLIER_IQR = 3.0
"""A finished trial further than this many interquartile ranges beyond the quartiles does not stretch the
optimization history's y-axis (Tukey's "far out"); it is drawn at the edge."""
RELIABLE_IMPORTANCE_TRIALS = 20
"""Below this many finished trials, importances are flagged as a hint only: a rank correlation from n
trials is uncertain by about 1/sqrt(n - 1) (0.41 at 7 trials, 0.23 at 20), and a forest over a handful of
trials ranks noise."""
STATUS_MARKERS = {PRUNED: "o", "FAILED": "x", "KILLED": "D"}


def _note(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, wrap=True)
    axes.set_axis_off()


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
    """The metric of each trial and the best so far, drawn to the last trial.

    The y-axis spans the finished trials (less far outliers, see :func:`value_range`), so the pruned ones,
    stopped while they were bad, cannot squash the finished ones flat; a point beyond that range is drawn at
    the edge it lies past, as a triangle pointing out. A pruned trial is drawn hollow at the value it had when
    stopped and does not count for the best; a trial without a value (failed, killed) is marked along the
    bottom with its status. Each trial's marker carries the URL ``#trial-<number>`` (see :func:`hotspots`).
    """
    figure = Figure(figsize=(9, 5), layout="constrained")
    axes = figure.subplots()
    frame, finished = trials.frame, trials.finished
    valued = frame[np.isfinite(frame["value"].astype(float))]
    best = trials.best
    limits = value_range(
        (finished if not finished.empty else valued)["value"], None if best is None else float(best["value"])
    )
    beyond = _scatter_within(axes, finished, limits, s=24, color="tab:blue", label=f"finished ({len(finished)})")
    if not finished.empty:
        values = finished["value"].astype(float)
        best_so_far = (values.cummax() if trials.maximize else values.cummin()).to_list()
        numbers = finished["number"].to_list()
        last = int(frame["number"].max())
        if last > numbers[-1]:  # the best holds until the last trial, whatever became of the later ones
            numbers, best_so_far = [*numbers, last], [*best_so_far, best_so_far[-1]]
        axes.step(numbers, best_so_far, where="post", color=BEST_COLOR, label="best so far", zorder=3)
    others = frame[~frame.index.isin(finished.index)]
    for status, group in others.groupby("status"):
        marker = STATUS_MARKERS.get(status, "s")
        label: str | None = f"{status.lower()} ({len(group)})"
        has_value = group.index.isin(valued.index)
        if has_value.any():
            style = {"marker": marker, "s": 30, "facecolors": "none", "edgecolors": "grey"}
            beyond += _scatter_within(axes, group[has_value], limits, label=label, **style)
            label = None
        if not has_value.all():
            lacking = group[~has_value]
            marks = axes.scatter(
                lacking["number"],
                np.full(len(lacking), 0.03),
                transform=axes.get_xaxis_transform(),  # x in trial numbers, y in axes fractions
                marker=marker,
                color="black",
                label=label,
            )
            marks.set_urls(_trial_urls(lacking))
    if limits is not None:
        axes.set_ylim(*limits)
    if beyond:
        axes.scatter([], [], marker="^", color="grey", label=f"beyond the y-range, at its edge ({beyond})")
    axes.set(xlabel="trial", ylabel=f"validation {trials.metric}")
    axes.set_title(f"Optimization history: validation {trials.metric} ({trials.direction})", pad=10)
    axes.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True))
    axes.legend(loc="best")
    return figure


def value_range(values: pd.Series, best: float | None = None) -> tuple[float, float] | None:
    """The y-limits that show the trials that matter: the values' range less far outliers (beyond
    ``OUTLIER_IQR`` interquartile ranges from the quartiles) but always the best, padded by ``PAD`` of the
    span. None without a finite value (let matplotlib choose)."""
    numbers = values.astype(float)
    numbers = numbers[np.isfinite(numbers)]
    if numbers.empty:
        return None
    low_quartile, high_quartile = numbers.quantile([0.25, 0.75])
    fence = OUTLIER_IQR * (high_quartile - low_quartile)
    kept = numbers[(numbers >= low_quartile - fence) & (numbers <= high_quartile + fence)]
    low, high = float(kept.min()), float(kept.max())
    if best is not None and np.isfinite(best):
        low, high = min(low, best), max(high, best)
    pad = PAD * (high - low) if high > low else max(abs(high) * PAD, 1e-9)
    return low - pad, high + pad


def _scatter_within(axes, rows: pd.DataFrame, limits: tuple[float, float] | None, label: str | None, **style) -> int:
    """Draw the rows' values inside ``limits``; those beyond, at the edge they pass as a triangle pointing
    out. Returns how many were beyond."""
    values = rows["value"].astype(float)
    low, high = limits if limits is not None else (-np.inf, np.inf)
    inside = values.between(low, high)
    points = axes.scatter(rows["number"][inside], values[inside], label=label, **style)
    points.set_urls(_trial_urls(rows[inside]))
    for edge, marker, past in ((0.99, "^", values > high), (0.01, "v", values < low)):
        if past.any():
            edge_style = style | {"marker": marker, "s": 40, "clip_on": False, "zorder": 4}
            marks = axes.scatter(
                rows["number"][past],
                np.full(int(past.sum()), edge),
                transform=axes.get_xaxis_transform(),  # x in trial numbers, y on the axes' edge
                **edge_style,
            )
            marks.set_urls(_trial_urls(rows[past]))
    return int((~inside).sum())


def _trial_urls(rows: pd.DataFrame) -> list[str]:
    return [f"#trial-{int(n)}" for n in rows["number"]]


@dataclass(frozen=True)
class Hotspot:
    """Where a trial's marker lies on a drawn figure, in fractions of its width (from the left) and height
    (from the top): what an HTML page needs to put a tooltip over the PNG at any scale."""

    x: float
    y: float
    trial: int


def hotspots(figure: Figure, laid_out: bool = False) -> list[Hotspot]:
    """The markers of the figure that carry a trial URL (``#trial-<number>``), as laid out when drawn.
    Unless ``laid_out`` (the figure was just saved, which laid it out), the figure is laid out first,
    without rendering; a figure without such markers is not (laying out every plot of a report again took
    a third of its drawing time)."""
    linked = [
        collection
        for axes in figure.axes
        for collection in axes.collections
        if any(url is not None and url.startswith("#trial-") for url in collection.get_urls() or [])
    ]
    if not linked:
        return []
    if not laid_out:
        figure.draw_without_rendering()
    width, height = figure.bbox.width, figure.bbox.height
    found = []
    for collection in linked:
        urls = collection.get_urls()
        offsets = np.asarray(collection.get_offsets(), dtype=float)
        if len(urls) != len(offsets):
            continue
        shown = collection.get_offset_transform().transform(offsets)
        for (x, y), url in zip(shown, urls, strict=True):
            if url is not None and url.startswith("#trial-") and np.isfinite(x) and np.isfinite(y):
                found.append(Hotspot(float(x / width), float(1 - y / height), int(url.removeprefix("#trial-"))))
    return found


def parameter_importance(trials: Trials) -> Figure:
    """How much of the metric's variation across trials each parameter accounts for (see
    :func:`importances` for the estimate and why it changes with the number of trials), each bar labelled
    with its value so that a zero reads as a zero. The title says what the scores are computed from; with
    fewer than ``RELIABLE_IMPORTANCE_TRIALS`` finished trials it says they are too few to mean much."""
    figure = Figure(figsize=(8, 1.9 + 0.45 * max(len(trials.params), 1)), layout="constrained")
    axes = figure.subplots()
    figure.suptitle(f"Parameter importance for validation {trials.metric}")
    count = len(trials.finished)
    estimate = importances(trials)
    if estimate is None:
        _note(axes, f"{count} finished trial(s): too few to tell which parameter matters")
        return figure
    scores, method = estimate
    scores = scores.sort_values()
    few = count < RELIABLE_IMPORTANCE_TRIALS
    bars = axes.barh(scores.index, scores.to_numpy(), color="tab:gray" if few else "tab:blue")
    axes.bar_label(bars, fmt="%.2f", padding=3, fontsize=8)
    axes.set_xlim(0, max(float(scores.max()), 0.05) * 1.15)
    axes.set_xlabel(IMPORTANCE_SCALES[method])
    source = f"{method}, over {count} finished trials"
    if few:
        axes.set_title(
            f"{source}:\ntoo few trials to mean much (fewer than {RELIABLE_IMPORTANCE_TRIALS}); read it as a hint",
            color="tab:red",
            fontsize=10,
        )
    else:
        axes.set_title(source, fontsize=10)
    return figure


FOREST = "random-forest impurity decrease"
CORRELATION = "rank correlation"
IMPORTANCE_SCALES = {
    FOREST: "share of the forest's impurity decrease (sums to 1)",
    CORRELATION: "|Spearman rho| with the metric (eta for a choice), 0 to 1",
}
"""What the bars' lengths mean, by estimate."""


def importances(trials: Trials) -> tuple[pd.Series, str] | None:
    """Each parameter's importance and the estimate's name (``FOREST`` or ``CORRELATION``); None with too
    few finished trials.

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
            scores: Any = np.zeros(len(trials.params))
        else:
            forest = RandomForestRegressor(n_estimators=64, min_samples_leaf=2, random_state=0, n_jobs=1)
            scores = forest.fit(x, y).feature_importances_
        return pd.Series(scores, index=trials.params), FOREST
    scores = [
        _correlation_ratio(finished[p], y) if trials.categorical(p) else _spearman(finished[p], y)
        for p in trials.params
    ]
    return pd.Series(scores, index=trials.params), CORRELATION


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
    """The metric against each parameter alone, one subplot per parameter, coloured by trial number (from
    purple, early, to yellow, late: where TPE converged; every point edged so that none fades into the
    background); only the trials that have the parameter appear in its subplot. Each point carries the URL
    ``#trial-<number>`` (see :func:`hotspots`)."""
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
        points = axes.scatter(
            x,
            present["value"].astype(float),
            c=present["number"],
            cmap=SEQUENTIAL,
            norm=norm,
            s=24,
            edgecolors="0.25",
            linewidths=0.4,
        )
        points.set_urls(_trial_urls(present))
        if best is not None and pd.notna(best[param]):
            axes.scatter(x[present.index.get_loc(best.name)], best["value"], color=BEST_COLOR, marker="*", s=160)
        if trials.categorical(param):
            categories = sorted(present[param].unique())
            axes.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        elif _log_scaled(present[param]):
            axes.set_xscale("log")
        axes.margins(y=0.1)  # room for the best trial's star at the edge
        shown = f"{param} ({len(present)} of {len(finished)} trials)" if len(present) < len(finished) else param
        axes.set(xlabel=shown, ylabel=trials.metric)
    for axes in grid[len(trials.params) :]:
        axes.set_visible(False)
    colorbar = figure.add_axes((1 - 0.95 / width, 0.6 / height, 0.15 / width, 1 - 1.4 / height))
    figure.colorbar(ScalarMappable(norm=norm, cmap=SEQUENTIAL), cax=colorbar, label="trial")
    figure.suptitle(f"Slices: validation {trials.metric} against each parameter ({trials.direction}; red: best)")
    return figure


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
