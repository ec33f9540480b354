"""Continuing a study in an edited space (``run --continue-from``): which logged trials a space can express
(pure functions, per kind of parameter), and real in-process studies on the small flights partitions that
inherit, drop, refuse and rerun."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline import spaces
from pipeline.config import Choice, LogUniform, Normal, QLogUniform, QUniform, RandInt, Uniform
from pipeline.errors import InputError
from pipeline.metrics import METRICS
from pipeline.search import continuation, optimizer
from pipeline.study import Study
from pipeline.tracking import names
from pipeline.tracking.queries import LoggedTrial

# --- which values a parameter accepts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameter", "text", "value", "problem"),
    [
        (256, "256", 256, ""),
        (256, "256.0", 256, ""),
        (256, "128", None, "but the space fixes it at 256"),
        ("hist", "approx", None, "but the space fixes it at 'hist'"),
        (True, "1", None, "but the space fixes it at True"),
        (Uniform(distribution="uniform", low=0.5, high=1.0), "0.75", 0.75, ""),
        (Uniform(distribution="uniform", low=0.5, high=1.0), "0.4", None, "is outside 0.5..1.0"),
        (LogUniform(distribution="loguniform", low=0.02, high=0.3), "0.3", 0.3, ""),
        (LogUniform(distribution="loguniform", low=0.02, high=0.3), "0.31", None, "is outside 0.02..0.3"),
        (QUniform(distribution="quniform", low=3, high=12, q=1), "6", 6, ""),
        (QUniform(distribution="quniform", low=3, high=12, q=1), "13", None, "is outside 3.0..12.0"),
        (QUniform(distribution="quniform", low=3, high=12, q=1), "6.5", None, "is not on the grid of step 1"),
        (QUniform(distribution="quniform", low=0.1, high=0.9, q=0.1), "0.30000000000000004", 0.30000000000000004, ""),
        (QUniform(distribution="quniform", low=0.1, high=0.9, q=0.1), "0.35", None, "is not on the grid of step 0.1"),
        (QLogUniform(distribution="qloguniform", low=1, high=64, q=2), "64", 64, ""),
        (QLogUniform(distribution="qloguniform", low=1, high=64, q=2), "-2", None, "is not positive"),
        (RandInt(distribution="randint", low=1, high=5), "5", 5, ""),
        (RandInt(distribution="randint", low=1, high=5), "6", None, "is not an integer in 1..5"),
        (RandInt(distribution="randint", low=1, high=5), "2.5", None, "is not an integer in 1..5"),
        (Normal(distribution="normal", mu=0, sigma=1), "-40", -40.0, ""),
        (Choice(distribution="choice", options=["gbtree", "dart"]), "dart", "dart", ""),
        (Choice(distribution="choice", options=[4, 6, 8]), "6", 6, ""),
        (Choice(distribution="choice", options=[4, 6, 8]), "5", None, "is not among the options [4, 6, 8]"),
        (Uniform(distribution="uniform", low=0.5, high=1.0), "dart", None, "is not a number"),
    ],
)
def test_a_parameter_accepts_exactly_the_values_it_can_give_a_trial(parameter, text, value, problem):
    got, why = spaces.accepts(parameter, text)
    assert (got, why) == (value, problem)
    assert type(got) is type(value)  # typed as a trial of this space receives it


NESTED = spaces.from_mapping(
    {
        "model": "xgboost",
        "parameters": {
            "max_depth": {"distribution": "quniform", "low": 2, "high": 6, "q": 1},
            "booster": {
                "distribution": "choice",
                "options": ["gbtree", {"value": "dart", "parameters": {"rate_drop": {"distribution": "uniform",
                                                                                       "low": 0.0, "high": 0.3}}}],
            },
            "num_boost_round": 40,
        },
    }
)  # fmt: skip


@pytest.mark.parametrize(
    ("logged", "reason"),
    [
        ({"model": "xgboost", "max_depth": "4", "booster": "gbtree", "num_boost_round": "40"}, ""),
        ({"model": "xgboost", "max_depth": "4", "booster": "dart", "rate_drop": "0.1", "num_boost_round": "40"}, ""),
        ({"model": "xgboost", "max_depth": "4", "booster": "dart", "rate_drop": "0.5", "num_boost_round": "40"},
         "rate_drop=0.5 is outside 0.0..0.3"),
        ({"model": "xgboost", "max_depth": "4", "booster": "dart", "num_boost_round": "40"},
         "it has no value for rate_drop"),
        ({"model": "xgboost", "max_depth": "4", "booster": "gbtree", "num_boost_round": "40", "gamma": "0.1"},
         "gamma=0.1 is no longer in the space"),
        ({"model": "xgboost", "max_depth": "4", "booster": "gbtree", "num_boost_round": "40", "device": "cuda"}, ""),
        ({"model": "ridge", "alpha": "1.0"}, "its model ridge is not in the space"),
        ({"model": "xgboost", "max_depth": "4", "booster": "gbtree", "num_boost_round": "80"},
         "num_boost_round=80 but the space fixes it at 40"),
    ],
)  # fmt: skip
def test_a_trial_is_expressible_only_when_every_parameter_of_its_branch_accepts_it(logged, reason):
    point, why = spaces.express(NESTED, logged)
    assert why == reason
    assert (point is None) == bool(reason)
    if point is not None:
        assert point["max_depth"] == 4 and isinstance(point["max_depth"], int)
        assert "device" not in point  # a device placement is the run's, not the space's


def logged_trial(number: int, status: str = "FINISHED", **params: str) -> LoggedTrial:
    metrics = {"rmse": 10.0 + number, "best_iteration": 7.0} if status == "FINISHED" else {}
    tags = {names.TRIAL_STATE: "COMPLETE" if status == "FINISHED" else "FAIL", names.WARM_START: "true"}
    if status == "FAILED":
        tags |= {names.ERROR_CLASS: "XGBoostError", names.ERROR_MESSAGE: "bad"}
    curves = {"validation_rmse_curve": [12.0, 11.0]}
    params = {"model": "xgboost", "booster": "gbtree", "num_boost_round": "40"} | params
    return LoggedTrial(f"run-{number}", number, status, params, metrics, curves, tags, 1000 + number, 2000 + number)


def test_inherit_keeps_expressible_trials_renumbered_and_drops_the_rest_with_why():
    trials = [
        logged_trial(0, max_depth="3"),
        logged_trial(1, status="FAILED", max_depth="4"),
        logged_trial(2, max_depth="9"),
        logged_trial(3, max_depth="5"),
    ]
    got = continuation.inherit(trials, NESTED, METRICS["rmse"])

    assert [(o.number, o.params["max_depth"], o.value, o.inherited_from) for o, _ in got.inherited] == [
        (0, 3, 10.0, "run-0"),
        (1, 5, 13.0, "run-3"),
    ]
    outcome, record = got.inherited[1]
    assert outcome.best_iteration == 7 and outcome.curve == [12.0, 11.0] and not outcome.warm_start
    assert record.number == 1 and record.tags[names.INHERITED_FROM] == "run-3" and names.WARM_START not in record.tags
    assert (record.start_ms, record.end_ms) == (1003, 2003)  # the trial as it ran, not a new training
    assert [(d.number, d.run_id) for d in got.dropped] == [(1, "run-1"), (2, "run-2")]
    assert got.dropped[0].reason == "it failed in the source study (XGBoostError: bad)"
    assert got.dropped[1].reason == "max_depth=9 is outside 2.0..6.0"


def test_a_trial_inherited_twice_names_the_run_that_trained_it():
    trial = logged_trial(0, max_depth="3")
    trial.tags[names.INHERITED_FROM] = "the-original"
    ((outcome, record),) = continuation.inherit([trial], NESTED, METRICS["rmse"]).inherited
    assert outcome.inherited_from == record.tags[names.INHERITED_FROM] == "the-original"


# --- real studies ----------------------------------------------------------------------------------------

WIDE = {
    "model": "xgboost",
    "parameters": {
        "max_depth": {"distribution": "quniform", "low": 2, "high": 8, "q": 1},
        "learning_rate": {"distribution": "loguniform", "low": 0.05, "high": 0.5},
        "num_boost_round": 30,
        "early_stopping_rounds": 5,
    },
}
NARROW = {"model": "xgboost", "parameters": WIDE["parameters"] | {
    "max_depth": {"distribution": "quniform", "low": 2, "high": 5, "q": 1}}}  # fmt: skip
STUDY = {"name": "air", "experiment": "cont", "model_name": "cont-model", "report": False, "seed": 3,
         "pruning": {"enabled": False}}  # fmt: skip


def run_study(folder: Path, dataset: dict, space: dict, study: dict = STUDY, **keywords):
    keywords = {"tracking_uri": f"sqlite:///{folder / 'mlflow.db'}", "state_dir": folder / "state",
                "progress": False} | keywords  # fmt: skip
    return Study.from_config(study, dataset, space, **keywords).run()


@pytest.fixture(scope="module")
def continued(tmp_path_factory, flights_spec):
    """A 6-trial study in the wide space, then one continued from it by name in the narrow space (3 trials
    more, TPE's start-up shortened so its first proposal already models the inherited trials)."""
    folder = tmp_path_factory.mktemp("continue")
    source = run_study(folder, flights_spec, WIDE, max_evals=6)
    study = STUDY | {"tpe": {"n_startup_jobs": 2}}
    result = run_study(folder, flights_spec, NARROW, study, max_evals=3, continue_from="air")
    return folder, source, result, study


def test_the_continued_study_inherits_the_expressible_trials_without_training_them(continued):
    folder, source, result, _ = continued
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    expressible = [t for t in source.trials if t.params["max_depth"] <= 5]
    assert 0 < len(expressible) < len(source.trials), "the seed should leave trials on both sides of the cut"

    assert result.parent_run_id != source.parent_run_id and result.continued_from == source.parent_run_id
    assert result.inherited_trials == len(expressible)
    assert len(result.trials) == len(expressible) + 3  # max_evals new trials on top of the inherited ones
    inherited = result.trials[: len(expressible)]
    assert [t.inherited_from for t in inherited] == [t.run_id for t in expressible]
    assert [t.value for t in inherited] == [t.value for t in expressible]
    assert all(not t.inherited_from for t in result.trials[len(expressible) :])
    runs = client.search_runs(
        [result.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    )
    copies = {r.data.tags[names.INHERITED_FROM]: r for r in runs if names.INHERITED_FROM in r.data.tags}
    assert set(copies) == {t.run_id for t in expressible} and len(runs) == len(result.trials)
    for trial in expressible:  # each copy is the source run's record: same start, same metrics, no new training
        original = client.get_run(trial.run_id)
        copy = copies[trial.run_id]
        assert copy.info.start_time == original.info.start_time
        assert copy.data.metrics["rmse"] == original.data.metrics["rmse"]
        assert copy.data.metrics["train_seconds"] == original.data.metrics["train_seconds"]
    parent = client.get_run(result.parent_run_id).data.tags
    assert parent[names.CONTINUED_FROM] == source.parent_run_id
    assert (parent[names.INHERITED_TRIALS], parent[names.DROPPED_TRIALS]) == (
        str(len(expressible)),
        str(len(source.trials) - len(expressible)),
    )
    assert result.resumed_trials == 0 and result.timings["search_train_s"] == pytest.approx(
        sum(t.train_seconds for t in result.trials[len(expressible) :]), abs=1e-3
    )


def test_the_dropped_trials_are_reported_with_why(continued):
    _, source, result, _ = continued
    deep = [t for t in source.trials if t.params["max_depth"] > 5]
    assert [(d.number, d.run_id) for d in result.dropped] == [(t.number, t.run_id) for t in deep]
    why = [f"max_depth={t.params['max_depth']} is outside 2.0..5.0" for t in deep]
    assert [d.reason for d in result.dropped] == why
    summary = result.to_dict()
    assert summary["continued_from"] == source.parent_run_id
    assert summary["inherited_trials"] == result.inherited_trials
    assert summary["dropped_trials"][0] == {"number": deep[0].number, "run_id": deep[0].run_id,
                                            "reason": result.dropped[0].reason}  # fmt: skip


def test_the_algorithm_proposes_from_the_inherited_trials(continued, flights_spec):
    """The first new trial is what TPE proposes given exactly the inherited trials (replayed here without
    training), and not what a fresh study of the same space and seed proposes first."""
    _, _, result, study = continued
    space = spaces.from_mapping(NARROW)
    metric = METRICS["rmse"]
    inherited = result.trials[: result.inherited_trials]
    past = [optimizer.PastTrial(t.number, t.params, metric.loss(t.value)) for t in inherited]
    algorithm = optimizer.algorithm_for("tpe", study["tpe"])

    def first_proposal(past: list[optimizer.PastTrial]) -> dict:
        proposed: list[dict] = []
        plan = optimizer.Plan(space, len(past) + 1, study["seed"], algorithm, past)
        optimizer.minimize(lambda values: proposed.append(space.typed(values)) or {"status": "ok", "loss": 1.0}, plan)
        return proposed[0]

    first_new = result.trials[result.inherited_trials].params
    assert first_new == first_proposal(past)
    assert first_new != first_proposal([])


def test_the_same_continuation_run_again_is_unchanged(continued, flights_spec):
    folder, _, result, study = continued
    again = run_study(folder, flights_spec, NARROW, study, max_evals=3, continue_from="air")
    assert again.origin == "unchanged" and again.parent_run_id == result.parent_run_id
    assert again.continued_from == result.continued_from and again.inherited_trials == result.inherited_trials
    assert [d.run_id for d in again.dropped] == [d.run_id for d in result.dropped]
    assert again.best_value == result.best_value and again.model_version == result.model_version


def test_a_space_of_the_best_trial_alone_makes_an_inherited_trial_the_registered_model(continued, flights_spec):
    """A space that can express only the source's best trial: nothing new to propose, so the study's best is
    that inherited trial, and the final stage refits it for its logged best iteration and registers it."""
    folder, source, _, _ = continued
    best = source.best_params
    only = {"model": "xgboost", "parameters": WIDE["parameters"] | {
        "max_depth": {"distribution": "choice", "options": [best["max_depth"]]},
        "learning_rate": {"distribution": "choice", "options": [best["learning_rate"]]}}}  # fmt: skip
    result = run_study(folder, flights_spec, only, STUDY | {"name": "only-best"}, max_evals=2,
                       continue_from=source.parent_run_id)  # fmt: skip
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")

    assert result.inherited_trials == len(result.trials) == 1 and "exhausted" in result.stop_reason
    (trial,) = result.trials
    assert trial.inherited_from == next(t.run_id for t in source.trials if t.params == best)
    assert result.best_value == source.best_value and result.best_iteration == source.best_iteration
    parent = client.get_run(result.parent_run_id).data
    assert parent.tags[names.BEST_TRIAL_RUN_ID] == trial.run_id
    assert parent.metrics["final_rounds"] == source.best_iteration + 1
    version = client.get_model_version(result.model_name, result.model_version)
    assert version.tags[names.PARENT_RUN_ID] == result.parent_run_id and math.isfinite(result.test_metric)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"metric": "mae"}, "was scored by rmse, this study by mae"),
        ({"dataset": True}, "was run on other data"),
    ],
)
def test_a_source_of_other_data_or_metric_is_refused_before_anything_is_written(
    continued, flights_spec, change, problem
):
    folder, _, _, _ = continued
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    dataset = flights_spec | ({"split": flights_spec["split"] | {"validation": ["2013-03"], "test": ["2013-02"]}}
                              if change.pop("dataset", False) else {})  # fmt: skip
    study = STUDY | {"name": "refused"} | change
    with pytest.raises(InputError, match=rf"^command line: --continue-from: study 'air' .*{problem}.*; continue from"):
        run_study(folder, dataset, NARROW, study, max_evals=1, continue_from="air")
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == before


def test_an_unknown_source_is_refused_naming_the_flag(continued, flights_spec):
    folder, _, _, _ = continued
    with pytest.raises(InputError, match=r"--continue-from: no study 'nope': neither a study of experiment 'cont'"):
        run_study(folder, flights_spec, NARROW, STUDY | {"name": "x"}, max_evals=1, continue_from="nope")
