"""The ``run`` command: config -> data -> features -> search -> finalize, in that order, one way.

Every input is validated (study, dataset, space, the data itself) before the first MLflow write; after
that, the study's parent run ends FAILED (never RUNNING) if anything raises.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
from pydantic import ValidationError

import pipeline
from pipeline import config, data, families, spaces, tracking
from pipeline.config import PartitionSplit, PruningConfig, StudyConfig
from pipeline.errors import InputError, PipelineError, TrackingError
from pipeline.families import TrainingData
from pipeline.features import Preprocessor
from pipeline.metrics import METRICS
from pipeline.model import finalize
from pipeline.search import history, optimizer, spark
from pipeline.search.history import DEFAULT_STATE_DIR
from pipeline.search.loop import (
    RunContext,
    SearchSettings,
    StopRules,
    TrialOutcome,
    outcome_from_history,
    record_from_history,
    run_search,
)
from pipeline.search.pruning import MedianRule

log = logging.getLogger(__name__)

REPO_ROOT = Path(pipeline.__file__).resolve().parent.parent
DEFAULT_STUDY = Path("studies/flights.yaml")
SCHEMA_SAMPLE_ROWS = 2000


@dataclass(frozen=True)
class RunOptions:
    """The ``run`` command's flags; ``None`` means "as the study file says"."""

    study: Path | None = None
    dataset: Path | None = None
    space: Path | None = None
    max_evals: int | None = None
    seed: int | None = None
    study_name: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    model_name: str | None = None
    timeout_s: float | None = None
    metric_threshold: float | None = None
    patience: int | None = None
    pruning: bool | None = None
    """Turns the study's pruning rule on or off."""
    device: str | None = None
    parallelism: int = 1
    """Trials at once; more than one runs them on Spark (local mode unless ``spark_master`` is set)."""
    spark_master: str | None = None
    fresh: bool = False
    """Start a new study even if an unfinished one with this name exists (it is set aside, not deleted)."""
    state_dir: Path = DEFAULT_STATE_DIR
    show_progress: bool = True
    split: PartitionSplit | None = None
    """Replaces the dataset file's split (the monthly windows of ``retrain``)."""
    warm_start: tuple[dict[str, Any], ...] = ()
    """Typed parameters evaluated before TPE proposes any (earlier studies' best trials)."""
    tags: tuple[tuple[str, str], ...] = ()
    """Extra tags on the parent run."""


def default_study_file() -> Path:
    """``studies/flights.yaml`` of the working directory, else the one shipped next to the package."""
    return DEFAULT_STUDY if DEFAULT_STUDY.is_file() else REPO_ROOT / DEFAULT_STUDY


def resolve_study(options: RunOptions) -> tuple[StudyConfig, Path]:
    """The study file with the command-line overrides applied and validated again."""
    if options.parallelism < 1:
        raise InputError("command line", "--parallelism", f"{options.parallelism} trials at once", "give 1 or more")
    study_file = (options.study or default_study_file()).resolve()
    study = config.load_study(study_file)
    overrides = {
        "dataset": options.dataset and options.dataset.resolve(),
        "space": options.space and options.space.resolve(),
        "max_evals": options.max_evals,
        "seed": options.seed,
        "name": options.study_name,
        "experiment": options.experiment,
        "model_name": options.model_name,
        "device": options.device,
    }
    stop = {"timeout_s": options.timeout_s, "metric_threshold": options.metric_threshold, "patience": options.patience}
    merged = study.model_dump() | {k: v for k, v in overrides.items() if v is not None}
    merged["stop"] = merged["stop"] | {k: v for k, v in stop.items() if v is not None}
    if options.pruning is not None:
        merged["pruning"] = merged["pruning"] | {"enabled": options.pruning}
    try:
        return StudyConfig.model_validate(merged), study_file
    except ValidationError as error:
        raise InputError("command line", *config.first_problem(error)) from None


def run_study(options: RunOptions) -> dict[str, Any]:
    """Run one study end to end, or resume the unfinished one of the same name, and return its summary.

    Raises InputError for invalid input, StudyLocked if another process runs the study, PipelineError
    subclasses for the rest.
    """
    started = time.perf_counter()
    study, study_file = resolve_study(options)
    dataset_config = config.load_dataset(study.dataset)
    if options.split is not None:
        dataset_config = dataset_config.model_copy(update={"split": options.split})
    space = spaces.load(study.space)
    dataset = data.load_dataset(dataset_config, study.dataset)
    check_compatible(study, study_file, dataset, space)
    optimizer.algorithm_for(study.algorithm, file=study_file)  # atpe's dependencies, before any write
    folder = history.study_folder(options.state_dir, study.experiment, study.name)
    with history.study_lock(folder, study.name):
        trial_history = history.History(folder / "history.jsonl")
        if options.fresh and trial_history.path.exists():
            set_aside = trial_history.archive(f"abandoned-{int(time.time())}")
            log.info("--fresh: the unfinished study's history was moved to %s", set_aside)
        state = trial_history.read()
        if state is not None:
            _check_resumable(state.study, study, space, dataset)
        summary = _run(study, study_file, dataset, space, trial_history, state, options)
    summary["wall_s"] = round(time.perf_counter() - started, 3)
    return summary


def _run(
    study: StudyConfig,
    study_file: Path,
    dataset: data.Dataset,
    space: spaces.SearchSpace,
    trial_history: history.History,
    state: history.StudyState | None,
    options: RunOptions,
) -> dict[str, Any]:
    metric = METRICS[study.metric]
    data_for_trials = training_data(dataset, space)
    log.info(
        "data: %d train / %d validation / %d test rows, %d raw feature columns, fingerprint %s",
        len(dataset.train),
        len(dataset.validation),
        len(dataset.test),
        len(dataset.feature_columns),
        dataset.fingerprint,
    )

    client = tracking.connect(options.tracking_uri)
    experiment_id = tracking.experiment_id(client, study.experiment)
    provenance = {"space_sha256": space.sha256, "data_fingerprint": dataset.fingerprint, "study": study.name}
    if commit := tracking.git_commit(REPO_ROOT):
        provenance["git_commit"] = commit
    resumed_id = state.study["parent_run_id"] if state is not None else None
    for orphan in tracking.kill_orphaned_parents(client, experiment_id, study.name, keep=resumed_id):
        log.info("marked parent run %s KILLED: its process died and left it RUNNING", orphan)
    past = _reconcile(client, experiment_id, trial_history, state) if state is not None else []
    if resumed_id is not None:
        log.info("resuming study %r (parent run %s) after %d finished trials", study.name, resumed_id, len(past))
        run = tracking.parent_run(resumed_id)
    else:
        tags = provenance | {"pipeline_version": pipeline.__version__} | dict(options.tags)
        run = tracking.parent_run(experiment_id=experiment_id, run_name=study.name, tags=tags)
    with run as parent:
        parent_id = parent.info.run_id
        if resumed_id is None:
            trial_history.start(
                {"parent_run_id": parent_id, "experiment_id": experiment_id, "study": study.name}
                | _resume_identity(study, space, dataset)
            )
            _log_study_inputs(client, parent_id, study, study_file, dataset, space)
        else:
            resumes = int(parent.data.tags.get("resumed", "0")) + 1
            mlflow.set_tags({"resumed": str(resumes), f"resumed_at_trial_{resumes}": str(len(past))})
        settings = SearchSettings(
            max_evals=study.max_evals,
            seed=study.seed,
            algorithm=optimizer.algorithm_for(study.algorithm, study.tpe.model_dump()),
            stop=StopRules(**study.stop.model_dump()),
            pruning=pruning_rule(study.pruning),
            device=study.device,
            parallel=spark.Parallel(options.parallelism, options.spark_master)
            if options.parallelism > 1 or options.spark_master
            else None,
        )
        context = RunContext(client=client, experiment_id=experiment_id, parent_run_id=parent_id, tags=provenance)
        try:
            result = run_search(
                space,
                data_for_trials,
                dataset.task,
                metric,
                settings,
                context,
                trial_history,
                past,
                options.show_progress,
                first=options.warm_start if state is None else (),
            )
        except PipelineError as error:
            if not isinstance(error, TrackingError):
                mlflow.set_tag("stop_reason", str(error)[:5000])
            raise
        best = result.best
        log.info("search stopped: %s", result.stop_reason)
        mlflow.set_tags(
            {"best_trial_run_id": best.run_id, "best_trial_number": str(best.number), "stop_reason": result.stop_reason}
        )
        mlflow.log_metrics(
            {
                f"best_val_{metric.name}": best.value,
                "trials_finished": len(result.finished),
                "trials_failed": len(result.trials) - len(result.finished),
                "trials_pruned": len(result.pruned),
                "search_seconds": result.wall_seconds,
                "search_train_seconds": result.train_seconds,
            }
        )

        final_started = time.perf_counter()
        final = finalize.refit(dataset, best, study.refit_on, study.seed)
        x_test, y_test = dataset.xy("test")
        test_predictions = finalize.predict(final, x_test)
        test_value = metric.score(y_test, test_predictions)
        mlflow.log_metrics(
            {
                f"test_{metric.name}": test_value,
                "final_train_seconds": final.train_seconds,
            }
        )
        if final.rounds is not None:
            mlflow.log_metric("final_rounds", final.rounds)
        finalize.log_evaluation(final, x_test, y_test, test_predictions, metric, study.seed)
        registration = finalize.log_and_register(
            final, x_test, test_predictions, client, study.model_name, tags=provenance | {"parent_run_id": parent_id}
        )
        mlflow.set_tags({"model_uri": registration.uri, "model_version": registration.version})
        finalize_seconds = time.perf_counter() - final_started
    trial_history.archive(parent_id)
    try:
        if study.report:
            from pipeline.reporting import (
                report,  # matplotlib's import (about 1 s) is paid only by a study that gets here
            )

            report.publish(client, parent_id)
    except Exception as error:  # the study is complete and registered; a plot that fails must not undo that
        log.warning("study report not logged (%s: %s); rebuild it: python -m pipeline report --run-id %s",
                    type(error).__name__, error, parent_id)  # fmt: skip

    return {
        "experiment_id": experiment_id,
        "parent_run_id": parent_id,
        "study_name": study.name,
        "trials": len(result.finished),
        "trials_failed": len(result.trials) - len(result.finished),
        "trials_pruned": len(result.pruned),
        "resumed_trials": result.resumed_trials,
        "stop_reason": result.stop_reason,
        "best_params": best.params,
        "best_val_metric": best.value,
        "best_iteration": best.best_iteration,
        "metric": metric.name,
        "test_metric": test_value,
        "model_name": registration.name,
        "model_version": registration.version,
        "model_uri": registration.uri,
        "alias": registration.alias,
        "model_id": registration.model_id,
        "tracking_uri": mlflow.get_tracking_uri(),
        "search_s": round(result.wall_seconds, 3),
        "search_train_s": round(result.train_seconds, 3),
        "finalize_s": round(finalize_seconds, 3),
        "final_train_s": round(final.train_seconds, 3),
    }


RESUME_KEYS = {
    "tpe": "the TPE options",
    "space_sha256": "the space file",
    "data_fingerprint": "the data",
    "seed": "the seed",
    "metric": "the metric",
    "algorithm": "the algorithm",
    "pruning": "the pruning rule",
}


def training_data(dataset: data.Dataset, space: spaces.SearchSpace) -> TrainingData:
    """The training and validation splits with one preprocessor, fitted on training rows only, per encoding
    the space's model families need."""
    features = dataset.config.features
    categorical = list(features.categorical)
    numeric = [c for c in dataset.feature_columns if c not in categorical]
    x_train, y_train = dataset.xy("train")
    x_validation, y_validation = dataset.xy("validation")
    encodings = {families.get(name).encoding for name in space.families}
    preprocessors = {
        e: Preprocessor.fit(x_train, categorical, numeric, features.crossed, encoding=e) for e in encodings
    }
    return TrainingData(x_train, y_train, x_validation, y_validation, preprocessors)


def check_compatible(study: StudyConfig, study_file: Path, dataset: data.Dataset, space: spaces.SearchSpace) -> None:
    """The metric fits the dataset's task, and every family of the space handles that task."""
    metric = METRICS[study.metric]
    if dataset.task.kind not in metric.tasks:
        allowed = ", ".join(name for name, m in METRICS.items() if dataset.task.kind in m.tasks)
        raise InputError(
            study_file, "metric", f"{metric.name} does not apply to a {dataset.task.kind} task", f"allowed: {allowed}"
        )
    if study.device != "cpu" and not any(families.get(n).placed({}, study.device) for n in space.families):
        raise InputError(
            study_file, "device", f"no model family of {space.file.name} trains on {study.device}", "use device: cpu"
        )
    for name in space.families:
        if dataset.task.kind not in families.get(name).tasks:
            key = f"models.{name}" if len(space.families) > 1 else "model"
            raise InputError(
                space.file,
                key,
                f"{name} does not handle a {dataset.task.kind} task",
                f"it handles: {', '.join(families.get(name).tasks)}",
            )


def pruning_rule(config: PruningConfig) -> MedianRule | None:
    return MedianRule(config.startup_trials, config.warmup_rounds) if config.enabled else None


def _resume_identity(study: StudyConfig, space: spaces.SearchSpace, dataset: data.Dataset) -> dict[str, Any]:
    """What decides which trials a study proposes and how they score: all of it must match to resume."""
    return {
        "space_sha256": space.sha256,
        "data_fingerprint": dataset.fingerprint,
        "seed": study.seed,
        "metric": study.metric,
        "algorithm": study.algorithm,
        "tpe": study.tpe.model_dump(),
        "pruning": study.pruning.model_dump(),
    }


def _check_resumable(saved: dict[str, Any], study: StudyConfig, space, dataset: data.Dataset) -> None:
    """An unfinished study resumes only with what it started with; anything else is a new study."""
    now = _resume_identity(study, space, dataset)
    for key, what in RESUME_KEYS.items():
        if saved.get(key) != now[key]:
            raise InputError(
                None,
                None,
                f"study {study.name!r} has an unfinished run (parent {saved['parent_run_id']}) started with "
                f"different {what} ({saved.get(key)} then, {now[key]} now)",
                "rerun with --fresh to start a new study, or restore what changed to resume it",
            )


def _reconcile(
    client, experiment_id: str, trial_history: history.History, state: history.StudyState
) -> list[TrialOutcome]:
    """Match the history's trials with the parent's child runs: re-log those MLflow lacks, retire torn ones.

    A trial is in the history before its run is written, so MLflow can lack the last few trials (their
    write was queued when the process died) or hold one run RUNNING (killed mid-write): that run is marked
    KILLED and deleted, and the trial logged again in full, so each trial ends with exactly one run.
    """
    parent_id = state.study["parent_run_id"]
    try:
        client.get_run(parent_id)
    except Exception as error:  # a deleted or foreign parent run cannot be resumed
        raise InputError(
            trial_history.path,
            None,
            f"parent run {parent_id} of the unfinished study cannot be read ({type(error).__name__})",
            "rerun with --fresh to start a new study",
        ) from None
    runs = tracking.child_runs(client, experiment_id, parent_id)
    by_number: dict[int, str] = {}
    for run in runs:
        number = int(run.data.tags.get("trial_number", -1))
        if run.info.status == "RUNNING" or number >= len(state.trials) or number in by_number:
            tracking.retire_run(client, run.info.run_id)
            log.info(
                "retired child run %s of trial %d: left RUNNING or duplicated by a dead process",
                run.info.run_id,
                number,
            )
        else:
            by_number[number] = run.info.run_id
    past = []
    for entry in state.trials:
        number = entry["outcome"]["number"]
        run_id = by_number.get(number)
        if run_id is None:
            run_id = tracking.log_trial(client, experiment_id, parent_id, record_from_history(entry))
            trial_history.append_logged(number, run_id)
        past.append(outcome_from_history(entry, run_id))
    return past


def _log_study_inputs(
    client, run_id: str, study: StudyConfig, study_file: Path, dataset: data.Dataset, space: spaces.SearchSpace
) -> None:
    """The study's configuration as params, its three files as artifacts, and the splits as datasets."""
    params = {k: v for k, v in study.model_dump(mode="json").items()}
    params |= {
        "dataset_name": dataset.config.name,
        "target": dataset.config.target,
        "train_rows": len(dataset.train),
        "validation_rows": len(dataset.validation),
        "test_rows": len(dataset.test),
        "dropped_missing_target": dataset.dropped_missing_target,
    }
    params |= {f"fixed.{family}.{k}": v for family in space.families for k, v in space.fixed(family).items()}
    params |= {"model_families": ",".join(space.families), "task": dataset.task.kind}
    tracking.log_params(client, run_id, params)
    for file, folder in ((study_file, "config"), (study.dataset, "config"), (space.file, "config")):
        mlflow.log_artifact(str(file), artifact_path=folder)
    source = str(dataset.config.path)
    for split, context in (("train", "training"), ("validation", "validation"), ("test", "testing")):
        frame = getattr(dataset, split)
        with warnings.catch_warnings():  # a local path matches two of MLflow's source kinds; either is right
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            logged = mlflow.data.from_pandas(
                frame,
                source=source,
                targets=dataset.config.target,
                name=f"{dataset.config.name}-{split}",
                digest=f"{dataset.fingerprint}-{split}",
            )
        # MLflow infers the schema value by value in Python (~1 s per 25k rows of strings); the dtypes of
        # a sample give the same schema.
        logged.schema = tracking.signature(frame.head(SCHEMA_SAMPLE_ROWS)).inputs
        mlflow.log_input(logged, context=context)
