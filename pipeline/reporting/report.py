"""The study report: the plots of a study and of its final model, and one self-contained HTML page.

Everything is read back from MLflow given the study's parent run (its trials, the best trial's curves, the
final model's logged test predictions), never from the process that ran the study, so a study's report is
drawn the same at the end of ``run`` as by ``python -m pipeline report`` on it months later.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline import config, tracking
from pipeline.config import MODEL_KEY
from pipeline.errors import InputError
from pipeline.metrics import METRICS
from pipeline.reporting import plots, runs
from pipeline.tracking import Client, names
from pipeline.tracking.queries import LoggedStudy, LoggedTrial

ARTIFACT_PATH = "report"
"""Where the report is logged on the study's parent run."""
PAGE = "report.html"
TOP_TRIALS = 10
DPI = 100


@dataclass(frozen=True)
class Evaluation:
    """The final model on the test split, as ``finalize.log_evaluation`` logged it."""

    y_true: np.ndarray
    """Values, or class indices."""
    y_pred: np.ndarray | None
    """Predicted values (regression)."""
    proba: np.ndarray | None
    """One probability column per class, in ``classes`` order (classification)."""
    classes: list[str]
    importance: pd.Series
    """Per raw column, how much the test metric worsens when the column is shuffled."""


@dataclass(frozen=True)
class Study:
    name: str
    target: str
    trials: plots.Trials
    summary: dict[str, str]
    """What the report's summary table shows, in order."""
    curves: dict[str, pd.Series]
    """The best trial's per-round curves by metric name, indexed by round."""
    best_iteration: int | None
    evaluation: Evaluation | None
    """None for a study logged before its final model's test predictions were."""


def find_study(client: Client, experiment: str | None, run_id: str | None) -> str:
    """The parent run id of the study asked for: ``run_id`` itself once checked, else the latest finished
    study of ``experiment`` (default: the default study file's experiment).

    Raises InputError for an unknown run, a run that is not a study's parent, or an experiment without
    a finished study.
    """
    if run_id is not None:
        run = tracking.queries.find_run(client, run_id)
        if run is None:
            raise InputError(None, "--run-id", f"no run {run_id!r} in the tracking store", _LIST_STUDIES)
        if not tracking.queries.is_study(run):
            raise InputError(None, "--run-id", f"run {run_id} is not a study's parent run", _LIST_STUDIES)
        return run_id
    if experiment is None:
        experiment = config.load_study(config.default_study_file()).experiment
    finished = [r for r in runs.studies(client, experiment) if r.status == "FINISHED"]
    if not finished:
        raise InputError(None, "--experiment", f"no finished study in experiment {experiment!r}", _LIST_STUDIES)
    return finished[0].run_id


_LIST_STUDIES = "`python -m pipeline runs` lists the studies and their run ids"


def gather(client: Client, run_id: str) -> Study:
    """Everything the report shows, read from MLflow."""
    parent = tracking.queries.read_study(client, run_id)
    params = parent.params
    metric = METRICS[params["metric"]]
    children = tracking.queries.logged_trials(client, parent, with_curves=False)
    frame, searched = _trial_frame(parent, children), _searched(parent, children)
    trials = plots.Trials(frame, searched, metric.name, metric.greater_is_better)
    best = next((r for r in children if r.run_id == parent.tags.get(names.BEST_TRIAL_RUN_ID)), None)
    curves = _curves(client, best) if best is not None else {}
    best_iteration = best.metrics.get("best_iteration") if best is not None else None
    experiment = tracking.queries.experiment_name(client, parent.experiment_id)
    return Study(
        name=parent.name,
        target=params.get("target", "target"),
        trials=trials,
        summary=_summary(parent, experiment, trials),
        curves=curves,
        best_iteration=None if best_iteration is None else int(best_iteration),
        evaluation=_evaluation(client, run_id),
    )


def write(study: Study, folder: Path) -> list[Path]:
    """Write each plot that applies to the study as PNG, then ``report.html`` embedding them all (with a
    tooltip over each trial's marker); returns the files written, the page last."""
    folder.mkdir(parents=True, exist_ok=True)
    written, spots = [], {}
    for name, _, draw in _plots(study):
        path = folder / f"{name}.png"
        figure = draw()
        figure.savefig(path, dpi=DPI)
        written.append(path)
        spots[name] = plots.hotspots(figure, laid_out=True)
    page = folder / PAGE
    page.write_text(_page(study, written, spots), encoding="utf-8")
    return [*written, page]


def build(client: Client, run_id: str, folder: Path) -> list[Path]:
    return write(gather(client, run_id), folder)


def publish(client: Client, run_id: str) -> None:
    """Build the study's report and log it on its parent run under ``report/``, all files or none: they
    are drawn in a temporary folder and uploaded once every one of them was written."""
    with tempfile.TemporaryDirectory() as tmp:
        build(client, run_id, Path(tmp))
        tracking.runs.log_folder(client, run_id, Path(tmp), ARTIFACT_PATH)


def _plots(study: Study) -> list[tuple[str, str, Callable[[], Figure]]]:
    """File name, heading and drawing of each plot that applies: learning curves only when the best trial
    logged any, the final model's plots only when its test predictions were logged."""
    trials = study.trials
    out: list[tuple[str, str, Callable[[], Figure]]] = [
        ("optimization_history", "Optimization history", partial(plots.optimization_history, trials)),
        ("parameter_importance", "Parameter importance", partial(plots.parameter_importance, trials)),
        ("parallel_coordinates", "Parallel coordinates", partial(plots.parallel_coordinates, trials)),
        ("slices", "Slices", partial(plots.slices, trials)),
    ]
    if study.curves:
        title = f"Learning curves of the best trial ({study.summary['best trial']})"
        shown = plots.curve_metric(study.curves)
        if shown is not None and shown != trials.metric:
            title += f"\nper round in {shown}, the metric early stopping watches"
        curves = partial(plots.learning_curves, study.curves, study.best_iteration, title)
        out.append(("learning_curves", "Learning curves", curves))
    evaluation = study.evaluation
    if evaluation is None:
        return out
    if evaluation.y_pred is not None:
        values = (evaluation.y_true, evaluation.y_pred, study.target)
        out.append(("predicted_vs_actual", "Predicted vs actual", partial(plots.predicted_vs_actual, *values)))
        out.append(("residuals", "Residuals", partial(plots.residuals, *values)))
    elif evaluation.proba is not None:
        classes = (evaluation.y_true, evaluation.proba, evaluation.classes)
        out.append(("roc", "ROC", partial(plots.roc, *classes)))
        out.append(("calibration", "Calibration", partial(plots.calibration, *classes)))
    importance = partial(plots.feature_importance, evaluation.importance, trials.metric, trials.maximize)
    out.append(("feature_importance", "Feature importance", importance))
    return out


def _trial_frame(parent: LoggedStudy, children: list[LoggedTrial]) -> pd.DataFrame:
    """One row per trial run: number, status, metric (a pruned trial's best before it was stopped), duration,
    run id, then its parameters, typed."""
    metric = parent.params["metric"]
    fields = pd.DataFrame(
        [
            {
                "number": run.number,
                "status": plots.PRUNED if run.tags.get(names.TRIAL_STATE) == plots.PRUNED else run.status,
                "value": run.metrics.get(metric, run.metrics.get(f"{metric}_when_pruned", np.nan)),
                "seconds": run.metrics.get("trial_seconds", np.nan),
                "run_id": run.run_id,
            }
            for run in children
        ],
        columns=["number", "status", "value", "seconds", "run_id"],
    )
    params = pd.DataFrame([run.params for run in children], index=fields.index).apply(_typed)
    return pd.concat([fields, params], axis=1).sort_values("number", ignore_index=True)


def _typed(logged: pd.Series) -> pd.Series:
    """A parameter's logged strings as floats when every present one is a number, else as strings."""
    try:
        return logged.astype(float)
    except ValueError:
        return logged.astype(object)


def _searched(parent: LoggedStudy, children: list[LoggedTrial]) -> list[str]:
    """Every parameter some trial searched: the family first when the space has several, then each family's
    parameters together (in the order the families were first tried), so that plots read family by family."""
    order: dict[str, tuple[int, str]] = {}
    families: list[str | None] = []
    for run in sorted(children, key=lambda r: r.number):
        family = run.params.get(MODEL_KEY)
        if family not in families:
            families.append(family)
        for name in runs.searched(parent, run.params):
            order.setdefault(name, (-1 if name == MODEL_KEY else families.index(family), name))
    return sorted(order, key=order.__getitem__)


def _curves(client: Client, trial: LoggedTrial) -> dict[str, pd.Series]:
    """The trial's per-round curves, indexed by round."""
    read = tracking.queries.curves(client, trial.run_id, sorted(trial.curves))
    return {
        key: pd.Series([v for _, v in points], index=[s for s, _ in points], name=key) for key, points in read.items()
    }


def _evaluation(client: Client, run_id: str) -> Evaluation | None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = tracking.queries.download(client, run_id, names.EVALUATION_FOLDER, Path(tmp))
        if folder is None:
            return None
        frame = pd.read_parquet(folder / "test_predictions.parquet")
        logged = json.loads((folder / "feature_importance.json").read_text())
    probabilities = [c for c in frame.columns if c.startswith("probability_")]
    return Evaluation(
        y_true=frame["y_true"].to_numpy(),
        y_pred=frame["y_pred"].to_numpy() if "y_pred" in frame else None,
        proba=frame[probabilities].to_numpy() if probabilities else None,
        classes=[c.removeprefix("probability_") for c in probabilities],
        importance=pd.Series(logged["importance"], dtype=float),
    )


def _summary(parent: LoggedStudy, experiment: str, trials: plots.Trials) -> dict[str, str]:
    metric = trials.metric
    best = trials.best
    tags, metrics = parent.tags, parent.metrics
    started = datetime.fromtimestamp(parent.start_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = {
        "study": f"{parent.name} (experiment {experiment})",
        "parent run": f"{parent.run_id} (started {started})",  # drawn while it runs: its status would change
        "metric": f"{metric}, {trials.direction}",
        "trials": _trial_counts(trials.frame["status"]),
        "stopped": tags.get("stop_reason", "-"),
        "best trial": "-",
        "best parameters": "-",
        f"test {metric}": _number(metrics.get(f"test_{metric}")),
        "registered model": _registered(parent),
    }
    if best is not None:
        summary["best trial"] = f"trial {int(best['number'])}: validation {metric} {best['value']:.6g}"
        shown = {p: best[p] for p in trials.params if pd.notna(best[p])}
        summary["best parameters"] = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()
        )
    return summary


def _registered(parent: LoggedStudy) -> str:
    uri, version = parent.tags.get(names.MODEL_URI), parent.tags.get(names.MODEL_VERSION)
    return f"{uri} (version {version})" if uri else "-"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _trial_counts(statuses: pd.Series) -> str:
    """ "12 trials: 7 finished, 5 pruned, 0 failed", killed ones (runs a dead process left) counted if any."""
    counts = statuses.value_counts()
    text = runs.trial_counts(
        int(counts.get(plots.FINISHED, 0)), int(counts.get(plots.PRUNED, 0)), int(counts.get("FAILED", 0))
    )
    killed = int(counts.get("KILLED", 0))
    return f"{text}, {killed} killed" if killed else text


def _top_trials(trials: plots.Trials) -> pd.DataFrame:
    finished = trials.finished.sort_values("value", ascending=not trials.maximize).head(TOP_TRIALS)
    table = finished[["number", "value", "status", "seconds", *trials.params]]
    return table.rename(columns={"number": "trial", "value": trials.metric, "seconds": "duration (s)"})


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def _top_table(trials: plots.Trials) -> str:
    """The best finished trials as an HTML table, each row's id ``trial-<number>`` (what a plot's marker
    links to), in a box of its own that scrolls sideways when the parameters are too many for the page."""
    top = _top_trials(trials)
    # a long parameter name may break after its underscores, so a column is as wide as its values
    header = "".join(f"<th>{html.escape(str(c)).replace('_', '_<wbr>')}</th>" for c in top.columns)
    rows = "\n".join(
        f'<tr id="trial-{int(row.iloc[0])}">' + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for _, row in top.astype(object).iterrows()
    )
    return f'<div class="scroll">\n<table class="trials">\n<tr>{header}</tr>\n{rows}\n</table>\n</div>'


def _tooltip(trials: plots.Trials, number: int) -> str:
    """A trial as its tooltip shows it: number, status and metric, then each parameter it had."""
    row = trials.frame.loc[trials.frame["number"] == number].iloc[0]
    value = _cell(float(row["value"])) or "none"
    lines = [f"trial {number} ({row['status'].lower()}): {trials.metric} {value}"]
    lines += [f"{p} = {_cell(row[p])}" for p in trials.params if pd.notna(row[p])]
    return "\n".join(lines)


def _figure(study: Study, path: Path, heading: str, spots: list[plots.Hotspot], ranked: set[int]) -> str:
    """A plot as a heading and its embedded PNG, with an invisible marker over each trial's point that shows
    the trial's parameters on hover (the browser's own tooltip: no script) and, for a ranked trial, links to
    its row of the table. Positions are percentages of the image, so they hold at any displayed size."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    marks = []
    for spot in spots:
        tag = "a" if spot.trial in ranked else "span"
        link = f' href="#trial-{spot.trial}"' if spot.trial in ranked else ""
        title = html.escape(_tooltip(study.trials, spot.trial)).replace("\n", "&#10;")
        marks.append(
            f'<{tag}{link} class="spot" style="left:{100 * spot.x:.2f}%;top:{100 * spot.y:.2f}%" '
            f'title="{title}"></{tag}>'
        )
    image = f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'
    return "\n".join([f"<h2>{html.escape(heading)}</h2>", '<div class="plot">', image, *marks, "</div>"])


def _page(study: Study, images: list[Path], spots: dict[str, list[plots.Hotspot]]) -> str:
    summary = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in study.summary.items()
    )
    headings = {name: heading for name, heading, _ in _plots(study)}
    ranked = set(_top_trials(study.trials)["trial"].astype(int))
    figures = "\n".join(_figure(study, path, headings[path.stem], spots.get(path.stem, []), ranked) for path in images)
    title = html.escape(f"Study {study.name}")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ padding: 0.25em 0.8em; text-align: left; border-bottom: 1px solid #ddd; vertical-align: top; }}
table.summary td {{ overflow-wrap: anywhere; }}
.scroll {{ max-width: 100%; overflow-x: auto; margin-bottom: 1.5em; }}
.scroll table {{ margin-bottom: 0; font-size: 0.85em; }}
table.trials th, table.trials td {{ padding: 0.25em 0.6em; white-space: nowrap; }}
table.trials th, table.trials td {{ text-align: right; font-variant-numeric: tabular-nums; }}
table.trials th {{ white-space: normal; vertical-align: bottom; }}
table.trials td:nth-child(3) {{ text-align: left; }}
table.trials tr > :first-child {{ position: sticky; left: 0; background: #fff; }}
table.trials tr:target td {{ background: #fde9e9; }}
.plot {{ position: relative; display: inline-block; max-width: 100%; }}
.plot img {{ display: block; max-width: 100%; }}
.spot {{ position: absolute; width: 12px; height: 12px; margin: -6px 0 0 -6px; border-radius: 50%; }}
.spot:hover {{ box-shadow: 0 0 0 2px #d62728; }}
</style>
</head>
<body>
<h1>{title}</h1>
<table class="summary">
{summary}
</table>
<h2>Top trials</h2>
<p>Hover a point of a trial plot to see that trial's parameters; a ranked trial's point links to its row.</p>
{_top_table(study.trials)}
{figures}
</body>
</html>
"""
