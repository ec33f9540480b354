"""``python -m pipeline serve``: MLflow's real scoring server, started from a virtualenv that is not activated
(no ``uvicorn`` on PATH), real HTTP requests with raw JSON rows, a missing value in every column, the same
predictions as ``mlflow.pyfunc`` in process, and a clean stop on SIGTERM and on Ctrl-C.

The models come from 2-trial studies on two tables of tests/quirks: ``odd_names`` (regression; column names
xgboost refuses, a whole-number column) and ``yes_no`` (binary; Yes/No labels)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from cli import REPO, cli_env, free_port, main_here, write_study
from mlflow.tracking import MlflowClient

from pipeline.model import scoring
from pipeline.study import Study

QUIRKS = REPO / "tests" / "quirks"
NORMAL_ROWS = 3


@dataclass(frozen=True)
class Quirk:
    table: str
    model_name: str
    metric: str

    @property
    def study_file(self) -> str:
        return f"{self.table}/study.yaml"


PRICE = Quirk("odd_names", "quirk-price", "rmse")
CHURN = Quirk("yes_no", "quirk-churn", "auc")


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_store) -> tuple[Path, str]:
    """A working directory whose SQLite store holds version 1 (champion) of each quirk's model."""
    workdir = tmp_path_factory.mktemp("serve")
    uri = new_store(workdir / "mlflow.db")
    for quirk in (PRICE, CHURN):
        (workdir / quirk.table).mkdir()
        study = write_study(workdir / quirk.table, QUIRKS / f"{quirk.table}.yaml", name=quirk.table,
                            experiment=quirk.table, model_name=quirk.model_name, metric=quirk.metric,
                            max_evals=2, seed=0)  # fmt: skip
        Study.from_file(study, tracking_uri=uri, state_dir=workdir / ".pipeline", progress=False).run()
    return workdir, uri


def inactive_venv_env() -> dict[str, str]:
    """The environment of a shell that never activated this virtualenv: no MLflow variables, and a PATH
    without the venv's bin/, so MLflow cannot find ``uvicorn`` by name unless ``serve`` sees to it."""
    env = cli_env(PATH=os.defpath)
    assert shutil.which("uvicorn", path=env["PATH"]) is None
    return env


@dataclass
class Serving:
    process: subprocess.Popen
    port: int
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text()


def launch(workdir: Path, uri: str, *args: str) -> Serving:
    """``python -m pipeline serve`` in the background, on a free port."""
    port = free_port()
    stdout, stderr = workdir / f"serve-{port}.out", workdir / f"serve-{port}.err"
    command = [sys.executable, "-m", "pipeline", "serve", "--port", str(port), "--tracking-uri", uri, *args]
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(command, cwd=workdir, env=inactive_venv_env(), stdout=out, stderr=err, text=True,
                                   preexec_fn=ctrl_c_default)  # fmt: skip
    return Serving(process, port, stdout, stderr)


def ctrl_c_default() -> None:
    """SIGINT at its default in ``serve``, as from a terminal: pytest started in the background by a shell without
    job control inherits SIGINT ignored, and Python then never raises KeyboardInterrupt (the Ctrl-C test hung)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_serving(serving: Serving, timeout: float = 180) -> None:
    """Until ``serve`` says it serves (it does once the server answers /ping)."""
    deadline = time.monotonic() + timeout
    while "serving " not in serving.output():
        if serving.process.poll() is not None or time.monotonic() > deadline:
            serving.process.kill()
            code, log = serving.process.wait(), serving.stderr.read_text()[-3000:]
            raise AssertionError(f"serve did not start (exit {code}): {log}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def servers(store) -> Iterator[dict[str, Serving]]:
    """The regressor served by its study file's name (the champion), the classifier by its alias; both started
    at once (each start is mostly one process importing MLflow and loading a model). Each test stops its own."""
    workdir, uri = store
    started = {
        PRICE.model_name: launch(workdir, uri, "--study", PRICE.study_file),
        CHURN.model_name: launch(workdir, uri, "--model", f"models:/{CHURN.model_name}@champion"),
    }
    try:
        for serving in started.values():
            wait_serving(serving)
        yield started
    finally:
        for serving in started.values():
            if serving.process.poll() is None:
                serving.process.kill()
                serving.process.wait()


def post(port: int, payload: dict) -> list:
    """POST raw JSON to /invocations (no MLflow client in between); the ``predictions`` it returns."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as response:
        assert response.status == 200
        return json.loads(response.read())["predictions"]


def rows_with_gaps(quirk: Quirk, columns: list[str]) -> list[dict]:
    """A few rows of the quirk's table as JSON values, then one row per column with null in that column, then
    a row of nulls only. Whole-number columns stay integers in the JSON, as a client sends them."""
    table = pd.read_csv(QUIRKS / f"{quirk.table}.csv")[columns].dropna().head(NORMAL_ROWS)
    rows = json.loads(table.to_json(orient="records"))
    gaps = [rows[0] | {column: None} for column in columns]
    return rows + gaps + [dict.fromkeys(columns)]


def in_process(uri: str, model_name: str):
    """The served version as ``mlflow.pyfunc`` loads it here, and its raw input columns."""
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{model_name}/1")
    finally:
        mlflow.set_tracking_uri(None)
    return model, list(model.metadata.get_input_schema().input_names())


def stop(serving: Serving, how: signal.Signals, model_name: str) -> None:
    """Signal ``serve``; it must exit 0 having stopped the server: the port closed, no process of it left."""
    serving.process.send_signal(how)
    assert serving.process.wait(timeout=60) == 0
    assert serving.output().strip().splitlines()[-1] == f"stopped serving {model_name} version 1"
    with pytest.raises(OSError):
        post(serving.port, {"dataframe_records": []})
    deadline = time.monotonic() + 10
    while (left := processes_on(serving.port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left


def processes_on(port: int) -> list[str]:
    """Live processes (zombies aside) whose command line names ``--port <port>``: MLflow's command, uvicorn."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # not a process, or one that just ended
            continue
        if state != "Z" and any(a == b"--port" and b == str(port).encode() for a, b in itertools.pairwise(argv)):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def test_a_regressor_serves_rows_with_a_gap_in_every_column_and_stops_on_sigterm(store, servers):
    _, uri = store
    serving = servers[PRICE.model_name]
    try:
        assert f"serving {PRICE.model_name} version 1 (models:/{PRICE.model_name}@champion)" in serving.output()
        model, columns = in_process(uri, PRICE.model_name)
        assert {"size[m2]", "rooms<5]"} <= set(columns)  # names xgboost itself refuses
        rows = rows_with_gaps(PRICE, columns)

        split = {"columns": columns, "data": [[row[c] for c in columns] for row in rows]}
        served = post(serving.port, {"dataframe_split": split})

        assert len(served) == len(rows) and np.isfinite(served).all()
        np.testing.assert_allclose(served, model.predict(pd.DataFrame(rows, columns=columns)), rtol=1e-9)

        numeric = model.unwrap_python_model().preprocessor.numeric[0]
        with pytest.raises(urllib.error.HTTPError) as refused:  # text would otherwise be read as missing
            post(serving.port, {"dataframe_records": [rows[0] | {numeric: "far"}]})
        assert refused.value.code == 400
        assert f"column {numeric} holds text such as 'far'" in refused.value.read().decode()
    finally:
        stop(serving, signal.SIGTERM, PRICE.model_name)


def test_a_classifier_serves_labels_and_probabilities_and_stops_on_ctrl_c(store, servers):
    _, uri = store
    serving = servers[CHURN.model_name]
    try:
        model, columns = in_process(uri, CHURN.model_name)
        rows = rows_with_gaps(CHURN, columns)

        served = pd.DataFrame(post(serving.port, {"dataframe_records": rows}))

        expected = model.predict(pd.DataFrame(rows, columns=columns))
        assert list(served.columns) == ["label", "probability_No", "probability_Yes"] == list(expected.columns)
        assert len(served) == len(rows) and served["label"].isin(["No", "Yes"]).all()
        probabilities = served[["probability_No", "probability_Yes"]].to_numpy()
        assert np.isfinite(probabilities).all() and np.allclose(probabilities.sum(axis=1), 1)
        assert served["label"].tolist() == expected["label"].tolist()
        np.testing.assert_allclose(probabilities, expected[["probability_No", "probability_Yes"]], rtol=1e-9)
    finally:
        stop(serving, signal.SIGINT, CHURN.model_name)


def test_an_unknown_alias_is_one_line_and_exit_2_with_nothing_started(store):
    """In this process: the alias is refused before anything starts, so there is no process to watch."""
    workdir, uri = store
    port = free_port()
    done = main_here(workdir, "serve", "--model", f"models:/{PRICE.model_name}@nobody", "--tracking-uri", uri,
                     "--port", str(port))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: --model: models:/{PRICE.model_name}@nobody does not exist in the registry; "
        "check the model name and the alias or version"
    ]
    assert not processes_on(port)


@pytest.mark.parametrize("quirk", [PRICE, CHURN], ids=lambda q: q.table)
def test_predict_scores_the_quirk_tables_rows_with_a_gap_in_every_column(store, quirk):
    """The same rows through batch scoring: one prediction per row, none refused for its gaps."""
    workdir, uri = store
    _, columns = in_process(uri, quirk.model_name)
    rows = pd.DataFrame(rows_with_gaps(quirk, columns), columns=columns)
    source, target = workdir / f"{quirk.table}-gaps.csv", workdir / f"{quirk.table}-scored.parquet"
    rows.to_csv(source, index=False)

    mlflow.set_tracking_uri(uri)
    try:
        scoring.score_file(MlflowClient(uri), f"models:/{quirk.model_name}@champion", source, target)
    finally:
        mlflow.set_tracking_uri(None)

    scored = pd.read_parquet(target)
    assert len(scored) == len(rows) and (scored["model_version"] == "1").all()
    values = scored.drop(columns="model_version").select_dtypes("number")
    assert np.isfinite(values.to_numpy()).all()
