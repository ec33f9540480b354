"""A search under a parent run of its own, on the small real flights data, into the module's MLflow store: what
the parallel engines' tests run (local worker processes, Spark)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline import spaces, tracking
from pipeline.families import TrainingData
from pipeline.metrics import METRICS, REGRESSION, Task
from pipeline.search.history import History
from pipeline.search.loop import RunContext, SearchResult, SearchSettings, run_search
from pipeline.search.trial import TrialOutcome
from pipeline.spaces import SearchSpace


@dataclass
class ParentSearch:
    space: SearchSpace
    data: TrainingData
    context: RunContext
    history: History
    client: MlflowClient

    def run(self, settings: SearchSettings, past: Sequence[TrialOutcome] = ()) -> tuple[SearchResult, dict[int, Run]]:
        """The search's result, and the parent's child runs by trial number."""
        metric, context = METRICS["rmse"], self.context
        result = run_search(
            self.space, self.data, Task(REGRESSION), metric, settings, context, self.history, past, False
        )
        runs = self.client.search_runs(
            [context.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{context.parent_run_id}'"
        )
        return result, {int(r.data.tags["trial_number"]): r for r in runs}


@pytest.fixture
def parent_search(tmp_path, flights_tasks, client: MlflowClient) -> Callable[[dict[str, Any], str], ParentSearch]:
    """``parent_search(space, experiment)``: a search of the space file ``space`` (a mapping) under a new parent
    run in ``experiment``, with its history in the test's folder."""

    def start(space: dict[str, Any], experiment: str) -> ParentSearch:
        path = tmp_path / "space.yaml"
        path.write_text(yaml.safe_dump(space))
        loaded = spaces.load(path)
        experiment_id = tracking.experiment_id(client, experiment)
        parent = client.create_run(experiment_id).info.run_id
        history = History(tmp_path / "history.jsonl")
        history.start({"parent_run_id": parent})
        context = RunContext(client, experiment_id, parent, {"space_sha256": loaded.sha256})
        data = flights_tasks.training_data(REGRESSION, ("codes",))
        return ParentSearch(loaded, data, context, history, client)

    return start
