"""pipeline.search.spark: trials on real resident Spark workers in local mode (pyspark, ``local[2]``), each
worker a long-running one-task job serving trials over a connection to the driver, on the small real flights
data, into a real MLflow store. One Spark session for the module."""

from __future__ import annotations

import threading
import time
from concurrent.futures import wait
from dataclasses import replace

import pytest
import yaml

from pipeline import spaces
from pipeline.errors import PipelineError
from pipeline.failpoints import FAILPOINT
from pipeline.metrics import METRICS, REGRESSION, Task
from pipeline.search import optimizer, spark
from pipeline.search.local import WorkerDied, trial_failpoint
from pipeline.search.loop import SearchSettings
from pipeline.search.parallel import Parallel
from pipeline.search.pruning import PruningRule
from pipeline.search.trial import Trainer

pytest.importorskip("pyspark", reason="parallel trials need pyspark: pip install -e '.[test]' installs it")

MASTER = "local[2]"

SPACE = {
    "model": "xgboost",
    "parameters": {
        "max_depth": {"distribution": "quniform", "low": 2, "high": 6, "q": 1},
        "learning_rate": {"distribution": "loguniform", "low": 0.05, "high": 1.0},
        "num_boost_round": 200,
        "early_stopping_rounds": 5,
    },
}
PARALLEL = SearchSettings(
    max_evals=0,
    seed=5,
    algorithm=optimizer.algorithm_for("tpe"),
    pruning=PruningRule(startup_trials=2, warmup_rounds=3),
    parallel=Parallel(workers=2, master=MASTER),
)


def test_parallel_trials_are_child_runs_numbered_as_they_finish_and_a_resume_adds_only_the_missing(parent_search):
    searched = parent_search(SPACE, "parallel")
    space, history = searched.space, searched.history

    def search(max_evals: int, past=()):
        return searched.run(replace(PARALLEL, max_evals=max_evals), past)

    first, _ = search(2)
    resumed, by_number = search(4, past=first.trials)

    assert [t.number for t in resumed.trials] == list(range(4))
    assert resumed.trials[:2] == first.trials
    assert sorted(by_number) == list(range(4)), "one child run per trial, none lost or repeated"
    for trial in resumed.trials:
        run = by_number[trial.number]
        assert trial.run_id == run.info.run_id and run.info.status == "FINISHED"
        assert run.data.params["max_depth"] == str(trial.params["max_depth"])
        assert run.data.tags["trial_state"] == ("PRUNED" if trial.pruned else "COMPLETE")
        assert run.data.tags["space_sha256"] == space.sha256
    assert not resumed.best.pruned and resumed.best == min(
        (t for t in resumed.trials if not t.pruned), key=lambda t: (t.value, t.number)
    )
    state = history.read()
    assert [entry["outcome"]["number"] for entry in state.trials] == list(range(4))
    assert state.logged == {t.number: t.run_id for t in resumed.trials}
    assert len({str(t.params) for t in resumed.trials}) == 4, "each proposal is a new point"


def test_a_worker_killed_in_a_trial_fails_that_trial_only_and_a_new_worker_runs_the_rest(parent_search, monkeypatch):
    context = spark.session(MASTER).sparkContext
    # Spark's own way to set its Python workers' environment (what spark.executorEnv.* fills): the second trial
    # submitted kills its worker with SIGKILL before it trains.
    monkeypatch.setitem(context.environment, FAILPOINT, trial_failpoint(1))
    searched = parent_search(SPACE, "spark-killed")
    one_worker = replace(PARALLEL, max_evals=4, parallel=Parallel(workers=1, master=MASTER))

    result, runs = searched.run(one_worker)

    assert len(result.trials) == 4 and sorted(runs) == list(range(4)), "the study went on to its budget"
    failed = [t for t in result.trials if not t.ok]
    assert len(failed) == 1 and failed[0].error.startswith("WorkerDied: "), [t.error for t in failed]
    assert runs[failed[0].number].info.status == "FAILED"
    assert runs[failed[0].number].data.tags["error_class"] == "WorkerDied"
    later = [t for t in result.trials if t.number > failed[0].number]
    assert later and all(t.ok for t in later), "with one worker, these ran on the one that replaced it"
    assert all(runs[t.number].info.status == "FINISHED" for t in result.trials if t.ok)


def trainer_of(tmp_path, flights_tasks, space: dict) -> Trainer:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    data = flights_tasks.training_data(REGRESSION, ("codes",))
    return Trainer(spaces.load(path), data, Task(REGRESSION), METRICS["rmse"], seed=5, tags={})


def values(learning_rate: float, space: dict = SPACE) -> dict:
    """A trial's sampled values, as hyperopt hands them over (fixed parameters included)."""
    fixed = {k: v for k, v in space["parameters"].items() if not isinstance(v, dict)}
    return {"model": "xgboost", "max_depth": 3.0, "learning_rate": learning_rate} | fixed


def wait_for(condition, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_pools_trials_share_one_spark_job_per_worker_which_loads_the_data_once(tmp_path, flights_tasks):
    context = spark.session(MASTER).sparkContext
    trainer = trainer_of(tmp_path, flights_tasks, SPACE)
    rates = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]

    with spark.SparkPool(spark.session(MASTER), trainer, 2, threads=1) as pool:
        payloads = [future.result(timeout=300) for future in [pool.submit(values(rate)) for rate in rates]]
        wait_for(lambda: len(pool._workers) == 2)  # one may have served all six while the other started
        jobs = context.statusTracker().getJobIdsForGroup(pool.group)

    assert [outcome.params["learning_rate"] for outcome, _ in payloads] == rates
    assert all(outcome.ok and outcome.value > 0 for outcome, _ in payloads)
    assert len(jobs) == 2, "six trials, two Spark jobs: one per worker, not one per trial"
    assert pool.data_loads == 2, "each worker loaded the broadcast data once"
    assert context.statusTracker().getActiveJobsIds() == []


def test_tasks_that_cannot_reach_the_driver_fail_the_pool_with_its_address_not_a_hang(tmp_path, flights_tasks):
    # Nothing listens on 127.0.0.2 (the pool listens on 127.0.0.1): every task's connection is refused.
    trainer = trainer_of(tmp_path, flights_tasks, SPACE)
    with spark.SparkPool(spark.session(MASTER), trainer, 2, threads=1, driver_host="127.0.0.2") as pool:
        trial = pool.submit(values(0.3))
        with pytest.raises(PipelineError) as raised:
            trial.result(timeout=120)

    message = str(raised.value)
    port = pool.address[1]
    assert "\n" not in message and f"spark.driver.host 127.0.0.2, port {port}" in message, message
    assert f"driver at 127.0.0.2:{port}" in message and "ConnectionRefusedError" in message, message


LONG = SPACE | {"parameters": SPACE["parameters"] | {"num_boost_round": 1_000_000, "early_stopping_rounds": 1_000_000}}
"""Trials that train for hours: nothing ends them but the pool."""


def test_leaving_the_pool_while_trials_run_fails_them_promptly_and_leaves_no_spark_job(tmp_path, flights_tasks):
    context = spark.session(MASTER).sparkContext
    pool = spark.SparkPool(spark.session(MASTER), trainer_of(tmp_path, flights_tasks, LONG), 2, threads=1)
    leaving = threading.Thread(target=pool.__exit__, args=(None, None, None))
    try:
        running = [pool.submit(values(0.05, LONG)) for _ in range(2)]
        wait_for(lambda: sum(w.busy for w in pool._workers) == 2)  # both workers connected and took a trial
        assert len(context.statusTracker().getActiveJobsIds()) == 2
    finally:
        leaving.start()
        leaving.join(timeout=60)  # a hang fails the test rather than the suite

    assert not leaving.is_alive(), "leaving the pool returned"
    done, _ = wait(running, timeout=0)
    assert len(done) == 2 and all(isinstance(f.exception(), WorkerDied) for f in running)
    assert context.statusTracker().getActiveJobsIds() == []
