"""What the head-to-head benchmarks (versus.py, quality.py) share: the environment every tool runs in, and the
provenance kept beside their raw trials."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

COMPARED = ("mlflow", "hyperopt", "optuna", "optuna-integration", "xgboost")


def same_environment(threads: int) -> None:
    """Every tool's xgboost fits use ``threads`` (the pipeline reads ``PIPELINE_THREADS``), each run chooses
    its own tracking store, and MLflow draws no progress bars."""
    os.environ["PIPELINE_THREADS"] = str(threads)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"


def provenance(seeds: list[int], trials: int, threads: int, cores: int) -> dict[str, Any]:
    """When, how and with which versions a benchmark ran."""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv,
        "seeds": seeds,
        "trials": trials,
        "threads": threads,
        "cores": cores,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "versions": {package: version(package) for package in COMPARED},
    }


def cli_study(workdir: Path, *arguments: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One ``python -m pipeline run --json --no-progress ARGUMENTS`` in ``workdir`` (its own default store):
    its JSON summary and the lines of its archived history. Exits with the study's stderr if it fails."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [sys.executable, "-m", "pipeline", "run", "--json", "--no-progress", *arguments]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"study failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    archive = next((workdir / ".pipeline").rglob(f"{summary['parent_run_id']}.jsonl"))
    return summary, [json.loads(line) for line in archive.read_text().splitlines()]


def optimize_timed(study: Any, objective: Any, trials: int, callbacks: list[Any], epoch: float) -> tuple[float, dict]:
    """Optuna's ``study.optimize``: its wall seconds, and each trial's end in seconds from ``epoch`` (its
    tracking by ``callbacks`` included)."""
    ends: dict[int, float] = {}

    def stamp(study: Any, trial: Any) -> None:
        ends[trial.number] = time.time() - epoch

    started = time.perf_counter()
    study.optimize(objective, n_trials=trials, callbacks=[*callbacks, stamp])
    return time.perf_counter() - started, ends


def run_quietly(runner: Callable[..., T], workdir: Path, *args: Any) -> T:
    """One run in its own directory (MLflow's default artifact root is ./mlruns), its stderr (MLflow's
    registration messages) kept back and shown only if the run fails."""
    captured = io.StringIO()
    try:
        with contextlib.chdir(workdir), contextlib.redirect_stderr(captured):
            return runner(*args)
    except BaseException:
        sys.stderr.write(captured.getvalue()[-5000:])
        raise
