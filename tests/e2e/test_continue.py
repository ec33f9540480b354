"""``run --continue-from`` through the real CLI: a study continued under its own name in an edited space,
killed with ``kill -9`` mid-search, is resumed by the same command, then returned unchanged; a source of
other data is refused with exit 2 and one line, nothing written."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import yaml
from cli import main_here, start_cli, summary_of, wait_for_trials, write_study
from mlflow.tracking import MlflowClient

from pipeline.tracking import names

PARAMETERS = {
    "learning_rate": {"distribution": "loguniform", "low": 0.05, "high": 0.5},
    "num_boost_round": 30,
    "early_stopping_rounds": 5,
}
WIDE = {"model": "xgboost", "parameters": {"max_depth": {"distribution": "quniform", "low": 2, "high": 8, "q": 1}}}
NARROW = {"model": "xgboost", "parameters": {"max_depth": {"distribution": "quniform", "low": 2, "high": 5, "q": 1}}}


def setup(workdir: Path, flights_spec: dict) -> tuple[Path, Path]:
    """A study file on the wide space, and the narrow space file."""
    dataset = workdir / "flights.yaml"
    dataset.write_text(yaml.safe_dump(flights_spec))
    for name, space in (("wide.yaml", WIDE), ("narrow.yaml", NARROW)):
        (workdir / name).write_text(yaml.safe_dump(space | {"parameters": space["parameters"] | PARAMETERS}))
    study = write_study(workdir, dataset, space=str(workdir / "wide.yaml"), seed=3, pruning={"enabled": False})
    return study, workdir / "narrow.yaml"


def test_a_continued_study_killed_mid_search_resumes_then_is_unchanged(tmp_path, flights_spec, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # every study goes to tmp_path's store
    study, narrow = setup(tmp_path, flights_spec)
    store = ("--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    source = summary_of(main_here(tmp_path, "run", "--study", str(study), "--max-evals", "5", "--json",
                                  "--no-progress", *store))  # fmt: skip
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    kept = [r for r in client.search_runs([source["experiment_id"]],
                                          filter_string=f"tags.mlflow.parentRunId = '{source['parent_run_id']}'")
            if int(r.data.params["max_depth"]) <= 5]  # fmt: skip
    assert 0 < len(kept) < 5, "the seed should leave trials on both sides of the cut"
    command = ("run", "--study", str(study), "--space", str(narrow), "--continue-from", "e2e", "--max-evals", "6",
               *store)  # fmt: skip

    process = start_cli(tmp_path, *command, "--no-progress")
    wait_for_trials(tmp_path / ".pipeline" / "e2e-flights" / "e2e" / "history.jsonl", len(kept) + 1, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    done = main_here(tmp_path, *command, "--json", "--no-progress")
    resumed = summary_of(done)
    assert resumed["origin"] == "continued" and resumed["resumed_trials"] >= 1
    assert resumed["continued_from"] == source["parent_run_id"]
    assert resumed["inherited_trials"] == len(kept) and len(resumed["dropped_trials"]) == 5 - len(kept)
    assert resumed["trials"] == len(kept) + 6
    assert f"continued from study run {source['parent_run_id']}: {len(kept)} trials inherited" in done.stdout
    children = client.search_runs([resumed["experiment_id"]],
                                  filter_string=f"tags.mlflow.parentRunId = '{resumed['parent_run_id']}'")  # fmt: skip
    assert sorted(r.data.tags.get(names.INHERITED_FROM, "") for r in children if names.INHERITED_FROM in r.data.tags) \
        == sorted(r.info.run_id for r in kept)  # fmt: skip
    assert len(children) == resumed["trials"] and all(r.info.status == "FINISHED" for r in children)

    again = summary_of(main_here(tmp_path, *command, "--json", "--no-progress"))
    assert again["origin"] == "unchanged" and again["parent_run_id"] == resumed["parent_run_id"]
    assert again["inherited_trials"] == len(kept) and again["model_version"] == resumed["model_version"]


def test_a_source_of_other_data_is_refused_with_exit_2_and_nothing_written(tmp_path, flights_spec, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study, narrow = setup(tmp_path, flights_spec)
    store = ("--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    summary_of(main_here(tmp_path, "run", "--study", str(study), "--max-evals", "1", "--json", "--no-progress", *store))
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(flights_spec | {"split": flights_spec["split"] | {"test": ["2013-04"]}}))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    before = json.dumps(
        [r.info.run_id for r in client.search_runs([e.experiment_id for e in client.search_experiments()])]
    )

    done = main_here(tmp_path, "run", "--study", str(study), "--dataset", str(other), "--space", str(narrow),
                     "--continue-from", "e2e", "--study-name", "other", "--no-progress", *store)  # fmt: skip

    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-2000:]
    assert errors[0].startswith("error: command line: --continue-from: study 'e2e' (parent run ")
    assert "was run on other data" in errors[0] and "Traceback" not in done.stderr
    after = json.dumps(
        [r.info.run_id for r in client.search_runs([e.experiment_id for e in client.search_experiments()])]
    )
    assert after == before
