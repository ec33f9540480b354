"""pipeline.families.xgboost: early-stopped xgboost training on the small real flights data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

from pipeline import families
from pipeline.families import Fitted, TrainingData
from pipeline.families.xgboost import (
    ACCEPTED_PARAMETERS,
    TRAINING_KNOBS,
    booster_params,
    scoring_interval,
    train,
)
from pipeline.metrics import BINARY, METRICS, MULTICLASS, REGRESSION, Task, brier, mae, rmse
from pipeline.search.pruning import Stop

XGB = families.get("xgboost")
FAST = {"model": "xgboost", "learning_rate": 1.0, "max_depth": 6, "num_boost_round": 300, "early_stopping_rounds": 5}
"""A learning rate this high overfits within a few rounds, so early stopping ends training early."""
CLASSIFY = {
    "model": "xgboost",
    "learning_rate": 0.5,
    "max_depth": 4,
    "num_boost_round": 200,
    "early_stopping_rounds": 5,
}
AIR_TIME = Task(REGRESSION)


@pytest.fixture
def data(flights_tasks) -> TrainingData:
    """The regression splits, encoded as codes, with an empty matrix cache."""
    return flights_tasks.training_data(REGRESSION, ("codes",))


def validation_matrix(data: TrainingData) -> np.ndarray:
    return data.encoded("codes")[1]


def plain_matrices(data: TrainingData) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    """Non-quantized matrices of the same splits (what ``refit`` builds), for comparison with the search's."""
    preprocessor = data.preprocessors["codes"]
    common = {
        "feature_names": preprocessor.feature_names,
        "feature_types": preprocessor.feature_types,
        "enable_categorical": True,
    }
    x_train, x_validation = data.encoded("codes")
    return xgb.DMatrix(x_train, data.y_train, **common), xgb.DMatrix(x_validation, data.y_validation, **common)


def fit(data: TrainingData, params=FAST, *, quantized=True, metric="rmse", seed=0, task=AIR_TIME) -> Fitted:
    """Quantized: the family's fit, as a trial runs it; otherwise ``train`` on plain DMatrix objects."""
    if quantized:
        return XGB.fit(params, data, task, metric, seed)
    dtrain, dvalidation = plain_matrices(data)
    eval_metric = METRICS[metric].early_stopping[task.kind]
    return train(params, dtrain, dvalidation, task=task, eval_metric=eval_metric, seed=seed, nthread=2)


def test_matrices_are_quantized_named_typed_and_built_once_per_max_bin(data):
    preprocessor = data.preprocessors["codes"]

    train_matrix, validation = XGB.matrices(data, 256)

    assert isinstance(train_matrix, xgb.QuantileDMatrix) and isinstance(validation, xgb.QuantileDMatrix)
    assert train_matrix.num_row() == len(data.y_train)
    assert validation.num_row() == len(data.y_validation)
    assert train_matrix.num_col() == len(preprocessor.feature_names)
    assert train_matrix.feature_names == preprocessor.feature_names
    assert validation.feature_types == preprocessor.feature_types
    np.testing.assert_array_equal(validation.get_label(), data.y_validation.astype(np.float32))

    again = XGB.matrices(data, 256)
    assert again[0] is train_matrix and again[1] is validation, "built once, shared by every trial"
    coarse = XGB.matrices(data, 16)
    assert coarse[0] is not train_matrix
    XGB.fit(FAST | {"max_bin": 8, "num_boost_round": 2}, data, AIR_TIME, "rmse", 0)
    assert {key for key in data.cache if key[0] == "xgboost"} == {("xgboost", 256), ("xgboost", 16), ("xgboost", 8)}


def test_fit_with_a_max_bin_trains_on_its_own_bins(data):
    params = FAST | {"num_boost_round": 10, "early_stopping_rounds": 10}
    fine, coarse = fit(data, params), fit(data, params | {"max_bin": 4})
    x_validation = validation_matrix(data)
    assert not np.allclose(
        XGB.predict(fine.model, x_validation, AIR_TIME), XGB.predict(coarse.model, x_validation, AIR_TIME)
    )


@pytest.mark.parametrize("quantized", [True, False])
def test_early_stopping_stops_before_the_round_limit(data, quantized):
    result = fit(data, quantized=quantized)
    rounds = result.model.num_boosted_rounds()
    assert rounds < FAST["num_boost_round"]
    assert len(result.curve) == rounds
    assert 0 <= result.best_iteration < len(result.curve)
    assert rounds == result.best_iteration + FAST["early_stopping_rounds"] + 1
    assert result.curve[result.best_iteration] == min(result.curve)
    assert result.curve_metric == "rmse"
    assert result.seconds > 0


def xgboost_early_stopping(data: TrainingData, params: dict) -> tuple[xgb.Booster, list[float]]:
    """xgboost's own loop on the family's matrices: every round scored, its EarlyStopping callback."""
    dtrain, dvalidation = XGB.matrices(data, 256)
    history: dict = {}
    booster = xgb.train(
        booster_params(params, AIR_TIME, "rmse", 0, 2),
        dtrain,
        num_boost_round=params["num_boost_round"],
        evals=[(dvalidation, "validation")],
        early_stopping_rounds=params["early_stopping_rounds"],
        evals_result=history,
        verbose_eval=False,
    )
    return booster, history["validation"]["rmse"]


def test_scoring_every_round_stops_where_xgboosts_early_stopping_stops(data):
    fitted = fit(data)
    assert scoring_interval(FAST["learning_rate"]) == 1
    booster, curve = xgboost_early_stopping(data, FAST)
    assert fitted.curve == curve
    assert fitted.best_iteration == booster.best_iteration
    assert fitted.model.num_boosted_rounds() == booster.num_boosted_rounds()


@pytest.mark.parametrize(("rate", "rounds"), [(0.3, 1), (0.15, 1), (0.1, 2), (0.05, 4), (0.02, 10), (0.0, 1)])
def test_the_scoring_interval_is_a_fixed_amount_of_learning_progress(rate, rounds):
    assert scoring_interval(rate) == rounds


def test_a_slow_learner_is_scored_every_few_rounds_and_keeps_a_scored_round(data):
    params = {"model": "xgboost", "learning_rate": 0.02, "max_depth": 4, "num_boost_round": 95}
    params |= {"early_stopping_rounds": 30}
    fitted = fit(data, params)
    every_round = xgboost_early_stopping(data, params)[1]
    assert len(fitted.curve) == 95, "still falling: no early stop within 95 rounds"
    scored = [r for r in range(95) if r % 10 == 0 or r == 94]
    assert [fitted.curve[r] for r in scored] == [every_round[r] for r in scored], "the same scores"
    for r in range(95):
        assert fitted.curve[r] == fitted.curve[max(s for s in scored if s <= r)], "carried between scorings"
    assert fitted.curve != every_round
    assert fitted.best_iteration == 94, "the last round is scored"
    kept = XGB.predict(XGB.trained_model(fitted), validation_matrix(data), AIR_TIME)
    assert fitted.curve[fitted.best_iteration] == pytest.approx(rmse(data.y_validation, kept), abs=1e-4)


def test_a_patience_shorter_than_the_scoring_interval_still_sees_a_score_before_it_stops(data):
    params = {"model": "xgboost", "learning_rate": 0.01, "max_depth": 4, "num_boost_round": 60}
    fitted = fit(data, params | {"early_stopping_rounds": 5})
    assert scoring_interval(0.01) == 20
    assert len(fitted.curve) == 60, "still falling: early stopping never sees 5 rounds without improvement"
    assert fitted.best_iteration == 59


def test_a_pruning_stop_is_acted_on_at_a_scored_round_only(data):
    params = {"model": "xgboost", "learning_rate": 0.02, "max_depth": 4, "num_boost_round": 60}
    fitted = XGB.fit(params | {"early_stopping_rounds": 50}, data, AIR_TIME, "rmse", 0, lambda r, v: Stop.STALLED)
    assert fitted.stalled and len(fitted.curve) == 1, "round 0 is scored"
    late = XGB.fit(params, data, AIR_TIME, "rmse", 0, lambda r, v: Stop.PRUNED if r >= 3 else None)
    assert late.pruned and len(late.curve) == 11, "not on the unscored rounds 3-9: at round 10, the next scored"


@pytest.mark.parametrize(
    ("quantized", "metric", "score"), [(True, "rmse", rmse), (False, "rmse", rmse), (True, "mae", mae)]
)
def test_curve_at_best_iteration_is_the_score_of_the_kept_rounds(data, quantized, metric, score):
    result = fit(data, quantized=quantized, metric=metric)
    best = result.best_iteration
    x_validation = validation_matrix(data)
    kept = XGB.predict(XGB.trained_model(result), x_validation, AIR_TIME)
    assert result.curve_metric == metric
    assert result.curve[best] == pytest.approx(score(data.y_validation, kept), abs=1e-4)
    assert XGB.trained_model(result).num_boosted_rounds() == best + 1
    np.testing.assert_array_equal(kept, result.model.inplace_predict(x_validation, iteration_range=(0, best + 1)))
    if quantized:
        assert XGB.validation_score(result, data, AIR_TIME, metric) == result.curve[best]

    assert result.model.num_boosted_rounds() > best + 1, "training should have run past the best round"
    every_round = result.model.inplace_predict(x_validation)
    assert score(data.y_validation, every_round) == pytest.approx(result.curve[-1], abs=1e-4)
    assert abs(score(data.y_validation, every_round) - result.curve[best]) > 1e-3


def test_r2_is_read_off_the_rmse_curve_and_equals_r2_of_the_kept_rounds(data):
    result = fit(data, metric="r2")
    assert result.curve_metric == "rmse"
    kept = XGB.predict(XGB.trained_model(result), validation_matrix(data), AIR_TIME)
    r2 = XGB.validation_score(result, data, AIR_TIME, "r2")
    assert r2 == pytest.approx(METRICS["r2"].score(data.y_validation, kept), abs=1e-6)
    assert 0.0 < r2 < 1.0


def test_without_validation_it_boosts_exactly_the_rounds_asked(data):
    dtrain, _ = plain_matrices(data)
    result = train(FAST, dtrain, None, task=AIR_TIME, eval_metric="rmse", seed=0, nthread=2, num_boost_round=7)
    assert result.model.num_boosted_rounds() == 7
    assert result.best_iteration == 6
    assert result.curve == []


def test_refit_boosts_exactly_the_rounds_asked_and_reads_category_codes(data):
    preprocessor = data.preprocessors["codes"]
    x_train, x_validation = data.encoded("codes")

    model = XGB.refit(FAST, 7, x_train, data.y_train, AIR_TIME, seed=0, preprocessor=preprocessor)

    assert model.num_boosted_rounds() == 7
    assert model.feature_types == preprocessor.feature_types
    numeric_only = XGB.refit(FAST, 7, x_train, data.y_train, AIR_TIME, seed=0)
    assert numeric_only.feature_types is None
    assert not np.allclose(
        XGB.predict(model, x_validation, AIR_TIME), XGB.predict(numeric_only, x_validation, AIR_TIME)
    ), "codes read as categories must split differently from codes read as numbers"


def test_accepted_parameters():
    assert XGB.accepted_parameters() == ACCEPTED_PARAMETERS
    for name in ("max_depth", "learning_rate", "eta", "num_boost_round", "early_stopping_rounds", "subsample"):
        assert name in ACCEPTED_PARAMETERS
    for name in ("max_dept", "learning_rte", "n_estimators", "random_state", "model"):
        assert name not in ACCEPTED_PARAMETERS


def test_booster_params_drop_training_knobs_and_the_family_and_keep_the_search_values():
    search = {"model": "xgboost", "max_depth": 3, "num_boost_round": 10, "early_stopping_rounds": 2}
    params = booster_params(search, AIR_TIME, "mae", 5, 2)
    assert not set(TRAINING_KNOBS) & set(params)
    assert "model" not in params
    assert params["max_depth"] == 3
    assert params["eval_metric"] == "mae"
    assert params["seed"] == 5
    assert params["nthread"] == 2
    assert params["objective"] == "reg:squarederror"
    assert "num_class" not in params

    binary = booster_params(search, Task(BINARY, (0, 1)), "logloss", 5, 2)
    assert binary["objective"] == "binary:logistic" and "num_class" not in binary
    multiclass = booster_params(search, Task(MULTICLASS, ("EWR", "JFK", "LGA")), "mlogloss", 5, 2)
    assert multiclass["objective"] == "multi:softprob"
    assert multiclass["num_class"] == 3


def test_same_seed_gives_identical_predictions(data):
    params = FAST | {"subsample": 0.6, "colsample_bytree": 0.6, "num_boost_round": 20, "early_stopping_rounds": 20}
    first, again = fit(data, params, seed=11), fit(data, params, seed=11)
    other = fit(data, params, seed=12)

    def predict(result: Fitted) -> np.ndarray:
        return XGB.predict(result.model, validation_matrix(data), AIR_TIME)

    np.testing.assert_array_equal(predict(first), predict(again))
    assert first.curve == again.curve
    assert first.best_iteration == again.best_iteration
    assert not np.array_equal(predict(first), predict(other)), "sampling should depend on the seed"


def test_predictions_from_numpy_match_the_dmatrix(data):
    result = fit(data, quantized=False)
    preprocessor = data.preprocessors["codes"]
    x_validation = validation_matrix(data)
    dmatrix = xgb.DMatrix(
        x_validation,
        feature_names=preprocessor.feature_names,
        feature_types=preprocessor.feature_types,
        enable_categorical=True,
    )
    predictions = XGB.predict(XGB.trained_model(result), x_validation, AIR_TIME)
    assert predictions.dtype == np.float64
    np.testing.assert_allclose(
        predictions,
        result.model.predict(dmatrix, iteration_range=(0, result.best_iteration + 1)),
        rtol=1e-6,
    )


def test_save_and_load_keep_the_rounds_and_the_predictions(tmp_path, data):
    model = XGB.trained_model(fit(data))
    path = XGB.save(model, tmp_path)
    assert path.parent == tmp_path and path.is_file()

    loaded = XGB.load(path)

    assert loaded.num_boosted_rounds() == model.num_boosted_rounds()
    x_validation = validation_matrix(data)
    np.testing.assert_array_equal(
        XGB.predict(loaded, x_validation, AIR_TIME), XGB.predict(model, x_validation, AIR_TIME)
    )


def test_check_fixed_refuses_what_xgboost_refuses_and_accepts_a_valid_value():
    assert XGB.check_fixed("max_depth", 3) is None
    problem = XGB.check_fixed("max_depth", -1)
    assert problem is not None
    assert "-1" in problem and "max_depth" in problem


@pytest.mark.parametrize(("name", "value"), [("num_boost_round", "many"), ("early_stopping_rounds", "soon")])
def test_check_fixed_refuses_a_training_knob_that_every_trial_would_fail_on(data, name, value):
    """A value a trial's fit cannot use must be refused when the space file is read, not trial after trial."""
    with pytest.raises(ValueError):
        XGB.fit(FAST | {name: value}, data, AIR_TIME, "rmse", 0)
    assert XGB.check_fixed(name, value) is not None


# --- classification ------------------------------------------------------------------------------------

CLASSIFICATION = [
    (BINARY, "log_loss", "logloss"),
    (BINARY, "auc", "auc"),
    (BINARY, "brier", "logloss"),
    (MULTICLASS, "log_loss", "mlogloss"),
    (MULTICLASS, "accuracy", "merror"),
]


@pytest.fixture(scope="module")
def classification_data(flights_tasks) -> dict[str, TrainingData]:
    return {task: flights_tasks.training_data(task, ("codes",)) for task in (BINARY, MULTICLASS)}


@pytest.mark.parametrize(("kind", "metric_name", "curve_metric"), CLASSIFICATION)
def test_classifier_early_stops_on_the_metric_curve_and_scores_the_kept_rounds(
    flights_tasks, classification_data, kind, metric_name, curve_metric
):
    data = classification_data[kind]
    task = flights_tasks.dataset(kind).task
    metric = METRICS[metric_name]

    result = XGB.fit(CLASSIFY, data, task, metric_name, seed=0)

    assert result.curve_metric == curve_metric
    rounds = result.model.num_boosted_rounds()
    assert len(result.curve) == rounds < CLASSIFY["num_boost_round"]
    assert rounds == result.best_iteration + CLASSIFY["early_stopping_rounds"] + 1
    best_of_curve = max(result.curve) if curve_metric == "auc" else min(result.curve)
    assert result.curve[result.best_iteration] == best_of_curve
    assert result.curve.index(best_of_curve) == result.best_iteration, "the first round reaching the best"

    kept = XGB.predict(XGB.trained_model(result), validation_matrix(data), task)
    assert kept.dtype == np.float64
    assert ((kept >= 0) & (kept <= 1)).all()
    if kind == BINARY:
        assert kept.shape == (len(data.y_validation),)
    else:
        assert kept.shape == (len(data.y_validation), len(task.classes))
        np.testing.assert_allclose(kept.sum(axis=1), 1.0, atol=1e-5)

    value = XGB.validation_score(result, data, task, metric_name)
    assert value == pytest.approx(metric.score(data.y_validation, kept), rel=1e-5)
    if metric_name == "brier":
        assert metric.from_curve is None
        assert value == brier(data.y_validation, kept), "computed from the kept rounds' probabilities"
        assert value != pytest.approx(result.curve[result.best_iteration]), "not the log loss of the curve"
        every_round = XGB.predict(result.model, validation_matrix(data), task)
        assert brier(data.y_validation, every_round) != value
    else:
        assert value == metric.from_curve(result.curve[result.best_iteration], data.y_validation)


def test_classes_are_learnt_as_indices(flights_tasks, classification_data):
    data = classification_data[MULTICLASS]
    task = flights_tasks.dataset(MULTICLASS).task
    x_train, _ = data.encoded("codes")
    model = XGB.refit(CLASSIFY, 20, x_train, data.y_train, task, seed=0, preprocessor=data.preprocessors["codes"])
    proba = XGB.predict(model, validation_matrix(data), task)
    assert proba.shape == (len(data.y_validation), 3)
    assert np.mean(np.argmax(proba, axis=1) == data.y_validation) > 0.9, "column i is the probability of class i"


def test_the_train_curve_is_scored_only_when_asked_and_falls_faster(data):
    assert fit(data).train_curve == [], "a search trial pays for no pass over its training rows"
    fitted = XGB.fit(FAST, data, AIR_TIME, "rmse", 0, train_curve=True)
    assert len(fitted.train_curve) == len(fitted.curve) > fitted.best_iteration
    assert fitted.train_curve[-1] < fitted.curve[-1], "a model fits its own training rows better"
    assert not fitted.pruned


def test_a_pruning_check_stops_training_at_the_round_it_says_and_marks_the_fit_pruned(data):
    seen = []

    def prune_at_round_3(round_: int, value: float) -> Stop | None:
        seen.append(value)
        return Stop.PRUNED if round_ == 3 else None

    fitted = XGB.fit(FAST | {"learning_rate": 0.3}, data, AIR_TIME, "rmse", 0, prune_at_round_3)  # every round scored
    assert fitted.pruned and not fitted.stalled and len(fitted.curve) == 4
    assert seen == fitted.curve, "the check sees each round's validation value"


def test_a_stalled_fit_stops_completed_with_its_best_round_kept(data):
    fitted = XGB.fit(
        FAST | {"learning_rate": 0.3}, data, AIR_TIME, "rmse", 0, lambda r, v: Stop.STALLED if r == 5 else None
    )
    assert fitted.stalled and not fitted.pruned and len(fitted.curve) == 6
    assert fitted.best_iteration == int(np.argmin(fitted.curve))
    assert XGB.validation_score(fitted, data, AIR_TIME, "rmse") == pytest.approx(min(fitted.curve), rel=1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning")  # without a GPU, xgboost warns and trains on the CPU
def test_a_trial_pruned_at_its_first_round_keeps_that_round_as_its_best(data):
    fitted = XGB.fit(FAST, data, AIR_TIME, "rmse", 0, lambda round_, value: Stop.PRUNED)
    assert fitted.pruned and fitted.best_iteration == 0 and len(fitted.curve) == 1
    assert XGB.validation_score(fitted, data, AIR_TIME, "rmse") == pytest.approx(fitted.curve[0], rel=1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning")  # without a GPU, xgboost warns and trains on the CPU
def test_cuda_is_set_on_xgboost_trials_only_and_the_saved_model_serves_on_the_cpu(data, tmp_path):
    params = XGB.placed(FAST, "cuda")
    assert params["device"] == "cuda" and XGB.placed(FAST, "cpu") == FAST
    assert families.get("ridge").placed({"alpha": 1.0}, "cuda") == {"alpha": 1.0}
    booster = XGB.refit(params, 3, data.encoded("codes")[0], data.y_train, AIR_TIME, 0)
    saved = json.loads(XGB.load(XGB.save(booster, tmp_path)).save_config())
    assert saved["learner"]["generic_param"]["device"] == "cpu"
