"""Parallel trials: the ask/tell driver (``optimizer.minimize_parallel``) with real hyperopt over a quadratic,
then real worker processes (``pipeline.search.local``) training xgboost on small real flights data into a real
MLflow store, one of them killed with SIGKILL in the middle of a trial."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hyperopt import JOB_STATE_DONE, JOB_STATE_RUNNING
from mlflow.tracking import MlflowClient

from pipeline import config, spaces
from pipeline.errors import PipelineError
from pipeline.failpoints import FAILPOINT
from pipeline.search import optimizer
from pipeline.search.local import WORKER_START, trial_failpoint
from pipeline.search.loop import SearchSettings, StopRules
from pipeline.search.parallel import Parallel
from pipeline.search.pruning import PruningRule

# --- the driver, with a quadratic for an objective -------------------------------------------------------------


def space_of(folder: Path, parameters: dict[str, Any]) -> spaces.SearchSpace:
    """A space checked for its schema only: these trials never train."""
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump({"model": "xgboost", "parameters": parameters | {"num_boost_round": 10}}))
    return spaces.SearchSpace(path, config.load_space(path), sha256="quadratic")


CONTINUOUS = {
    "max_depth": {"distribution": "quniform", "low": 2, "high": 9, "q": 1},
    "learning_rate": {"distribution": "uniform", "low": 0.0, "high": 1.0},
}
SIX_CONFIGURATIONS = {
    "max_depth": {"distribution": "quniform", "low": 2, "high": 4, "q": 1},
    "booster": {"distribution": "choice", "options": ["gbtree", "dart"]},
}


def quadratic(values: dict[str, Any]) -> float:
    return (values.get("learning_rate", 0.3) - 0.3) ** 2 + (values["max_depth"] - 4) ** 2 / 10


class Engine:
    """Trials of the quadratic in ``workers`` threads, each a few milliseconds long; counts what the driver
    has in flight (submitted, not yet settled) and fails the trials whose submission number is in ``fail``
    (from ``broken`` on, the engine itself fails: PipelineError)."""

    def __init__(
        self, space: spaces.SearchSpace, workers: int, fail: frozenset[int] = frozenset(), broken: int | None = None
    ):
        self.space, self.fail, self.broken = space, fail, broken
        self.pool = ThreadPoolExecutor(workers)
        self.submitted: list[dict[str, Any]] = []
        self.settled: list[tuple[dict[str, Any], float | None, str | None]] = []
        self.in_flight = self.most_in_flight = 0

    def submit(self, values: dict[str, Any]) -> Future[float]:
        assert threading.current_thread() is threading.main_thread(), "the driver submits from its own thread"
        self.submitted.append(self.space.typed(values))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        return self.pool.submit(self.trial, len(self.submitted) - 1, values)

    def trial(self, index: int, values: dict[str, Any]) -> float:
        time.sleep(0.002 * (index % 3))  # trials finish out of order
        if index in self.fail:
            raise RuntimeError("the worker died")
        if self.broken is not None and index >= self.broken:
            raise PipelineError("no worker could start")
        return quadratic(values)

    def on_finished(self, values: dict[str, Any], payload: float | None, error: str | None) -> dict[str, Any]:
        self.in_flight -= 1
        self.settled.append((self.space.typed(values), payload, error))
        return {"status": optimizer.FAIL} if error else {"status": optimizer.OK, "loss": payload}


def drive(engine: Engine, plan: optimizer.Plan, workers: int) -> str | None:
    return optimizer.minimize_parallel(engine.submit, plan, workers, engine.on_finished)


def test_the_driver_keeps_n_trials_in_flight_runs_exactly_max_evals_and_settles_every_one(tmp_path):
    space = space_of(tmp_path, CONTINUOUS)
    engine = Engine(space, 3, fail=frozenset({4}))
    plan = optimizer.Plan(space, 12, seed=1, algorithm=optimizer.algorithm_for("tpe", {"n_startup_jobs": 4}))

    assert drive(engine, plan, 3) is None

    assert len(engine.submitted) == len(engine.settled) == 12
    assert engine.most_in_flight == 3 and engine.in_flight == 0
    assert len({plan.key(p) for p in engine.submitted}) == 12, "no configuration twice"
    failed = [s for s in engine.settled if s[2] is not None]
    assert len(failed) == 1 and failed[0][0] == engine.submitted[4] and "RuntimeError: the worker died" in failed[0][2]
    assert all(math.isclose(v, quadratic(p)) for p, v, e in engine.settled if e is None)


def test_an_engine_that_can_run_no_trial_ends_the_search_with_its_error_and_no_failed_trial(tmp_path):
    space = space_of(tmp_path, CONTINUOUS)
    engine = Engine(space, 2, broken=3)

    with pytest.raises(PipelineError, match="no worker could start"):
        drive(engine, optimizer.Plan(space, 12, seed=1), 2)

    assert len(engine.settled) <= 3 and all(error is None for _, _, error in engine.settled)


def test_proposals_see_the_running_trials_at_the_worst_finished_loss(tmp_path):
    space = space_of(tmp_path, CONTINUOUS)
    seen: list[tuple[list[float | None], list[float]]] = []
    tpe = optimizer.algorithm_for("tpe", {"n_startup_jobs": 3})

    def spying(new_ids, domain, trials, seed):
        running = [d["result"].get("loss") for d in trials.trials if d["state"] == JOB_STATE_RUNNING]
        done = [d["result"]["loss"] for d in trials.trials if d["state"] == JOB_STATE_DONE]
        seen.append((running, done))
        return tpe(new_ids, domain, trials, seed)

    drive(Engine(space, 3), optimizer.Plan(space, 10, seed=2, algorithm=spying), 3)

    assert len(seen) == 10
    assert seen[0] == ([], []) and seen[1] == ([None], []), "no loss finished yet: hyperopt's own infinity"
    lied = [(running, done) for running, done in seen if running and done]
    assert lied, "some proposals were made while trials were running and others had finished"
    for running, done in lied:
        assert running == [max(done)] * len(running)


def test_a_small_space_is_exhausted_without_a_configuration_running_twice(tmp_path):
    space = space_of(tmp_path, SIX_CONFIGURATIONS)
    engine = Engine(space, 3)

    reason = drive(engine, optimizer.Plan(space, 20, seed=3, algorithm=optimizer.algorithm_for("tpe")), 3)

    assert reason is not None and reason.startswith("search space exhausted")
    assert len(engine.submitted) == len(engine.settled) == 6
    assert len({plan_key for plan_key in map(str, engine.submitted)}) == 6


def test_a_stop_rule_ends_proposals_and_the_running_trials_are_waited_for(tmp_path):
    space = space_of(tmp_path, CONTINUOUS)
    engine = Engine(space, 3)
    plan = optimizer.Plan(space, 50, seed=4, should_stop=lambda: len(engine.settled) >= 2)

    drive(engine, plan, 3)

    assert 3 <= len(engine.submitted) < 50
    assert len(engine.settled) == len(engine.submitted), "no running trial is lost"


def test_a_resume_counts_past_trials_and_warm_start_points_come_first(tmp_path):
    space = space_of(tmp_path, CONTINUOUS)
    first = [{"model": "xgboost", "max_depth": 3, "learning_rate": 0.25}, {"model": "xgboost", "max_depth": 5,
             "learning_rate": 0.5}]  # fmt: skip
    engine = Engine(space, 2)
    plan = optimizer.Plan(space, 4, seed=5, first=first)
    drive(engine, plan, 2)
    past = [
        optimizer.PastTrial(n, p, v, warm_start=plan.is_warm_start(p)) for n, (p, v, _) in enumerate(engine.settled)
    ]
    resumed = Engine(space, 2)

    drive(resumed, replace(plan, max_evals=7, past=past), 2)

    assert [plan.key(p) for p in engine.submitted[:2]] == [plan.key(p) for p in first]
    assert len(resumed.submitted) == 3
    assert not {plan.key(p) for p in resumed.submitted} & {plan.key(p) for p in engine.submitted}


# --- worker processes, training xgboost ------------------------------------------------------------------------

SPACE = {
    "model": "xgboost",
    "parameters": {
        "max_depth": {"distribution": "quniform", "low": 2, "high": 6, "q": 1},
        "learning_rate": {"distribution": "loguniform", "low": 0.3, "high": 1.0},
        "num_boost_round": 50,
        "early_stopping_rounds": 5,
    },
}


@pytest.fixture
def study(parent_search):
    """Runs a search in two local worker processes under a parent run of its own; returns its result, the
    parent's child runs by trial number and the history."""
    searched = parent_search(SPACE, "local-parallel")

    def search(max_evals: int, stop: StopRules | None = None, past=()):
        settings = SearchSettings(
            max_evals, 5, optimizer.algorithm_for("tpe"), stop or StopRules(), PruningRule(2, 3), Parallel(workers=2)
        )
        return *searched.run(settings, past), searched.history

    return search


def test_local_workers_run_max_evals_trials_each_a_child_run_and_a_resume_adds_the_missing(study):
    first, _, _ = study(3)
    result, runs, history = study(5, past=first.trials)

    assert [t.number for t in result.trials] == list(range(5)) and result.trials[:3] == first.trials
    assert sorted(runs) == list(range(5)), "one child run per trial, linked to the parent"
    for trial in result.trials:
        assert trial.ok and trial.run_id == runs[trial.number].info.run_id
        assert runs[trial.number].data.params["max_depth"] == str(trial.params["max_depth"])
    assert len({str(t.params) for t in result.trials}) == 5, "no two trials share a configuration"
    assert history.read().logged == {t.number: t.run_id for t in result.trials}


def test_a_timeout_keeps_the_trial_still_running_when_it_fires(study):
    result, runs, _ = study(10, StopRules(timeout_s=0))

    assert result.stop_reason.startswith("timeout")
    assert len(result.trials) == 2, "both workers' first trials, the second waited for after the stop"
    assert sorted(runs) == [0, 1]


def test_a_worker_killed_in_a_trial_makes_it_failed_and_the_study_goes_on(study, monkeypatch):
    monkeypatch.setenv(FAILPOINT, trial_failpoint(1))  # the second trial submitted: SIGKILL before it trains

    result, runs, _ = study(5)

    assert len(result.trials) == 5 and sorted(runs) == list(range(5))
    failed = [t for t in result.trials if not t.ok]
    assert len(failed) == 1 and "WorkerDied" in failed[0].error and "exit code -9" in failed[0].error
    assert runs[failed[0].number].info.status == "FAILED"
    assert runs[failed[0].number].data.tags["error_class"] == "WorkerDied"
    assert all(runs[t.number].info.status == "FINISHED" for t in result.trials if t.ok)


def test_workers_that_cannot_start_end_the_search_with_one_error(study, monkeypatch):
    monkeypatch.setenv(FAILPOINT, WORKER_START)  # every worker kills itself before it takes the data

    with pytest.raises(PipelineError, match=r"^a worker process could not start \(exit code -9\); its error is above$"):
        study(3)


def test_a_study_with_two_local_workers_registers_its_final_model(tmp_path, flights_spec):
    import pipeline

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = pipeline.Study.from_config(
        {"name": "local-2", "experiment": "parallel", "model_name": "parallel-model", "report": False},
        flights_spec,
        SPACE,
        max_evals=4,
        parallelism=2,
        tracking_uri=uri,
        state_dir=tmp_path / "state",
        progress=False,
    ).run()

    client = MlflowClient(uri)
    children = client.search_runs(
        [client.get_run(result.parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
    )
    assert len(result.trials) == len(children) == 4
    assert str(client.get_model_version_by_alias("parallel-model", "champion").version) == result.model_version
    assert result.best_params == min((t for t in result.trials if t.ok and not t.pruned), key=lambda t: t.value).params


CORES = len(os.sched_getaffinity(0))


def test_trials_on_this_machine_share_its_cores(monkeypatch):
    monkeypatch.delenv("PIPELINE_THREADS", raising=False)
    assert Parallel(workers=2).threads_per_trial == max(1, CORES // 2)
    assert Parallel(workers=2, master="local[2]").threads_per_trial == max(1, CORES // 2)
    assert Parallel(workers=2, master="spark://cluster:7077").threads_per_trial is None, "executors decide"


def test_pipeline_threads_is_kept_where_the_trials_fit_the_cores(monkeypatch):
    monkeypatch.setenv("PIPELINE_THREADS", "1")
    assert Parallel(workers=min(2, CORES)).threads_per_trial is None, "the workers inherit it"


def test_pipeline_threads_that_would_oversubscribe_the_cores_is_cut_to_a_share_with_a_warning(monkeypatch, caplog):
    """Two xgboost threads per trial, two trials at once, on two cores: OpenMP threads spin against each
    other at every round (a diamonds study took 242 s instead of 15 s). Each trial gets its share instead."""
    monkeypatch.setenv("PIPELINE_THREADS", str(CORES))

    with caplog.at_level("WARNING", logger="pipeline.search.parallel"):
        threads = Parallel(workers=2).threads_per_trial

    assert threads == max(1, CORES // 2)
    assert (
        f"PIPELINE_THREADS={CORES} for each of 2 trials at once is {2 * CORES} threads on {CORES} cores" in caplog.text
    )


SCRIPT = """
import json, pathlib, pipeline
folder = pathlib.Path({folder!r})
with open(folder / "imports.log", "a") as log:  # once per process that runs this file's top level
    log.write("imported\\n")
result = pipeline.Study.from_config(
    {{"name": "script", "experiment": "script", "model_name": "script-model", "report": False}},
    json.loads({dataset!r}), json.loads({space!r}), max_evals={max_evals}, parallelism=2,
    tracking_uri="sqlite:///" + str(folder / "mlflow.db"), state_dir=folder / "state", progress=False,
).run()
print("trials", len(result.trials))
"""


def test_a_script_without_a_main_guard_runs_its_study_once_with_local_workers(tmp_path, flights_spec):
    """Workers are fresh interpreters that import the pipeline, never the caller's script: its top level (no
    ``if __name__ == "__main__"``, as scripts and notebooks have it) is not run again in each worker."""
    script = tmp_path / "train.py"
    script.write_text(
        SCRIPT.format(folder=str(tmp_path), dataset=json.dumps(flights_spec), space=json.dumps(SPACE), max_evals=3)
    )

    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "trials 3" in done.stdout
    assert (tmp_path / "imports.log").read_text().splitlines() == ["imported"], "the script ran once"


def test_workers_end_when_the_driver_is_killed(tmp_path, flights_spec, local_workers):
    """A driver killed with SIGKILL (the OOM killer, a scheduler's timeout) leaves no worker behind: each sees
    its connection end, in a trial or between two, and exits."""
    script = tmp_path / "train.py"
    space = SPACE | {"parameters": SPACE["parameters"] | {"num_boost_round": 5000, "early_stopping_rounds": 5000}}
    dataset = json.dumps(flights_spec)
    script.write_text(SCRIPT.format(folder=str(tmp_path), dataset=dataset, space=json.dumps(space), max_evals=100))
    driver = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stderr=subprocess.DEVNULL)
    try:
        workers = local_workers.wait_for(driver.pid, 2)
        time.sleep(3)  # they have their data and train trials of up to 5000 rounds
    finally:
        driver.kill()
        driver.wait()

    assert not local_workers.wait_gone(workers), "a worker outlived its driver"
