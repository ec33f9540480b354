"""How a study shows its progress: a bar on a terminal, a log line every few trials anywhere else.

A scheduler's log file (cron appending stderr, journald) must read line by line: a progress bar there is
``\\r``-joined redraws. So the bar is drawn only when stderr is a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from tqdm import tqdm

log = logging.getLogger("pipeline.search")

LINES = 10
"""About this many progress lines per study when stderr is not a terminal (and always the last trial)."""


class Progress:
    def __init__(self, total: int, done: int, metric: str, enabled: bool = True, stream: TextIO | None = None):
        stream = stream or sys.stderr
        self.total, self.done, self.metric, self.enabled = total, done, metric, enabled
        self.every = max(1, total // LINES)
        self.bar = (
            tqdm(total=total, initial=done, desc="trials", unit="trial", file=stream, dynamic_ncols=True)
            if enabled and stream.isatty()
            else None
        )

    def update(self, best: float | None) -> None:
        """One more trial finished; ``best`` is the study's best value so far (None while no trial completed)."""
        self.done += 1
        shown = "-" if best is None else f"{best:.4f}"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({f"best {self.metric}": shown}, refresh=False)
        elif self.enabled and (self.done % self.every == 0 or self.done == self.total):
            log.info("trial %d/%d done, best %s so far: %s", self.done, self.total, self.metric, shown)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
