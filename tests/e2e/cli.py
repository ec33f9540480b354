"""Running the real CLI from end-to-end tests: a subprocess in a working directory, no inherited MLflow env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return env | extra


def run_cli(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=workdir,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def start_cli(workdir: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=workdir,
        env=cli_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def summary_of(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_study(folder: Path, dataset_file: Path, **overrides) -> Path:
    study = {
        "name": "e2e",
        "experiment": "e2e-flights",
        "dataset": str(dataset_file),
        "space": str(REPO / "search_spaces" / "xgboost.yaml"),
        "model_name": "e2e-air-time",
        "metric": "rmse",
        "max_evals": 4,
        "seed": 7,
    } | overrides
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def wait_for_trials(history: Path, count: int, process: subprocess.Popen | None = None, timeout: float = 180) -> None:
    """Block until the study's history file holds ``count`` finished trials."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if history.exists() and history.read_text().count('"type": "trial"') >= count:
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the study ended early ({process.returncode}): {process.stderr.read()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"{history} did not reach {count} trials in {timeout} s")
