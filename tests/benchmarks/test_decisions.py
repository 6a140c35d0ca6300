"""benchmarks/decisions.py's drawn records and batches of other sizes, on made-up probabilities whose answers are known."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bintally.counts import CountClasses
from bintally.reconcile.policy import DecisionPolicy, RecordErrors

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from decisions import by_batch_size, draw_records, record_table

CLASSES = CountClasses(values=list(range(11)), open_top=True)


def test_drawn_records_follow_the_error_model():
    # Tried: 200,000 records of a bin of 0 and of a bin of 4 (20% wrong, off by 1/2/3 at 60/30/10%, kept >= 0).
    # Must hold: each record's share is the error model's chance of it, within sampling error.
    errors, truth = RecordErrors(), np.array([0, 4])
    table = record_table(truth, CLASSES, errors)
    bins = np.repeat([[0, 1]], 100_000, axis=0)
    drawn = draw_records(table, bins, np.random.default_rng(0))
    for b, t in enumerate(truth.tolist()):
        expected = errors.recorded(t, CLASSES)
        seen = {r: float(np.mean(drawn[:, b] == r)) for r in expected}
        assert all(abs(seen[r] - chance) < 0.005 for r, chance in expected.items()), (t, seen, expected)
        assert set(np.unique(drawn[:, b]).tolist()) <= set(expected)


def test_bigger_batches_pass_the_bound_less_often_at_the_same_pooled_error():
    # Tried: 400 bins of counts 1-5; the model puts 0.9 on each bin's count, except on two bins in five, where it
    # puts 0.9 on the count above (so about 5% of accepted records are wrong: the records 1 above, on those bins).
    # Accepting at 0.5 on P(count = recorded), batches of 100 and of 3,000 records. Must hold: every record is
    # decided; the pooled share wrong among accepted is the same at both sizes (within noise), and the bound of 8%
    # is passed far more often by the small batches than by the big ones.
    rng = np.random.default_rng(1)
    truth = rng.integers(1, 6, 400)
    seen = np.where(np.arange(400) % 5 < 2, truth + 1, truth)
    probabilities = np.full((400, len(CLASSES.values)), 0.01)
    probabilities[np.arange(400), seen] = 0.9
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    policy = DecisionPolicy(accept_at=0.5, flag_at=0.01)
    small, big = by_batch_size(probabilities, truth, CLASSES, policy, [100, 3000], draws=200, bound=0.08).values()
    assert small["records"] == 100 * 200 and big["records"] == 3000 * 200
    assert 0.03 < big["accepted_error"] < 0.07 and abs(small["accepted_error"] - big["accepted_error"]) < 0.01
    assert small["draws_above_bound"] > 5 * max(big["draws_above_bound"], 1)
    # The batch target's binomial sum at the same rates says how often the small batches pass, within sampling error.
    share = small["draws_above_bound"] / 200
    assert abs(small["binomial_above"] - share) < 4 * np.sqrt(share * (1 - share) / 200)
