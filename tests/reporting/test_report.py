"""pipeline.reporting.report: a real small study run in-process on the small flights data (real hyperopt, xgboost and
MLflow store), the report it logs on its parent run, and the same report rebuilt from MLflow alone.

The study is a classification on AUC, maximised, with pruned trials and a conditional parameter; the
regression report (predicted vs actual, residuals) is drawn by the end-to-end studies of tests/e2e."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline.errors import InputError
from pipeline.metrics import BINARY
from pipeline.reporting import report
from pipeline.study import Study

LEAVES = {"distribution": "quniform", "low": 4, "high": 32, "q": 1}
SPACE = {
    "model": "xgboost",
    "parameters": {
        "max_depth": {"distribution": "quniform", "low": 2, "high": 6, "q": 1},
        "learning_rate": {"distribution": "loguniform", "low": 0.3, "high": 1.0},
        "grow_policy": {
            "distribution": "choice",
            "options": ["depthwise", {"value": "lossguide", "parameters": {"max_leaves": LEAVES}}],
        },
        "num_boost_round": 200,
        "early_stopping_rounds": 5,
    },
}
"""Fast xgboost trials (high learning rates stop early) with a choice whose option brings its own parameter."""
TRIALS = 7
PRUNE_EARLY = {"startup_trials": 3, "warmup_rounds": 3, "quantile": 0.5, "fall_margin": 0.0}
"""A median rule from the fourth trial on, after three rounds: some of the trials are pruned."""
TRIAL_PLOTS = {"optimization_history", "parameter_importance", "parallel_coordinates", "slices", "learning_curves"}
PLOTS = TRIAL_PLOTS | {"roc", "calibration", "feature_importance"}


def run_small_study(folder: Path, spec: dict, store_uri: str, **settings) -> dict:
    dataset, space, study = folder / "dataset.yaml", folder / "space.yaml", folder / "study.yaml"
    dataset.write_text(yaml.safe_dump(spec))
    space.write_text(yaml.safe_dump(SPACE))
    names = {"name": folder.name, "experiment": "report", "model_name": folder.name}
    study.write_text(yaml.safe_dump(names | {"dataset": str(dataset), "space": str(space), "seed": 4} | settings))
    return Study.from_file(study, tracking_uri=store_uri, state_dir=folder / "state", progress=False).run().to_dict()


@pytest.fixture(scope="module")
def study(tmp_path_factory, flights_tasks, store_uri):
    """The late-arrival study: its summary and a client on its store."""
    settings = {"metric": "auc", "max_evals": TRIALS, "pruning": PRUNE_EARLY, "train_curves": True}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        summary = run_small_study(tmp_path_factory.mktemp("late"), flights_tasks.spec(BINARY), store_uri, **settings)
        yield summary, MlflowClient(store_uri)
        mlflow.set_tracking_uri(None)


class Page(HTMLParser):
    """What a browser shows of the report: its images, and its tables as rows of cell texts."""

    def __init__(self, text: str):
        super().__init__()
        self.images: dict[str, bytes] = {}
        self.tables: list[list[list[str]]] = []
        self.row_ids: list[str] = []
        self.spots: dict[str, list[dict[str, str]]] = {}
        """Per image, the tooltip markers laid over it: their tag, link and tooltip text."""
        self._cell: list[str] | None = None
        self._image: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            prefix = "data:image/png;base64,"
            assert attributes["src"].startswith(prefix), "images must be embedded, not linked"
            self._image = attributes["alt"]
            self.images[self._image] = base64.b64decode(attributes["src"].removeprefix(prefix))
            self.spots[self._image] = []
        elif attributes.get("class") == "spot":
            self.spots[self._image].append({"tag": tag, "href": attributes.get("href"), "title": attributes["title"]})
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
            self.row_ids.append(attributes.get("id"))
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    @property
    def summary(self) -> dict[str, str]:
        return dict(self.tables[0])


def logged_report(client: MlflowClient, run_id: str, folder: Path) -> dict[str, bytes]:
    local = Path(client.download_artifacts(run_id, report.ARTIFACT_PATH, str(folder)))
    return {path.name: path.read_bytes() for path in local.iterdir()}


def test_the_study_logs_every_plot_and_a_page_embedding_them(study, tmp_path):
    summary, client = study

    files = logged_report(client, summary["parent_run_id"], tmp_path)

    assert set(files) == {f"{name}.png" for name in PLOTS} | {report.PAGE}
    page = Page(files[report.PAGE].decode("utf-8"))
    assert page.images == {name: data for name, data in files.items() if name.endswith(".png")}
    assert page.summary["registered model"] == f"{summary['model_uri']} (version {summary['model_version']})"
    assert page.summary["test auc"] == f"{summary['test_metric']:.6g}"


def test_the_page_summarises_the_study_and_ranks_its_top_trials(study, tmp_path):
    summary, client = study
    page = Page(logged_report(client, summary["parent_run_id"], tmp_path)[report.PAGE].decode("utf-8"))

    gathered = report.gather(client, summary["parent_run_id"])

    trials = gathered.trials
    assert trials.params == ["grow_policy", "learning_rate", "max_depth", "max_leaves"]  # fixed ones left out
    assert trials.frame["max_leaves"].isna().any()  # depthwise trials have no max_leaves
    pruned = summary["trials_pruned"]
    assert pruned > 0
    assert trials.frame["status"].value_counts().to_dict() == {"FINISHED": TRIALS - pruned, "PRUNED": pruned}
    assert page.summary["trials"] == f"{TRIALS} trials: {TRIALS - pruned} finished, {pruned} pruned, 0 failed"
    assert gathered.best_iteration == summary["best_iteration"]
    assert set(gathered.curves) == {"validation_auc_curve", "train_auc_curve"}, "train_curves: true asked for it"
    best = trials.best
    assert page.summary["best trial"] == f"trial {best['number']}: validation auc {summary['best_val_metric']:.6g}"
    header, *rows = page.tables[1]
    assert header == ["trial", "auc", "status", "duration (s)", *trials.params]
    assert len(rows) == TRIALS - pruned  # pruned trials are not ranked
    values = [float(row[1]) for row in rows]
    assert values == sorted(values, reverse=True) and rows[0][0] == str(best["number"])  # AUC: highest first
    assert [i for i in page.row_ids if i] == [f"trial-{row[0]}" for row in rows]  # what the plots' markers link to


def test_hovering_a_trial_s_point_shows_its_parameters(study, tmp_path):
    summary, client = study
    page = Page(logged_report(client, summary["parent_run_id"], tmp_path)[report.PAGE].decode("utf-8"))
    trials = report.gather(client, summary["parent_run_id"]).trials

    history, slices = page.spots["optimization_history.png"], page.spots["slices.png"]

    assert len(history) == TRIALS  # every trial has a value here: finished, or pruned with its value when stopped
    assert len(slices) >= len(trials.params) * len(trials.finished) - trials.finished[trials.params].isna().sum().sum()
    best = trials.best
    tooltip = next(s for s in history if s["title"].startswith(f"trial {best['number']} "))
    lines = tooltip["title"].splitlines()
    assert lines[0] == f"trial {best['number']} (finished): auc {best['value']:.4g}"
    assert f"learning_rate = {best['learning_rate']:.4g}" in lines
    assert tooltip["tag"] == "a" and tooltip["href"] == f"#trial-{best['number']}"
    pruned = [s for s in history if "(pruned)" in s["title"]]
    assert pruned and all(s["tag"] == "span" and s["href"] is None for s in pruned)  # not in the ranking


def test_the_page_is_one_file_that_needs_nothing_from_the_network(study, tmp_path):
    summary, client = study
    text = logged_report(client, summary["parent_run_id"], tmp_path)[report.PAGE].decode("utf-8")

    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<script" not in text and "@import" not in text and "url(" not in text


def test_rebuilding_from_mlflow_alone_reproduces_the_logged_files(study, tmp_path):
    summary, client = study

    written = report.build(client, summary["parent_run_id"], tmp_path / "rebuilt")

    logged = logged_report(client, summary["parent_run_id"], tmp_path / "logged")
    assert {path.name: path.read_bytes() for path in written} == logged


def test_the_study_asked_for_is_found_or_refused_with_a_clear_error(study):
    summary, client = study
    run_id = summary["parent_run_id"]
    trial = client.get_run(run_id).data.tags["best_trial_run_id"]

    assert report.find_study(client, "report", None) == run_id == report.find_study(client, None, run_id)
    for experiment, asked, message in [
        (None, "0123456789abcdef", "no run '0123456789abcdef'"),
        (None, trial, f"run {trial} is not a study's parent run"),
        ("no-such-experiment", None, "no experiment 'no-such-experiment'"),
        (None, None, "no experiment 'flights-air-time'"),  # the default study's experiment, not in this store
    ]:
        with pytest.raises(InputError, match=message) as raised:
            report.find_study(client, experiment, asked)
        assert raised.value.exit_code == 2


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
@pytest.mark.parametrize("width", [1280, 800])
def test_the_page_fits_the_window_and_its_points_answer_the_pointer(study, tmp_path, width):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'")
    summary, client = study
    logged = Path(client.download_artifacts(summary["parent_run_id"], report.ARTIFACT_PATH, str(tmp_path)))
    best = report.gather(client, summary["parent_run_id"]).trials.best

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto((logged / report.PAGE).as_uri())
            page.screenshot(path=tmp_path / f"report-{width}.png", full_page=True)
            page_width, window = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            spot = page.locator(f'img[alt="optimization_history.png"] ~ .spot[href="#trial-{best["number"]}"]')
            box = spot.bounding_box()
            hit = page.evaluate(
                "([x, y]) => document.elementFromPoint(x, y).getAttribute('title')",
                [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
            )
        finally:
            browser.close()

    assert page_width <= window  # nothing, the trials table included, pushes the page sideways
    assert hit.startswith(f"trial {best['number']} (finished)")
