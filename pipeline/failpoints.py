"""Crash tests' failpoints: a process that kills itself where a test asks, as the OOM killer or a power cut
would. Kept free of heavy imports, so that a trial's worker process can carry one too."""

from __future__ import annotations

import os
import signal
from collections.abc import Collection

FAILPOINT = "PIPELINE_FAILPOINT"


def failpoint(names: Collection[str]) -> None:
    """When ``$PIPELINE_FAILPOINT`` is one of ``names``, the process kills itself with SIGKILL here. Unset, it
    costs one dictionary lookup."""
    target = os.environ.get(FAILPOINT)
    if target and target in names:
        os.kill(os.getpid(), signal.SIGKILL)
