"""pipeline.search.trial: one trial from sampled values to its outcome and the record its run is written
from, on small real flights data with real xgboost (no MLflow: a Spark worker runs this module alone); with
k-fold cross-validation, on a small table nobody here wrote (tests/quirks), each fold against a fit of the
same family by hand, and pruning across folds."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace

import numpy as np
import pytest
import yaml

from pipeline import config, data, families, spaces
from pipeline.families import CrossValidation
from pipeline.features import Preprocessor
from pipeline.metrics import METRICS, REGRESSION
from pipeline.search.pruning import PruningRule
from pipeline.search.trial import Trainer, TrialOutcome, TrialRecord, failed_trial
from pipeline.study import training_data

TAGS = {"space_sha256": "s", "data_fingerprint": "d"}


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> spaces.SearchSpace:
    path = tmp_path_factory.mktemp("trial") / "space.yaml"
    path.write_text(yaml.safe_dump({"model": "xgboost", "parameters": {
        "max_depth": {"distribution": "quniform", "low": 2, "high": 6, "q": 1},
        "learning_rate": {"distribution": "uniform", "low": 0.3, "high": 0.6},
        "num_boost_round": 300, "early_stopping_rounds": 5}}))  # fmt: skip
    return spaces.load(path)


@pytest.fixture(scope="module")
def trainer(space, flights_tasks) -> Trainer:
    dataset = flights_tasks.dataset(REGRESSION)
    return Trainer(space, flights_tasks.training_data(REGRESSION, ("codes",)), dataset.task, METRICS["rmse"], 3, TAGS)


def test_a_trial_types_its_values_and_records_the_metric_its_curve_and_its_state(trainer):
    outcome, record = trainer(4, {"model": "xgboost", "max_depth": 3.0, "learning_rate": 0.4,
                                  "num_boost_round": 300, "early_stopping_rounds": 5})  # fmt: skip

    assert outcome.ok and not outcome.pruned and outcome.number == record.number == 4
    assert outcome.params["max_depth"] == 3 and isinstance(outcome.params["max_depth"], int)
    assert record.metrics["rmse"] == outcome.value and math.isfinite(outcome.value)
    assert record.metrics["best_iteration"] == outcome.best_iteration
    curve = record.curves["validation_rmse_curve"]
    assert list(curve) == outcome.curve and min(curve) == pytest.approx(outcome.value, rel=1e-6)
    assert record.tags == TAGS | {"trial_state": "COMPLETE"} and record.status == "FINISHED"
    assert record.end_ms >= record.start_ms and record.metrics["trial_seconds"] >= 0


def test_a_trial_the_estimator_refuses_is_a_failed_outcome_with_its_error_as_tags(trainer):
    outcome, record = trainer(0, {"model": "xgboost", "max_depth": 3.0, "learning_rate": -0.4,
                                  "num_boost_round": 300, "early_stopping_rounds": 5})  # fmt: skip

    assert not outcome.ok and math.isnan(outcome.value) and outcome.best_iteration is None
    assert record.status == "FAILED" and record.tags["trial_state"] == "FAIL"
    assert record.tags["error_class"] == "XGBoostError" and "learning_rate" in record.tags["error_message"]


def test_a_trial_trailing_the_median_is_pruned_and_keeps_its_best_off_the_metric(trainer, space):
    pruning = Trainer(trainer.space, trainer.data, trainer.task, trainer.metric, 3, TAGS, PruningRule(1, 2))
    pruning.completed["xgboost"] = [(0.3, [[1.0] * 300])]  # an earlier trial (rate 0.3, one split) far better
    outcome, record = pruning(1, {"model": "xgboost", "max_depth": 2.0, "learning_rate": 0.3,
                                  "num_boost_round": 300, "early_stopping_rounds": 5})  # fmt: skip

    assert outcome.ok and outcome.pruned and record.tags["trial_state"] == "PRUNED"
    assert "rmse" not in record.metrics and record.metrics["rmse_when_pruned"] == outcome.value
    assert record.metrics["pruned_at_round"] < 300


def test_a_trial_behind_the_best_that_stalls_completes_with_its_best_rounds_value(trainer):
    rule = PruningRule(2, 0, quantile=0.9, stall_rounds=3)  # a lax quantile: only the stall stop acts
    stalling = Trainer(trainer.space, trainer.data, trainer.task, trainer.metric, 3, TAGS, rule)
    stalling.completed["xgboost"] = [(0.4, [[1.0] * 300]), (0.4, [[1e3] * 300])]  # the best is far ahead
    outcome, record = stalling(1, {"model": "xgboost", "max_depth": 3.0, "learning_rate": 0.4,
                                   "num_boost_round": 300, "early_stopping_rounds": 5})  # fmt: skip

    assert outcome.ok and not outcome.pruned and record.tags["trial_state"] == "COMPLETE"
    curve = outcome.curve
    assert record.metrics["stalled_at_round"] == len(curve) - 1 and outcome.best_iteration == len(curve) - 4
    assert record.metrics["rmse"] == outcome.value == pytest.approx(min(curve), rel=1e-6)
    stalling.note_completed(outcome)
    assert len(stalling.completed["xgboost"]) == 3, "a stalled trial is a completed one: later trials compare"


def test_only_completed_trials_teach_the_pruning_rule(trainer):
    fresh = Trainer(trainer.space, trainer.data, trainer.task, trainer.metric, 3, TAGS, PruningRule(1, 2))
    done, _ = trainer(0, {"model": "xgboost", "max_depth": 4.0, "learning_rate": 0.5, "num_boost_round": 300,
                          "early_stopping_rounds": 5})  # fmt: skip
    failed, _ = failed_trial(1, {"model": "xgboost"}, "ValueError: no")
    fresh.note_completed(failed)
    assert fresh.completed == {}
    fresh.note_completed(done)
    assert fresh.completed == {"xgboost": [(0.5, [done.curve])]}


def test_config_model_key_names_the_family_in_every_trial(trainer):
    outcome, _ = trainer(2, {"model": "xgboost", "max_depth": 2.0, "learning_rate": 0.5, "num_boost_round": 300,
                             "early_stopping_rounds": 5})  # fmt: skip
    assert outcome.params[config.MODEL_KEY] == "xgboost"


# --- k-fold cross-validation ----------------------------------------------------------------------------

FOLDS = 3
PARAMS = {"model": "xgboost", "max_depth": 3, "learning_rate": 0.1, "num_boost_round": 80, "early_stopping_rounds": 10}
"""A slow learning rate: each fold runs a few dozen rounds before early stopping ends it."""
XGB = families.get("xgboost")


@pytest.fixture(scope="module")
def cv_dataset(kfold_dataset: data.Dataset) -> data.Dataset:
    assert kfold_dataset.folds is not None and len(set(kfold_dataset.folds)) == FOLDS
    return kfold_dataset


@pytest.fixture(scope="module")
def cv_space() -> spaces.SearchSpace:
    parameters = {k: v for k, v in PARAMS.items() if k != "model"}
    parameters["max_depth"] = {"distribution": "quniform", "low": 2, "high": 4, "q": 1}
    return spaces.from_mapping({"model": "xgboost", "parameters": parameters}, "space")


@pytest.fixture(scope="module")
def cv_folds(cv_dataset: data.Dataset, cv_space: spaces.SearchSpace) -> CrossValidation:
    built = training_data(cv_dataset, cv_space)
    assert isinstance(built, CrossValidation) and len(built.folds) == FOLDS
    return built


@pytest.fixture(scope="module")
def cv_trainer(cv_space, cv_folds, cv_dataset) -> Trainer:
    return Trainer(cv_space, cv_folds, cv_dataset.task, METRICS["rmse"], 0, {})


@pytest.fixture(scope="module")
def cv_unpruned(cv_trainer) -> tuple[TrialOutcome, TrialRecord]:
    outcome, record = cv_trainer(0, PARAMS)
    assert outcome.ok and not outcome.pruned and len(outcome.fold_curves) == FOLDS
    return outcome, record


def test_each_fold_has_its_own_preprocessor_fitted_on_its_training_rows(cv_dataset):
    ridge = spaces.from_mapping(
        {"model": "ridge", "parameters": {"alpha": {"distribution": "uniform", "low": 0.1, "high": 1}}}, "s"
    )
    built = training_data(cv_dataset, ridge)
    y, roles = cv_dataset.xy("train")[1], cv_dataset.roles
    assert isinstance(built, CrossValidation)
    for fold in built.folds:
        assert len(fold.train) + len(fold.validation) == len(cv_dataset.train)
        assert np.array_equal(np.sort(np.concatenate([fold.y_train, fold.y_validation])), np.sort(y))
        own = Preprocessor.fit(fold.train, roles.categorical, roles.numeric, roles.crossed, encoding="onehot")
        assert fold.preprocessors["onehot"].means == own.means
    assert len({tuple(fold.preprocessors["onehot"].means) for fold in built.folds}) == FOLDS


def test_a_trials_value_is_the_mean_of_its_folds_fit_one_by_one_by_hand(cv_folds, cv_dataset, cv_unpruned):
    outcome, record = cv_unpruned

    by_hand, best = [], []
    for fold in cv_folds.folds:
        fitted = XGB.fit(PARAMS, fold, cv_dataset.task, "rmse", 0)
        by_hand.append(XGB.validation_score(fitted, fold, cv_dataset.task, "rmse"))
        best.append(fitted.best_iteration)
    assert outcome.ok and not outcome.pruned
    assert outcome.value == pytest.approx(np.mean(by_hand), rel=1e-12)
    assert outcome.best_iteration == round(np.mean(best))
    assert len(set(best)) > 1, "the folds stop at different rounds: the mean is what this checks"
    assert record.metrics["rmse"] == outcome.value
    for k in range(FOLDS):
        assert record.metrics[f"rmse_fold_{k}"] == pytest.approx(by_hand[k], rel=1e-12)
        assert record.metrics[f"best_iteration_fold_{k}"] == best[k]
    curve = record.curves["validation_rmse_curve"]
    longest = max(len(c) for c in outcome.fold_curves)
    assert len(curve) == longest and curve[0] == pytest.approx(np.mean([c[0] for c in outcome.fold_curves]))


MEDIAN = PruningRule(startup_trials=3, warmup_rounds=0, quantile=0.5, fall_margin=0.0, stall_rounds=None)
"""The rule as a median of best-so-far values, from round 0: what the fold tests below are about."""


def scaled(outcome: TrialOutcome, factors: list[float]) -> list[list[list[float]]]:
    """Three completed trials whose fold ``k`` curve is this trial's times ``factors[k]`` (rmse: below 1 is
    better than this trial on that fold)."""
    return [
        [[v * f * (1 + i / 100) for v in c] for c, f in zip(outcome.fold_curves, factors, strict=True)]
        for i in range(3)
    ]


def at_rate(trials: list[list[list[float]]]) -> list[tuple[float, list[list[float]]]]:
    """Completed trials as the trainer keeps them: at PARAMS' learning rate, so compared round for round."""
    return [(PARAMS["learning_rate"], trial) for trial in trials]


def test_a_trial_whose_first_fold_is_bad_but_whose_mean_is_good_is_not_pruned(cv_trainer, cv_unpruned):
    unpruned, _ = cv_unpruned
    history = scaled(unpruned, [0.5, 1.5, 1.5])
    others = [np.mean([min(c) for c in trial]) for trial in history]
    assert unpruned.value < min(others), "its mean beats every completed trial's"
    rule = MEDIAN
    single = rule.checker([trial[0] for trial in history], "rmse")
    assert any(single(r, v) for r, v in enumerate(unpruned.fold_curves[0])), "judged on fold 0 alone, it is cut"

    outcome, record = replace(cv_trainer, pruning=rule, completed={"xgboost": at_rate(history)})(1, PARAMS)

    assert not outcome.pruned and record.tags["trial_state"] == "COMPLETE"
    assert outcome.value == pytest.approx(unpruned.value, rel=1e-12)


def test_a_trial_worse_on_every_fold_is_pruned_in_its_second_fold(cv_trainer, cv_unpruned):
    unpruned, complete = cv_unpruned
    rule = MEDIAN
    history = scaled(unpruned, [0.5, 0.5, 0.5])

    outcome, record = replace(cv_trainer, pruning=rule, completed={"xgboost": at_rate(history)})(1, PARAMS)

    assert outcome.pruned and len(outcome.fold_curves) == 2, "fold 2 is never fit"
    assert record.metrics["pruned_at_fold"] == 1 and record.metrics["pruned_at_round"] == 0
    assert record.metrics["rmse_fold_0"] == complete.metrics["rmse_fold_0"]
    assert "rmse_fold_1" not in record.metrics and "rmse" not in record.metrics
    assert record.metrics["rmse_when_pruned"] == pytest.approx(outcome.value)


def test_the_folds_ship_to_a_spark_worker_without_their_built_matrices(cv_folds, cv_unpruned):
    assert any(fold.cache for fold in cv_folds.folds), "the trials built each fold's matrices"
    shipped = pickle.loads(pickle.dumps(replace(cv_folds, cache={})))
    assert [len(f.train) for f in shipped.folds] == [len(f.train) for f in cv_folds.folds]
    assert not any(fold.cache for fold in shipped.folds)
    assert all(fold.cache for fold in cv_folds.folds), "the driver's folds keep theirs"
