"""Binomial sums behind promises about batches of records: the audits' bounds (`audit`) and the batch target a
policy is fitted to (`fit`). Summed in log space, so batches of many thousand records neither overflow nor
underflow; numpy alone, as a serving install has no scipy."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

NEGLIGIBLE = 1e-15  # batch sizes whose chance is below this are left out of a batch's sum
SPAN = 12  # counts of wrong records further than this many standard deviations from their mean are left out


@lru_cache(maxsize=8)
def log_factorials(n: int) -> np.ndarray:
    """log(m!) for m = 0..n."""
    return np.r_[0.0, np.cumsum(np.log(np.arange(1, n + 1)))]


def log_pmf(trials: int | np.ndarray, p: float, j: np.ndarray) -> np.ndarray:
    """log P(X = j) for X ~ Binomial(trials, p), 0 < p < 1, broadcast over whole numbers `trials` and `j`
    (-inf where j > trials; j may not pass the largest of `trials`)."""
    logf = log_factorials(int(np.max(trials)))
    rest = np.maximum(trials - j, 0)
    terms = logf[trials] - logf[j] - logf[rest] + j * math.log(p) + rest * math.log1p(-p)
    return np.where(j <= trials, terms, -np.inf)


def binomial_cdfs(n: int, p: float, k: int) -> np.ndarray:
    """P(X <= j) for j = 0..k (k <= n), X ~ Binomial(n, p) with 0 < p < 1."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    terms = log_pmf(n, p, np.arange(k + 1))
    top = terms.max()
    return np.minimum(math.exp(top) * np.cumsum(np.exp(terms - top)), 1.0)


def batch_share_above(records: int, accepted: float, wrong: float, cap: float) -> float:
    """The chance that more than `cap` of a batch's accepted records are wrong, in a batch of `records` records each
    accepted with probability `accepted`, an accepted one wrong with probability `wrong` (independently). A batch
    that accepts nothing has no share to pass the cap.

    The number accepted, A, is Binomial(records, accepted), and the wrong ones among them Binomial(A, wrong): the
    sum over A of P(A) P(more than floor(cap A) wrong | A)."""
    if records < 1 or accepted <= 0 or wrong <= 0 or cap >= 1:
        return 0.0
    n = np.arange(1, records + 1)
    chance = (n == records).astype(float) if accepted >= 1 else np.exp(log_pmf(records, accepted, n))
    keep = chance > NEGLIGIBLE
    if not keep.any():
        return 0.0
    n, chance = n[keep], chance[keep]
    if wrong >= 1:
        return float(chance.sum())
    # The most wrong records within the cap; 1e-9 keeps a product that should be whole (0.29 x 100) from rounding down.
    allowed = np.floor(cap * n + 1e-9).astype(int)
    mean, sd = n * wrong, np.sqrt(n * wrong * (1 - wrong))
    j = np.arange(max(int((mean - SPAN * sd).min()), 0), int(min(allowed.max(), (mean + SPAN * sd).max())) + 1)
    within = np.where(j <= allowed[:, None], np.exp(log_pmf(n[:, None], wrong, j)), 0.0).sum(axis=1)
    return float((chance * np.clip(1 - within, 0, 1)).sum())
