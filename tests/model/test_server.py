"""What ``serve`` decides before it starts anything: the model by default, the server's environment and
command, the endpoint. The server itself runs in tests/e2e/test_serve.py."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.errors import InputError
from pipeline.model import server
from pipeline.tracking import models


def test_the_default_model_is_the_default_studys_champion():
    assert server.default_model_uri() == "models:/flights-air-time@champion"


def test_a_study_file_names_the_model_served(tmp_path):
    """Its dataset and space files need not be here: a serving machine may have neither."""
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "mine", "experiment": "mine", "model_name": "my-model",
                                     "dataset": "mine.yaml", "space": "space.yaml"}))  # fmt: skip
    assert server.default_model_uri(study) == "models:/my-model@champion"


def test_an_invalid_study_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"missing\.yaml"):
        server.default_model_uri(tmp_path / "missing.yaml")


def test_the_interpreters_bin_comes_first_on_the_servers_path_and_the_rest_is_kept():
    venv_python = "/srv/app/.venv/bin/python"
    env = server.child_environment(
        {"PATH": "/usr/bin:/srv/app/.venv/bin:/bin", "LANG": "C"}, "sqlite:///m.db", executable=venv_python
    )
    assert env["PATH"] == "/srv/app/.venv/bin:/usr/bin:/bin"
    assert env["LANG"] == "C" and env["MLFLOW_TRACKING_URI"] == "sqlite:///m.db"
    assert server.child_environment({}, "sqlite:///m.db", venv_python)["PATH"].split(os.pathsep)[0] == (
        "/srv/app/.venv/bin"
    )


def test_the_bin_is_the_interpreters_folder_as_invoked_not_where_its_link_points():
    """A virtualenv's python is a link to the base interpreter, whose bin/ has no uvicorn."""
    env = server.child_environment({"PATH": "/bin"}, "sqlite:///m.db")
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_mlflow_serves_the_pinned_version_in_this_environment():
    command = models.scoring_server_command("models:/m/3", "127.0.0.1", 5001, None)
    assert command[:5] == [sys.executable, "-m", "mlflow", "models", "serve"]
    assert command[command.index("--env-manager") + 1] == "local"
    assert command[command.index("--model-uri") + 1] == "models:/m/3"
    assert "--workers" not in command  # MLflow's default: $MLFLOW_MODELS_WORKERS, else 1
    assert models.scoring_server_command("models:/m/3", "0.0.0.0", 80, 4)[-2:] == ["--workers", "4"]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:5001/ping"),
        ("0.0.0.0", "http://127.0.0.1:5001/ping"),
        ("::", "http://[::1]:5001/ping"),
    ],
)
def test_a_wildcard_address_is_reached_on_loopback(host, url):
    assert server.Endpoint(host, 5001).url("/ping") == url


def test_a_port_in_use_is_refused_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=rf"--port: http://127\.0\.0\.1:{port} is in use"):
            server.check_endpoint(server.Endpoint("127.0.0.1", port))
    server.check_endpoint(server.Endpoint("127.0.0.1", port))  # closed: free again


@pytest.mark.parametrize("port", [0, 65536])
def test_a_port_out_of_range_is_refused(port):
    with pytest.raises(InputError, match=r"--port: .* is not a TCP port"):
        server.check_endpoint(server.Endpoint("127.0.0.1", port))


def test_an_unknown_host_is_refused():
    with pytest.raises(InputError, match=r"--host: no-such-host\.invalid"):
        server.check_endpoint(server.Endpoint("no-such-host.invalid", 5001))
