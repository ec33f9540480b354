"""The e2e studies seen through MLflow's own UI: ``mlflow server`` on their SQLite store, opened in headless
Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright). Each check leaves a screenshot in its ``tmp_path``,
passed or failed, and prints where."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli import free_port, start_server, stop_server

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y --no-install-recommends chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is missing: pip install -e '.[test]' (never `playwright install`: Debian's Chromium is used)",
)
expect = sync_api.expect

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
TIMEOUT_MS = 30_000


def alias(name: str) -> re.Pattern[str]:
    return re.compile(rf"^@\s*{name}$")  # the UI writes an alias as "@&nbsp;champion"


@pytest.fixture(scope="module")
def ui(two_studies) -> Iterator[str]:
    """The base URL of ``mlflow server`` over the e2e studies' own store; the server is killed whatever happens."""
    workdir, _, _ = two_studies
    port = free_port()
    server = start_server(workdir, port, database="mlflow.db")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile, closed (with Playwright's driver) after the module."""
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    """A new tab for each test (the app's files come from the browser's cache after the first)."""
    page = browser.new_page()
    try:
        yield page
    finally:
        page.close()


@contextmanager
def screenshot(page, path: Path) -> Iterator[None]:
    """Screenshot the page after the checks inside, whether they passed or not, and print where it is."""
    try:
        yield
    finally:
        page.screenshot(path=path, full_page=True)
        print(f"screenshot: {path}")


def run_link(page, run_id: str):
    return page.locator(f"a[href$='/runs/{run_id}']")


def test_the_experiment_is_listed(page, ui, two_studies, tmp_path):
    _, (first, _), client = two_studies
    name = client.get_experiment(first["experiment_id"]).name
    page.goto(f"{ui}/#/experiments")
    with screenshot(page, tmp_path / "experiments.png"):
        link = page.get_by_role("link", name=name, exact=True)
        expect(link).to_be_visible()
        expect(link).to_have_attribute("href", f"#/experiments/{first['experiment_id']}")


def test_each_study_is_a_parent_run_with_its_trials_nested_under_it(page, ui, two_studies, tmp_path):
    _, studies, client = two_studies
    experiment_id = studies[0]["experiment_id"]
    trials = {  # parent run id -> {trial run id: run name}
        s["parent_run_id"]: {r.info.run_id: r.info.run_name for r in client.search_runs(
            [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{s['parent_run_id']}'")}
        for s in studies
    }  # fmt: skip
    page.goto(f"{ui}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    with screenshot(page, tmp_path / "runs.png"):
        total = len(studies) + sum(map(len, trials.values()))
        expect(page.get_by_text(f"{total} matching runs")).to_be_visible()
        for summary, children in zip(studies, trials.values(), strict=True):
            assert len(children) == summary["trials"]
            expect(run_link(page, summary["parent_run_id"])).to_have_text(summary["study_name"])
            for child_id in children:
                expect(run_link(page, child_id)).to_have_count(0)  # folded under its parent

        first, second = trials
        page.locator(".ag-cell-value", has=run_link(page, first)).get_by_role("button").click()  # the expander

        for child_id, name in trials[first].items():
            expect(run_link(page, child_id)).to_have_text(name)
        for child_id in trials[second]:
            expect(run_link(page, child_id)).to_have_count(0)  # the other study's trials stay folded


def test_the_registered_model_shows_its_champion_and_challenger_versions(page, ui, two_studies, tmp_path):
    _, (first, second), _ = two_studies
    assert (first["alias"], second["alias"]) == ("champion", "challenger")
    model = first["model_name"]
    # The registry's first visit opens a promotion dialog over the table: close it whenever it is in the way.
    promotion = page.get_by_role("dialog").filter(has_text="Model Registry UI")
    page.add_locator_handler(promotion, lambda dialog: dialog.get_by_role("button", name="Close").click())

    page.goto(f"{ui}/#/models")
    with screenshot(page, tmp_path / "models.png"):
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=model, exact=True))
        row.get_by_role("button", name="+1").click()  # one alias is shown, the other behind "+1"
        for summary in (first, second):
            version = page.locator(f"a[href='#/models/{model}/versions/{summary['model_version']}']")
            expect(version.get_by_text(alias(summary["alias"]))).to_be_visible()

    page.goto(f"{ui}/#/models/{model}")
    with screenshot(page, tmp_path / "model.png"):
        for summary in (first, second):
            name = f"Version {summary['model_version']}"
            version = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
            expect(version.get_by_text(alias(summary["alias"]))).to_be_visible()
