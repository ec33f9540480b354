"""The ``runs`` command: studies and their best trials in the terminal, a thin layer over MLflow's search."""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.config import MODEL_KEY
from pipeline.errors import InputError
from pipeline.metrics import METRICS


def studies(client: MlflowClient, experiment: str | None) -> list[Run]:
    """Parent runs (one per study), newest first, of one experiment or of all."""
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            names = ", ".join(e.name for e in client.search_experiments())
            raise InputError(None, "--experiment", f"no experiment {experiment!r}", f"experiments: {names}")
        ids = [found.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=1000)
    return [r for r in runs if MLFLOW_PARENT_RUN_ID not in r.data.tags and "space_sha256" in r.data.tags]


def top_trials(client: MlflowClient, parent: Run, count: int) -> list[Run]:
    """The study's finished trials, best first by its metric."""
    metric = parent.data.params.get("metric", "rmse")
    maximise = METRICS[metric].greater_is_better
    trials = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent.info.run_id}' and attributes.status = 'FINISHED'",
        order_by=[f"metrics.{metric} {'DESC' if maximise else 'ASC'}"],
        max_results=count,
    )
    return trials


def render(client: MlflowClient, experiment: str | None, count: int) -> str:
    lines = []
    for parent in studies(client, experiment):
        metric = parent.data.params.get("metric", "rmse")
        best = parent.data.metrics.get(f"best_val_{metric}")
        test = parent.data.metrics.get(f"test_{metric}")
        lines.append(
            f"{parent.info.run_name}  [{parent.info.status}]  run {parent.info.run_id}  "
            f"trials {int(parent.data.metrics.get('trials_finished', 0))}  "
            f"best val {metric} {_number(best)}  test {_number(test)}  "
            f"model {_model(parent)}"
        )
        lines += trial_lines(client, parent, count)
    return "\n".join(lines) if lines else "no studies yet"


def trial_lines(client: MlflowClient, parent: Run, count: int) -> list[str]:
    """The study's top trials, one line each: number, metric, duration, status and searched parameters."""
    metric = parent.data.params.get("metric", "rmse")
    lines = []
    for trial in top_trials(client, parent, count):
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(searched(parent, trial.data.params).items()))
        seconds = trial.data.metrics.get("trial_seconds")
        lines.append(
            f"    trial {trial.data.tags.get('trial_number', '?'):>4}  {metric} "
            f"{_number(trial.data.metrics.get(metric))}  {_number(seconds)} s  {trial.info.status}  {params}"
        )
    return lines


def searched(parent: Run, params: dict[str, str]) -> dict[str, str]:
    """A trial's parameters less the values its family's space fixes (logged on the parent as
    ``fixed.<family>.<name>``), and less the family itself unless the space has several."""
    family = params.get(MODEL_KEY)
    several = "," in parent.data.params.get("model_families", "")
    return {
        k: v
        for k, v in params.items()
        if f"fixed.{family}.{k}" not in parent.data.params and (k != MODEL_KEY or several)
    }


def _model(parent: Run) -> str:
    """The registered version (its alias at registration may have moved since)."""
    uri, version = parent.data.tags.get("model_uri"), parent.data.tags.get("model_version")
    return f"{uri.split('@')[0]} version {version}" if uri and version else "-"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _short(value: str) -> str:
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value
