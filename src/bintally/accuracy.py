"""Two answerers' accuracy on the same photos compared: fp32 and int8 graphs in the int8 check (`model/quantize.py`),
models and people in the benchmarks. Plain numpy, below every stage that compares."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def paired_accuracy_difference(correct_a: np.ndarray, correct_b: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(b's accuracy - a's, low, high) on the same photos: the difference with its normal-approximation interval.

    Pairing is what makes it tight or wide: only photos where exactly one is right move the difference, so two
    graphs that disagree on many near-ties have a wide interval even when their accuracies are equal."""
    d = np.asarray(correct_b, dtype=float) - np.asarray(correct_a, dtype=float)
    if len(d) < 2:
        return float(d.mean()) if len(d) else 0.0, -1.0, 1.0  # one photo says nothing about the spread
    half = NormalDist().inv_cdf((1 + confidence) / 2) * d.std(ddof=1) / np.sqrt(len(d))
    mean = float(d.mean())
    return mean, max(-1.0, mean - half), min(1.0, mean + half)
