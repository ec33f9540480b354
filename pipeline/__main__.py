"""Command line: parse arguments, call one function per command, turn known errors into exit codes.

Exit codes: 0 success; 2 invalid input (a study, dataset or space file, or the data); 3 another process
runs the same study; 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import __version__
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.study import StudyResult

# MLflow's HTTP client retries 7 times with exponential backoff (about 4 minutes against a server that is
# down); 4 retries with a 1 s factor give up after about 15 s with a clear error. The user's settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

EXIT_OK, EXIT_FAILURE = 0, 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Hyperparameter search with hyperopt TPE, every trial an MLflow run, the best model "
        "retrained, logged and registered.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_space(commands)
    _add_retrain(commands)
    _add_runs(commands)
    _add_report(commands)
    _add_predict(commands)
    _add_serve(commands)
    _add_promote(commands)
    _add_rollback(commands)
    _add_data(commands)
    return parser


def _add_run(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run a study: search, retrain the best, register it",
        description="Run a study end to end. Defaults come from the study file; flags override it. "
        "An unfinished study of the same name (killed, crashed) is resumed where it stopped; a finished one "
        "with the same inputs is printed as it is (nothing run or registered), extended by a larger "
        "--max-evals, or started anew with --fresh; --continue-from starts a new one knowing an earlier study's "
        "trials. Exit 0 on success, 2 when an input file or the data is "
        "invalid, 3 when another process runs the same study, 1 otherwise.",
    )
    _study(run)
    run.add_argument("--dataset", type=Path, help="dataset file, instead of the study's")
    run.add_argument("--space", type=Path, help="search-space file, instead of the study's")
    run.add_argument("--max-evals", type=int, help="trials in the study, those before a resume included")
    run.add_argument("--seed", type=int, help="seed of the search and of xgboost: same seed, same trials")
    run.add_argument("--study-name", help="name of the study (the parent run's name)")
    _tracking_uri(run)
    run.add_argument("--experiment", help="MLflow experiment name")
    run.add_argument("--model-name", help="registered model name")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long")
    run.add_argument("--patience", type=int, metavar="K", help="stop when the best has not improved for K trials")
    run.add_argument("--metric-threshold", type=float, help="stop once the best validation metric is this good")
    run.add_argument(
        "--pruning",
        action=argparse.BooleanOptionalAction,
        help="stop xgboost trials that trail the median of earlier ones (default: the study's pruning.enabled)",
    )
    run.add_argument(
        "--parallelism",
        type=int,
        default=1,
        metavar="N",
        help="run N trials at once, in worker processes on this machine (cores split between them), or on Spark "
        "with --spark-master",
    )
    run.add_argument(
        "--device", choices=["cpu", "cuda"], help="where xgboost trains: cuda for an NVIDIA GPU (default: the study's)"
    )
    run.add_argument(
        "--spark-master",
        metavar="URL",
        help="run trials on Spark, --parallelism at once: spark://host:7077 for a cluster, local[N] here "
        "(needs pip install 'pipeline[spark]')",
    )
    run.add_argument("--fresh", action="store_true", help="start a new study even if an unfinished one exists")
    run.add_argument(
        "--continue-from",
        metavar="STUDY",
        help="start a new study that already knows the trials of STUDY (a study name: its latest study in the "
        "experiment; or a study's parent run id) that this space can express, without re-running them; "
        "--max-evals more trials run on top. STUDY must have the same data and metric",
    )
    _state_dir(run)
    _json(run)
    _no_progress(run)


def _add_space(commands: Any) -> None:
    space = commands.add_parser(
        "space",
        help="check a search-space file",
        description="Validate a search-space file, print it as compiled and a few sampled configurations "
        "typed as a trial receives them. Exit 0 when valid, 2 otherwise.",
    )
    space.add_argument("action", choices=["check"], help="check: validate the file and print samples")
    space.add_argument("file", type=Path, help="the search-space file")
    space.add_argument("--samples", type=_at_least(0), default=3, help="configurations to sample (default 3)")
    space.add_argument("--seed", type=int, default=0, help="seed of the samples")


def _add_retrain(commands: Any) -> None:
    retrain = commands.add_parser(
        "retrain",
        help="scheduled retraining on the newest month, with a champion/challenger gate",
        description="Run a warm-started study on the monthly window ending at --as-of (test = that month, "
        "validation = the month before, train = the months before that), then promote the new version only if "
        "the gate (retrain.gate: by default a paired-bootstrap interval of its gain) says it beats the champion "
        "on the new test month by the study's margin. Does nothing when the inputs are "
        "unchanged since the last successful retrain. Exit 0 done (promoted, kept or skipped), 2 invalid "
        "input, 3 another retrain holds the lock, 1 failure.",
    )
    _study(retrain)
    retrain.add_argument("--as-of", help="YYYY-MM: the month to test on (default: the newest partition)")
    retrain.add_argument("--max-evals", type=int, help="trials (default: the study's retrain.max_evals)")
    _tracking_uri(retrain)
    _state_dir(retrain)
    _json(retrain)
    _no_progress(retrain)


def _add_runs(commands: Any) -> None:
    runs = commands.add_parser(
        "runs",
        help="list studies and their best trials",
        description="Studies (newest first) with their best validation and test metric and model, and each "
        "study's top trials, from MLflow: a quick look without opening the UI.",
    )
    runs.add_argument("--experiment", help="only this experiment (default: all)")
    runs.add_argument("--top", type=_at_least(1), default=5, help="trials shown per study (default 5)")
    _tracking_uri(runs)


def _add_report(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="rebuild a study's plots and HTML report from MLflow",
        description="Draw a past study's plots (PNG) and one self-contained report.html from MLflow alone, into "
        "--output. Default: the latest finished study of the default study file's experiment. Exit 2 for an "
        "unknown run or experiment.",
    )
    which = report.add_mutually_exclusive_group()
    which.add_argument("--experiment", help="the latest finished study of this experiment")
    which.add_argument("--run-id", help="the study's parent run id (see `runs`)")
    report.add_argument("--output", type=Path, help="folder to write to (default: reports/<parent run id>)")
    _tracking_uri(report)


def _add_predict(commands: Any) -> None:
    predict = commands.add_parser(
        "predict",
        help="score a CSV/Parquet file with a registered model",
        description="Batch scoring: read raw rows, check them against the model's signature, write one "
        "prediction per row (Parquet or CSV by the output's extension) with the model version used.",
    )
    predict.add_argument("--model", required=True, help="models:/NAME@ALIAS or models:/NAME/VERSION")
    predict.add_argument("--input", type=Path, required=True, help="raw rows (.csv or .parquet)")
    predict.add_argument("--output", type=Path, required=True, help="where to write (.csv or .parquet)")
    predict.add_argument(
        "--dataset",
        type=Path,
        help="read a CSV input with this dataset file's read: options (separator, decimal, thousands, encoding, "
        "na_values), as the study read its table",
    )
    _tracking_uri(predict)
    _json(predict)


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a registered model over HTTP (MLflow's scoring server)",
        description="Start MLflow's scoring server for a registered model, in this Python environment (no "
        "activated virtualenv needed). The alias is resolved once: the server keeps the version it started with "
        'until it is restarted. POST raw rows as JSON to /invocations ({"dataframe_records": [{column: value, '
        '...}]} or {"dataframe_split": {"columns": [...], "data": [[...]]}}; null for a missing value); '
        'a regressor answers {"predictions": [number, ...]}, a classifier one {"label": ..., '
        '"probability_<class>": ...} per row. GET /ping answers once it is ready. Ctrl-C or SIGTERM stop it '
        "(exit 0). Exit 2 for an unknown model, alias or version, an invalid study file or a port in use; 1 when "
        "the server fails.",
    )
    model = serve.add_mutually_exclusive_group()
    model.add_argument(
        "--model", help="models:/NAME@ALIAS or models:/NAME/VERSION (default: the study's model_name @champion)"
    )
    model.add_argument(
        "--study", type=Path, help="serve this study file's model @champion (default: studies/flights.yaml)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    serve.add_argument("--port", type=int, default=5001, help="port to listen on (default 5001)")
    serve.add_argument(
        "--workers", type=_at_least(1), metavar="N", help="server processes (default: $MLFLOW_MODELS_WORKERS, else 1)"
    )
    _tracking_uri(serve)


def _add_promote(commands: Any) -> None:
    promote = commands.add_parser(
        "promote",
        help="make a model version the champion (recorded as tags)",
        description="Give the champion alias to a version of a registered model; the version it replaces and the "
        "reason are tagged on both versions, and `rollback` can undo it. Exit 2 for an unknown model or version.",
    )
    promote.add_argument("--model-name", required=True, help="the registered model's name")
    promote.add_argument("--model-version", required=True, metavar="N", help="the version to make champion")
    _tracking_uri(promote)


def _add_rollback(commands: Any) -> None:
    rollback = commands.add_parser(
        "rollback",
        help="give the champion alias back to the previous champion",
        description="Undo the last promotion: the previous champion (from the model's champion_history tag) gets "
        "the champion alias back. Exit 2 when there is no previous champion.",
    )
    rollback.add_argument("--model-name", required=True, help="the registered model's name")
    _tracking_uri(rollback)


def _add_data(commands: Any) -> None:
    data = commands.add_parser("data", help="materialize the bundled flights data under data/")
    data.add_argument("action", choices=["materialize"], help="write data/flights/2013-MM.parquet")
    data.add_argument("--folder", type=Path, default=Path("data/flights"), help="target folder")


def _study(command: argparse.ArgumentParser) -> None:
    command.add_argument("--study", type=Path, help="study file (default: studies/flights.yaml)")


def _at_least(least: int) -> Any:
    """An argparse type: a whole number of at least ``least``; below it, argparse's one-line usage error."""

    def parse(text: str) -> int:
        value = int(text)  # a ValueError is argparse's "invalid int value"
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is too small; give {least} or more")
        return value

    parse.__name__ = "int"
    return parse


def _tracking_uri(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)",
    )


def _state_dir(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--state-dir", type=Path, default=Path(".pipeline"), help="where trial histories and locks live (.pipeline)"
    )


def _json(command: argparse.ArgumentParser) -> None:
    command.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")


def _no_progress(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--no-progress", action="store_true", help="no progress (a bar on a terminal, a log line every few trials)"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A scheduler stops jobs with SIGTERM: unwind like Ctrl-C so the parent run ends KILLED, not RUNNING.
    signal.signal(signal.SIGTERM, _terminated)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "mlflow", "httpx", "hyperopt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # one line per retry; the final error says it all
    # A traceback per failed attempt while the store is away, and hyperopt repeating the error that ends a
    # study: the one-line error printed below says it all.
    for repeating in ("mlflow.store.db.utils", "hyperopt"):
        logging.getLogger(repeating).setLevel(logging.CRITICAL)
    try:
        return COMMANDS[args.command](args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; rerun the same command to resume the study", file=sys.stderr)
        return 130
    except Exception as error:
        if args.verbose or os.environ.get("PIPELINE_DEBUG"):
            raise
        first = str(error).splitlines()[0] if str(error) else ""
        print(f"error: unexpected {type(error).__name__}: {first} (rerun with -v for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    from pipeline import tracking
    from pipeline.reporting import runs
    from pipeline.study import Study

    study = Study.from_file(
        args.study,
        dataset=args.dataset,
        space=args.space,
        max_evals=args.max_evals,
        seed=args.seed,
        study_name=args.study_name,
        experiment=args.experiment,
        model_name=args.model_name,
        timeout=args.timeout,
        patience=args.patience,
        metric_threshold=args.metric_threshold,
        pruning=args.pruning,
        device=args.device,
        tracking_uri=args.tracking_uri,
        parallelism=args.parallelism,
        spark_master=args.spark_master,
        fresh=args.fresh,
        continue_from=args.continue_from,
        state_dir=args.state_dir,
        progress=not args.no_progress,
    )
    result = study.run()
    if result.origin == "unchanged":
        print(f"study {result.study_name} is complete with these inputs ({len(result.trials)} trials): nothing was "
              "run or registered; a larger --max-evals extends it, --fresh starts a new study")  # fmt: skip
    print(_human_summary(result))
    if result.continued_from is not None:
        print(_continuation_line(result))
    print(f"see it: {_where_to_look(result)}")
    client = tracking.connect(result.tracking_uri)
    print(
        "top trials:\n"
        + "\n".join(runs.trial_lines(client, tracking.queries.read_study(client, result.parent_run_id), 5))
    )
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
    return EXIT_OK


def _space(args: argparse.Namespace) -> int:
    from pipeline import spaces
    from pipeline.search import optimizer

    space = spaces.load(args.file)
    print(f"{args.file}: valid (sha256 {space.sha256[:12]})")
    print(space.describe())
    for i, values in enumerate(optimizer.sample(space, args.samples, args.seed)):
        print(f"sample {i}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    return EXIT_OK


def _retrain(args: argparse.Namespace) -> int:
    from pipeline.retrain import retrain
    from pipeline.study import Study

    study = Study.from_file(
        args.study, tracking_uri=args.tracking_uri, state_dir=args.state_dir, progress=not args.no_progress
    )
    result = retrain(study, as_of=args.as_of, max_evals=args.max_evals)
    if result.study is None:
        print(f"retrain as of {result.as_of}: inputs unchanged since run {result.previous_run_id}, skipped")
    else:
        print(_human_summary(result.study))
        print(f"gate: {result.action} ({result.reason})")
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
    return EXIT_OK


def _runs(args: argparse.Namespace) -> int:
    from pipeline import tracking
    from pipeline.reporting import runs

    print(runs.render(tracking.connect(args.tracking_uri), args.experiment, args.top))
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from pipeline import tracking
    from pipeline.reporting import report

    client = tracking.connect(args.tracking_uri)
    run_id = report.find_study(client, args.experiment, args.run_id)
    written = report.build(client, run_id, args.output or Path("reports") / run_id)
    print(f"report of study run {run_id}: {len(written) - 1} plots and {written[-1]}")
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    from pipeline import config, tracking
    from pipeline.model import scoring

    dataset = config.resolve_path(args.dataset, "command line", "--dataset") if args.dataset else None
    read = config.load_dataset(dataset).read if dataset else None
    scored = scoring.score_file(tracking.connect(args.tracking_uri), args.model, args.input, args.output, read)
    print(f"{scored.rows} rows scored with {scored.model_name} version {scored.model_version} -> {scored.output}")
    if args.json:
        print(
            json.dumps(
                {
                    "rows": scored.rows,
                    "model_name": scored.model_name,
                    "model_version": scored.model_version,
                    "output": str(scored.output),
                }
            )
        )
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from pipeline import tracking
    from pipeline.model import server

    uri = tracking.resolve_uri(args.tracking_uri)
    model_uri = args.model or server.default_model_uri(args.study)
    served = server.serve(tracking.connect(uri), model_uri, server.Endpoint(args.host, args.port), uri, args.workers)
    print(f"stopped serving {served.name} version {served.version}")
    return EXIT_OK


def _promote(args: argparse.Namespace) -> int:
    from pipeline import tracking
    from pipeline.model import registry

    previous = registry.promote(
        tracking.connect(args.tracking_uri), args.model_name, args.model_version, "promote command"
    )
    print(f"{args.model_name}: champion is version {args.model_version} (was {previous or 'none'})")
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    from pipeline import tracking
    from pipeline.model import registry

    current, previous = registry.rollback(tracking.connect(args.tracking_uri), args.model_name)
    print(f"{args.model_name}: champion rolled back from version {current} to version {previous}")
    return EXIT_OK


def _data(args: argparse.Namespace) -> int:
    from pipeline.data import materialize_flights

    written = materialize_flights(args.folder)
    print(f"{len(written)} partitions written under {args.folder}")
    return EXIT_OK


def _where_to_look(result: StudyResult) -> str:
    """The command (a local store) or the URL (a server) that shows the study in MLflow's UI."""
    uri = result.tracking_uri
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{result.experiment_id}/runs/{result.parent_run_id}"
    return f"mlflow ui --backend-store-uri {uri}   (then open http://127.0.0.1:5000)"


def _continuation_line(result: StudyResult) -> str:
    """One line: the source study, the trials inherited, and those dropped (the first one's reason)."""
    dropped = result.dropped
    why = f" (e.g. trial {dropped[0].number}: {dropped[0].reason})" if dropped else ""
    return (
        f"continued from study run {result.continued_from}: {result.inherited_trials} trials inherited, "
        f"{len(dropped)} dropped{why}"
    )


def _human_summary(result: StudyResult) -> str:
    from pipeline.reporting.runs import trial_counts

    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best_params.items())
    resumed = f" ({result.resumed_trials} of them before a resume)" if result.resumed_trials else ""
    iteration = f" (best iteration {result.best_iteration})" if result.best_iteration is not None else ""
    return "\n".join(
        [
            f"study {result.study_name}: {trial_counts(result.finished, result.pruned, result.failed)}, "
            f"{result.timings.get('wall_s', 0):.1f} s{resumed}",
            f"stopped: {result.stop_reason}",
            f"best validation {result.metric}: {result.best_value:.4f}{iteration}",
            f"best params: {params}",
            f"test {result.metric}: {result.test_metric:.4f}",
            f"registered: {result.model_uri} (version {result.model_version})",
        ]
    )


COMMANDS = {
    "run": _run,
    "space": _space,
    "retrain": _retrain,
    "runs": _runs,
    "report": _report,
    "predict": _predict,
    "serve": _serve,
    "promote": _promote,
    "rollback": _rollback,
    "data": _data,
}

if __name__ == "__main__":
    sys.exit(main())
