"""The binomial sums behind batch promises, against hand-worked values and a seeded simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bintally.reconcile.binomial import batch_share_above, binomial_cdfs, log_pmf


def test_tiny_batches_match_the_hand_worked_sums():
    """One record: it is accepted and wrong with chance a x e, and then all of the batch's accepted records are
    wrong. Two records: one accepted (2a(1-a)) and wrong (e), or both accepted (a^2) and one or two wrong at an 8%
    cap, only both at a 50% cap (1 of 2 is not more than half)."""
    a, e = 0.3, 0.2
    assert batch_share_above(1, a, e, 0.08) == pytest.approx(a * e)
    assert batch_share_above(2, a, e, 0.08) == pytest.approx(2 * a * (1 - a) * e + a**2 * (1 - (1 - e) ** 2))
    assert batch_share_above(2, a, e, 0.5) == pytest.approx(2 * a * (1 - a) * e + a**2 * e**2)


def test_a_cap_times_a_batch_that_should_be_whole_is_not_rounded_down():
    """100 records all accepted, a 29% cap: 29 wrong is within it, though 0.29 x 100 is 28.999... in floating point.
    By hand, P(more than 29 of 100 wrong) at 30% each is 1 - P(X <= 29)."""
    p_within = sum(math.comb(100, k) * 0.3**k * 0.7 ** (100 - k) for k in range(30))
    assert batch_share_above(100, 1.0, 0.3, 0.29) == pytest.approx(1 - p_within)


def test_edges_accept_nothing_or_everything():
    assert batch_share_above(811, 0.0, 0.5, 0.08) == 0.0  # nothing accepted: no share to pass the cap
    assert batch_share_above(811, 1e-19, 0.5, 0.08) == 0.0  # so rarely accepted that no batch size counts
    assert batch_share_above(811, 0.05, 0.0, 0.08) == 0.0  # nothing wrong
    assert batch_share_above(3, 1.0, 1.0, 0.08) == pytest.approx(1.0)
    assert batch_share_above(25, 1.0, 0.5, 0.08) == pytest.approx(1 - 0.5**25 * (1 + 25 + 300))  # more than 2 of 25 wrong


def test_a_batch_of_811_records_against_a_seeded_simulation():
    """811 records, 5% accepted, 4.5% of those wrong (the default model's pooled rate): the share of batches over
    8% wrong, computed, is within sampling error of 200,000 simulated batches, and shrinks as batches grow."""
    rng = np.random.default_rng(0)
    accepted = rng.binomial(811, 0.05, 200_000)
    wrong = rng.binomial(accepted, 0.045)
    above = ((wrong > 0.08 * accepted) & (accepted > 0)).mean()
    computed = batch_share_above(811, 0.05, 0.045, 0.08)
    assert computed == pytest.approx(above, abs=4 * np.sqrt(above * (1 - above) / 200_000))
    assert 0.05 < computed < 0.2
    assert batch_share_above(4000, 0.05, 0.045, 0.08) < computed / 3


def test_binomial_cdfs_match_the_hand_worked_sums_and_refuse_more_than_n():
    by_hand = np.cumsum([math.comb(5, j) * 0.3**j * 0.7 ** (5 - j) for j in range(4)])
    assert binomial_cdfs(5, 0.3, 3) == pytest.approx(by_hand)
    assert binomial_cdfs(5, 0.3, 5)[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k <= n"):
        binomial_cdfs(5, 0.3, 6)


def test_log_pmf_broadcasts_trials_against_counts_and_is_zero_past_the_trials():
    """Rows of 2 and 3 trials against counts 0..3: each row is its binomial, and 3 of 2 trials has no chance."""
    table = np.exp(log_pmf(np.array([[2], [3]]), 0.4, np.arange(4)))
    by_hand = [[math.comb(n, j) * 0.4**j * 0.6 ** (n - j) if j <= n else 0.0 for j in range(4)] for n in (2, 3)]
    assert table == pytest.approx(np.array(by_hand))
    assert table[0, 3] == 0.0
