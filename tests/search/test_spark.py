"""pipeline.search.spark: trials on real Spark workers in local mode (pyspark, ``local[2]``), each a one-task
job from the parallel driver, on the small real flights data, into a real MLflow store."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.search import optimizer
from pipeline.search.loop import SearchSettings
from pipeline.search.parallel import Parallel
from pipeline.search.pruning import PruningRule

pytest.importorskip("pyspark", reason="parallel trials need pyspark: pip install -e '.[test]' installs it")

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
    parallel=Parallel(workers=2, master="local[2]"),
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
