"""Head to head at equal budget: this pipeline against what a user would otherwise run.

The same task (the default study's data, split and target: `studies/flights.yaml`), the same trial budget,
the same seeds and the same xgboost threads for four tools:

- `pipeline`: `Study.run` as the `run` command calls it (hyperopt TPE, each trial a child run, refit on
  train + validation, log, register, load back), on a fresh temporary SQLite store per run, so tracking and
  registration are in its wall time as a user pays them.
- `optuna`: `TPESampler(seed=seed)` with optuna-integration's `MLflowCallback` (one MLflow run per trial, a
  fresh temporary SQLite store), training xgboost as the pipeline does (its preprocessor: category codes read
  natively by xgboost; hist trees; early stopping on validation RMSE), so only the search and the tracking
  differ from the pipeline.
- `hyperopt-rand`: `hyperopt.rand.suggest`, the same training, no tracking.
- `course`: the MLOps-zoomcamp `hpo.py` pattern users replace: DictVectorizer (one-hot) features, `xgb.train`
  with early stopping, each trial in `mlflow.start_run()` with `log_params` / `log_metric`, hyperopt TPE.

Two spaces: `course` (max_depth 4..100, learning_rate e^-3..1, reg_alpha e^-5..e^-1, reg_lambda e^-6..e^-1,
min_child_weight e^-1..e^3, all log-uniform but max_depth; 1000 rounds, early stopping 50), run by every
tool; `default` (`search_spaces/xgboost.yaml`, translated to Optuna's and hyperopt's APIs), run by all but the
course script, whose space is part of what it is.

Per tool and space, over the seeds: best validation RMSE, test RMSE (March) of the model the tool ends with,
search and total wall time, and the wall time from the tool's start to the end of the first trial at or
below each target RMSE. Tools are interleaved within each seed (their order rotates with the seed), so a
noisy spell on a shared machine hits all of them. Every trial is written to the JSON file after each run.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/versus.py [--seeds 3] [--trials 30] [--threads N] [--target-rmse 11.25]
        [--tools pipeline,optuna,hyperopt-rand,course] [--spaces course,default] [--output FILE] [--quick]

All tools run in this one process after a warm-up (imports and a first SQLite store), so Python imports
are in no tool's time; each run's data reading and feature building are.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import xgboost as xgb
import yaml
from common import optimize_timed, provenance, run_quietly, same_environment
from hyperopt import STATUS_OK, Trials, fmin, hp, rand, space_eval, tpe
from hyperopt.pyll import scope
from mlflow.tracking import MlflowClient
from sklearn.feature_extraction import DictVectorizer
from sklearn.metrics import root_mean_squared_error

from pipeline import config, data
from pipeline.config import MODEL_KEY, PartitionSplit
from pipeline.features import Preprocessor, cross_name
from pipeline.study import Study

try:
    import optuna
    from optuna_integration.mlflow import MLflowCallback
except ImportError as missing:
    sys.exit(
        f"benchmarks/versus.py needs the bench extra, which is not installed ({missing}): pip install -e '.[bench]'"
    )

REPO = Path(__file__).resolve().parents[1]
STUDY_FILE = REPO / "studies" / "flights.yaml"
DEFAULT_SPACE_FILE = REPO / "search_spaces" / "xgboost.yaml"
TOOLS = ("pipeline", "optuna", "hyperopt-rand", "course")
SPACES = ("course", "default")
LABELS = {
    "pipeline": "pipeline (hyperopt TPE, MLflow, registry)",
    "optuna": "Optuna TPE + MLflowCallback",
    "hyperopt-rand": "hyperopt random search, no tracking",
    "course": "course-style script (DictVectorizer, TPE, MLflow)",
}
TEST_MODEL = {
    "pipeline": "registered model: best params refitted on train + validation for the best trial's rounds",
    "optuna": "best params retrained as in the trial (train, early stopping on validation), best iteration",
    "hyperopt-rand": "best params retrained as in the trial (train, early stopping on validation), best iteration",
    "course": "best params retrained the course's way, predicted with all its trees (Booster.predict)",
}


@dataclass(frozen=True)
class Dim:
    """A searched hyperparameter in natural units: ``int`` (uniform integers low..high), ``log``
    (log-uniform) or ``uniform``. Any other value in a space is fixed."""

    kind: str
    low: float
    high: float


COURSE_SPACE: dict[str, Any] = {
    "max_depth": Dim("int", 4, 100),
    "learning_rate": Dim("log", math.exp(-3), 1.0),
    "reg_alpha": Dim("log", math.exp(-5), math.exp(-1)),
    "reg_lambda": Dim("log", math.exp(-6), math.exp(-1)),
    "min_child_weight": Dim("log", math.exp(-1), math.exp(3)),
    "objective": "reg:squarederror",
    "num_boost_round": 1000,
    "early_stopping_rounds": 50,
}
KNOBS = {"num_boost_round": 1000, "early_stopping_rounds": 50}
"""The training loop's settings in a space (the pipeline's names), with its defaults."""


def default_space() -> dict[str, Any]:
    """search_spaces/xgboost.yaml in this file's terms; a distribution without a translation stops here."""
    kinds = {"uniform": "uniform", "loguniform": "log"}
    space: dict[str, Any] = {}
    for name, value in yaml.safe_load(DEFAULT_SPACE_FILE.read_text())["parameters"].items():
        if not isinstance(value, dict):
            space[name] = value
        elif value["distribution"] == "quniform" and value.get("q") == 1:
            space[name] = Dim("int", value["low"], value["high"])
        elif value["distribution"] in kinds:
            space[name] = Dim(kinds[value["distribution"]], value["low"], value["high"])
        else:
            sys.exit(f"{DEFAULT_SPACE_FILE}: {name}: no translation of {value['distribution']} in versus.py")
    return space


def pipeline_space_file(space: dict[str, Any]) -> dict[str, Any]:
    def entry(d: Dim) -> dict[str, Any]:
        if d.kind == "int":
            return {"distribution": "quniform", "low": d.low, "high": d.high, "q": 1}
        return {"distribution": "loguniform" if d.kind == "log" else "uniform", "low": d.low, "high": d.high}

    return {"model": "xgboost", "parameters": {k: entry(v) if isinstance(v, Dim) else v for k, v in space.items()}}


def hyperopt_space(space: dict[str, Any]) -> dict[str, Any]:
    def expression(name: str, d: Dim) -> Any:
        if d.kind == "int":
            return scope.int(hp.quniform(name, d.low, d.high, 1))
        if d.kind == "log":
            return hp.loguniform(name, math.log(d.low), math.log(d.high))
        return hp.uniform(name, d.low, d.high)

    return {k: expression(k, v) if isinstance(v, Dim) else v for k, v in space.items()}


def optuna_params(trial: optuna.Trial, space: dict[str, Any]) -> dict[str, Any]:
    params = {}
    for name, d in space.items():
        if not isinstance(d, Dim):
            params[name] = d
        elif d.kind == "int":
            params[name] = trial.suggest_int(name, int(d.low), int(d.high))
        else:
            params[name] = trial.suggest_float(name, d.low, d.high, log=d.kind == "log")
    return params


@dataclass
class TrialRecord:
    number: int
    val_rmse: float | None
    start_s: float
    """Seconds from the tool's start (before it read the data) to the trial's start."""
    end_s: float
    """... to the trial's end, its tracking included where the tool tracks."""
    params: dict[str, Any]


@dataclass
class RunRecord:
    tool: str
    space: str
    seed: int
    best_val_rmse: float
    test_rmse: float
    search_s: float
    total_s: float
    trials: list[TrialRecord]
    extra: dict[str, Any] = field(default_factory=dict)


class NativeTraining:
    """What the pipeline trains, written out for Optuna and hyperopt-rand: the default study's splits, the
    pipeline's preprocessor (category codes, crossed origin_dest, read natively by xgboost), one pair of
    QuantileDMatrix per max_bin, hist trees, early stopping on validation RMSE."""

    def __init__(self, threads: int):
        dataset_config = config.load_dataset(study_dataset_file())
        dataset = data.load_dataset(dataset_config, study_dataset_file())
        features = dataset_config.features
        categorical = list(features.categorical)
        numeric = [c for c in dataset.feature_columns if c not in categorical]
        x_train, self.y_train = dataset.xy("train")
        x_validation, self.y_validation = dataset.xy("validation")
        x_test, self.y_test = dataset.xy("test")
        self.preprocessor = Preprocessor.fit(x_train, categorical, numeric, features.crossed)
        self.x_train, self.x_validation, self.x_test = map(self.preprocessor.transform, (x_train, x_validation, x_test))
        self.threads = threads
        self._matrices: dict[int, tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix]] = {}

    def matrices(self, max_bin: int) -> tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix]:
        if max_bin not in self._matrices:
            common = {
                "feature_names": self.preprocessor.feature_names,
                "feature_types": self.preprocessor.feature_types,
                "enable_categorical": True,
                "max_bin": max_bin,
            }
            train = xgb.QuantileDMatrix(self.x_train, self.y_train, **common)
            validation = xgb.QuantileDMatrix(self.x_validation, self.y_validation, ref=train, **common)
            self._matrices[max_bin] = (train, validation)
        return self._matrices[max_bin]

    def fit(self, params: dict[str, Any], seed: int) -> xgb.Booster:
        """``booster.best_score`` is the validation RMSE at the best round, as the pipeline reads it."""
        knobs = KNOBS | {k: params[k] for k in KNOBS if k in params}
        booster_params = {k: v for k, v in params.items() if k not in KNOBS}
        train, validation = self.matrices(int(params.get("max_bin", 256)))
        base = {"objective": "reg:squarederror", "tree_method": "hist", "eval_metric": "rmse"}
        return xgb.train(
            base | {"seed": seed, "nthread": self.threads} | booster_params,
            train,
            num_boost_round=int(knobs["num_boost_round"]),
            evals=[(validation, "validation")],
            early_stopping_rounds=int(knobs["early_stopping_rounds"]),
            verbose_eval=False,
        )

    def test_rmse(self, booster: xgb.Booster) -> float:
        predictions = booster.inplace_predict(self.x_test, iteration_range=(0, booster.best_iteration + 1))
        return float(root_mean_squared_error(self.y_test, predictions))


def study_dataset_file() -> Path:
    return config.load_study(STUDY_FILE).dataset


def run_pipeline(
    space_name: str, space: dict[str, Any], seed: int, trials: int, workdir: Path, threads: int
) -> RunRecord:
    if space_name == "default":
        space_file = DEFAULT_SPACE_FILE
    else:
        space_file = workdir / f"{space_name}.yaml"
        space_file.write_text(yaml.safe_dump(pipeline_space_file(space), sort_keys=False))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    study = Study.from_file(
        STUDY_FILE,
        space=space_file,
        max_evals=trials,
        seed=seed,
        tracking_uri=uri,
        state_dir=workdir / ".pipeline",
        progress=False,
    )
    epoch, started = time.time(), time.perf_counter()
    summary = study.run().to_dict()
    total = time.perf_counter() - started
    # Per-trial figures from the trials' child runs, as a user would read them (after the clock stopped).
    runs = MlflowClient(uri).search_runs(
        [summary["experiment_id"]], f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'", max_results=10_000
    )
    records = [
        TrialRecord(
            number=int(r.data.tags["trial_number"]),
            val_rmse=r.data.metrics.get("rmse"),
            start_s=r.info.start_time / 1000 - epoch,
            end_s=r.info.end_time / 1000 - epoch,
            params={k: _number(v) for k, v in r.data.params.items()},
        )
        for r in runs
    ]
    keep = ("wall_s", "search_s", "search_train_s", "finalize_s", "final_train_s", "best_iteration", "model_uri")
    extra = {k: summary[k] for k in keep}
    # The same best parameters trained as the other tools' final models are (January only, early stopping on
    # February), so that the refit on train + validation can be told apart from the search. Off the clock.
    native = NativeTraining(threads)
    best_params = {k: v for k, v in summary["best_params"].items() if k != MODEL_KEY}
    extra["test_rmse_train_only"] = native.test_rmse(native.fit(best_params, seed))
    return RunRecord(
        tool="pipeline",
        space=space_name,
        seed=seed,
        best_val_rmse=summary["best_val_metric"],
        test_rmse=summary["test_metric"],
        search_s=summary["search_s"],
        total_s=total,
        trials=sorted(records, key=lambda t: t.number),
        extra=extra,
    )


def run_optuna(
    space_name: str, space: dict[str, Any], seed: int, trials: int, workdir: Path, threads: int
) -> RunRecord:
    epoch, started = time.time(), time.perf_counter()
    training = NativeTraining(threads)
    tracking = MLflowCallback(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", metric_name="rmse")
    study = optuna.create_study(
        study_name=f"flights-{space_name}", direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed)
    )

    def objective(trial: optuna.Trial) -> float:
        return float(training.fit(optuna_params(trial, space), seed).best_score)

    search, ends = optimize_timed(study, objective, trials, [tracking], epoch)
    best_params = optuna_params(optuna.trial.FixedTrial(study.best_params), space)
    test = training.test_rmse(training.fit(best_params, seed))
    total = time.perf_counter() - started
    records = [
        TrialRecord(t.number, t.value, t.datetime_start.timestamp() - epoch, ends[t.number], t.params)
        for t in study.trials
    ]
    return RunRecord("optuna", space_name, seed, study.best_value, test, search, total, records)


def run_hyperopt_rand(
    space_name: str, space: dict[str, Any], seed: int, trials: int, workdir: Path, threads: int
) -> RunRecord:
    epoch, started = time.time(), time.perf_counter()
    training = NativeTraining(threads)
    search_space = hyperopt_space(space)

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        return {"loss": float(training.fit(params, seed).best_score), "status": STATUS_OK}

    stamped, records = _stamped(objective, epoch)
    search_started = time.perf_counter()
    best = fmin(
        stamped,
        search_space,
        algo=rand.suggest,
        max_evals=trials,
        trials=Trials(),
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
    )
    search = time.perf_counter() - search_started
    test = training.test_rmse(training.fit(space_eval(search_space, best), seed))
    total = time.perf_counter() - started
    best_val = min(r.val_rmse for r in records if r.val_rmse is not None)
    return RunRecord("hyperopt-rand", space_name, seed, best_val, test, search, total, records)


def run_course(
    space_name: str, space: dict[str, Any], seed: int, trials: int, workdir: Path, threads: int
) -> RunRecord:
    """The course's hpo.py, on the study's rows and target; ``nthread`` added so every tool gets the same."""
    epoch, started = time.time(), time.perf_counter()
    dataset_config = config.load_dataset(study_dataset_file())
    features = dataset_config.features
    target = dataset_config.target
    categorical = [*features.categorical, *(cross_name(group) for group in features.crossed)]
    numerical = list(features.numeric or [])

    def read_dataframe(partition: str) -> pd.DataFrame:
        df = pd.read_parquet(dataset_config.path / f"{partition}.parquet")
        df = df[df[target].notna()].copy()
        df[list(features.categorical)] = df[list(features.categorical)].astype(str)
        for group in features.crossed:
            df[cross_name(group)] = df[group].agg("_".join, axis=1)
        return df

    split = dataset_config.split
    assert isinstance(split, PartitionSplit)
    df_train, df_val, df_test = (
        pd.concat(map(read_dataframe, names)) for names in (split.train, split.validation, split.test)
    )
    dv = DictVectorizer()
    X_train = dv.fit_transform(df_train[categorical + numerical].to_dict(orient="records"))
    X_val = dv.transform(df_val[categorical + numerical].to_dict(orient="records"))
    X_test = dv.transform(df_test[categorical + numerical].to_dict(orient="records"))
    y_train, y_val, y_test = (df[target].to_numpy() for df in (df_train, df_val, df_test))
    train = xgb.DMatrix(X_train, label=y_train)
    valid = xgb.DMatrix(X_val, label=y_val)

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    mlflow.set_experiment("nyc-flights-experiment")

    def train_booster(params: dict[str, Any]) -> xgb.Booster:
        return xgb.train(
            params=params,
            dtrain=train,
            num_boost_round=1000,
            evals=[(valid, "validation")],
            early_stopping_rounds=50,
            verbose_eval=False,
        )

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        with mlflow.start_run():
            mlflow.set_tag("model", "xgboost")
            mlflow.log_params(params)
            booster = train_booster(params)
            y_pred = booster.predict(valid)
            rmse = root_mean_squared_error(y_val, y_pred)
            mlflow.log_metric("rmse", rmse)
        return {"loss": rmse, "status": STATUS_OK}

    search_space = {
        "max_depth": scope.int(hp.quniform("max_depth", 4, 100, 1)),
        "learning_rate": hp.loguniform("learning_rate", -3, 0),
        "reg_alpha": hp.loguniform("reg_alpha", -5, -1),
        "reg_lambda": hp.loguniform("reg_lambda", -6, -1),
        "min_child_weight": hp.loguniform("min_child_weight", -1, 3),
        "objective": "reg:squarederror",
        "seed": seed,
        "nthread": threads,
    }
    stamped, records = _stamped(objective, epoch)
    search_started = time.perf_counter()
    best = fmin(
        fn=stamped,
        space=search_space,
        algo=tpe.suggest,
        max_evals=trials,
        trials=Trials(),
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
    )
    search = time.perf_counter() - search_started
    booster = train_booster(space_eval(search_space, best))
    test = float(root_mean_squared_error(y_test, booster.predict(xgb.DMatrix(X_test))))
    total = time.perf_counter() - started
    best_val = min(r.val_rmse for r in records if r.val_rmse is not None)
    return RunRecord("course", space_name, seed, best_val, test, search, total, records)


RUNNERS: dict[str, Callable[..., RunRecord]] = {
    "pipeline": run_pipeline,
    "optuna": run_optuna,
    "hyperopt-rand": run_hyperopt_rand,
    "course": run_course,
}


def _stamped(objective: Callable[[dict[str, Any]], dict[str, Any]], epoch: float):
    """The objective, recording each trial's start, end, loss and parameters (seconds from ``epoch``)."""
    records: list[TrialRecord] = []

    def wrapper(params: dict[str, Any]) -> dict[str, Any]:
        start = time.time() - epoch
        result = objective(params)
        records.append(TrialRecord(len(records), float(result["loss"]), start, time.time() - epoch, dict(params)))
        return result

    return wrapper, records


def _number(text: str) -> Any:
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    return text


def time_to(run: RunRecord, target: float) -> float:
    """Seconds from the tool's start to the end of its first trial at or below ``target``; inf if none."""
    reached = [t.end_s for t in run.trials if t.val_rmse is not None and t.val_rmse <= target]
    return min(reached, default=math.inf)


def warm_up(workdir: Path, threads: int) -> None:
    """Pay once, outside every tool's time, what only the first run in a process would pay: the lazy imports
    behind MLflow's SQLite store (alembic migrations) and xgboost's first training."""
    MlflowClient(f"sqlite:///{workdir / 'warm.db'}").search_experiments()
    x = np.random.default_rng(0).normal(size=(200, 3))
    xgb.train({"nthread": threads}, xgb.DMatrix(x, x[:, 0]), num_boost_round=2)


def check_same_rows(threads: int) -> None:
    """The course script reads the partitions itself: it must get the rows the pipeline uses."""
    native = NativeTraining(threads)
    dataset_config = config.load_dataset(study_dataset_file())
    split = dataset_config.split
    if not isinstance(split, PartitionSplit):
        sys.exit(f"versus.py compares on a partition split; {study_dataset_file()} splits {split.by}")
    for names, y in (
        (split.train, native.y_train),
        (split.validation, native.y_validation),
        (split.test, native.y_test),
    ):
        frames = [pd.read_parquet(dataset_config.path / f"{n}.parquet") for n in names]
        rows = sum(int(f[dataset_config.target].notna().sum()) for f in frames)
        if rows != len(y):
            sys.exit(f"course-style rows for {names}: {rows}, pipeline's: {len(y)}")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _spread(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{_median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _seconds(values: list[float]) -> str:
    """Median seconds over seeds, a seed that never reached counting as infinitely slow."""
    reached = sum(math.isfinite(v) for v in values)
    median = _median(values)
    text = f"{median:.0f} s" if math.isfinite(median) else "not reached"
    return text if reached == len(values) else f"{text} ({reached}/{len(values)} seeds)"


def summary_table(runs: list[RunRecord], targets: list[tuple[str, float]], threads: int, trials: int) -> str:
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        groups.setdefault((run.tool, run.space), []).append(run)
    seeds = sorted({r.seed for r in runs})
    header = ["tool", "space", "best val RMSE", "test RMSE", "search s", "total s"]
    header += [f"time to ≤ {value:.2f} ({name})" for name, value in targets]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for tool in TOOLS:
        for space in SPACES:
            group = groups.get((tool, space))
            if not group:
                continue
            cells = [
                LABELS[tool],
                space,
                _spread([r.best_val_rmse for r in group], 2),
                _spread([r.test_rmse for r in group], 2),
                _spread([r.search_s for r in group], 1),
                _spread([r.total_s for r in group], 1),
                *(_seconds([time_to(r, value) for r in group]) for _, value in targets),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        f"Median (min-max) over seeds {', '.join(map(str, seeds))}; {trials} trials per run; xgboost nthread={threads} "
        f"for every tool; {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{datetime.date.today().isoformat()}. Validation = February, test = March; times are wall seconds "
        "from the tool's start (data reading included), time-to-target up to the end of the first trial at "
        "or below the target. Test RMSE: "
        + "; ".join(f"{t}: {TEST_MODEL[t]}" for t in TOOLS if (t, "course") in groups or (t, "default") in groups)
        + ".",
    ]
    ratios = []
    for space in SPACES:
        pairs = [
            (p.search_s, c.search_s)
            for p in groups.get(("pipeline", space), [])
            for c in groups.get(("course", "course"), [])
            if p.seed == c.seed
        ]
        if pairs:
            ratios.append(f"{space} space {_median([p / c for p, c in pairs]):.2f}x")
    train_only = [
        f"{space} space {_median([r.extra['test_rmse_train_only'] for r in groups[('pipeline', space)]]):.2f}"
        for space in SPACES
        if ("pipeline", space) in groups
    ]
    if train_only:
        notes.append(
            "Pipeline's best parameters trained on January only and scored like Optuna's (median test RMSE): "
            + ", ".join(train_only)
            + "."
        )
    if ratios:
        notes.append(f"Pipeline search wall time / course-style script's (same seed, median): {', '.join(ratios)}.")
    return "\n".join(lines + notes)


def write_json(path: Path, meta: dict[str, Any], runs: list[RunRecord], table: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "runs": [asdict(r) for r in runs], "table": table}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=1, default=str, allow_nan=True))
    tmp.replace(path)


def _quiet() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Booster.predict.*")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("mlflow", "alembic", "pipeline", "hyperopt"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, help="how many seeds, from --first-seed on (default 3)")
    parser.add_argument("--first-seed", type=int, default=42, help="42 is the default study's seed")
    parser.add_argument("--trials", type=int, help="trials per run (default 30, the default study's budget)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, 3 trials unless given")
    parser.add_argument(
        "--threads", type=int, help="xgboost nthread for every tool (default: PIPELINE_THREADS, else every core)"
    )
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {', '.join(TOOLS)}")
    parser.add_argument("--spaces", default=",".join(SPACES), help=f"comma-separated subset of {', '.join(SPACES)}")
    parser.add_argument("--target-rmse", type=float, default=11.25, help="validation RMSE for time-to-target; "
                        "the course-style script's median best is a second target when it runs")  # fmt: skip
    parser.add_argument(
        "--output", type=Path, help="JSON of every trial (default benchmarks/results/versus-<date>.json)"
    )
    args = parser.parse_args()
    seeds = args.seeds or (1 if args.quick else 3)
    trials = args.trials or (3 if args.quick else 30)
    tools = [t for t in args.tools.split(",") if t]
    spaces = [s for s in args.spaces.split(",") if s]
    if unknown := sorted(set(tools) - set(TOOLS)) + sorted(set(spaces) - set(SPACES)):
        parser.error(f"unknown tool or space: {', '.join(unknown)}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = args.threads or int(os.environ.get("PIPELINE_THREADS") or cores)
    same_environment(threads)
    output = args.output or REPO / "benchmarks" / "results" / f"versus-{datetime.date.today().isoformat()}.json"
    _quiet()

    space_defs = {"course": COURSE_SPACE, "default": default_space()}
    combos = [
        (t, s) for s in SPACES if s in spaces for t in TOOLS if t in tools and not (t == "course" and s != "course")
    ]
    seed_list = [args.first_seed + i for i in range(seeds)]
    meta = provenance(seed_list, trials, threads, cores) | {
        "study": str(STUDY_FILE.relative_to(REPO)),
        "test_model": TEST_MODEL,
        "times": "seconds from each tool's start; trial end_s includes the tool's tracking of that trial",
    }
    print(
        f"{len(combos)} runs per seed x {seeds} seeds, {trials} trials each, nthread={threads}; writing {output}",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="versus-"))
    runs: list[RunRecord] = []
    try:
        check_same_rows(threads)
        warm_up(root, threads)
        for i, seed in enumerate(seed_list):
            for tool, space in combos[i % len(combos) :] + combos[: i % len(combos)]:
                workdir = root / f"{tool}-{space}-{seed}"
                workdir.mkdir()
                run = run_quietly(RUNNERS[tool], workdir, space, space_defs[space], seed, trials, workdir, threads)
                if mlflow.active_run() is not None:
                    mlflow.end_run()
                shutil.rmtree(workdir, ignore_errors=True)
                runs.append(run)
                write_json(output, meta, runs, None)
                print(
                    f"seed {seed} {tool:<13} {space:<7}: best val {run.best_val_rmse:.3f}, test {run.test_rmse:.3f}, "
                    f"search {run.search_s:.1f} s, total {run.total_s:.1f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    targets = [("--target-rmse", args.target_rmse)]
    if course := [r.best_val_rmse for r in runs if r.tool == "course"]:
        targets.append(("course-style median best", _median(course)))
    table = summary_table(runs, targets, threads, trials)
    write_json(output, meta, runs, table)
    print()
    print(table)


if __name__ == "__main__":
    main()
