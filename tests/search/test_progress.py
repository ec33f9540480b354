"""pipeline.search.progress: a scheduler's log gets lines, not a redrawn bar."""

from __future__ import annotations

import io
import logging

from pipeline.search.progress import LINES, Progress


def test_off_a_terminal_progress_is_a_log_line_every_few_trials_and_never_a_bar(caplog):
    stream = io.StringIO()  # not a terminal, as cron's log file or journald
    progress = Progress(total=30, done=0, metric="rmse", stream=stream)
    with caplog.at_level(logging.INFO, logger="pipeline.search"):
        for trial in range(30):
            progress.update(None if trial == 0 else 20.0 - trial / 10)
        progress.close()

    assert stream.getvalue() == ""  # no bar, no carriage returns
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == LINES
    assert lines[-1] == "trial 30/30 done, best rmse so far: 17.1000"


def test_a_resumed_study_counts_from_its_past_trials_and_says_when_no_trial_completed_yet(caplog):
    progress = Progress(total=5, done=3, metric="auc", stream=io.StringIO())
    with caplog.at_level(logging.INFO, logger="pipeline.search"):
        progress.update(None)
        progress.update(0.81234)
    assert [r.getMessage() for r in caplog.records] == [
        "trial 4/5 done, best auc so far: -",
        "trial 5/5 done, best auc so far: 0.8123",
    ]


def test_progress_turned_off_says_nothing(caplog):
    progress = Progress(total=4, done=0, metric="rmse", enabled=False, stream=io.StringIO())
    with caplog.at_level(logging.INFO, logger="pipeline.search"):
        for _ in range(4):
            progress.update(1.0)
    assert caplog.records == []
