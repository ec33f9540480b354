"""Every shipped search space and study file is valid and fits its dataset's task, every model family goes
through the whole final stage (a short search, the refit, logging, registration, and the pyfunc loaded back
predicting raw rows), and the classification example's class weighting reaches each family."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline import config, data, families, outputs, spaces, tracking
from pipeline.metrics import BINARY, METRICS, REGRESSION
from pipeline.model import finalize
from pipeline.search import optimizer
from pipeline.search.history import History
from pipeline.search.loop import RunContext, SearchSettings, run_search
from pipeline.study import check_compatible, training_data

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
def test_every_shipped_study_names_valid_files_that_fit_its_dataset_s_task(path, tmp_path, flights_dir):
    """The study's metric and each family of its space fit the task of its dataset, read from the shipped
    dataset file (pointed at the small partitions): what a run checks before its first trial."""
    study = config.load_study(path)
    spec = yaml.safe_load(study.dataset.read_text()) | {"path": str(flights_dir)}
    dataset = load_small(tmp_path, spec)
    space = spaces.load(study.space)
    assert dataset.task.kind == spec["task"] and space.families
    check_compatible(study, path, dataset, space)


def test_there_is_an_example_space_for_every_family_and_one_over_several_for_each_task():
    loaded = [spaces.load(p) for p in SPACES]
    single = {space.families[0] for space in loaded if len(space.families) == 1}
    assert single == set(config.FAMILIES)
    for task in (REGRESSION, BINARY):
        over_several = [
            s for s in loaded if len(s.families) > 3 and all(task in families.get(f).tasks for f in s.families)
        ]
        assert over_several, f"no shipped space searches several families for a {task} task"


def test_every_shipped_file_opens_with_a_comment_saying_what_it_is_for():
    for path in [*SPACES, *STUDIES, *sorted((REPO / "data").glob("*.yaml"))]:
        header = path.read_text().split("\n", 1)[0]
        assert header.startswith("# ") and len(header) > 30, f"{path.name} does not open with what it is for"


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_store):
    uri = new_store(tmp_path_factory.mktemp("shipped") / "mlflow.db")
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
        evaluation = finalize.evaluate(final, dataset, metric)
        registration = finalize.publish(store, parent, final, evaluation, f"shipped-{family}", trials=2, seed=0)
    x_test, y_test, expected = evaluation.x, evaluation.y, evaluation.predictions

    assert result.best.params["model"] == family and np.isfinite(metric.score(y_test, expected))
    served = mlflow.pyfunc.load_model(registration.uri).predict(x_test)
    assert np.allclose(outputs.scores(served), outputs.scores(outputs.output(expected, dataset.task)))


def class_weighting(name: str, model: object) -> object:
    """The class weighting a fitted model was trained with: xgboost's scale_pos_weight (kept as a 32-bit
    float), else class_weight."""
    if name == "xgboost":
        return float(json.loads(model.save_config())["learner"]["objective"]["reg_loss_param"]["scale_pos_weight"])
    return model.get_params()["class_weight"]


def test_every_family_of_the_classification_example_trains_with_its_class_weighting(flights_tasks):
    """Each family of search_spaces/multi_family_classification.yaml trains on the imbalanced binary flights
    (about 23 % late) with the class weighting the space gives it, and ranks them well: the space is checked
    with probe fits when it loads, this trains every branch on the study's data."""
    space = spaces.load(REPO / "search_spaces" / "multi_family_classification.yaml")
    data, task = flights_tasks.training_data(BINARY), flights_tasks.dataset(BINARY).task
    samples = optimizer.sample(space, 40, seed=0)
    for name in space.families:
        params = next(p for p in samples if p["model"] == name)
        family = families.get(name)
        fitted = family.fit(params, data, task, "auc", seed=0)
        xgboost = name == "xgboost"
        expected = pytest.approx(params["scale_pos_weight"], rel=1e-6) if xgboost else params["class_weight"]
        assert class_weighting(name, fitted.model) == expected, name
        assert family.validation_score(fitted, data, task, "auc") > 0.8, name
