"""Running the real CLI from end-to-end tests: a subprocess in a working directory, no inherited MLflow env;
and a real ``mlflow server`` on 127.0.0.1 for the tests that need one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
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


def main_here(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI's ``main`` in this process, in ``workdir``: what the command prints and its exit code, for checks
    that need no process of their own (a process start costs ~3 s).

    As for :func:`run_cli`, the command sees no MLflow URI this process was pointed at (the store is the one its
    flags or working directory name), ``env`` on top, and configures logging itself (its INFO lines go to the
    stderr returned). The working directory, SIGTERM handler, logging, environment and MLflow's global tracking
    URI are put back after."""
    import contextlib
    import io
    import logging

    import mlflow

    from pipeline.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    before, handler, environ = os.getcwd(), signal.getsignal(signal.SIGTERM), dict(os.environ)
    root = logging.getLogger()
    kept = (root.handlers[:], root.level)
    root.handlers = []  # main's logging.basicConfig adds its own handler, writing to the redirected stderr
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(name, None)
    os.environ.update(env)
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(before)
        signal.signal(signal.SIGTERM, handler)
        root.handlers, _ = kept
        root.setLevel(kept[1])
        mlflow.set_tracking_uri(environ.get("MLFLOW_TRACKING_URI"))  # mlflow.set_tracking_uri sets it too
        os.environ.clear()
        os.environ.update(environ)
    return subprocess.CompletedProcess(["pipeline", *args], code, out.getvalue(), err.getvalue())


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
        "space": str(REPO / "tests" / "spaces" / "xgboost.yaml"),  # fast trials: see that file
        "model_name": "e2e-air-time",
        "metric": "rmse",
        "max_evals": 4,
        "seed": 7,
        "report": False,  # a few seconds of plotting per study; the studies of conftest's two_studies draw it
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, port: int, database: str = "server.db") -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:``port`` over the SQLite file ``folder / database``, once it answers /health.

    One worker and no job runner (a few seconds faster to start and ~3 GB lighter than the defaults). It runs in
    its own process group: end it with :func:`stop_server`, in a ``finally`` or a fixture's teardown.
    """
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / database}",
               "--artifacts-destination", str(folder / "artifacts")]  # fmt: skip
    env = cli_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    server = subprocess.Popen(command, cwd=folder, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise AssertionError("mlflow server did not become healthy in 120 s")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)
