"""pipeline.search.loop: real hyperopt trials on small real flights data, each a child run in a real MLflow store."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from sklearn.linear_model import Ridge

from pipeline import config, spaces, tracking
from pipeline.errors import PipelineError
from pipeline.families import TrainingData
from pipeline.metrics import METRICS, REGRESSION, Task
from pipeline.search import loop as search
from pipeline.search import optimizer
from pipeline.search.history import History
from pipeline.search.loop import (
    RunContext,
    SearchResult,
    SearchSettings,
    StopRules,
    TrialOutcome,
    run_search,
    stop_reason,
)
from pipeline.search.pruning import PruningRule

FAST = {"num_boost_round": 200, "early_stopping_rounds": 5}
"""With learning rates of 0.5 and more, early stopping ends each trial within a few dozen rounds."""
PROVENANCE = {"space_sha256": "test-space", "data_fingerprint": "test-data"}
AIR_TIME = Task(REGRESSION)


@pytest.fixture(scope="module")
def prepared(flights_tasks) -> TrainingData:
    """The search's shared splits, encoded the way ``run`` encodes them, for every test of the module: the
    xgboost matrices are built on first use and then shared, as in a study."""
    return flights_tasks.training_data(REGRESSION)


@pytest.fixture
def context(client: MlflowClient, request: pytest.FixtureRequest) -> RunContext:
    """A parent run of its own (in an experiment named after the test) for the trials to hang under."""
    experiment = tracking.experiment_id(client, request.node.name)
    parent = client.create_run(experiment, tags={"mlflow.runName": "study"})
    return RunContext(client=client, experiment_id=experiment, parent_run_id=parent.info.run_id, tags=PROVENANCE)


def write_space(folder: Path, parameters: dict, failing: bool = False) -> spaces.SearchSpace:
    if failing:
        return failing_space(folder, {"model": "xgboost", "parameters": parameters | FAST})
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump({"model": "xgboost", "parameters": parameters | FAST}))
    return spaces.load(path)


def failing_space(folder: Path, raw: dict) -> spaces.SearchSpace:
    """A space with options the estimator refuses, checked for its schema only: ``spaces.load`` refuses it,
    and these tests need trials that fail when they train."""
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return spaces.SearchSpace(path, config.load_space(path), sha256="failing")


def journal(folder: Path) -> History:
    """A fresh trial history, as run.py starts one for a new study."""
    history = History(folder / "history.jsonl")
    history.start({"parent_run_id": "test"})
    return history


def settings(max_evals: int, seed: int = 3) -> SearchSettings:
    return SearchSettings(max_evals=max_evals, seed=seed, algorithm=optimizer.algorithm_for("tpe"))


def child_runs(context: RunContext) -> dict[int, mlflow.entities.Run]:
    runs = context.client.search_runs(
        [context.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{context.parent_run_id}'"
    )
    return {int(run.data.tags["trial_number"]): run for run in runs}


SEARCHED = {
    "max_depth": {"distribution": "quniform", "low": 2, "high": 7, "q": 1},
    "learning_rate": {"distribution": "uniform", "low": 0.5, "high": 1.0},
}


def test_each_trial_is_one_child_run_and_the_best_is_the_lowest_ok_rmse(tmp_path, prepared, context):
    space = write_space(tmp_path, SEARCHED)

    result = run_search(
        space,
        prepared,
        AIR_TIME,
        METRICS["rmse"],
        settings(5),
        context,
        journal(tmp_path),
        show_progress=False,
    )

    assert [t.number for t in result.trials] == [0, 1, 2, 3, 4]
    runs = child_runs(context)
    assert sorted(runs) == [0, 1, 2, 3, 4]
    for trial in result.trials:
        run = runs[trial.number]
        assert trial.ok and trial.error is None
        assert trial.run_id == run.info.run_id
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"trial-{trial.number:04d}"
        assert run.data.tags["space_sha256"] == "test-space"
        assert run.data.tags["data_fingerprint"] == "test-data"
        assert isinstance(trial.params["max_depth"], int)
        assert run.data.params["max_depth"] == str(trial.params["max_depth"])
        assert run.data.params["num_boost_round"] == "200"
        assert run.data.params["model"] == trial.params["model"] == "xgboost"
        assert set(run.data.params) == {"model", *SEARCHED, *FAST}
        assert run.data.metrics["rmse"] == pytest.approx(trial.value, rel=1e-12)
        assert run.data.metrics["best_iteration"] == trial.best_iteration
        assert 0 <= trial.best_iteration < 200
    values = [t.value for t in result.trials]
    assert len(set(values)) > 1  # otherwise "the best" would not be tested
    assert result.best.value == min(values)
    assert result.best.number == values.index(min(values))
    assert result.finished == result.trials
    assert result.train_seconds == pytest.approx(sum(t.train_seconds for t in result.trials))


def test_failing_trials_are_failed_runs_with_the_error_and_never_the_best(tmp_path, prepared, context):
    # xgboost refuses max_depth=-1 ("should be greater equal to 0") when training starts
    space = write_space(
        tmp_path,
        {
            "max_depth": {"distribution": "choice", "options": [3, -1]},
            "learning_rate": {"distribution": "uniform", "low": 0.5, "high": 1.0},
        },
        failing=True,
    )

    result = run_search(
        space,
        prepared,
        AIR_TIME,
        METRICS["rmse"],
        settings(6),
        context,
        journal(tmp_path),
        show_progress=False,
    )

    failed = [t for t in result.trials if not t.ok]
    ok = [t for t in result.trials if t.ok]
    assert failed and ok, "the seed must give both kinds of trial"
    assert {t.params["max_depth"] for t in failed} == {-1}
    assert {t.params["max_depth"] for t in ok} == {3}
    runs = child_runs(context)
    assert sorted(runs) == list(range(6))
    for trial in failed:
        run = runs[trial.number]
        assert trial.run_id == run.info.run_id
        assert math.isnan(trial.value)
        assert run.info.status == "FAILED"
        assert run.data.tags["error_class"] == "XGBoostError"
        assert "max_depth" in run.data.tags["error_message"]
        assert trial.error.startswith("XGBoostError: ")
        assert "rmse" not in run.data.metrics
        assert "trial_seconds" in run.data.metrics
    for trial in ok:
        assert runs[trial.number].info.status == "FINISHED"
    assert result.best.ok
    assert result.best.value == min(t.value for t in ok)
    assert result.finished == ok


def test_when_every_trial_fails_the_error_says_so_and_quotes_the_first(tmp_path, prepared, context):
    space = write_space(tmp_path, {"max_depth": {"distribution": "choice", "options": [-1, -2, -3]}}, failing=True)

    with pytest.raises(PipelineError, match=r"^all 3 trials failed; first error: XGBoostError: .*max_depth") as raised:
        run_search(
            space,
            prepared,
            AIR_TIME,
            METRICS["rmse"],
            settings(3),
            context,
            journal(tmp_path),
            show_progress=False,
        )

    runs = child_runs(context)
    assert sorted(runs) == [0, 1, 2]  # the failed trials were still written before the error
    assert {run.info.status for run in runs.values()} == {"FAILED"}
    first_message = runs[0].data.tags["error_message"]
    assert first_message.splitlines()[0] in str(raised.value)


def test_r2_is_maximised_and_read_off_the_rmse_curve(tmp_path, prepared, context):
    space = write_space(tmp_path, SEARCHED)
    r2 = METRICS["r2"]

    result = run_search(
        space,
        prepared,
        AIR_TIME,
        r2,
        settings(5),
        context,
        journal(tmp_path),
        show_progress=False,
    )

    values = [t.value for t in result.trials]
    assert len(set(values)) > 1
    assert result.best.value == max(values)
    best_run = context.client.get_run(result.best.run_id)
    assert best_run.data.metrics["r2"] == pytest.approx(result.best.value, rel=1e-12)
    curve = {m.step: m.value for m in context.client.get_metric_history(result.best.run_id, "validation_rmse_curve")}
    assert max(curve) > result.best.best_iteration
    rmse_at_best = curve[result.best.best_iteration]
    expected = 1.0 - rmse_at_best**2 / np.var(prepared.y_validation)
    assert result.best.value == pytest.approx(expected, rel=1e-9)
    assert 0.0 < result.best.value < 1.0


# --- stop rules ----------------------------------------------------------------------------------------


def outcome(number: int, value: float | None) -> TrialOutcome:
    """A finished trial scoring ``value``, or a failed one for ``None``."""
    ok = value is not None
    return TrialOutcome(
        number=number,
        params={"max_depth": 3},
        value=value if ok else math.nan,
        best_iteration=10 if ok else None,
        run_id=f"run-{number}",
        train_seconds=0.1,
        ok=ok,
        error=None if ok else "XGBoostError: max_depth",
    )


def outcomes(*values: float | None) -> list[TrialOutcome]:
    return [outcome(number, value) for number, value in enumerate(values)]


def rules(**stop: object) -> SearchSettings:
    return SearchSettings(max_evals=100, seed=0, algorithm=optimizer.algorithm_for("tpe"), stop=StopRules(**stop))


RMSE, R2 = METRICS["rmse"], METRICS["r2"]


def test_stop_reason_is_none_when_no_rule_applies():
    trials = outcomes(5.0, None, 4.0, 4.5)
    everything = rules(timeout_s=60, metric_threshold=3.0, patience=2, min_trials_for_failed_share=1)

    assert stop_reason(trials, RMSE, everything, elapsed_s=59.9) is None
    assert stop_reason(trials, RMSE, rules(), elapsed_s=1e9) is None  # only the failure share is on by default
    assert stop_reason([], RMSE, everything, elapsed_s=0.0) is None


def test_stop_reason_failure_share_needs_enough_trials_and_strictly_more_than_the_share():
    settings_ = rules(max_failed_share=0.5, min_trials_for_failed_share=5)

    assert stop_reason(outcomes(None, None, None, 1.0), RMSE, settings_, 0.0) is None  # 3 of 4: too few trials
    assert stop_reason(outcomes(None, None, None, 1.0, 1.0, 1.0), RMSE, settings_, 0.0) is None  # 3 of 6: not more
    reason = stop_reason(outcomes(None, 1.0, None, 1.0, None), RMSE, settings_, 0.0)
    assert reason is not None
    assert reason.startswith(search.FAILURES)
    assert "3 of 5" in reason
    every_one = stop_reason(outcomes(None, None), RMSE, rules(min_trials_for_failed_share=2), 0.0)
    assert every_one is not None and every_one.startswith(search.FAILURES)


def test_stop_reason_failure_share_comes_before_the_other_rules():
    trials = outcomes(1.0, None, None, None, None)
    reason = stop_reason(trials, RMSE, rules(metric_threshold=2.0, patience=1, timeout_s=0.0), 10.0)
    assert reason is not None and reason.startswith(search.FAILURES)


def test_stop_reason_threshold_of_a_minimised_metric():
    assert stop_reason(outcomes(12.0, 10.5), RMSE, rules(metric_threshold=10.0), 0.0) is None
    reached = stop_reason(outcomes(12.0, 10.0), RMSE, rules(metric_threshold=10.0), 0.0)  # reaching it is enough
    assert reached is not None and reached.startswith("metric threshold reached")
    assert "rmse" in reached
    assert stop_reason(outcomes(12.0, 9.0, 11.0), RMSE, rules(metric_threshold=10.0), 0.0) is not None
    assert stop_reason(outcomes(None, None), RMSE, rules(metric_threshold=10.0), 0.0) is None  # failed trials: NaN


def test_stop_reason_threshold_of_a_maximised_metric():
    assert stop_reason(outcomes(0.5, 0.89), R2, rules(metric_threshold=0.9), 0.0) is None
    assert stop_reason(outcomes(0.95), R2, rules(metric_threshold=0.96), 0.0) is None  # above is not enough, not below
    reached = stop_reason(outcomes(0.5, 0.9), R2, rules(metric_threshold=0.9), 0.0)
    assert reached is not None and reached.startswith("metric threshold reached")
    assert "r2" in reached
    assert stop_reason(outcomes(0.5, 0.95, 0.1), R2, rules(metric_threshold=0.9), 0.0) is not None


def test_stop_reason_patience_counts_from_the_best_trial():
    patience = rules(patience=2)
    assert stop_reason(outcomes(5.0, 3.0, 4.0), RMSE, patience, 0.0) is None  # 1 trial since the best
    reason = stop_reason(outcomes(5.0, 3.0, 4.0, 3.5), RMSE, patience, 0.0)
    assert reason is not None and reason.startswith("no improvement in 2 trials")
    assert "best is trial 1" in reason
    assert stop_reason(outcomes(5.0, 3.0, 4.0, 2.0), RMSE, patience, 0.0) is None  # an improvement resets it
    assert stop_reason(outcomes(5.0, 3.0, 3.0, 3.0), RMSE, patience, 0.0) is not None  # a tie is no improvement
    assert stop_reason(outcomes(5.0, 3.0, None, None), RMSE, patience, 0.0) is not None  # failed trials count
    # r2 is maximised: the best is the highest, trial 0 here
    assert stop_reason(outcomes(0.9, 0.5, 0.8), R2, patience, 0.0) is not None
    assert stop_reason(outcomes(0.5, 0.8, 0.9), R2, patience, 0.0) is None


def test_stop_reason_timeout():
    trials = outcomes(5.0, 4.0)
    assert stop_reason(trials, RMSE, rules(timeout_s=30), 29.99) is None
    reason = stop_reason(trials, RMSE, rules(timeout_s=30), 30.0)
    assert reason is not None and reason.startswith("timeout")


def test_patience_stops_the_search_early(tmp_path, prepared, context):
    space = write_space(tmp_path, SEARCHED)
    history = journal(tmp_path)
    max_evals = 30

    result = run_search(
        space,
        prepared,
        AIR_TIME,
        METRICS["rmse"],
        replace(settings(max_evals), stop=StopRules(patience=2)),
        context,
        history,
        show_progress=False,
    )

    assert len(result.trials) < max_evals
    assert result.stop_reason.startswith("no improvement in 2 trials")
    assert len(result.trials) == result.best.number + 3, "stopped on the second trial without improvement"
    values = [t.value for t in result.trials]
    assert all(v >= result.best.value for v in values[result.best.number + 1 :])
    assert sorted(child_runs(context)) == [t.number for t in result.trials]


def test_metric_threshold_stops_on_the_first_trial_that_reaches_it(tmp_path, prepared, client, request):
    space = write_space(tmp_path, SEARCHED)
    metric = METRICS["rmse"]

    def search(stop: StopRules, name: str) -> SearchResult:
        experiment = tracking.experiment_id(client, f"{request.node.name}-{name}")
        parent = client.create_run(experiment)
        context = RunContext(client, experiment, parent.info.run_id, PROVENANCE)
        stop_settings = replace(settings(8), stop=stop)
        return run_search(space, prepared, AIR_TIME, metric, stop_settings, context, journal(tmp_path / name))

    reference = [t.value for t in search(StopRules(), "reference").trials]
    running_best = [min(reference[: i + 1]) for i in range(len(reference))]
    improved = [i for i in range(1, len(reference)) if running_best[i] < running_best[i - 1]]
    assert improved, "the seed must give a trial better than the first"
    first_reaching = improved[0]
    threshold = running_best[first_reaching]

    result = search(StopRules(metric_threshold=threshold), "threshold")

    assert len(result.trials) == first_reaching + 1 < 8
    assert [t.value for t in result.trials] == reference[: first_reaching + 1]
    assert result.stop_reason.startswith("metric threshold reached")
    assert result.best.value == threshold


def test_too_many_failed_trials_stop_the_study_and_quote_the_first_error(tmp_path, prepared, context):
    space = write_space(
        tmp_path,
        {
            "max_depth": {"distribution": "choice", "options": [-1, -2, 3]},
            "learning_rate": {"distribution": "uniform", "low": 0.5, "high": 1.0},
        },
        failing=True,
    )
    stop = StopRules(max_failed_share=0.5, min_trials_for_failed_share=3)

    with pytest.raises(search.TooManyFailures) as raised:
        run_search(
            space,
            prepared,
            AIR_TIME,
            METRICS["rmse"],
            replace(settings(20), stop=stop),
            context,
            journal(tmp_path),
            show_progress=False,
        )

    message = str(raised.value)
    assert "failed trials" in message
    runs = child_runs(context)
    assert 3 <= len(runs) < 20, "the study should stop as soon as the share is exceeded"
    failed = sorted(n for n, run in runs.items() if run.info.status == "FAILED")
    assert len(failed) > len(runs) / 2
    first_error = runs[failed[0]].data.tags["error_message"]
    assert f"first error: XGBoostError: {first_error.splitlines()[0]}" in message
    assert "max_depth" in message


def search_with_infinite_trials(folder: Path, prepared: TrainingData, context: RunContext) -> SearchResult:
    """8 trials of which some (learning rate 1e30) send xgboost's predictions, and its rmse, to infinity."""
    space = write_space(
        folder,
        {
            "learning_rate": {"distribution": "choice", "options": [0.5, 1.0e30]},
            "max_depth": {"distribution": "quniform", "low": 2, "high": 5, "q": 1},
        },
    )
    return run_search(
        space,
        prepared,
        AIR_TIME,
        METRICS["rmse"],
        replace(settings(8, seed=4), stop=StopRules(max_failed_share=1.0)),
        context,
        journal(folder),
        show_progress=False,
    )


def test_an_infinite_validation_metric_is_a_failed_trial_never_the_best(tmp_path, prepared, context):
    result = search_with_infinite_trials(tmp_path, prepared, context)

    failed = [t for t in result.trials if not t.ok]
    ok = [t for t in result.trials if t.ok]
    assert failed and ok, "the seed must give both kinds of trial"
    assert {t.params["learning_rate"] for t in failed} == {1.0e30}
    assert {t.params["learning_rate"] for t in ok} == {0.5}
    runs = child_runs(context)
    for trial in failed:
        run = runs[trial.number]
        assert run.info.status == "FAILED"
        assert run.data.tags["error_class"] == "FloatingPointError"
        assert trial.error.startswith("FloatingPointError: validation rmse is ")
        assert "rmse" not in run.data.metrics
    assert result.best.ok
    assert math.isfinite(result.best.value)
    assert result.best.value == min(t.value for t in ok)
    assert result.finished == ok


def test_a_resumed_search_runs_only_the_missing_trials_and_proposes_what_one_run_would(
    tmp_path, prepared, client, context, request
):
    space = write_space(tmp_path, SEARCHED)
    metric = METRICS["rmse"]
    history = journal(tmp_path / "resumed")

    def search(max_evals: int, context: RunContext, history: History, past=()) -> SearchResult:
        return run_search(
            space,
            prepared,
            AIR_TIME,
            metric,
            settings(max_evals),
            context,
            history,
            past,
            show_progress=False,
        )

    first = search(3, context, history)
    resumed = search(6, context, history, past=first.trials)

    assert [t.number for t in resumed.trials] == [0, 1, 2, 3, 4, 5]
    assert resumed.resumed_trials == 3
    assert resumed.trials[:3] == first.trials
    runs = child_runs(context)
    assert sorted(runs) == [0, 1, 2, 3, 4, 5], "exactly 3 new trial runs, none repeated"
    assert [runs[t.number].info.run_id for t in resumed.trials] == [t.run_id for t in resumed.trials]
    assert resumed.train_seconds == pytest.approx(sum(t.train_seconds for t in resumed.trials[3:]))
    assert resumed.best == min(resumed.trials, key=lambda t: (t.value, t.number))

    experiment = tracking.experiment_id(client, f"{request.node.name}-uninterrupted")
    fresh = RunContext(client, experiment, client.create_run(experiment).info.run_id, PROVENANCE)
    uninterrupted = search(6, fresh, journal(tmp_path / "uninterrupted"))
    assert [t.params for t in resumed.trials] == [t.params for t in uninterrupted.trials]
    assert len({str(t.params) for t in uninterrupted.trials}) == 6, "a repeated proposal would prove little"


def test_every_trial_is_in_the_history_with_its_logged_run(tmp_path, prepared, context):
    space = write_space(
        tmp_path,
        {
            "max_depth": {"distribution": "choice", "options": [3, -1]},
            "learning_rate": {"distribution": "uniform", "low": 0.5, "high": 1.0},
        },
        failing=True,
    )
    history = journal(tmp_path)

    result = run_search(
        space,
        prepared,
        AIR_TIME,
        METRICS["rmse"],
        replace(settings(6), stop=StopRules(max_failed_share=1.0)),
        context,
        history,
        show_progress=False,
    )

    state = History(history.path).read()
    assert state is not None
    assert [entry["outcome"]["number"] for entry in state.trials] == [0, 1, 2, 3, 4, 5]
    assert state.logged == {t.number: t.run_id for t in result.trials}
    assert all(state.logged.values())
    for entry, trial in zip(state.trials, result.trials, strict=True):
        saved = search.outcome_from_history(entry, state.logged[trial.number])
        assert saved.number == trial.number
        assert saved.params == trial.params
        assert saved.ok == trial.ok
        assert saved.error == trial.error
        if trial.ok:
            assert saved.value == trial.value
        record = search.record_from_history(entry)
        assert record.status == ("FINISHED" if trial.ok else "FAILED")
    assert {t.ok for t in result.trials} == {True, False}, "the seed must give both kinds of trial"


def test_a_trial_failed_on_an_infinite_metric_reports_nan_like_every_failed_trial(tmp_path, prepared, context):
    # TrialOutcome.value promises NaN for a failed trial, whatever made it fail.
    result = search_with_infinite_trials(tmp_path, prepared, context)

    failed = [t for t in result.trials if not t.ok]
    assert failed
    assert all(t.error.startswith("FloatingPointError") for t in failed)
    assert [t.value for t in failed if not math.isnan(t.value)] == []


# --- several model families in one study ---------------------------------------------------------------

FAMILIES = {
    "xgboost": {
        "max_depth": {"distribution": "quniform", "low": 2, "high": 7, "q": 1},
        "learning_rate": {"distribution": "uniform", "low": 0.5, "high": 1.0},
        **FAST,
    },
    "ridge": {"alpha": {"distribution": "choice", "options": [1.0, -1.0]}},  # sklearn refuses a negative alpha
    "random_forest": {"n_estimators": 20, "max_depth": {"distribution": "quniform", "low": 4, "high": 10, "q": 1}},
}


def test_a_multi_family_search_logs_each_family_s_own_parameters_and_picks_the_best_ok_trial(
    tmp_path, prepared, context
):
    space = failing_space(tmp_path, {"models": {name: {"parameters": p} for name, p in FAMILIES.items()}})

    result = run_search(
        space,
        prepared,
        AIR_TIME,
        METRICS["rmse"],
        replace(settings(10, seed=2), stop=StopRules(max_failed_share=1.0)),
        context,
        journal(tmp_path),
        show_progress=False,
    )

    runs = child_runs(context)
    assert sorted(runs) == list(range(10))
    assert {t.params["model"] for t in result.trials} == set(FAMILIES), "the seed must try every family"
    for trial in result.trials:
        family = trial.params["model"]
        run = runs[trial.number]
        assert trial.run_id == run.info.run_id
        assert run.data.params["model"] == family
        assert set(trial.params) == set(run.data.params) == {"model", *FAMILIES[family]}, "its own parameters only"
        if family == "xgboost":
            assert 0 <= trial.best_iteration < FAST["num_boost_round"]
            assert run.data.metrics["best_iteration"] == trial.best_iteration
            curve = context.client.get_metric_history(trial.run_id, "validation_rmse_curve")
            assert max(m.step for m in curve) > trial.best_iteration
        else:
            assert trial.best_iteration is None
            assert "best_iteration" not in run.data.metrics, "a family without rounds logs no round count"
            assert not [key for key in run.data.metrics if key.endswith("_curve")]

    failed = [t for t in result.trials if not t.ok]
    ok = [t for t in result.trials if t.ok]
    assert failed and {t.params["model"] for t in failed} == {"ridge"}, "the seed must give failed ridge trials"
    for trial in failed:
        run = runs[trial.number]
        assert trial.params["alpha"] == -1.0
        assert math.isnan(trial.value)
        assert run.info.status == "FAILED"
        assert "alpha" in run.data.tags["error_message"]
        assert "rmse" not in run.data.metrics
    assert result.best.ok
    assert result.best.value == min(t.value for t in ok)
    assert result.finished == ok

    ridge = [t for t in ok if t.params["model"] == "ridge"]
    assert ridge, "the seed must give a ridge trial that ran"
    x_train, x_validation = prepared.encoded("onehot")  # linear models read the one-hot, standardized matrix
    reference = Ridge(alpha=1.0).fit(x_train, prepared.y_train).predict(x_validation)
    expected = float(np.sqrt(np.mean((prepared.y_validation - reference) ** 2)))
    for trial in ridge:
        assert trial.value == pytest.approx(expected, rel=1e-6)
        assert runs[trial.number].data.metrics["rmse"] == pytest.approx(expected, rel=1e-6)


WIDE_RATES = {
    "max_depth": {"distribution": "quniform", "low": 2, "high": 7, "q": 1},
    "learning_rate": {"distribution": "loguniform", "low": 0.05, "high": 1.0},
}
"""Slow learners among fast ones: the slow ones trail the median after a few rounds."""


def pruning_search(space, prepared, context, history, max_evals, past=()) -> SearchResult:
    rules = replace(settings(max_evals), pruning=PruningRule(startup_trials=2, warmup_rounds=3))
    return run_search(space, prepared, AIR_TIME, METRICS["rmse"], rules, context, history, past, show_progress=False)


def test_pruned_trials_are_recorded_as_pruned_and_never_the_best(tmp_path, prepared, context):
    result = pruning_search(write_space(tmp_path, WIDE_RATES), prepared, context, journal(tmp_path), 8)

    pruned = [t for t in result.trials if t.pruned]
    assert pruned, "the rates span 20x: some trials must trail the median"
    assert not any(t.pruned for t in result.trials[:2]), "the first trials complete to set the median"
    assert result.best in result.trials and not result.best.pruned
    assert result.best == min((t for t in result.trials if not t.pruned), key=lambda t: (t.value, t.number))
    runs = child_runs(context)
    for trial in result.trials:
        run = runs[trial.number]
        assert run.info.status == "FINISHED"
        if trial.pruned:
            assert trial.ok and math.isfinite(trial.value)
            assert run.data.tags["trial_state"] == "PRUNED"
            assert "rmse" not in run.data.metrics, "a ranking by the metric must not see a best-so-far value"
            assert run.data.metrics["rmse_when_pruned"] == pytest.approx(trial.value)
            assert run.data.metrics["pruned_at_round"] == len(trial.curve) - 1 < FAST["num_boost_round"] - 1
        else:
            assert run.data.tags["trial_state"] == "COMPLETE"
            assert run.data.metrics["rmse"] == pytest.approx(trial.value)


def test_a_resumed_search_prunes_as_an_uninterrupted_one(tmp_path, prepared, client, context, request):
    space = write_space(tmp_path, WIDE_RATES)
    history = journal(tmp_path / "resumed")
    first = pruning_search(space, prepared, context, history, 4)
    resumed = pruning_search(space, prepared, context, history, 8, past=first.trials)

    experiment = tracking.experiment_id(client, f"{request.node.name}-uninterrupted")
    fresh = RunContext(client, experiment, client.create_run(experiment).info.run_id, PROVENANCE)
    uninterrupted = pruning_search(space, prepared, fresh, journal(tmp_path / "uninterrupted"), 8)
    assert [t.params for t in resumed.trials] == [t.params for t in uninterrupted.trials]
    assert [len(t.curve) for t in resumed.trials] == [len(t.curve) for t in uninterrupted.trials]
    assert any(t.pruned for t in resumed.trials[4:]), "pruning after the resume is what this checks"
