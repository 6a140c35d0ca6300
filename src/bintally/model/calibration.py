"""From logits to probabilities: softmax with the artifact's temperature.

Every place that turns logits into count probabilities (serving, batch scoring,
reconcile, evaluation) calls `softmax` here, so they can never disagree.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis of `logits / temperature` (float64, numerically stable)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
