"""The decision for one record from count probabilities: accept, review, mismatch, under a policy."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from bintally.counts import CountClasses
from bintally.reconcile.policy import DecisionPolicy, RecordErrors, decide_many, reconcile, statistics

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


OPEN = CountClasses(values=list(range(11)), open_top=True)


def _probabilities(mass: dict[str, float]) -> dict[str, float]:
    """Probabilities over 0..9 and 10+, `mass` on the named classes and the rest spread evenly."""
    rest = (1 - sum(mass.values())) / (len(OPEN.labels) - len(mass))
    return {label: mass.get(label, rest) for label in OPEN.labels}


def test_a_record_of_k_or_more_is_never_accepted_and_is_flagged_when_the_photo_clearly_holds_fewer():
    """A record of 25: against a photo of about 2 it is flagged; against a photo of 10+ it goes to a person, even
    under a policy that accepts at P(count = record) >= 5% (the photo cannot confirm an exact 25)."""
    eager = DecisionPolicy(accept_at=0.05, flag_statistic="far", flag_at=0.5)
    few = reconcile(_probabilities({"2": 0.9}), 25, eager)
    assert few.decision == "mismatch" and few.count == 2 and not few.at_least
    many = reconcile(_probabilities({"10+": 0.95}), 25, eager)
    assert many.decision == "review" and many.count == 10 and many.at_least
    assert reconcile(_probabilities({"10+": 0.95}), 10, eager).decision == "review"
    assert reconcile(_probabilities({"9": 0.95}), 9, eager).decision == "accept"  # below K: judged as ever


def test_the_error_model_keeps_wrong_records_at_zero_or_more_and_folds_the_top_into_the_open_class():
    q = RecordErrors(rate=0.2, sizes={1: 0.6, 2: 0.3, 3: 0.1}).matrix(OPEN)
    assert np.allclose(q.sum(axis=1), 1)
    assert q[0, 0] == pytest.approx(0.8) and q[0, 1] == pytest.approx(0.2 * 0.6)  # from 0 records go up only
    assert q[10, 10] == pytest.approx(0.8 + 0.1)  # the upward half of a 10's errors stays in 10+
    assert q[9, 10] == pytest.approx(0.2 * (0.3 + 0.1) / 2 + 0.2 * 0.6 / 2)  # 9 + 1, 2 or 3 are all 10+


def test_a_policy_read_back_from_json_equals_the_one_written():
    """Tried: the default record-error shares (0.6 + 0.3 + 0.1 sums a rounding off 1) written and read three times.
    Must hold: the shares never move, so a policy read back from model.json equals the one its int8 check judged."""
    policy = DecisionPolicy()
    for _ in range(3):
        read = DecisionPolicy.model_validate_json(policy.model_dump_json())
        assert read == policy
        policy = read


def test_many_records_at_once():
    """`decide_many` (the benchmark's thousands of drawn records at once; `reconcile` is it for one): the records of
    the hand-worked cases above in one batch, with a record the classes do not hold. Must hold: the same decisions,
    and statistics of 0 with review for the unknown record (its match of 0 would otherwise be flagged)."""
    classes = CountClasses.from_labels(PROBS)
    p = np.tile(list(PROBS.values()), (6, 1))
    decisions, stats = decide_many(p, [3, 4, 2, 5, 1, 7], classes, POLICY)
    assert decisions.tolist() == ["accept", "review", "review", "mismatch", "mismatch", "review"]
    assert stats["match"].tolist() == [0.70, 0.15, 0.08, 0.05, 0.02, 0.0]
