"""Count metrics: what the report shows and what model selection and tuning read."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bintally.counts import SMALL, CountClasses
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


def neighbour_auc(true_counts: Counts, probabilities: np.ndarray, classes: CountClasses | Sequence[int]) -> dict[str, float]:
    """How well the model tells each pair of neighbouring counts apart: {"3-4": AUC, ..., "9-10+": AUC}.

    For counts k and k+1, over the bins recorded as one of them: the chance that a bin of k+1 has a larger
    log p(k+1) - log p(k) than a bin of k (ties count half). Moving the decision threshold between the two moves
    along that log-ratio, so an AUC near 0.5 is a coin toss no threshold can improve on; 1.0 is never wrong.
    `classes` (ascending) name the columns of `probabilities`; pairs missing either count are left out."""
    p, named = np.asarray(probabilities, dtype=np.float64), CountClasses.of(classes)
    if p.ndim != 2 or p.shape[1] != len(named.values):
        raise ValueError(f"need [N, {len(named.values)}] probabilities over the classes {named.labels}, got {p.shape}")
    true, log_p = named.clip(true_counts), np.log(np.clip(p, 1e-300, None))
    separation = {}
    for i, (lower, upper) in enumerate(zip(named.values, named.values[1:])):
        ratio = log_p[:, i + 1] - log_p[:, i]
        below, above = ratio[true == lower], ratio[true == upper]
        if len(below) and len(above):
            separation[f"{lower}-{named.label(upper)}"] = rank_auc(below, above)
    return separation


def rank_auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """The chance that a positive scores above a negative (ties count half): the ROC curve's area."""
    below = np.sort(negatives)
    beaten, tied = np.searchsorted(below, positives, "left"), np.searchsorted(below, positives, "right")
    return float((beaten + 0.5 * (tied - beaten)).sum() / (len(below) * len(positives)))


def range_metrics(true_counts: Counts, probabilities: np.ndarray, classes: CountClasses) -> dict:
    """The whole count range, by parts: scalars for each range the classes reach (`CountClasses.ranges`: 0, 1-5,
    6 to K-1, K+; true counts as class values), how well "more than 5" is told from "5 or fewer" (AUC of
    P(count > 5)), and on the 1-5 bins the answer among 1-5 alone, the task a 1-5 model does (comparable with one)."""
    true, p = classes.clip(true_counts), np.asarray(probabilities, dtype=np.float64)
    values = np.asarray(classes.values)
    pred = values[p.argmax(axis=1)]
    out: dict = {"ranges": {}}
    for name, (low, high) in classes.ranges().items():
        inside = (true >= low) & (true <= high)
        if inside.any():
            out["ranges"][name] = {**scalars(count_metrics(true[inside], pred[inside])), "n": int(inside.sum())}
    low, high = SMALL
    above = values > high
    if above.any() and (~above).any():
        more, fewer = p[:, above].sum(axis=1), true > high
        if fewer.any() and (~fewer).any():
            out["more_than_5_auc"] = rank_auc(more[~fewer], more[fewer])
    small = (values >= low) & (values <= high) & ~classes.is_open_each(values)
    inside = (true >= low) & (true <= high)
    if small.sum() >= 2 and not small.all() and inside.any():
        answered = values[small][p[inside][:, small].argmax(axis=1)]
        out["small_counts_only"] = {**scalars(count_metrics(true[inside], answered)), "n": int(inside.sum())}
    return out


def count_metrics(
    true_counts: Counts,
    pred_counts: Counts,
    probabilities: np.ndarray | None = None,
    classes: CountClasses | Sequence[int] | None = None,
) -> dict:
    """accuracy, per_count (keyed by the classes' labels: "10+" for an open top class), within_one, mae, rmse,
    macro_f1, confusion ({labels, matrix}: rows true, columns predicted), n, coverage (needs `probabilities` [N, K]:
    confidence is the top probability) and neighbour_auc (needs `probabilities` and the `classes` of its columns)."""
    named = None if classes is None else CountClasses.of(classes)
    label = str if named is None else named.label
    true, pred = np.asarray(true_counts, dtype=np.int64), np.asarray(pred_counts, dtype=np.int64)
    if named is not None:  # counts of K or more are the open class K+, as one (not "10+" for each of 10, 11, 14)
        true, pred = named.clip(true), named.clip(pred)
    if len(true) == 0 or len(true) != len(pred):
        raise ValueError(f"need as many predictions as labels, and at least one: {len(true)} labels, {len(pred)} predictions")
    labels = sorted(set(named.values if named else []) | set(true.tolist()) | set(pred.tolist()))
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
        "per_count": {label(c): float(correct[true == c].mean()) for c in sorted(set(true.tolist()))},
        "confusion": {"labels": labels, "matrix": confusion.tolist()},
    }
    if probabilities is not None:
        metrics["coverage"] = accuracy_at_coverage(correct, np.asarray(probabilities).max(axis=1))
        if named is not None:
            metrics["neighbour_auc"] = neighbour_auc(true, probabilities, named)
    return metrics


def metrics_from_logits(logits: np.ndarray, true_counts: Counts, classes: CountClasses | Sequence[int]) -> dict:
    """count_metrics and range_metrics for model outputs: [N, K] logits over `classes`; true counts of K or more
    score as the open top class K."""
    classes = CountClasses.of(classes)
    probabilities, truth = softmax(logits), classes.clip(true_counts)
    metrics = count_metrics(truth, np.asarray(classes.values)[logits.argmax(axis=1)], probabilities, classes)
    return metrics | range_metrics(truth, probabilities, classes)


def constant_answer(reference_counts: Counts, true_counts: Counts, classes: CountClasses | None = None) -> dict:
    """The trivial model beside which a model's numbers are read: always answer the most common count of
    `reference_counts` (rows that are not scored: `report.trivial_baseline`; ties go to the smaller count), scored
    on `true_counts` (as class values of `classes` where given, with its range_metrics)."""
    if classes is not None:
        reference_counts, true_counts = classes.clip(reference_counts), classes.clip(true_counts)
    values, frequency = np.unique(np.asarray(reference_counts, dtype=np.int64), return_counts=True)
    if len(values) == 0:
        raise ValueError("the trivial answer needs at least one reference count")
    answer = int(values[frequency.argmax()])
    result = {"answer": answer, **scalars(count_metrics(true_counts, np.full(len(true_counts), answer)))}
    if classes is None:
        return result
    certain = np.zeros((len(true_counts), len(classes.values)))
    certain[:, classes.index([answer])[0]] = 1.0
    by_range = range_metrics(true_counts, certain, classes)
    by_range.pop("small_counts_only", None)  # a constant has no answer among 1-5 unless it is one: its 1-5 range says it
    return result | {"label": classes.label(answer)} | by_range


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
