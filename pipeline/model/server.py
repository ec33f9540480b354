"""A registered model over HTTP: MLflow's scoring server, started so that it works from any environment.

``python -m pipeline serve`` resolves the alias once and serves ``models:/NAME/VERSION``, so a promotion
while the server runs cannot change what it answers with (restart it to serve the new champion). MLflow's
server starts ``uvicorn`` by name, which from a virtualenv that is not activated fails with "uvicorn: not
found": the server runs with this interpreter's ``bin/`` first on its PATH. Ctrl-C or SIGTERM stop it:
the server finishes its requests and closes its port before :func:`serve` returns, and on Linux a
``serve`` killed outright (``kill -9``) takes the server down with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline import config
from pipeline.errors import InputError, PipelineError
from pipeline.model.scoring import resolve_version
from pipeline.tracking import Client, models

DEFAULT_ALIAS = "champion"
READY_TIMEOUT_S = 180.0
"""Loading a model can take a while on a busy machine; a server that exits is reported at once."""
STOP_TIMEOUT_S = 30.0
"""How long a stopped server may take to finish its requests and close its port before it is killed."""
PR_SET_PDEATHSIG = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def local_host(self) -> str:
        """The address that reaches the server from this machine (a wildcard address listens on loopback)."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    def url(self, path: str = "") -> str:
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return f"http://{host}:{self.port}{path}"


@dataclass(frozen=True)
class Served:
    name: str
    version: str
    requested: str
    """The URI the user asked for (``models:/NAME@champion``); the server was given the version it named."""
    endpoint: Endpoint

    @property
    def pinned(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def describe(self) -> str:
        return (
            f"serving {self.name} version {self.version} ({self.requested}) at {self.endpoint.url('/invocations')}"
            "; Ctrl-C stops it"
        )


def default_model_uri(study_file: Path | None = None) -> str:
    """``models:/<the study's model_name>@champion``; the study file defaults as for ``run``
    (``studies/flights.yaml`` here, else the shipped one). Raises InputError for an invalid study file."""
    return f"models:/{config.load_study(study_file or config.default_study_file()).model_name}@{DEFAULT_ALIAS}"


def child_environment(
    environ: Mapping[str, str], tracking_uri: str, executable: str = sys.executable
) -> dict[str, str]:
    """``environ`` for the server: the interpreter's ``bin/`` first on PATH (MLflow runs ``uvicorn`` by name;
    ``executable`` is not resolved, since a virtualenv's python links to one outside it) and the tracking
    store the model is read from."""
    bin_dir = str(Path(executable).parent)
    rest = [p for p in environ.get("PATH", os.defpath).split(os.pathsep) if p and p != bin_dir]
    return {**environ, "PATH": os.pathsep.join([bin_dir, *rest]), "MLFLOW_TRACKING_URI": tracking_uri}


def check_endpoint(endpoint: Endpoint) -> None:
    """InputError for a port out of range or one something already listens on (uvicorn would fail after
    the model is loaded, in a traceback)."""
    if not 0 < endpoint.port < 65536:
        raise InputError(None, "--port", f"{endpoint.port} is not a TCP port", "give a port from 1 to 65535")
    try:
        taken = _listening(endpoint)
    except OSError as error:  # an unknown host name
        raise InputError(None, "--host", f"{endpoint.host}: {error}", "give an address of this machine") from None
    if taken:
        raise InputError(
            None, "--port", f"{endpoint.url()} is in use", "stop what listens there or choose another --port"
        )


def serve(
    client: Client,
    model_uri: str,
    endpoint: Endpoint,
    tracking_uri: str,
    workers: int | None = None,
    announce: Callable[[str], None] = lambda line: print(line, flush=True),
) -> Served:
    """Serve the version ``model_uri`` names until Ctrl-C or SIGTERM (as ``KeyboardInterrupt``, which
    ``__main__`` raises for SIGTERM), then return it. ``announce`` gets one line once the server answers.

    Raises InputError (nothing started) for an unknown model, alias or version, or a port in use, and
    PipelineError when the server exits on its own or never answers.
    """
    name, version = resolve_version(client, model_uri)
    served = Served(name, version, model_uri, endpoint)
    check_endpoint(endpoint)
    log.info("starting MLflow's scoring server for %s (%s)", served.pinned, model_uri)
    process = subprocess.Popen(
        models.scoring_server_command(served.pinned, endpoint.host, endpoint.port, workers),
        env=child_environment(os.environ, tracking_uri),
        start_new_session=True,  # Ctrl-C reaches this process only, which stops the server in order
        preexec_fn=_end_with_parent if sys.platform.startswith("linux") else None,
    )
    try:
        _wait_ready(process, endpoint)
        announce(served.describe())
        code = process.wait()
        raise PipelineError(f"MLflow's scoring server for {served.pinned} exited with code {code}; its log is above")
    except KeyboardInterrupt:
        return served
    finally:
        _stop(process, endpoint)


def _wait_ready(process: subprocess.Popen, endpoint: Endpoint) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PipelineError(
                f"MLflow's scoring server exited with code {process.returncode} before it answered; its log is above"
            )
        if _answers(endpoint.url("/ping")):
            return
        time.sleep(0.2)
    raise PipelineError(f"MLflow's scoring server did not answer {endpoint.url('/ping')} in {READY_TIMEOUT_S:.0f} s")


def _stop(process: subprocess.Popen, endpoint: Endpoint) -> None:
    """SIGTERM to the server's session (MLflow's command and uvicorn, which finishes its requests), then wait
    until the port is closed; what still runs after ``STOP_TIMEOUT_S`` is killed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_S)
    while time.monotonic() < deadline and _listening(endpoint):
        time.sleep(0.1)
    if time.monotonic() >= deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _listening(endpoint: Endpoint) -> bool:
    family = socket.AF_INET6 if ":" in endpoint.local_host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(2)
        return sock.connect_ex((endpoint.local_host, endpoint.port)) == 0


def _end_with_parent() -> None:
    """Run in the child before MLflow starts: Linux sends it SIGTERM when this process dies, even by
    ``kill -9`` (MLflow does the same for uvicorn), so no server is left holding the port."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
