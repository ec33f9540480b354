"""Every shipped search space and study file is valid, and every model family goes through the whole final
stage: a short search, the refit, logging, registration, and the pyfunc loaded back predicting raw rows."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline import config, data, families, outputs, spaces, tracking
from pipeline.metrics import METRICS
from pipeline.model import finalize
from pipeline.search import optimizer
from pipeline.search.history import History
from pipeline.search.loop import RunContext, SearchSettings, run_search
from pipeline.study import training_data

REPO = Path(__file__).resolve().parents[1]
SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))
STUDIES = sorted((REPO / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_every_shipped_space_loads_and_samples_typed_values(path):
    space = spaces.load(path)
    for params in optimizer.sample(space, 5, seed=0):
        assert params["model"] in space.families
        assert all(not isinstance(v, float) or np.isfinite(v) for v in params.values())


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_shipped_study_names_valid_files(path):
    study = config.load_study(path)
    assert config.load_dataset(study.dataset).target
    assert spaces.load(study.space).families


def test_there_is_an_example_space_for_every_family_and_one_over_several():
    single = {spaces.load(p).families[0] for p in SPACES if len(spaces.load(p).families) == 1}
    assert single == set(config.FAMILIES)
    assert any(len(spaces.load(p).families) > 3 for p in SPACES)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('shipped') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(uri)
        yield MlflowClient(uri)
        mlflow.set_tracking_uri(None)


def load_small(tmp_path: Path, spec: dict) -> data.Dataset:
    file = tmp_path / "dataset.yaml"
    file.write_text(yaml.safe_dump(spec))
    return data.load_dataset(config.load_dataset(file), file)


@pytest.mark.parametrize("family", config.FAMILIES)
def test_each_family_is_searched_refitted_registered_and_served(family, store, tmp_path, flights_spec):
    path = next(p for p in SPACES if spaces.load(p).families == [family])
    space = spaces.load(path)
    task = families.get(family).tasks[0]
    spec = flights_spec
    if task != "regression":
        spec = flights_spec | {"task": "binary", "target": "arr_delay", "positive_when": {"above": 15}}
    dataset = load_small(tmp_path, spec)
    metric = METRICS["rmse" if task == "regression" else "log_loss"]
    experiment = tracking.experiment_id(store, "shipped")
    history = History(tmp_path / "history.jsonl")
    history.start({"parent_run_id": family})

    with tracking.open_parent(store, experiment_id=experiment) as parent:
        context = RunContext(store, experiment, parent.run_id, tags={})
        settings = SearchSettings(max_evals=2, seed=0, algorithm=optimizer.algorithm_for("tpe"))
        result = run_search(
            space, training_data(dataset, space), dataset.task, metric, settings, context, history, show_progress=False
        )
        final = finalize.refit(dataset, result.best, "train_validation", seed=0)
        x_test, y_test = dataset.xy("test")
        expected = finalize.predict(final, x_test)
        registration = finalize.publish(store, parent, final, x_test, expected, f"shipped-{family}", tags={})

    assert result.best.params["model"] == family and np.isfinite(metric.score(y_test, expected))
    served = mlflow.pyfunc.load_model(registration.uri).predict(x_test)
    assert np.allclose(outputs.scores(served), outputs.scores(outputs.output(expected, dataset.task)))
