"""How the two promotion gates behave on monthly retraining: `point` against `paired_bootstrap`.

For each gate it runs the scheduled retrain of the default study month after month (`--as-of 2013-03`, the
first champion, then 2013-04 ... 2013-12), each rule in its own fresh store, the months interleaved, and
prints per rule: how many challengers were promoted, and how often a promoted challenger then lost to the
model it replaced on the next month's data (both scored on that month, the new champion having had no say
in it). The raw decisions go to benchmarks/results/gate-<date>.json.

    python benchmarks/gate.py [--first 2013-03] [--last 2013-12] [--max-evals N]

Promotion counts and losses are exact for the models trained; the models depend on the machine only
through the thread count (the seeds are fixed), so expect the same figures on a rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = ("point", "paired_bootstrap")


def months(first: str, last: str) -> list[str]:
    year, month = map(int, first.split("-"))
    out = []
    while f"{year}-{month:02d}" <= last:
        out.append(f"{year}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def study_file(workdir: Path, rule: str) -> Path:
    study = yaml.safe_load((REPO / "studies" / "flights.yaml").read_text())
    study["dataset"] = str(REPO / "data" / "flights.yaml")
    study["space"] = str(REPO / "search_spaces" / "xgboost.yaml")
    study["report"] = False
    study.setdefault("retrain", {})["gate"] = {"method": rule}
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def score(model_name: str, version: str, month: str, study: Any) -> float:
    """The registered ``version`` scored on ``month``'s rows with the study's metric (its test split)."""
    from pipeline import outputs, tracking
    from pipeline.config import PartitionSplit
    from pipeline.data import load_dataset

    # Only the test split is scored; a partition belongs to one split, so train and validation take two others.
    others = [m for m in ("2013-01", "2013-02", "2013-03") if m != month][:2]
    split = PartitionSplit(by="partition", train=others[:1], validation=others[1:], test=[month])
    dataset = load_dataset(study.dataset_config.model_copy(update={"split": split}), study.config.dataset)
    x, y = dataset.xy("test")
    served = tracking.models.load_pyfunc(f"models:/{model_name}/{version}").predict(x)
    return study.metric.score(y, outputs.predictions(served, dataset.task))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", default="2013-03")
    parser.add_argument("--last", default="2013-12")
    parser.add_argument("--max-evals", type=int, help="trials per month (default: the study's retrain.max_evals)")
    args = parser.parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    from pipeline.retrain import retrain
    from pipeline.study import Study

    workdirs = {rule: Path(tempfile.mkdtemp(prefix=f"gate-{rule}-")) for rule in RULES}
    studies = {
        rule: Study.from_file(
            study_file(w, rule), tracking_uri=f"sqlite:///{w / 'mlflow.db'}", state_dir=w / ".pipeline", progress=False
        )
        for rule, w in workdirs.items()
    }
    decisions: dict[str, list[dict[str, Any]]] = {rule: [] for rule in RULES}
    started = time.perf_counter()
    for month in months(args.first, args.last):
        for rule in RULES:
            result = retrain(studies[rule], as_of=month, max_evals=args.max_evals).to_dict()
            kept = ("as_of", "action", "reason", "model_version", "champion_version", "gate", "test_metric")
            decisions[rule].append({k: result.get(k) for k in kept})
            print(f"{month} {rule:>16}: {result['action']} ({result.get('reason', '')})", flush=True)
    rows = []
    import mlflow

    for rule in RULES:
        study, name = studies[rule], studies[rule].config.model_name
        mlflow.set_tracking_uri(f"sqlite:///{workdirs[rule] / 'mlflow.db'}")
        gates = [d for d in decisions[rule] if d["champion_version"] is not None]
        promoted = [d for d in gates if d["action"] == "promoted"]
        checked = lost = 0
        for this, following in zip(decisions[rule], decisions[rule][1:], strict=False):
            if this["action"] != "promoted" or this["champion_version"] is None:
                continue
            new, old, month = this["model_version"], this["champion_version"], following["as_of"]
            new_score, old_score = score(name, new, month, study), score(name, old, month, study)
            this["next_month"] = {"month": month, "promoted": new_score, "replaced": old_score}
            checked += 1
            lost += bool(study.metric.loss(old_score) < study.metric.loss(new_score))
        rows.append((rule, len(promoted), len(gates), lost, checked))
    print(f"\n{len(months(args.first, args.last)) - 1} monthly gates per rule, {time.perf_counter() - started:.0f} s")
    print("| gate | challengers promoted | promoted, then worse than the model it replaced on the next month |")
    print("|---|---|---|")
    for rule, promoted, gates, lost, checked in rows:
        print(f"| {rule} | {promoted} of {gates} | {lost} of {checked} (those with a next month) |")
    out = REPO / "benchmarks" / "results" / f"gate-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(decisions, indent=1, default=str))
    print(f"raw decisions: {out}")


if __name__ == "__main__":
    main()
