"""Reading studies back from the tracking store: their parent runs, their trials' runs (with or without
the per-round curves), and the lookups a rerun, a continuation, the gate and the report make. Nothing here
writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.metrics import METRICS
from pipeline.tracking import names
from pipeline.tracking.curves import rebuilt


def child_runs(client: MlflowClient, experiment: str, parent_run_id: str) -> list[Run]:
    return client.search_runs(
        [experiment], filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_run_id}'", max_results=50000
    )


def trial_runs(client: MlflowClient, experiment: str, parent_run_id: str, number: int) -> list[Run]:
    """The active runs of trial ``number`` of the study (more than one only after a failed write)."""
    return client.search_runs(
        [experiment],
        filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_run_id}' and tags.{names.TRIAL_NUMBER} = '{number}'",
    )


def best_trials(client: MlflowClient, parent_run_id: str, count: int) -> list[dict[str, str]]:
    """The logged parameters of a study's ``count`` best completed trials, best first (its metric and
    direction are read from the study's run)."""
    parent = client.get_run(parent_run_id)
    metric = METRICS[parent.data.params.get("metric", "rmse")]
    trials = [
        r
        for r in child_runs(client, parent.info.experiment_id, parent_run_id)
        if r.info.status == "FINISHED" and metric.name in r.data.metrics
    ]
    trials.sort(key=lambda r: metric.loss(r.data.metrics[metric.name]))
    return [dict(r.data.params) for r in trials[:count]]


def studies_named(client: MlflowClient, experiment: str, study: str) -> list[Run]:
    """The parent runs of every study of this name in the experiment, newest first."""
    runs = client.search_runs(
        [experiment],
        filter_string=f"tags.{names.STUDY} = '{_quoted(study)}'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    return [r for r in runs if MLFLOW_PARENT_RUN_ID not in r.data.tags]


def runs_tagged(client: MlflowClient, experiment: str, tag: str, value: str) -> list[Run]:
    return client.search_runs([experiment], filter_string=f"tags.{tag} = '{_quoted(value)}'", max_results=1000)


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")


@dataclass(frozen=True)
class LoggedStudy:
    """A study's parent run as MLflow holds it: what a rerun needs to tell what is left to do."""

    run_id: str
    experiment_id: str
    status: str
    tags: dict[str, str]
    metrics: dict[str, float]
    params: dict[str, str]
    name: str = ""
    """The run's name: the study's name."""
    start_ms: int = 0


@dataclass(frozen=True)
class LoggedTrial:
    """A trial's child run as MLflow holds it, curves included: enough to rebuild the study's history."""

    run_id: str
    number: int
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    curves: dict[str, list[float]]
    """Each per-round curve's values; empty lists when the trials were read without their curves."""
    tags: dict[str, str]
    start_ms: int
    end_ms: int


def _logged_study(run: Run) -> LoggedStudy:
    return LoggedStudy(
        run.info.run_id,
        run.info.experiment_id,
        run.info.status,
        dict(run.data.tags),
        dict(run.data.metrics),
        dict(run.data.params),
        run.info.run_name or "",
        run.info.start_time or 0,
    )


def latest_study(client: MlflowClient, experiment: str, study: str) -> LoggedStudy | None:
    """The newest parent run of the study of this name, or None."""
    found = studies_named(client, experiment, study)
    return _logged_study(found[0]) if found else None


def studies_in(client: MlflowClient, experiment_name: str, study: str) -> list[LoggedStudy]:
    """The parent runs of every study of this name in the experiment of this name, newest first; none
    when the experiment does not exist (it is not created)."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    return [_logged_study(run) for run in studies_named(client, experiment.experiment_id, study)]


def read_study(client: MlflowClient, run_id: str) -> LoggedStudy:
    return _logged_study(client.get_run(run_id))


def find_run(client: MlflowClient, run_id: str) -> LoggedStudy | None:
    """The run ``run_id`` (a study's parent or not), or None when the store has none."""
    try:
        return read_study(client, run_id)
    except MlflowException:
        return None


def is_study(run: LoggedStudy) -> bool:
    """A study's parent run, not a trial's run nor a run of another tool."""
    return MLFLOW_PARENT_RUN_ID not in run.tags and names.SPACE_SHA256 in run.tags


def experiments(client: MlflowClient) -> dict[str, str]:
    """Experiment name -> id, for every experiment of the store."""
    return {e.name: e.experiment_id for e in client.search_experiments()}


def experiment_name(client: MlflowClient, experiment_id: str) -> str:
    return client.get_experiment(experiment_id).name


def study_runs(client: MlflowClient, experiment_ids: Sequence[str]) -> list[LoggedStudy]:
    """The parent runs of the studies in these experiments, newest first."""
    found = client.search_runs(list(experiment_ids), order_by=["attributes.start_time DESC"], max_results=1000)
    return [s for s in map(_logged_study, found) if is_study(s)]


def top_trials(
    client: MlflowClient, study: LoggedStudy, metric: str, greater_is_better: bool, count: int
) -> list[LoggedTrial]:
    """The study's ``count`` best finished trials by ``metric`` (curves not read)."""
    found = client.search_runs(
        [study.experiment_id],
        filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{study.run_id}' and attributes.status = 'FINISHED'",
        order_by=[f"metrics.{metric} {'DESC' if greater_is_better else 'ASC'}"],
        max_results=count,
    )
    return [_logged_trial(client, run, with_curves=False) for run in found]


def curves(client: MlflowClient, run_id: str, keys: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """Each metric's history as (step, value) pairs in step order: a trial's per-round curves."""
    return {
        key: [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
        for key in keys
    }


def download(client: MlflowClient, run_id: str, path: str, destination: Path) -> Path | None:
    """The run's artifact folder ``path`` downloaded under ``destination``, or None when it has none."""
    if not client.list_artifacts(run_id, path):
        return None
    return Path(client.download_artifacts(run_id, path, str(destination)))


def logged_trials(client: MlflowClient, study: LoggedStudy, with_curves: bool = True) -> list[LoggedTrial]:
    """The study's trial runs in trial order, each with its per-round curves unless ``with_curves`` is false
    (one call per curve); runs a dead process left RUNNING are left out (their trial is run again)."""
    trials = [
        _logged_trial(client, run, with_curves)
        for run in child_runs(client, study.experiment_id, study.run_id)
        if run.info.status != "RUNNING" and names.TRIAL_NUMBER in run.data.tags
    ]
    return sorted(trials, key=lambda t: t.number)


def _logged_trial(client: MlflowClient, run: Run, with_curves: bool) -> LoggedTrial:
    keys = [key for key in run.data.metrics if key.endswith("_curve")]
    read = curves(client, run.info.run_id, keys) if with_curves else {}
    return LoggedTrial(
        run_id=run.info.run_id,
        number=int(run.data.tags.get(names.TRIAL_NUMBER, -1)),
        status=run.info.status,
        params=dict(run.data.params),
        metrics={k: v for k, v in run.data.metrics.items() if k not in keys},
        curves={k: rebuilt(read[k]) if read.get(k) else [] for k in keys},
        tags={k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        start_ms=run.info.start_time or 0,
        end_ms=run.info.end_time or 0,
    )
