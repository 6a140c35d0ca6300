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


def log_choose(n: int, k: int) -> np.ndarray:
    """log C(n, j) for j = 0..k (k <= n)."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    logf, j = log_factorials(n), np.arange(k + 1)
    return logf[n] - logf[j] - logf[n - j]


def binomial_cdfs(n: int, p: float, log_coefficients: np.ndarray) -> np.ndarray:
    """P(X <= j) for j = 0..k, X ~ Binomial(n, p) with 0 < p < 1, from `log_choose(n, k)`."""
    j = np.arange(len(log_coefficients))
    log_pmf = log_coefficients + j * math.log(p) + (n - j) * math.log1p(-p)
    top = log_pmf.max()
    return np.minimum(math.exp(top) * np.cumsum(np.exp(log_pmf - top)), 1.0)


def batch_share_above(records: int, accepted: float, wrong: float, cap: float) -> float:
    """The chance that more than `cap` of a batch's accepted records are wrong, in a batch of `records` records each
    accepted with probability `accepted`, an accepted one wrong with probability `wrong` (independently). A batch
    that accepts nothing has no share to pass the cap.

    The number accepted, A, is Binomial(records, accepted), and the wrong ones among them Binomial(A, wrong): the
    sum over A of P(A) P(more than floor(cap A) wrong | A)."""
    if records < 1 or accepted <= 0 or wrong <= 0 or cap >= 1:
        return 0.0
    logf, n = log_factorials(records), np.arange(1, records + 1)
    if accepted >= 1:
        chance = (n == records).astype(float)
    else:
        chance = np.exp(logf[records] - logf[n] - logf[records - n] + n * math.log(accepted) + (records - n) * math.log1p(-accepted))
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
    rest = np.maximum(n[:, None] - j, 0)
    log_pmf = logf[n][:, None] - logf[j] - logf[rest] + j * math.log(wrong) + rest * math.log1p(-wrong)
    within = np.where(j <= allowed[:, None], np.exp(log_pmf), 0.0).sum(axis=1)
    return float((chance * np.clip(1 - within, 0, 1)).sum())
