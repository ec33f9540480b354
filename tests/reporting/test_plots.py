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
    assert "random-forest" in method and forest.sum() == pytest.approx(1.0)
    assert forest.idxmax() == "learning_rate"
    correlation, method = plots.importances(few)
    assert "Spearman" in method and correlation.idxmax() == "learning_rate"
    assert plots.importances(sampled("xgboost.yaml", 2)) is None


def test_choice_importance_is_the_share_of_the_spread_between_options():
    trials = sampled("xgboost_dart.yaml", 8)
    frame = trials.frame.assign(value=np.where(trials.frame["booster"] == "dart", 20.0, 10.0))
    frame.loc[1, "value"] = np.nan  # the failed trial

    scores, _ = plots.importances(plots.Trials(frame, trials.params, "rmse", False))

    assert scores["booster"] == pytest.approx(1.0)
    assert scores.drop("booster").max() < 1.0


def test_history_follows_the_best_so_far_in_the_metric_s_direction():
    for maximize in (False, True):
        trials = sampled("xgboost.yaml", 10, maximize=maximize)
        finished = trials.finished["value"].astype(float)

        best_line = plots.optimization_history(trials).axes[0].lines[0]

        expected = finished.cummax() if maximize else finished.cummin()
        np.testing.assert_allclose(best_line.get_ydata(), expected)
        assert 2 not in trials.finished["number"].to_list()  # the pruned trial never counts as the best


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
    fitted = families.get("xgboost").fit(params, flights_tasks.training_data(REGRESSION), dataset.task, "rmse", 3)
    curves = {
        f"validation_{fitted.curve_metric}_curve": pd.Series(fitted.curve),
        f"train_{fitted.curve_metric}_curve": pd.Series(fitted.train_curve),
    }

    figure = plots.learning_curves(curves, fitted.best_iteration, "best trial")

    assert_drawn(png(figure))
    assert {line.get_label() for line in figure.axes[0].lines} >= {"train rmse", "validation rmse"}
