"""The decision for one record from count probabilities: accept, review, mismatch, under a policy."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from bintally.reconcile.policy import DecisionPolicy, RecordErrors, reconcile, statistics

PROBS = {"1": 0.02, "2": 0.08, "3": 0.70, "4": 0.15, "5": 0.05}
POLICY = DecisionPolicy(accept_at=0.6, flag_at=0.05)


@pytest.mark.parametrize(
    "expected, decision, p",
    [(3, "accept", 0.70), (4, "review", 0.15), (2, "review", 0.08), (5, "mismatch", 0.05), (1, "mismatch", 0.02)],
)
def test_decision_follows_the_match_probability(expected, decision, p):
    result = reconcile(PROBS, expected, POLICY)
    assert (result.decision, result.match_probability, result.count) == (decision, p, 3)


def test_flagging_on_the_far_probability():
    """Flag on P(|count - recorded| >= 2) at 0.75: a record of 1 (far: 3, 4, 5 -> 0.90) is flagged, a record of 2
    (far: 4, 5 -> 0.20) is not, and a record of 5 (far: 1, 2, 3 -> 0.80) is."""
    policy = DecisionPolicy(accept_at=0.6, flag_statistic="far", flag_at=0.75)
    decided = {e: reconcile(PROBS, e, policy) for e in (1, 2, 5)}
    assert {e: r.decision for e, r in decided.items()} == {1: "mismatch", 2: "review", 5: "mismatch"}
    assert decided[1].far_probability == pytest.approx(0.90)


def test_the_posterior_that_the_record_is_right_by_hand():
    """Record 3, default error model (20% wrong; 1/2/3 off at 60/30/10%): every other count t makes a record of 3
    with P(3 | t) = 0.06, a true 3 with 0.8. So P(record right) = 0.70 * 0.8 / (0.70 * 0.8 + 0.30 * 0.06) = 0.9689."""
    result = reconcile(PROBS, 3, DecisionPolicy(accept_statistic="record_correct", accept_at=0.95, flag_at=0.05))
    assert result.record_correct_probability == pytest.approx(0.56 / 0.578) and result.decision == "accept"


def test_doubt_beside_the_record_counts_against_it_more_than_doubt_far_away():
    """Counts 1-7, record 4, P(count = 4) = 0.4 in both photos; the rest on 3 and 5, or on 1 and 7. A neighbour
    makes a record of 4 with P 0.06, a count three away with 0.02: P(record right) 0.32 / 0.356 vs 0.32 / 0.332."""
    near, far = np.array([[0, 0, 0.3, 0.4, 0.3, 0, 0]]), np.array([[0.3, 0, 0, 0.4, 0, 0, 0.3]])
    stats = [statistics(p, np.array([3]), list(range(1, 8)), RecordErrors()) for p in (near, far)]
    assert stats[0]["match"] == stats[1]["match"] == pytest.approx([0.4])
    assert stats[0]["record_correct"] == pytest.approx([0.32 / 0.356]) and stats[1]["record_correct"] == pytest.approx([0.32 / 0.332])
    assert stats[0]["record_far"] == pytest.approx([0.0]) and stats[1]["record_far"] == pytest.approx([0.012 / 0.332])


def test_a_policy_that_never_accepts_or_never_flags_sends_everything_else_to_review():
    never = DecisionPolicy(accept_at=None, flag_at=None)
    assert {reconcile(PROBS, e, never).decision for e in range(1, 6)} == {"review"}


def test_a_count_the_model_does_not_know_goes_to_a_person():
    """A record of 12 items cannot be judged by a 1-5 model: review, never accept or mismatch."""
    result = reconcile(PROBS, 12, POLICY)
    assert result.decision == "review" and result.match_probability == 0.0 == result.record_correct_probability


def test_thresholds_must_be_ordered_and_explicit_ones_override_a_fitted_policy():
    with pytest.raises(ValidationError, match="must be below"):
        DecisionPolicy(accept_at=0.3, flag_at=0.4)
    fitted = DecisionPolicy(accept_statistic="record_correct", accept_at=0.9, flag_statistic="far", flag_at=0.7, fitted={"bins": 10})
    assert fitted.with_thresholds() is fitted
    overridden = fitted.with_thresholds(accept_at=0.6, mismatch_at=0.05)
    assert (overridden.accept_statistic, overridden.accept_at, overridden.flag_statistic, overridden.flag_at) == (
        "match",
        0.6,
        "match",
        0.05,
    )
    assert overridden.fitted is None
