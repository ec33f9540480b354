"""Where the default study's time goes: training vs everything else.

Runs `python -m pipeline run --json` (the default study unless --study is given) --repeat times in one
fresh temporary directory: the first run creates the SQLite store (as a first run on a new machine does),
later runs reuse it (as a scheduled retrain does). For each run it prints:
- the process wall time (python start-up and imports included) and the study's own wall time;
- time inside xgboost training (every trial plus the final refit);
- the search phase's overhead: search wall time minus training time inside it, as a share;
- the whole command's overhead: process wall time minus all training, as a share.

Then it times what logging one trial costs (create the child run, one batch of params, metrics and a
200-round curve, terminate: what the background writer does per trial), against a SQLite store and
against a local `mlflow server` over HTTP (started here on 127.0.0.1, one worker).

    python benchmarks/overhead.py [--repeat N] [--max-evals N] [--study FILE] [--log-trials N]

One run on a shared machine is noisy: use --repeat and read the median.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(workdir: str, extra: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", "--json", "--no-progress", *extra],
                          cwd=workdir, env=env, capture_output=True, text=True, check=False)  # fmt: skip
    process_s = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"study failed ({done.returncode}):\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["process_s"] = process_s
    return summary


def trial_logging_ms(uri: str, trials: int) -> list[float]:
    """Milliseconds to log each of ``trials`` trial runs under one parent, as the study's writer does."""
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # as the CLI sets it
    from pipeline import tracking
    from pipeline.search.trial import TrialRecord, now_ms

    client = tracking.connect(uri)
    experiment = tracking.experiment_id(client, "overhead")
    parent = client.create_run(experiment).info.run_id
    params = {"max_depth": 7, "learning_rate": 0.05, "subsample": 0.8, "colsample_bytree": 0.7,
              "min_child_weight": 3.0, "reg_alpha": 0.1, "reg_lambda": 1.0, "gamma": 0.01}  # fmt: skip
    timings = []
    for number in range(trials):
        record = TrialRecord(number, params, {"rmse": 10.8, "train_seconds": 1.0, "best_iteration": 150},
                             {"validation_rmse_curve": [12 - i / 100 for i in range(200)]},
                             {"space_sha256": "x" * 64}, start_ms=now_ms(), end_ms=now_ms())  # fmt: skip
        started = time.perf_counter()
        tracking.log_trial(client, experiment, parent, record)
        timings.append(1000 * (time.perf_counter() - started))
    return timings


def local_server(folder: str) -> tuple[str, subprocess.Popen]:
    """A `mlflow server` on a free 127.0.0.1 port over a SQLite file in ``folder``, once /health answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/server.db"],
                              cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return f"http://127.0.0.1:{port}", server
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    sys.exit("mlflow server did not answer /health in 2 minutes")


def print_logging_costs(trials: int) -> None:
    folder = tempfile.mkdtemp(prefix="overhead-logging-")
    sqlite = trial_logging_ms(f"sqlite:///{folder}/mlflow.db", trials)
    uri, server = local_server(folder)
    try:
        http = trial_logging_ms(uri, trials)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
    for name, timings in (("SQLite store", sqlite), ("mlflow server over HTTP", http)):
        warm = sorted(timings[1:])  # the first run also creates the experiment's first rows
        print(f"logging one trial, {name}: median {statistics.median(warm):.1f} ms, "
              f"p90 {warm[int(0.9 * (len(warm) - 1))]:.1f} ms over {len(warm)} trials")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--max-evals", type=int)
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "flights.yaml")
    parser.add_argument("--log-trials", type=int, default=50, help="trials logged per store (0 skips that part)")
    args = parser.parse_args()
    extra = ["--study", str(args.study.resolve())]
    if args.max_evals:
        extra += ["--max-evals", str(args.max_evals)]
    rows = []
    workdir = tempfile.mkdtemp(prefix="overhead-")
    for i in range(args.repeat):
        s = one_run(workdir, extra)
        train = s["search_train_s"] + s["final_train_s"]
        row = {
            "process_s": s["process_s"], "study_wall_s": s["wall_s"], "search_s": s["search_s"],
            "train_s": train, "search_overhead_pct": 100 * (s["search_s"] - s["search_train_s"]) / s["search_s"],
            "study_overhead_pct": 100 * (s["wall_s"] - train) / s["wall_s"],
            "process_overhead_pct": 100 * (s["process_s"] - train) / s["process_s"],
            "per_trial_overhead_ms": 1000 * (s["search_s"] - s["search_train_s"]) / s["trials"],
            "trials": s["trials"], "best_val": s["best_val_metric"], "test": s["test_metric"],
        }  # fmt: skip
        rows.append(row)
        store = "new store" if i == 0 else "existing store"
        print(f"run {i + 1} ({store}): " + ", ".join(f"{k}={v:.4g}" for k, v in row.items()), flush=True)
    if args.repeat > 2:
        warm = rows[1:]
        print(
            "median of runs on an existing store: "
            + ", ".join(f"{k}={statistics.median(r[k] for r in warm):.4g}" for k in warm[0])
        )
    print(f"metric: {s['metric']}; machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    if args.log_trials:
        print_logging_costs(args.log_trials)


if __name__ == "__main__":
    main()
