"""Inventory decisions from count probabilities: accept, review, mismatch at the policy's thresholds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bintally.reconcile import ReconcilePolicy, reconcile, summarise

PROBS = {"1": 0.02, "2": 0.08, "3": 0.70, "4": 0.15, "5": 0.05}
POLICY = ReconcilePolicy(accept_at=0.6, mismatch_at=0.05)


@pytest.mark.parametrize(
    "expected, decision, p",
    [(3, "accept", 0.70), (4, "review", 0.15), (2, "review", 0.08), (5, "mismatch", 0.05), (1, "mismatch", 0.02)],
)
def test_decision_follows_the_match_probability(expected, decision, p):
    result = reconcile(PROBS, expected, POLICY)
    assert (result.decision, result.match_probability, result.count) == (decision, p, 3)


def test_a_count_the_model_does_not_know_goes_to_a_person():
    """A record of 12 items cannot be judged by a 1-5 model: review, never accept or mismatch."""
    result = reconcile(PROBS, 12, POLICY)
    assert result.decision == "review" and result.match_probability == 0.0


def test_thresholds_must_be_ordered():
    with pytest.raises(ValidationError, match="must be below"):
        ReconcilePolicy(accept_at=0.3, mismatch_at=0.4)


def test_summary_counts_decisions_and_measures_them_against_audited_counts():
    results = [reconcile(PROBS, e, POLICY) for e in (3, 3, 4, 1)]
    audited = [3, 4, 4, 2]  # the second record was wrong but accepted; the last was rightly flagged
    summary = summarise(results, audited)
    assert summary.by_decision == {"accept": 2, "review": 1, "mismatch": 1}
    assert summary.accept_precision == 0.5 and summary.mismatch_precision == 1.0
    assert summarise(results).accept_precision is None
