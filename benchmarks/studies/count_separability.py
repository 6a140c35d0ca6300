"""Which neighbouring counts can the models tell apart, and can moving the decision thresholds lift the weakest?

    python benchmarks/studies/count_separability.py MANIFEST MODEL [MODEL...]      # the validation split; test is not read

For each model (and, given several, their equal-weight ensemble, as in ensemble.py), over counts 1-5:

- the AUC between each pair of neighbouring counts (`neighbour_auc` in bintally.evaluate.metrics): the chance
  that a bin of the larger count k+1 has a larger log p(k+1) - log p(k) than a bin of k, the log-ratio a
  decision threshold between the two moves along. A pair near 0.5 is a coin toss for the model there.
- a per-count offset added to the log-probabilities before the argmax (the decision thresholds moved), fitted
  three ways: minimum NLL (a prior correction), maximum accuracy, maximum balanced accuracy (the mean of the
  per-count accuracies, the objective that lifts a weak count). Each is scored by 5-fold cross-validation within
  the validation split, repeated with 4 shuffles, so no offset is scored on the bins it was fitted to. (The
  models' temperatures were fitted on all of validation; one number per model, it cannot reorder a bin's counts.)

Writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import _benchmarks  # noqa: F401  (the maintained benchmarks' helpers, from the folder above)
import numpy as np
from _results import RESULTS, write_result
from ensemble import COUNTS, member_probabilities

from bintally.data.manifest import read_manifest
from bintally.evaluate.metrics import count_metrics, neighbour_auc
from bintally.model.calibration import softmax

FOLDS, SHUFFLES = 5, 4
GRID = np.linspace(-1.5, 1.5, 61)  # offsets tried per count; fitted on all of validation they stay within +-1.15
Fit = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (log-probabilities [N, K], class indices [N]) -> offsets [K]


def nll_offsets(log_probabilities: np.ndarray, targets: np.ndarray, steps: int = 2000) -> np.ndarray:
    """Offsets minimising the NLL (convex in them): gradient descent, the first count's offset held at 0."""
    offsets, onehot = np.zeros(log_probabilities.shape[1]), np.eye(log_probabilities.shape[1])[targets]
    for _ in range(steps):
        gradient = (softmax(log_probabilities + offsets) - onehot).mean(axis=0)
        gradient[0] = 0.0
        offsets -= 2.0 * gradient
    return offsets


def argmax_offsets(balanced: bool) -> Fit:
    """Offsets maximising (balanced) accuracy: coordinate search over GRID, three sweeps, the smallest |offset| on ties."""

    def objective(log_probabilities: np.ndarray, targets: np.ndarray, offsets: np.ndarray) -> float:
        right = (log_probabilities + offsets).argmax(axis=1) == targets
        return float(np.mean([right[targets == k].mean() for k in np.unique(targets)]) if balanced else right.mean())

    def fit(log_probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
        offsets = np.zeros(log_probabilities.shape[1])
        for _ in range(3):
            for k in range(1, log_probabilities.shape[1]):
                candidates = (np.r_[offsets[:k], g, offsets[k + 1 :]] for g in GRID)
                tried = [(objective(log_probabilities, targets, c), -abs(c[k]), c[k]) for c in candidates]
                offsets[k] = max(tried)[2]
        return offsets

    return fit


RULES: dict[str, Fit] = {"min NLL": nll_offsets, "max accuracy": argmax_offsets(False), "max balanced accuracy": argmax_offsets(True)}


def scored(counts: np.ndarray, predicted: np.ndarray) -> dict:
    m = count_metrics(counts, np.asarray(COUNTS)[predicted], classes=COUNTS)
    return {k: m[k] for k in ("accuracy", "within_one", "rmse")} | {"per_count": m["per_count"]}


def cross_validated(log_probabilities: np.ndarray, counts: np.ndarray, fit: Fit, seed: int = 0) -> dict:
    """The rule's numbers with every bin decided by offsets fitted on the other folds, averaged over SHUFFLES."""
    targets, rng, runs = np.searchsorted(COUNTS, counts), np.random.default_rng(seed), []
    for _ in range(SHUFFLES):
        folds, predicted = rng.permutation(len(targets)) % FOLDS, np.zeros(len(targets), dtype=np.int64)
        for k in range(FOLDS):
            offsets = fit(log_probabilities[folds != k], targets[folds != k])
            predicted[folds == k] = (log_probabilities[folds == k] + offsets).argmax(axis=1)
        runs.append(scored(counts, predicted))
    mean = {k: float(np.mean([r[k] for r in runs])) for k in ("accuracy", "within_one", "rmse")}
    return mean | {"per_count": {c: float(np.mean([r["per_count"][c] for r in runs])) for c in runs[0]["per_count"]}}


def measured(probabilities: np.ndarray, counts: np.ndarray) -> dict:
    log_probabilities = np.log(np.clip(probabilities, 1e-12, None))
    rules = {"argmax": scored(counts, probabilities.argmax(axis=1))}
    rules |= {name: cross_validated(log_probabilities, counts, fit) for name, fit in RULES.items()}
    targets = np.searchsorted(COUNTS, counts)
    offsets = {name: fit(log_probabilities, targets).round(2).tolist() for name, fit in RULES.items()}  # in-sample: a record
    return {"neighbour_auc": neighbour_auc(counts, probabilities, COUNTS), "rules": rules, "offsets_on_all_bins": offsets}


def tables(results: dict) -> list[str]:
    pairs = list(next(iter(results.values()))["neighbour_auc"])
    lines = ["| model | " + " | ".join(f"AUC {p}" for p in pairs) + " |", "| --- |" + " ---: |" * len(pairs)]
    lines += [f"| {name} | " + " | ".join(f"{r['neighbour_auc'][p]:.3f}" for p in pairs) + " |" for name, r in results.items()]
    lines += ["", "| model | decision | accuracy | +-1 | RMSE | " + " | ".join(f"count {c}" for c in COUNTS) + " |"]
    lines += ["| --- | --- | ---: | ---: | ---: |" + " ---: |" * len(COUNTS)]
    for name, r in results.items():
        for rule, m in r["rules"].items():
            per = " | ".join(f"{m['per_count'][str(c)]:.1%}" for c in COUNTS)
            lines.append(f"| {name} | {rule} | {m['accuracy']:.1%} | {m['within_one']:.1%} | {m['rmse']:.2f} | {per} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "count-separability-val.json")
    args = parser.parse_args()

    started = time.monotonic()
    rows = [r for r in read_manifest(args.manifest).split("val") if r.count in COUNTS]
    members = {m: member_probabilities(m, rows, args.device, args.workers)[:2] for m in args.models}
    counts = next(iter(members.values()))[1]
    named = {"/".join(Path(m).parts[-2:]): p for m, (p, _) in members.items()}  # the setting and the recipe
    if len(named) > 1:
        named["ensemble"] = np.mean(list(named.values()), axis=0)
    results = {name: measured(p, counts) for name, p in named.items()}
    lines = tables(results)
    print(f"{len(rows)} validation bins; offsets scored by {FOLDS}-fold cross-validation, {SHUFFLES} shuffles")
    print("\n".join(lines))
    result = {"split": "val", "bins": len(rows), "models": args.models, "results": results, "table": lines}
    write_result(args.out, result, started, "studies/count_separability.py")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
