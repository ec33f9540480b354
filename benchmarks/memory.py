"""Peak memory of a study against the size of the data it trains on.

Runs, each in a fresh process whose peak resident set size (RSS) the kernel reports when it exits:
- the imports a study needs and nothing else (the floor every study pays);
- `python -m pipeline run` on the default study (or --study), in a new temporary directory.
It prints both, their difference, and the training and validation splits' size: as raw rows (pandas, deep)
and as the encoded float matrices the trials' xgboost matrices are built from.

    python benchmarks/memory.py [--study FILE] [--max-evals N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPORTS = "import mlflow, xgboost, hyperopt, sklearn, pandas, pipeline.run, pipeline.model.finalize"


def peak_rss_mib(command: list[str], cwd: str) -> tuple[float, str]:
    """The command's peak RSS (MiB) from wait4, which reports it for that child alone, and its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            sys.exit(f"{' '.join(command)} failed with exit code {child.returncode}")
        out.seek(0)
        return usage.ru_maxrss / 1024, out.read()  # ru_maxrss is in KiB on Linux


def data_sizes_mib(study_file: Path) -> dict[str, float]:
    from pipeline.study import Study, training_data

    study = Study.from_file(study_file)
    training = training_data(study.dataset, study.space)
    frames = training.train.memory_usage(deep=True).sum() + training.validation.memory_usage(deep=True).sum()
    encoded = sum(a.nbytes for a in training.encoded("codes"))
    return {"rows": len(training.train) + len(training.validation), "raw_mib": frames / 2**20,
            "encoded_mib": encoded / 2**20}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "flights.yaml")
    parser.add_argument("--max-evals", type=int)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="memory-")
    floor, _ = peak_rss_mib([sys.executable, "-c", IMPORTS], workdir)
    command = [sys.executable, "-m", "pipeline", "run", "--json", "--no-progress", "--study", str(args.study.resolve())]
    if args.max_evals:
        command += ["--max-evals", str(args.max_evals)]
    study_peak, stdout = peak_rss_mib(command, workdir)
    summary = json.loads(stdout.strip().splitlines()[-1])
    sizes = data_sizes_mib(args.study.resolve())
    print(f"study: {summary['study_name']}, {summary['trials']} trials, {sizes['rows']:,} train+validation rows")
    print(f"peak RSS, imports only: {floor:.0f} MiB")
    print(f"peak RSS, whole study:  {study_peak:.0f} MiB (+{study_peak - floor:.0f} MiB over the imports)")
    print(f"train+validation data:  {sizes['raw_mib']:.1f} MiB as rows, {sizes['encoded_mib']:.1f} MiB encoded")
    print(f"study over imports / encoded data: {(study_peak - floor) / sizes['encoded_mib']:.1f}x")


if __name__ == "__main__":
    main()
