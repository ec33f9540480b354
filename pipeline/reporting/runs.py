"""The ``runs`` command and the end-of-run summary: studies and their best trials as plain-text tables.

MLflow is read in a few small functions (:func:`studies`, :func:`top_trials`, :func:`model_aliases`) that fill
plain records (:class:`StudyRow`, :class:`TrialRow`); the tables are drawn from those records alone, at most
``WIDTH`` columns wide, in ASCII without colour or escape codes, so the same text reads in a terminal, a cron
log or a CI transcript.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pipeline import tracking
from pipeline.config import MODEL_KEY
from pipeline.errors import InputError
from pipeline.metrics import METRICS
from pipeline.tracking import Client, names
from pipeline.tracking.queries import LoggedStudy, LoggedTrial

WIDTH = 100
"""Columns a table may use: it reads in a default 100-column terminal and stays unwrapped in most logs."""
GAP = "  "
MIN_WRAPPED = 12
"""A wrapped column is never narrowed below this (a parameter and its value still fit on one line)."""
PRUNED = "PRUNED"


def studies(client: Client, experiment: str | None) -> list[LoggedStudy]:
    """Parent runs (one per study), newest first, of one experiment or of all."""
    known = tracking.queries.experiments(client)
    if experiment is not None and experiment not in known:
        raise InputError(None, "--experiment", f"no experiment {experiment!r}", f"experiments: {', '.join(known)}")
    return tracking.queries.study_runs(client, [known[experiment]] if experiment is not None else list(known.values()))


def top_trials(client: Client, parent: LoggedStudy, count: int) -> list[LoggedTrial]:
    """The study's finished trials, best first by its metric."""
    metric = METRICS[parent.params.get("metric", "rmse")]
    return tracking.queries.top_trials(client, parent, metric.name, metric.greater_is_better, count)


def model_aliases(client: Client, name: str) -> dict[str, list[str]]:
    """The registered model's aliases as they are now, by version (``{"3": ["champion"]}``); empty when the
    model is not (or no longer) registered."""
    return tracking.models.aliases_by_version(client, name)


@dataclass(frozen=True)
class TrialRow:
    """One trial as the tables show it: its searched parameters as logged (strings)."""

    number: str
    value: float | None
    """The validation metric; for a pruned trial its best before it was stopped."""
    seconds: float | None
    status: str
    """FINISHED, PRUNED, FAILED or KILLED."""
    params: dict[str, str]


@dataclass(frozen=True)
class StudyRow:
    """One study (its parent run) as ``runs`` lists it."""

    name: str
    run_id: str
    status: str
    metric: str
    finished: int | None
    """Trials that ran to the end (pruned ones not included); None while the study has not logged its counts."""
    pruned: int | None
    failed: int | None
    best: float | None
    test: float | None
    model: str | None
    version: str | None
    aliases: tuple[str, ...]
    """The aliases that point at this study's version now (they move when a later version is promoted)."""
    trials: list[TrialRow]


def trial_rows(client: Client, parent: LoggedStudy, count: int) -> list[TrialRow]:
    """The study's ``count`` best trials (:func:`top_trials`) as table rows."""
    metric = parent.params.get("metric", "rmse")
    rows = []
    for trial in top_trials(client, parent, count):
        metrics, pruned = trial.metrics, trial.tags.get(names.TRIAL_STATE) == PRUNED
        rows.append(
            TrialRow(
                number=trial.tags.get(names.TRIAL_NUMBER, "?"),
                value=metrics.get(f"{metric}_when_pruned" if pruned else metric),
                seconds=metrics.get("trial_seconds"),
                status=PRUNED if pruned else trial.status,
                params=searched(parent, trial.params),
            )
        )
    return rows


def study_row(
    client: Client, parent: LoggedStudy, count: int, aliases: Callable[[str], Mapping[str, list[str]]]
) -> StudyRow:
    """A study's line in ``runs`` and its top trials; ``aliases`` gives a model's aliases by version."""
    params, metrics, tags = parent.params, parent.metrics, parent.tags
    metric = params.get("metric", "rmse")
    uri, version = tags.get("model_uri"), tags.get("model_version")
    model = params.get("model_name") or (uri.removeprefix("models:/").split("@")[0] if uri else None)
    counted = "trials_finished" in metrics
    finished, pruned = int(metrics.get("trials_finished", 0)), int(metrics.get("trials_pruned", 0))
    return StudyRow(
        name=parent.name,
        run_id=parent.run_id,
        status=parent.status,
        metric=metric,
        finished=finished - pruned if counted else None,
        pruned=pruned if counted else None,
        failed=int(metrics.get("trials_failed", 0)) if counted else None,
        best=metrics.get(f"best_val_{metric}"),
        test=metrics.get(f"test_{metric}"),
        model=model if version else None,
        version=version,
        aliases=tuple(aliases(model).get(version, ())) if model and version else (),
        trials=trial_rows(client, parent, count),
    )


def listing(client: Client, experiment: str | None, count: int) -> list[StudyRow]:
    """Every study of ``experiment`` (or of all), newest first, with its ``count`` best trials; each
    registered model's aliases are read once."""
    known: dict[str, dict[str, list[str]]] = {}

    def aliases(name: str) -> dict[str, list[str]]:
        if name not in known:
            known[name] = model_aliases(client, name)
        return known[name]

    return [study_row(client, parent, count, aliases) for parent in studies(client, experiment)]


def render(client: Client, experiment: str | None, count: int) -> str:
    """What ``python -m pipeline runs`` prints."""
    return format_listing(listing(client, experiment, count))


def trial_lines(client: Client, parent: LoggedStudy, count: int) -> list[str]:
    """The study's top trials as a table (header, rule, rows), best first."""
    return trials_table(trial_rows(client, parent, count), parent.params.get("metric", "rmse"))


def format_listing(rows: Sequence[StudyRow], width: int = WIDTH) -> str:
    """A table of the studies, then each study's run id and top trials; "no studies yet" when empty."""
    if not rows:
        return "no studies yet"
    columns = [
        Column("study", wrap=True),
        Column("status"),
        Column("finished", right=True),
        Column("pruned", right=True),
        Column("failed", right=True),
        Column("best val"),
        Column("test", right=True),
        Column("model version", wrap=True),
        Column("aliases", wrap=True),
    ]
    cells = [
        [
            row.name,
            row.status,
            _count(row.finished),
            _count(row.pruned),
            _count(row.failed),
            f"{row.metric} {_number(row.best)}",
            _number(row.test),
            f"{row.model} v{row.version}" if row.model else "-",
            ", ".join(row.aliases) or "-",
        ]
        for row in rows
    ]
    blocks = ["\n".join(["Studies, newest first", *table(columns, cells, width)])]
    for row in rows:
        heading = f"{row.name} (run {row.run_id}): "
        heading += f"top {len(row.trials)} trials by validation {row.metric}" if row.trials else "no finished trial"
        blocks.append("\n".join([heading, *trials_table(row.trials, row.metric, width)]))
    return "\n\n".join(blocks)


def trials_table(rows: Sequence[TrialRow], metric: str, width: int = WIDTH) -> list[str]:
    """Trial number, metric, duration, status and searched parameters (wrapped to fit), one row per trial."""
    if not rows:
        return []
    columns = [
        Column("trial", right=True),
        Column(metric, right=True),
        Column("seconds", right=True),
        Column("status"),
        Column("parameters", wrap=True),
    ]
    cells = [
        [
            row.number,
            _number(row.value),
            _number(row.seconds, 3),
            row.status,
            ", ".join(f"{k}={_short(v)}" for k, v in sorted(row.params.items())) or "-",
        ]
        for row in rows
    ]
    return table(columns, cells, width)


def trial_counts(finished: int, pruned: int, failed: int) -> str:
    """The end-of-run count of a study's trials, by how each ended: ``"30 trials: 7 finished, 23 pruned,
    0 failed"``. ``finished`` counts the trials that ran to the end, not the pruned ones."""
    total = finished + pruned + failed
    return f"{total} trial{'' if total == 1 else 's'}: {finished} finished, {pruned} pruned, {failed} failed"


@dataclass(frozen=True)
class Column:
    header: str
    right: bool = False
    """Right-aligned (numbers), else left."""
    wrap: bool = False
    """May be narrowed to fit the width, its cells then wrapped over several lines at spaces."""


def table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int = WIDTH) -> list[str]:
    """Rows under a header and a rule of dashes, columns two spaces apart, no line longer than ``width``
    as long as the columns that do not wrap fit in it (never below ``MIN_WRAPPED`` for those that do).

    Wrapped columns give up width in proportion to what they ask beyond ``MIN_WRAPPED``; a word longer than
    its column is cut across lines rather than overflowing.
    """
    widths = [max([len(column.header), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)]
    excess = sum(widths) + len(GAP) * (len(columns) - 1) - width
    flexible = {i: widths[i] - MIN_WRAPPED for i, c in enumerate(columns) if c.wrap and widths[i] > MIN_WRAPPED}
    spare = sum(flexible.values())
    if excess > 0 and spare:
        cut = min(excess, spare)
        for i, slack in flexible.items():
            widths[i] -= -(-cut * slack // spare)  # ceiling: the cuts together cover the excess
    lines = _cells_line(columns, widths, [[c.header] for c in columns])
    lines += _cells_line(columns, widths, [["-" * w] for w in widths])
    for row in rows:
        wrapped = [
            textwrap.wrap(cell, w, break_on_hyphens=False) or [""] if column.wrap else [cell]
            for column, cell, w in zip(columns, row, widths, strict=True)
        ]
        lines += _cells_line(columns, widths, wrapped)
    return lines


def _cells_line(columns: Sequence[Column], widths: Sequence[int], cells: Sequence[list[str]]) -> list[str]:
    """One table row, over as many lines as its tallest wrapped cell."""
    height = max(len(cell) for cell in cells)
    lines = []
    for line in range(height):
        parts = [
            (text.rjust(w) if column.right else text.ljust(w))
            for column, cell, w in zip(columns, cells, widths, strict=True)
            for text in [cell[line] if line < len(cell) else ""]
        ]
        lines.append(GAP.join(parts).rstrip())
    return lines


def searched(parent: LoggedStudy, params: dict[str, str]) -> dict[str, str]:
    """A trial's parameters less the values its family's space fixes (logged on the parent as
    ``fixed.<family>.<name>``), and less the family itself unless the space has several."""
    family = params.get(MODEL_KEY)
    several = "," in parent.params.get("model_families", "")
    return {
        k: v for k, v in params.items() if f"fixed.{family}.{k}" not in parent.params and (k != MODEL_KEY or several)
    }


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _short(value: str) -> str:
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value
