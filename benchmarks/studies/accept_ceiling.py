"""How many records could a better model accept? The most any threshold on P(count = recorded) accepts while the
accepted records stay at most 5%, 3% or 2% wrong, on the validation split, for each model and for the mean of their
probabilities (an ensemble).

    python benchmarks/studies/accept_ceiling.py MANIFEST MODEL [MODEL...] --out benchmarks/results/accept-ceiling-val.json

Records are simulated as the policy is fitted (`reconcile.fit.simulate`: every record the error model makes, with
its weight): a model whose records can be accepted in larger numbers at the same error makes batches whose share of
wrong accepted records swings less. Each model's probabilities are calibrated by its own temperature; all models
must share their count classes. The threshold is chosen knowing the answers: a ceiling to compare models by, not
a policy (`bintally calibrate` fits that, with a confidence margin).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from _benchmarks import models_on_a_split  # first: the maintained benchmarks' helpers, from the folder above
from _results import RESULTS, write_result

from bintally.data.manifest import read_manifest
from bintally.evaluate.calibrate import split_probabilities
from bintally.model.artifact import load_artifact
from bintally.reconcile.fit import accept_curve, simulate
from bintally.reconcile.policy import RecordErrors

ERROR_BOUNDS = (0.05, 0.03, 0.02)


def ceilings(probabilities: np.ndarray, truth: np.ndarray, classes, errors: RecordErrors) -> dict:
    """Exact accuracy, and the largest share of records accepted at each bound on the share wrong among them."""
    _, accepted, error, _ = accept_curve(simulate(probabilities, truth.tolist(), classes, errors), "match")
    best = {f"{bound:.0%}": float(accepted[error <= bound].max()) if (error <= bound).any() else 0.0 for bound in ERROR_BOUNDS}
    exact = float(np.mean(np.asarray(classes.values)[probabilities.argmax(axis=1)] == classes.clip(truth)))
    return {"accuracy": exact, "accepted_at_most_wrong": best}


def main() -> None:
    parser = models_on_a_split(__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS / "accept-ceiling-val.json")
    args = parser.parse_args()

    started = time.monotonic()
    manifest, errors = read_manifest(args.manifest), RecordErrors()
    members, classes, truth = {}, None, None
    for model in args.models:
        artifact = load_artifact(model)
        if classes is not None and artifact.spec.count_classes.labels != classes.labels:
            raise SystemExit(f"{model} counts {artifact.spec.count_classes.labels}, not {classes.labels}")
        classes = artifact.spec.count_classes
        members[model], truth = split_probabilities(artifact, manifest, args.split, args.device)
    assert classes is not None and truth is not None
    results = {model: ceilings(p, truth, classes, errors) for model, p in members.items()}
    if len(members) > 1:
        results["mean of their probabilities"] = ceilings(np.mean(list(members.values()), axis=0), truth, classes, errors)
    lines = [
        "| model | exact | accepted at most 5% wrong | at most 3% | at most 2% |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        shares = " | ".join(f"{r['accepted_at_most_wrong'][f'{b:.0%}']:.1%}" for b in ERROR_BOUNDS)
        lines.append(f"| {name} | {r['accuracy']:.1%} | {shares} |")
    print(f"{len(truth)} {args.split} bins, records {errors.rate:.0%} wrong")
    print("\n".join(lines))
    result = {
        "split": args.split,
        "bins": len(truth),
        "models": args.models,
        "errors": errors.model_dump(),
        "results": results,
        "table": lines,
    }
    write_result(args.out, result, started, "studies/accept_ceiling.py")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
