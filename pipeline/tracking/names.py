"""The names a study writes to MLflow: run tags, metrics, artifact folders and model-version tags.

Every module that writes or reads one of them uses the constant, so a rename is one edit and a reader can
grep where each is set and read.
"""

from __future__ import annotations

# Tags of a study's parent run
STUDY = "study"
SPACE_SHA256 = "space_sha256"
DATA_FINGERPRINT = "data_fingerprint"
GIT_COMMIT = "git_commit"
PIPELINE_VERSION = "pipeline_version"
RESUMED = "resumed"
IDENTITY = "identity"
"""JSON of what decides a study's trials (space hash, data fingerprint, seed, metric, algorithm, TPE and
pruning options): a rerun with the same identity continues the study instead of starting another."""
CONTINUED_FROM = "continued_from"
"""The parent run id of the study a continued study (``--continue-from``) inherited its trials from; also
the key of that id in the study's identity."""
INHERITED_TRIALS = "inherited_trials"
"""How many of the source study's trials a continued study inherited."""
DROPPED_TRIALS = "dropped_trials"
"""How many of the source study's trials a continued study left out (failed, or not expressible in its space)."""
BEST_TRIAL_RUN_ID = "best_trial_run_id"
BEST_TRIAL_NUMBER = "best_trial_number"
STOP_REASON = "stop_reason"
MODEL_URI = "model_uri"
MODEL_VERSION = "model_version"
AS_OF = "as_of"
RETRAIN_KEY = "retrain_key"
"""Set once a retrain's gate decided: what the retrain was computed from (its idempotence key)."""
STEP_SEARCH = "step.search"
STEP_MODEL = "step.model"
"""The logged model's URI, once logged: a rerun registers it rather than logging another."""
STEP_REGISTERED = "step.registered"
STEP_VERIFIED = "step.verified"
STEP_ALIASED = "step.aliased"
STEP_REPORT = "step.report"
STEP_DONE = "step.done"
STEPS = (STEP_SEARCH, STEP_MODEL, STEP_REGISTERED, STEP_VERIFIED, STEP_ALIASED, STEP_REPORT, STEP_DONE)
"""The steps after which a study can stop and be resumed, in order, each a tag on the parent run set once
it is done: a rerun resumes at the first step not done and reuses what the earlier ones made."""
STUDY_TRIALS = "study_trials"
"""On a model version: how many trials its study had when it was registered (an extended study registers
a version per extension, all with the same parent run)."""
GATE_PREFIX = "gate_"
FEATURES = "features"
"""The raw columns the model reads, comma-separated; ``features/roles.json`` says why each column is used
or dropped."""

# Tags of a trial's child run
TRIAL_NUMBER = "trial_number"
TRIAL_STATE = "trial_state"
WARM_START = "warm_start"
"""On a trial run: it evaluated a warm-start point. On a study's parent run: the points, as JSON."""
INHERITED_FROM = "inherited_from"
"""On a trial run of a continued study: the run that trained the trial (in the source study, or further
back when that study had inherited it too); the trial was copied, never re-trained."""
ERROR_CLASS = "error_class"
ERROR_MESSAGE = "error_message"
RETIRED_BY = "retired_by"

# Metrics of the parent run
TRIALS_FINISHED = "trials_finished"
TRIALS_FAILED = "trials_failed"
TRIALS_PRUNED = "trials_pruned"
SEARCH_SECONDS = "search_seconds"
SEARCH_TRAIN_SECONDS = "search_train_seconds"
FINAL_TRAIN_SECONDS = "final_train_seconds"
FINAL_ROUNDS = "final_rounds"


def best_val(metric: str) -> str:
    return f"best_val_{metric}"


def test_metric(metric: str) -> str:
    return f"test_{metric}"


# Artifact folders of the parent run
CONFIG_FOLDER = "config"
EVALUATION_FOLDER = "evaluation"
PREPROCESSOR_FOLDER = "preprocessor"
REPORT_FOLDER = "report"
FEATURES_FOLDER = "features"
MODEL_NAME_IN_RUN = "model"

# Tags of a registered model version
PARENT_RUN_ID = "parent_run_id"
VALIDATION_STATUS = "validation_status"
VALIDATION_SECONDS = "validation_seconds"
UNUSABLE_REASON = "unusable_reason"
