"""A local worker process: ``python -m pipeline.search.worker FD``, started by ``local.LocalPool``.

A fresh interpreter that imports the pipeline and nothing of the program that started the study.
multiprocessing's spawn would run the starting script's top level again in every worker (as
``__mp_main__``), so a script or notebook that calls ``Study.run`` without an ``if __name__ == "__main__"``
guard would start its study again in each worker, and the driver would wait forever for workers that died
doing so.

FD is the worker's end of a socket pair whose other end the driver holds. The study's data and the threads per
trial come first on it, and the worker says it is ready; then trials (``local.serve``) until the driver closes
it. Ctrl-C is the driver's to handle: it stops the workers as it leaves.
"""

from __future__ import annotations

import signal
import sys
from multiprocessing.connection import Connection

from pipeline.failpoints import failpoint
from pipeline.search.local import WORKER_START, serve


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(argv[0]))
    failpoint([WORKER_START])
    try:
        data, threads = conn.recv()
        conn.send("ready")
    except (EOFError, OSError):  # the driver left before handing the data over
        return
    serve(conn, data, threads)


if __name__ == "__main__":
    main(sys.argv[1:])
