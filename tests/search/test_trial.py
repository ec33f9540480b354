"""pipeline.search.trial: one trial from sampled values to its outcome and the record its run is written
from, on small real flights data with real xgboost (no MLflow: a Spark worker runs this module alone)."""

from __future__ import annotations

import math

import pytest
import yaml

from pipeline import config, spaces
from pipeline.metrics import METRICS, REGRESSION
from pipeline.search.pruning import MedianRule
from pipeline.search.trial import Trainer, failed_trial

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
    outcome, record = trainer(0, {"model": "xgboost", "max_depth": -1.0, "learning_rate": 0.4,
                                  "num_boost_round": 300, "early_stopping_rounds": 5})  # fmt: skip

    assert not outcome.ok and math.isnan(outcome.value) and outcome.best_iteration is None
    assert record.status == "FAILED" and record.tags["trial_state"] == "FAIL"
    assert record.tags["error_class"] == "XGBoostError" and "max_depth" in record.tags["error_message"]


def test_a_trial_trailing_the_median_is_pruned_and_keeps_its_best_off_the_metric(trainer, space):
    pruning = Trainer(trainer.space, trainer.data, trainer.task, trainer.metric, 3, TAGS, MedianRule(1, 2))
    pruning.completed["xgboost"] = [[1.0] * 300]  # an earlier trial far better at every round
    outcome, record = pruning(1, {"model": "xgboost", "max_depth": 2.0, "learning_rate": 0.3,
                                  "num_boost_round": 300, "early_stopping_rounds": 5})  # fmt: skip

    assert outcome.ok and outcome.pruned and record.tags["trial_state"] == "PRUNED"
    assert "rmse" not in record.metrics and record.metrics["rmse_when_pruned"] == outcome.value
    assert record.metrics["pruned_at_round"] < 300


def test_only_completed_trials_teach_the_pruning_rule(trainer):
    fresh = Trainer(trainer.space, trainer.data, trainer.task, trainer.metric, 3, TAGS, MedianRule(1, 2))
    done, _ = trainer(0, {"model": "xgboost", "max_depth": 4.0, "learning_rate": 0.5, "num_boost_round": 300,
                          "early_stopping_rounds": 5})  # fmt: skip
    failed, _ = failed_trial(1, {"model": "xgboost"}, "ValueError: no")
    fresh.note_completed(failed)
    assert fresh.completed == {}
    fresh.note_completed(done)
    assert fresh.completed == {"xgboost": [done.curve]}


def test_config_model_key_names_the_family_in_every_trial(trainer):
    outcome, _ = trainer(2, {"model": "xgboost", "max_depth": 2.0, "learning_rate": 0.5, "num_boost_round": 300,
                             "early_stopping_rounds": 5})  # fmt: skip
    assert outcome.params[config.MODEL_KEY] == "xgboost"
