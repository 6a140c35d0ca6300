"""From logits to probabilities: softmax with the artifact's temperature, and fitting that temperature.

Every place that turns logits into count probabilities (serving, batch scoring,
reconcile, evaluation) calls `softmax` here with the temperature stored in the
artifact, so they can never disagree. The temperature is fitted on validation
data by minimum negative log-likelihood (temperature scaling: one number, so it
changes confidence, never the predicted count).
"""

from __future__ import annotations

import math

import numpy as np

# The search range for the temperature; beyond it the model is not worth calibrating, it is broken.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
_GOLDEN = (math.sqrt(5) - 1) / 2


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis of `logits / temperature` (float64, numerically stable)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the target class indices under `softmax(logits / temperature)`."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
    return float(np.mean(log_z - scaled[np.arange(len(targets)), targets]))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, tolerance: float = 1e-4) -> float:
    """The temperature that minimises the NLL of `targets` (class indices) given `logits` [N, K].

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search over log T finds it.
    """
    if len(targets) == 0:
        raise ValueError("fitting a temperature needs at least one labelled example")
    lo, hi = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(logits, targets, math.exp(a)), nll(logits, targets, math.exp(b))
    while hi - lo > tolerance:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(logits, targets, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(logits, targets, math.exp(b))
    return math.exp((lo + hi) / 2)
