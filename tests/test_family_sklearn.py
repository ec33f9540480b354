"""pipeline.families.sklearn: every scikit-learn family fitted, scored, retrained, saved and loaded on the
small real flights data, as a regression (air time), binary (arrived late) and multiclass (origin) task."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import ensemble, linear_model, svm

from pipeline import config, families
from pipeline.families import Fitted, TrainingData
from pipeline.features import Preprocessor
from pipeline.metrics import BINARY, METRICS, MULTICLASS, REGRESSION, TASKS, Task, log_loss

SKLEARN = [name for name in config.FAMILIES if name != "xgboost"]
LINEAR = ("ridge", "lasso", "elastic_net", "linear_svr", "logistic_regression")
HGB = "hist_gradient_boosting"
SMALL = {
    "random_forest": {"n_estimators": 20, "max_depth": 12, "min_samples_leaf": 2},
    "extra_trees": {"n_estimators": 20, "max_depth": 12, "min_samples_leaf": 2},
    HGB: {"max_iter": 50, "learning_rate": 0.5},
    "ridge": {"alpha": 1.0},
    "lasso": {"alpha": 0.1, "max_iter": 2000},
    "elastic_net": {"alpha": 0.01, "l1_ratio": 0.5, "max_iter": 2000},
    "linear_svr": {"C": 1.0, "epsilon": 0.5, "max_iter": 5000},
    "logistic_regression": {"C": 1.0, "max_iter": 500},
}
"""Small budgets: each fit takes a fraction of a second on 3000 rows."""
METRIC = {REGRESSION: "rmse", BINARY: "auc", MULTICLASS: "accuracy"}
CASES = [(name, task) for task in TASKS for name in SKLEARN if task in families.get(name).tasks]
SEED = 3


def params(name: str, **changes: object) -> dict:
    return {"model": name} | SMALL[name] | changes


@pytest.fixture(scope="module")
def tasks(flights_tasks) -> dict[str, tuple[Task, TrainingData]]:
    return {kind: (flights_tasks.dataset(kind).task, flights_tasks.training_data(kind)) for kind in TASKS}


@pytest.fixture(scope="module")
def fitted(tasks) -> dict[tuple[str, str], Fitted]:
    """Each case fitted once, as a trial fits it."""
    out = {}
    for name, kind in CASES:
        task, data = tasks[kind]
        out[name, kind] = families.get(name).fit(params(name), data, task, METRIC[kind], SEED)
    return out


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal but for the last bits: forests sum their trees on several threads, in no fixed order."""
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def check_predictions(predictions: np.ndarray, task: Task, rows: int) -> None:
    """Values for regression, the positive class's probability, or one probability column per class."""
    assert predictions.dtype == np.float64
    assert np.isfinite(predictions).all()
    if task.kind == REGRESSION:
        assert predictions.shape == (rows,)
        return
    assert ((predictions >= 0) & (predictions <= 1)).all()
    if task.kind == BINARY:
        assert predictions.shape == (rows,)
        assert 0 < predictions.mean() < 1
    else:
        assert predictions.shape == (rows, len(task.classes))
        np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-6)  # float32 inputs: float32 sums


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_fit_on_the_training_split_scores_the_validation_split(tasks, fitted, name, kind):
    task, data = tasks[kind]
    family = families.get(name)
    result = fitted[name, kind]

    assert family.encoding == ("onehot" if name in LINEAR else "codes")
    x_train, x_validation = data.encoded(family.encoding)
    assert result.model.n_features_in_ == x_train.shape[1] == len(data.preprocessors[family.encoding].feature_names)
    assert result.seconds > 0
    if name != HGB:
        assert (result.best_iteration, result.curve, result.curve_metric) == (None, [], None)

    value = family.validation_score(result, data, task, METRIC[kind])
    predictions = family.predict(family.trained_model(result), x_validation, task)
    check_predictions(predictions, task, len(data.y_validation))
    assert value == pytest.approx(METRICS[METRIC[kind]].score(data.y_validation, predictions), rel=1e-5)
    # Each family learns something real: far better than a constant.
    if kind == REGRESSION:
        assert value < 0.25 * np.std(data.y_validation)
    elif kind == BINARY:
        assert value > 0.75
    else:
        assert value > 0.6 > np.bincount(data.y_validation).max() / len(data.y_validation)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_refit_with_the_trial_rounds_reproduces_the_trial(tasks, fitted, name, kind):
    task, data = tasks[kind]
    family = families.get(name)
    trial = fitted[name, kind]
    x_train, x_validation = data.encoded(family.encoding)
    rounds = trial.best_iteration + 1 if trial.best_iteration is not None else None

    model = family.refit(params(name), rounds, x_train, data.y_train, task, SEED, data.preprocessors[family.encoding])

    predictions = family.predict(model, x_validation, task)
    check_predictions(predictions, task, len(data.y_validation))
    expected = family.predict(family.trained_model(trial), x_validation, task)
    np.testing.assert_allclose(predictions, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_save_and_load_give_identical_predictions(tmp_path, tasks, fitted, name, kind):
    task, data = tasks[kind]
    family = families.get(name)
    model = family.trained_model(fitted[name, kind])

    path = family.save(model, tmp_path)
    loaded = family.load(path)

    assert path.parent == tmp_path and path.is_file()
    assert type(loaded) is type(model)
    _, x_validation = data.encoded(family.encoding)
    assert_same(family.predict(loaded, x_validation, task), family.predict(model, x_validation, task))


def test_a_class_unseen_in_training_gets_probability_zero(tasks):
    task, data = tasks[MULTICLASS]
    family = families.get("random_forest")
    x_train, x_validation = data.encoded("codes")
    without_last = data.y_train != len(task.classes) - 1

    model = family.refit(params("random_forest"), None, x_train[without_last], data.y_train[without_last], task, SEED)

    proba = family.predict(model, x_validation, task)
    assert proba.shape == (len(x_validation), len(task.classes))
    assert (proba[:, -1] == 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba[:, :-1] > 0).any(axis=0).all()


def test_seed_sets_random_state_and_threads_are_the_pipeline_s(tasks):
    task, data = tasks[REGRESSION]
    family = families.get("random_forest")
    x_train, x_validation = data.encoded("codes")
    first = family.refit(params("random_forest", max_features=0.5), None, x_train, data.y_train, task, seed=1)
    again = family.refit(params("random_forest", max_features=0.5), None, x_train, data.y_train, task, seed=1)
    other = family.refit(params("random_forest", max_features=0.5), None, x_train, data.y_train, task, seed=2)

    assert first.random_state == 1 and other.random_state == 2
    assert first.n_jobs == families.threads()
    assert_same(first.predict(x_validation), again.predict(x_validation))
    assert not np.allclose(first.predict(x_validation), other.predict(x_validation))


# --- histogram gradient boosting: early stopping on the study's validation split -------------------------


def validation_loss(kind: str, y: np.ndarray, predictions: np.ndarray) -> float:
    """What HistGradientBoosting's default early-stopping scorer computes: half the squared error, or log loss."""
    return 0.5 * float(np.mean((y - predictions) ** 2)) if kind == REGRESSION else log_loss(y, predictions)


@pytest.mark.parametrize("kind", TASKS)
def test_hist_gradient_boosting_early_stops_on_the_validation_split(tasks, fitted, kind):
    task, data = tasks[kind]
    family = families.get(HGB)
    result = fitted[HGB, kind]
    model = result.model

    assert model.n_iter_ < SMALL[HGB]["max_iter"], "a learning rate of 0.5 overfits well before 50 iterations"
    assert result.best_iteration == model.n_iter_ - 1
    assert result.curve_metric == "loss"
    assert len(result.curve) >= model.n_iter_
    assert all(np.isfinite(result.curve))
    # The curve is the loss on the study's own validation split, not on a split HGB carved out of training.
    _, x_validation = data.encoded("codes")
    kept = family.predict(family.trained_model(result), x_validation, task)
    assert result.curve[-1] == pytest.approx(validation_loss(kind, data.y_validation, kept), rel=1e-9)
    assert model.n_iter_no_change < model.n_iter_, "it stopped on no improvement, not on the first iteration"


def test_hist_gradient_boosting_curve_has_one_value_per_round_like_xgboost(tasks, fitted):
    """``Fitted.curve`` is the validation metric *after each round*, so ``curve[best_iteration]`` is the score of
    the rounds kept (as for xgboost, and as the logged ``validation_loss_curve`` steps are read)."""
    kind = BINARY
    task, data = tasks[kind]
    family = families.get(HGB)
    result = fitted[HGB, kind]
    _, x_validation = data.encoded("codes")
    kept = family.predict(family.trained_model(result), x_validation, task)

    assert len(result.curve) == result.model.n_iter_
    assert result.curve[result.best_iteration] == pytest.approx(validation_loss(kind, data.y_validation, kept))


def test_hist_gradient_boosting_refit_trains_exactly_the_rounds_asked(tasks):
    task, data = tasks[BINARY]
    family = families.get(HGB)
    x_train, _ = data.encoded("codes")
    preprocessor = data.preprocessors["codes"]

    for rounds in (1, 7):
        model = family.refit(params(HGB), rounds, x_train, data.y_train, task, SEED, preprocessor)
        assert model.n_iter_ == rounds
        assert model.early_stopping is False
    # without rounds: max_iter, never stopping early (there is no validation split left)
    model = family.refit(params(HGB, max_iter=30), None, x_train, data.y_train, task, SEED, preprocessor)
    assert model.n_iter_ == 30


def test_hist_gradient_boosting_reads_category_codes_as_categories(tasks):
    task, data = tasks[REGRESSION]
    family = families.get(HGB)
    preprocessor = data.preprocessors["codes"]
    x_train, _ = data.encoded("codes")

    model = family.refit(params(HGB), 5, x_train, data.y_train, task, SEED, preprocessor)

    categorical = [t == "c" for t in preprocessor.feature_types]
    assert any(categorical)
    np.testing.assert_array_equal(model.is_categorical_, categorical)


def test_hist_gradient_boosting_reads_a_category_with_too_many_values_as_a_number(flights_dir: Path):
    """HistGradientBoosting allows at most 255 categories per feature; a wider one is read as its codes."""
    frame = pd.read_parquet(flights_dir / "2013-01.parquet").dropna(subset=["air_time"])
    preprocessor = Preprocessor.fit(frame, ["tailnum", "carrier"], ["distance"])
    assert len(preprocessor.categories["tailnum"]) > 255 >= len(preprocessor.categories["carrier"])
    x = preprocessor.transform(frame)
    family = families.get(HGB)

    model = family.refit(
        params(HGB), 5, x, frame["air_time"].to_numpy(np.float64), Task(REGRESSION), SEED, preprocessor
    )

    np.testing.assert_array_equal(model.is_categorical_, [False, True, False])
    with pytest.raises(ValueError, match="ardinality"):
        ensemble.HistGradientBoostingRegressor(max_iter=5, categorical_features=[True, True, False]).fit(
            x, frame["air_time"]
        )


# --- what a space file may set ---------------------------------------------------------------------------

OWN_PARAMETERS = {
    "random_forest": {"n_estimators", "max_depth", "min_samples_leaf", "max_features", "class_weight"},
    "extra_trees": {"n_estimators", "max_depth", "min_samples_leaf", "bootstrap", "class_weight"},
    HGB: {"learning_rate", "max_iter", "max_leaf_nodes", "l2_regularization", "n_iter_no_change", "class_weight"},
    "ridge": {"alpha", "fit_intercept", "solver"},
    "lasso": {"alpha", "max_iter", "tol", "selection"},
    "elastic_net": {"alpha", "l1_ratio", "max_iter"},
    "linear_svr": {"C", "epsilon", "loss", "max_iter"},
    "logistic_regression": {"C", "max_iter", "solver", "class_weight"},
}
ESTIMATORS = {
    "random_forest": (ensemble.RandomForestRegressor, ensemble.RandomForestClassifier),
    "extra_trees": (ensemble.ExtraTreesRegressor, ensemble.ExtraTreesClassifier),
    HGB: (ensemble.HistGradientBoostingRegressor, ensemble.HistGradientBoostingClassifier),
    "ridge": (linear_model.Ridge,),
    "lasso": (linear_model.Lasso,),
    "elastic_net": (linear_model.ElasticNet,),
    "linear_svr": (svm.LinearSVR,),
    "logistic_regression": (linear_model.LogisticRegression,),
}
MANAGED_BY_THE_PIPELINE = {"random_state", "n_jobs", "verbose", "warm_start", "early_stopping", "categorical_features"}


@pytest.mark.parametrize("name", SKLEARN)
def test_accepted_parameters_are_the_estimator_s_less_those_the_pipeline_sets(name):
    family = families.get(name)
    accepted = family.accepted_parameters()
    every = set().union(*(cls().get_params() for cls in ESTIMATORS[name]))

    assert OWN_PARAMETERS[name] <= accepted
    assert accepted <= every
    assert not accepted & MANAGED_BY_THE_PIPELINE
    assert every - accepted <= MANAGED_BY_THE_PIPELINE
    assert "model" not in accepted


REFUSED = [
    ("random_forest", "n_estimators", "many"),
    ("extra_trees", "max_depth", "deep"),
    (HGB, "learning_rate", "fast"),
    (HGB, "max_iter", "many"),
    ("ridge", "alpha", "strong"),
    ("lasso", "alpha", -1.0),
    ("elastic_net", "l1_ratio", 2.0),
    ("linear_svr", "C", "big"),
    ("logistic_regression", "C", "big"),
]
ACCEPTED = [
    ("random_forest", "n_estimators", 10),
    ("extra_trees", "max_features", 0.5),
    (HGB, "max_iter", 20),
    (HGB, "learning_rate", 0.1),
    ("ridge", "alpha", 0.5),
    ("lasso", "alpha", 0.01),
    ("elastic_net", "l1_ratio", 0.3),
    ("linear_svr", "C", 2.0),
    ("logistic_regression", "C", 0.5),
]


@pytest.mark.parametrize(("name", "parameter", "value"), REFUSED)
def test_check_fixed_refuses_a_value_the_estimator_refuses(tasks, name, parameter, value):
    family = families.get(name)
    kind = family.tasks[0]
    task, data = tasks[kind]
    with pytest.raises(ValueError):  # what a trial with this value would meet
        family.fit(params(name) | {parameter: value}, data, task, METRIC[kind], SEED)

    problem = family.check_fixed(parameter, value)

    assert problem is not None
    assert repr(value) in problem and name in problem
    assert parameter in problem


@pytest.mark.parametrize(("name", "parameter", "value"), ACCEPTED)
def test_check_fixed_accepts_a_valid_value(name, parameter, value):
    assert families.get(name).check_fixed(parameter, value) is None


# --- the registry ----------------------------------------------------------------------------------------

TASKS_OF = {
    "xgboost": (REGRESSION, BINARY, MULTICLASS),
    "random_forest": (REGRESSION, BINARY, MULTICLASS),
    "extra_trees": (REGRESSION, BINARY, MULTICLASS),
    HGB: (REGRESSION, BINARY, MULTICLASS),
    "ridge": (REGRESSION,),
    "lasso": (REGRESSION,),
    "elastic_net": (REGRESSION,),
    "linear_svr": (REGRESSION,),
    "logistic_regression": (BINARY, MULTICLASS),
}


@pytest.mark.parametrize("name", config.FAMILIES)
def test_every_configured_family_is_registered_with_the_tasks_it_handles(name):
    family = families.get(name)
    assert family.name == name
    assert family is families.get(name)
    assert family.tasks == TASKS_OF[name]
    assert family.encoding in ("codes", "onehot")


def test_the_registry_knows_no_other_family():
    assert set(TASKS_OF) == set(config.FAMILIES)
    with pytest.raises(KeyError):
        families.get("svm")


def test_threads_follow_pipeline_threads_else_the_idle_cores(monkeypatch):
    from pipeline.families import _busy_cores, threads

    monkeypatch.setenv("PIPELINE_THREADS", "3")
    threads.cache_clear()
    try:
        assert threads() == 3
        monkeypatch.delenv("PIPELINE_THREADS")
        threads.cache_clear()
        assert 1 <= threads() <= os.cpu_count()
    finally:
        threads.cache_clear()
    assert 0.0 <= _busy_cores(2, window_s=0.05) <= 2.0
