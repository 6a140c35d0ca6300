"""Which open top class K to train with: runs that differ only in `top_class`, compared on validation.

    bash benchmarks/device_train.sh k8:top_class=8 k10: k12:top_class=12     # on a lent GPU (device tool)
    python benchmarks/top_class.py runs/gpu/k8 runs/gpu/k10 runs/gpu/k12      # here, from the run folders

For each run: the best epoch's validation numbers (over its own classes, so exact accuracy is not comparable
across K: a larger K asks for more exact answers) and what its decision policy, fitted on the same validation
bins, does to records of every count (the share of records accepted within the same 5% promise: comparable,
since every run is judged on the same bins and records). Validation only: the test split is not read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _results import RESULTS, write_result

from bintally.model.artifact import load_artifact


def summary(run: str) -> dict:
    spec = load_artifact(run).spec
    history = json.loads(Path(run, "history.json").read_text())
    best = max(history, key=lambda h: h["val"]["accuracy"])
    fitted = (spec.decision_policy.fitted if spec.decision_policy else None) or {}
    return {
        "run": run,
        "top_class": spec.classes[-1] if spec.open_top else None,
        "classes": spec.count_classes.labels,
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "val": best["val"],
        "seconds_per_epoch": sum(h["seconds"] for h in history) / len(history),
        "decisions_on_val": fitted.get("outcome"),
        "decisions_on_val_by_range": fitted.get("by_range"),
        "train_config": {k: spec.train_config.get(k) for k in ("image_size", "epochs", "batch_size", "seed", "top_class")},
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| K | classes | best epoch | val exact | val +-1 | val RMSE | records accepted (val) | wrong among them | correct flagged |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        v, d = r["val"], r["decisions_on_val"] or {}
        error = "-" if d.get("accepted_error") is None else f"{d['accepted_error']:.1%}"
        lines.append(
            f"| {r['top_class']} | {len(r['classes'])} | {r['best_epoch'] + 1} | {v['accuracy']:.1%} | {v['within_one']:.1%} | "
            f"{v['rmse']:.2f} | {d.get('accepted', 0):.1%} | {error} | {d.get('false_flags', 0):.1%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--trained-on", default="NVIDIA H200 (benchmarks/device_train.sh)", help="where the runs trained")
    parser.add_argument("--out", type=Path, default=RESULTS / "top-class-val.json")
    args = parser.parse_args()
    started = time.monotonic()
    rows = [summary(run) for run in args.runs]
    print(table(rows))
    write_result(args.out, {"trained_on": args.trained_on, "runs": rows, "table": table(rows)}, started, "top_class.py")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
