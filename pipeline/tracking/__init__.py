"""The only package that talks to MLflow (the served pyfunc model in ``model/serving.py`` aside).

``store``: connecting and experiments; ``runs``: writing trial runs and the study's parent run, clean-up
after a crash; ``queries``: reading studies and their trials back; ``models``: logging, registering and
loading models; ``names``: every tag, metric and folder name written; ``retry``: transient errors and
the grace period.
"""

import os

# Progress bars of artifact downloads would interleave with the study's own on stderr (and fill a notebook).
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Against a tracking server MLflow prints two "View run" links per terminated run: 60 lines for 30 trials.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from mlflow.tracking import MlflowClient as Client

from pipeline.tracking import models, names, queries, retry
from pipeline.tracking.queries import child_runs, runs_tagged, studies_named
from pipeline.tracking.retry import LOCKED_RETRIES
from pipeline.tracking.runs import (
    ParentRun,
    TrialWriter,
    kill_orphaned_parents,
    log_trial,
    open_parent,
    retire_run,
)
from pipeline.tracking.store import (
    connect,
    experiment_id,
    git_commit,
    log_params,
    pointed_at,
    resolve_uri,
    signature,
)

__all__ = [
    "LOCKED_RETRIES",
    "Client",
    "ParentRun",
    "TrialWriter",
    "child_runs",
    "connect",
    "experiment_id",
    "git_commit",
    "kill_orphaned_parents",
    "log_params",
    "log_trial",
    "models",
    "names",
    "open_parent",
    "pointed_at",
    "queries",
    "resolve_uri",
    "retire_run",
    "retry",
    "runs_tagged",
    "signature",
    "studies_named",
]
