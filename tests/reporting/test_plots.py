"""pipeline.reporting.plots: every figure rendered to a real PNG, from trials sampled from the shipped search spaces
(conditional options, several families, choices) and from real models' predictions on the small flights."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from pipeline import families, spaces
from pipeline.metrics import BINARY, METRICS, MULTICLASS, REGRESSION
from pipeline.model import finalize
from pipeline.reporting import plots
from pipeline.search import optimizer
from pipeline.search.loop import TrialOutcome
from pipeline.study import REPO_ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRIAL_PLOTS = (plots.optimization_history, plots.parameter_importance, plots.parallel_coordinates, plots.slices)


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=50)
    return buffer.getvalue()


def assert_drawn(data: bytes) -> None:
    """A PNG that decodes, of a real size, with something drawn on it (more than a blank page's colours)."""
    assert data.startswith(PNG_SIGNATURE) and len(data) > 3000
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20


def sampled(space_file: str, count: int, maximize: bool = False, seed: int = 5) -> plots.Trials:
    """``count`` trials of a shipped space, typed as a study logs them, with a metric that learning_rate
    drives (where the trial has one) and noise; the second trial failed and the third was pruned."""
    space = spaces.load(REPO_ROOT / "search_spaces" / space_file)
    frame = pd.DataFrame(optimizer.sample(space, count, seed))
    rng = np.random.default_rng(seed)
    rate = frame["learning_rate"].fillna(0.1) if "learning_rate" in frame else 0.1
    value = 10 + 20 * rate + rng.normal(0, 0.3, count)
    frame.insert(0, "number", range(count))
    frame.insert(1, "status", "FINISHED")
    frame.insert(2, "value", -value if maximize else value)
    if count > 2:
        frame.loc[1, ["status", "value"]] = ["FAILED", np.nan]
        frame.loc[2, "status"] = plots.PRUNED
    fixed = {name for family in space.families for name in space.fixed(family)}
    searched = [c for c in frame.columns[3:] if c not in fixed and frame[c].nunique(dropna=False) > 1]
    return plots.Trials(frame, searched, "rmse" if not maximize else "r2", maximize)


@pytest.mark.parametrize(
    ("space_file", "count", "maximize"),
    [("multi_family.yaml", 14, True), ("xgboost.yaml", 2, False)],
    ids=["several-families-maximised", "two-trials"],
)
@pytest.mark.parametrize("plot", TRIAL_PLOTS, ids=lambda plot: plot.__name__)
def test_trial_plots_draw_every_kind_of_study(space_file, count, maximize, plot):
    trials = sampled(space_file, count, maximize)
    if count > 2:
        absent = trials.frame[trials.params].isna().any()
        assert absent.any(), "some parameter must be missing from some trials for this case to mean anything"
        assert any(trials.categorical(p) for p in trials.params)

    assert_drawn(png(plot(trials)))


def test_importance_ranks_the_parameter_that_drives_the_metric_first():
    many, few = sampled("xgboost.yaml", 24), sampled("xgboost.yaml", 6)

    forest, method = plots.importances(many)
    assert method == plots.FOREST and forest.sum() == pytest.approx(1.0)
    assert forest.idxmax() == "learning_rate"
    correlation, method = plots.importances(few)
    assert method == plots.CORRELATION and correlation.idxmax() == "learning_rate"
    assert plots.importances(sampled("xgboost.yaml", 2)) is None


def test_choice_importance_is_the_share_of_the_spread_between_options():
    trials = sampled("xgboost_dart.yaml", 8)
    frame = trials.frame.assign(value=np.where(trials.frame["booster"] == "dart", 20.0, 10.0))
    frame.loc[1, "value"] = np.nan  # the failed trial

    scores, _ = plots.importances(plots.Trials(frame, trials.params, "rmse", False))

    assert scores["booster"] == pytest.approx(1.0)
    assert scores.drop("booster").max() < 1.0


def test_history_follows_the_best_so_far_in_the_metric_s_direction_to_the_last_trial():
    for maximize in (False, True):
        trials = sampled("xgboost.yaml", 10, maximize=maximize)
        trials.frame.loc[9, ["status", "value"]] = ["FAILED", np.nan]  # the best still reaches the last trial
        finished = trials.finished["value"].astype(float)

        best_line = plots.optimization_history(trials).axes[0].lines[0]

        expected = finished.cummax() if maximize else finished.cummin()
        np.testing.assert_allclose(best_line.get_ydata(), [*expected, expected.iloc[-1]])
        assert best_line.get_xdata()[-1] == 9
        assert 2 not in trials.finished["number"].to_list()  # the pruned trial never counts as the best


def squashed(maximize: bool = False) -> plots.Trials:
    """Ten finished trials within 0.2 of each other and ten pruned ones far worse, as a pruned study logs
    them: one pruned trial just inside the finished range, one far better than any (a case to mark too)."""
    trials = sampled("xgboost.yaml", 20, maximize=maximize)
    frame = trials.frame.assign(status="FINISHED")
    rng = np.random.default_rng(1)
    values = np.concatenate([10.7 + rng.uniform(0, 0.2, 10), 15 + rng.uniform(0, 20, 10)])
    values[12], values[13] = 10.8, 2.0
    frame["value"] = -values if maximize else values
    frame.loc[10:, "status"] = plots.PRUNED
    return plots.Trials(frame, trials.params, trials.metric, maximize)


@pytest.mark.parametrize("maximize", [False, True])
def test_pruned_trials_do_not_squash_the_history_they_are_marked_at_the_edge(maximize):
    trials = squashed(maximize)
    finished = trials.finished["value"]

    axes = plots.optimization_history(trials).axes[0]

    low, high = axes.get_ylim()
    assert low < finished.min() and finished.max() < high
    assert high - low < 2 * (finished.max() - finished.min())  # zoomed on the finished trials
    edges = [c for c in axes.collections if c.get_offsets().shape[0] and c.get_offset_transform() != axes.transData]
    marked = sorted(int(url.removeprefix("#trial-")) for c in edges for url in c.get_urls())
    assert marked == [10, 11, 13, 14, 15, 16, 17, 18, 19]  # every pruned trial beyond the range; 12 is inside
    assert any("beyond the y-range" in t.get_text() and "(9)" in t.get_text() for t in axes.get_legend().texts)


def test_the_value_range_leaves_out_far_outliers_but_never_the_best():
    values = pd.Series([10.0, 10.1, 10.2, 10.3, 10.4, 50.0, np.nan])

    low, high = plots.value_range(values)
    assert low < 10.0 and 10.4 < high < 11  # 50 is far out
    low, high = plots.value_range(values, best=50.0)
    assert high > 50  # a maximised study's best is never cut
    assert plots.value_range(pd.Series([np.nan])) is None
    low, high = plots.value_range(pd.Series([3.0]))
    assert low < 3.0 < high


def test_every_trial_of_a_slice_stands_out_from_the_white_page():
    trials = sampled("xgboost.yaml", 12)

    figure = plots.slices(trials)

    points = figure.axes[0].collections[0]
    faces = points.to_rgba(points.get_array())  # the colour each trial's number maps to
    assert len(faces) == len(trials.finished)
    assert faces[:, :3].mean(axis=1).max() < 0.9  # the lightest trial is not near-white (Blues' start was)
    assert points.get_edgecolors()[:, :3].max() < 0.5  # and every point has a dark edge


def test_importance_says_what_it_is_computed_from_and_when_that_is_too_few_trials():
    few, many = sampled("xgboost.yaml", 9), sampled("xgboost.yaml", 30)
    few.frame.loc[few.frame["number"] >= 3, "subsample"] = 0.7  # a parameter with no effect scores 0

    few_axes, many_axes = plots.parameter_importance(few).axes[0], plots.parameter_importance(many).axes[0]

    count = len(few.finished)
    assert count < plots.RELIABLE_IMPORTANCE_TRIALS <= len(many.finished)
    assert f"rank correlation, over {count} finished trials" in few_axes.get_title()
    assert "too few trials to mean much" in few_axes.get_title()
    assert f"random-forest impurity decrease, over {len(many.finished)} finished trials" == many_axes.get_title()
    assert few_axes.get_xlabel() != few_axes.get_title() and "Spearman" in few_axes.get_xlabel()
    labels = {t.get_text() for t in few_axes.texts}
    assert "0.00" in labels or "0.01" in labels  # a zero reads as a number, not as a missing bar


def test_learning_curves_name_their_metric_and_zoom_past_the_first_rounds():
    rounds = np.arange(200)
    validation = pd.Series(10 + 80 * np.exp(-rounds / 20) + 0.002 * rounds, index=rounds)
    train = pd.Series(9 + 81 * np.exp(-rounds / 20), index=rounds)
    curves = {"validation_rmse_curve": validation, "train_rmse_curve": train}
    best = int(validation.idxmin())

    axes = plots.learning_curves(curves, best, "best trial").axes[0]

    assert axes.get_ylabel() == "rmse per round"
    low, high = axes.get_ylim()
    assert low < train.iloc[-1] and validation.loc[best] < high < 20  # the first rounds' 90 is off the plot
    assert "zoomed" in axes.get_xlabel()
    assert plots.curve_metric({"validation_auc_curve": validation, "train_logloss_curve": train}) is None
    rising = {"validation_auc_curve": 1 - validation / 100}  # a maximised curve zooms the same way
    low, high, first = plots.curve_range(rising, best)
    assert first > 0 and high > rising["validation_auc_curve"].max() and low > 0.2


def test_a_curve_logged_every_few_rounds_zooms_by_its_rounds_not_its_points():
    rounds = np.arange(0, 200, 25)  # 8 logged points over 176 rounds
    validation = pd.Series(10 + 80 * np.exp(-rounds / 20) + 0.002 * rounds, index=rounds)
    zoom = plots.curve_range({"validation_rmse_curve": validation}, int(validation.idxmin()))
    assert zoom is not None, "176 rounds are enough to zoom, however few of them were logged"
    _, high, first = zoom
    assert first in rounds and first > 0
    assert high < 20


@pytest.mark.parametrize("laid_out", [False, True], ids=["laid-out-again", "as-saved"])
def test_hotspots_lie_on_the_drawn_markers_of_their_trials(laid_out):
    """Standalone (the figure laid out again) or read off the layout its ``savefig`` just made, as the
    report does."""
    trials = squashed()
    for figure in (plots.optimization_history(trials), plots.slices(trials)):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=60)
        pixels = matplotlib.image.imread(io.BytesIO(buffer.getvalue()), format="png")[:, :, :3]

        spots = plots.hotspots(figure, laid_out=laid_out)

        assert {s.trial for s in spots} >= set(trials.finished["number"])
        height, width = pixels.shape[:2]
        for spot in spots:
            row, column = round(spot.y * height), round(spot.x * width)
            around = pixels[max(row - 2, 0) : row + 3, max(column - 2, 0) : column + 3]
            assert around.min() < 0.8, f"nothing drawn under trial {spot.trial}'s hotspot"


def test_a_figure_without_trial_markers_has_no_hotspots_and_is_not_laid_out(monkeypatch):
    figure = plots.parameter_importance(squashed())
    monkeypatch.setattr(figure, "draw_without_rendering", lambda: pytest.fail("laid out for no marker"))

    assert plots.hotspots(figure) == []


def test_parallel_coordinates_skip_the_axis_of_a_parameter_a_trial_lacks():
    trials = sampled("xgboost_dart.yaml", 12)
    lacking = trials.finished["rate_drop"].isna()
    assert lacking.any() and not lacking.all()

    lines = plots.parallel_coordinates(trials).axes[0].lines[: len(trials.finished)]

    axis, metric_axis = trials.params.index("rate_drop"), len(trials.params)
    assert sum(axis not in line.get_xdata() for line in lines) == lacking.sum()
    assert all(line.get_xdata()[-1] == metric_axis for line in lines)  # every trial reaches the metric


@pytest.fixture(scope="module")
def predictions(flights_tasks) -> dict[str, tuple]:
    """A real xgboost model per task, trained on the small flights for 20 rounds: the test split's truth
    and predictions, and the model itself."""
    out = {}
    for kind, metric in ((REGRESSION, "rmse"), (BINARY, "log_loss"), (MULTICLASS, "log_loss")):
        dataset = flights_tasks.dataset(kind)
        params = {"model": "xgboost", "max_depth": 4, "learning_rate": 0.3}
        best = TrialOutcome(number=0, params=params, value=1.0, best_iteration=19, run_id="", train_seconds=0, ok=True)
        model = finalize.refit(dataset, best, "train", seed=3)
        x_test, y_test = dataset.xy("test")
        out[kind] = (model, x_test, y_test, finalize.predict(model, x_test), METRICS[metric])
    return out


def test_regression_test_plots(predictions):
    _, _, y_test, predicted, _ = predictions[REGRESSION]

    assert_drawn(png(plots.predicted_vs_actual(y_test, predicted, "air_time")))
    assert_drawn(png(plots.residuals(y_test, predicted, "air_time")))


@pytest.mark.parametrize("kind", [BINARY, MULTICLASS])
def test_classification_test_plots(predictions, kind):
    model, _, y_test, predicted, _ = predictions[kind]
    proba = np.column_stack([1 - predicted, predicted]) if kind == BINARY else predicted
    classes = [str(c) for c in model.task.classes]

    roc = plots.roc(y_test, proba, classes)
    assert_drawn(png(roc))
    assert_drawn(png(plots.calibration(y_test, proba, classes)))
    curves = [line for line in roc.axes[0].lines if "AUC" in line.get_label()]
    assert len(curves) == (1 if kind == BINARY else len(classes))


def test_feature_importance_of_the_raw_columns(predictions):
    model, x_test, y_test, _, metric = predictions[REGRESSION]
    importance = pd.Series(finalize.permutation_importance(model, x_test, y_test, metric, seed=0))

    figure = plots.feature_importance(importance, metric.name, metric.greater_is_better)

    assert_drawn(png(figure))
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == list(importance.sort_values().index)


def test_learning_curves_of_a_real_trial(flights_tasks):
    dataset = flights_tasks.dataset(REGRESSION)
    params = {
        "model": "xgboost",
        "max_depth": 4,
        "learning_rate": 0.5,
        "num_boost_round": 200,
        "early_stopping_rounds": 5,
    }
    training = flights_tasks.training_data(REGRESSION)
    fitted = families.get("xgboost").fit(params, training, dataset.task, "rmse", 3, train_curve=True)
    curves = {
        f"validation_{fitted.curve_metric}_curve": pd.Series(fitted.curve),
        f"train_{fitted.curve_metric}_curve": pd.Series(fitted.train_curve),
    }

    figure = plots.learning_curves(curves, fitted.best_iteration, "best trial")

    assert_drawn(png(figure))
    assert {line.get_label() for line in figure.axes[0].lines} >= {"train rmse", "validation rmse"}
