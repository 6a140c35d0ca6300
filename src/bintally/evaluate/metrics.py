"""Count metrics: what the report shows and what model selection and tuning read."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bintally.model.calibration import softmax

ECE_BINS = 15  # equal-width confidence bins, the usual choice for ECE
COVERAGES = tuple(range(10, 101, 10))  # percent of bins kept, most confident first
Counts = Sequence[int] | np.ndarray  # one count per bin
SCALARS = ("accuracy", "within_one", "mae", "rmse", "macro_f1")


def macro_f1(true: np.ndarray, pred: np.ndarray, labels: Sequence[int]) -> float:
    """Mean F1 over the labels that occur in the truth or the predictions (sklearn's convention)."""
    scores = []
    for c in labels:
        tp = np.sum((pred == c) & (true == c))
        fp, fn = np.sum((pred == c) & (true != c)), np.sum((pred != c) & (true == c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def accuracy_at_coverage(correct: np.ndarray, confidence: np.ndarray) -> dict[str, float]:
    """Accuracy on the most confident X% of bins, X = 10..100 (at least one bin each)."""
    order = np.argsort(-confidence, kind="stable")
    ranked = correct[order]
    return {str(x): float(ranked[: max(1, int(np.ceil(len(ranked) * x / 100)))].mean()) for x in COVERAGES}


def neighbour_auc(true_counts: Counts, probabilities: np.ndarray, classes: Sequence[int]) -> dict[str, float]:
    """How well the model tells each pair of neighbouring counts apart: {"3-4": AUC, ...}.

    For counts k and k+1, over the bins recorded as one of them: the chance that a bin of k+1 has a larger
    log p(k+1) - log p(k) than a bin of k (ties count half). Moving the decision threshold between the two moves
    along that log-ratio, so an AUC near 0.5 is a coin toss no threshold can improve on; 1.0 is never wrong.
    `classes` (ascending) name the columns of `probabilities`; pairs missing either count are left out."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(classes) or list(classes) != sorted(classes):
        raise ValueError(f"need [N, {len(classes)}] probabilities over ascending classes, got {p.shape} over {list(classes)}")
    true, log_p = np.asarray(true_counts, dtype=np.int64), np.log(np.clip(p, 1e-300, None))
    separation = {}
    for i, (lower, upper) in enumerate(zip(classes, classes[1:])):
        ratio = log_p[:, i + 1] - log_p[:, i]
        below, above = np.sort(ratio[true == lower]), ratio[true == upper]
        if len(below) and len(above):
            beaten, tied = np.searchsorted(below, above, "left"), np.searchsorted(below, above, "right")
            separation[f"{lower}-{upper}"] = float((beaten + 0.5 * (tied - beaten)).sum() / (len(below) * len(above)))
    return separation


def count_metrics(
    true_counts: Counts,
    pred_counts: Counts,
    probabilities: np.ndarray | None = None,
    classes: Sequence[int] | None = None,
) -> dict:
    """accuracy, per_count, within_one, mae, rmse, macro_f1, confusion ({labels, matrix}: rows true, columns
    predicted), n, coverage (needs `probabilities` [N, K]: confidence is the top probability) and neighbour_auc
    (needs `probabilities` and the `classes` of its columns)."""
    true, pred = np.asarray(true_counts, dtype=np.int64), np.asarray(pred_counts, dtype=np.int64)
    if len(true) == 0 or len(true) != len(pred):
        raise ValueError(f"need as many predictions as labels, and at least one: {len(true)} labels, {len(pred)} predictions")
    labels = sorted(set(classes or []) | set(true.tolist()) | set(pred.tolist()))
    position = {c: i for i, c in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(confusion, ([position[c] for c in true], [position[c] for c in pred]), 1)
    error = (pred - true).astype(np.float64)
    correct = pred == true
    metrics = {
        "n": int(len(true)),
        "accuracy": float(correct.mean()),
        "within_one": float((np.abs(error) <= 1).mean()),
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "macro_f1": macro_f1(true, pred, labels),
        "per_count": {str(c): float(correct[true == c].mean()) for c in sorted(set(true.tolist()))},
        "confusion": {"labels": labels, "matrix": confusion.tolist()},
    }
    if probabilities is not None:
        metrics["coverage"] = accuracy_at_coverage(correct, np.asarray(probabilities).max(axis=1))
        if classes is not None:
            metrics["neighbour_auc"] = neighbour_auc(true, probabilities, classes)
    return metrics


def metrics_from_logits(logits: np.ndarray, true_counts: Counts, classes: Sequence[int]) -> dict:
    """count_metrics for model outputs: [N, K] logits over `classes`."""
    probabilities = softmax(logits)
    return count_metrics(true_counts, np.asarray(classes)[logits.argmax(axis=1)], probabilities, classes)


def constant_answer(reference_counts: Counts, true_counts: Counts) -> dict:
    """The trivial model beside which a model's numbers are read: always answer the most common count of
    `reference_counts` (the training rows; ties go to the smaller count), scored on `true_counts`."""
    values, frequency = np.unique(np.asarray(reference_counts, dtype=np.int64), return_counts=True)
    if len(values) == 0:
        raise ValueError("the trivial answer needs at least one reference count")
    answer = int(values[frequency.argmax()])
    return {"answer": answer, **scalars(count_metrics(true_counts, np.full(len(true_counts), answer)))}


def scalars(metrics: dict) -> dict[str, float]:
    return {k: metrics[k] for k in SCALARS}


def reliability(probabilities: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Top-class confidence against accuracy in equal-width confidence bins (empty bins left out):
    `confidence`, `accuracy` and `share` (of all examples) per bin, for the reliability diagram."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    out: dict[str, list[float]] = {"confidence": [], "accuracy": [], "share": []}
    for b in range(bins):
        inside = which == b
        if inside.any():
            out["confidence"].append(float(confidence[inside].mean()))
            out["accuracy"].append(float(correct[inside].mean()))
            out["share"].append(float(inside.mean()))
    return out


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the share-weighted mean gap between confidence and accuracy over the reliability bins."""
    r = reliability(probabilities, targets, bins)
    return float(sum(s * abs(c - a) for c, a, s in zip(r["confidence"], r["accuracy"], r["share"])))
