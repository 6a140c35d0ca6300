"""The decision for one record from count probabilities: accept, review, mismatch, under a policy."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from bintally.counts import CountClasses
from bintally.reconcile.policy import GROSS_SHARE, DecisionPolicy, RecordErrors, decide_many, reconcile, statistics

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


def gross_model(k: int) -> tuple[float, float]:
    """(s, g): the error model's chances are scaled by s = 1 - 0.2 * 0.05 and every record class gets g = 0.2 * 0.05 / k
    more (`policy.GROSS_SHARE` of the 20% wrong records off by anything, over k classes)."""
    return 1 - 0.2 * GROSS_SHARE, 0.2 * GROSS_SHARE / k


def test_the_posterior_that_the_record_is_right_by_hand():
    """Record 3, default error model (20% wrong; 1/2/3 off at 60/30/10%): every other count t makes a record of 3
    with P(3 | t) = 0.06, a true 3 with 0.8, each scaled by s and g added (`gross_model`). So P(record right) =
    0.70 (0.8 s + g) / (0.70 (0.8 s + g) + 0.30 (0.06 s + g)) = 0.9679 (0.9689 without gross errors)."""
    s, g = gross_model(5)
    result = reconcile(PROBS, 3, DecisionPolicy(accept_statistic="record_correct", accept_at=0.95, flag_at=0.05))
    right = 0.70 * (0.8 * s + g)
    assert result.record_correct_probability == pytest.approx(right / (right + 0.30 * (0.06 * s + g))) and result.decision == "accept"


def test_doubt_beside_the_record_counts_against_it_more_than_doubt_far_away():
    """Counts 1-7, record 4, P(count = 4) = 0.4 in both photos; the rest on 3 and 5, or on 1 and 7. A neighbour
    makes a record of 4 with P 0.06, a count three away with 0.02 (scaled by s, g added: `gross_model`): P(record
    right) 0.4 (0.8 s + g) / (that + 0.6 (0.06 s + g)) against the same with 0.02: 0.897 against 0.961."""
    s, g = gross_model(7)
    near, far = np.array([[0, 0, 0.3, 0.4, 0.3, 0, 0]]), np.array([[0.3, 0, 0, 0.4, 0, 0, 0.3]])
    stats = [statistics(p, np.array([3]), list(range(1, 8)), RecordErrors()) for p in (near, far)]
    right, beside, away = 0.4 * (0.8 * s + g), 0.6 * (0.06 * s + g), 0.6 * (0.02 * s + g)
    assert stats[0]["match"] == stats[1]["match"] == pytest.approx([0.4])
    assert stats[0]["record_correct"] == pytest.approx([right / (right + beside)])
    assert stats[1]["record_correct"] == pytest.approx([right / (right + away)])
    assert stats[0]["record_far"] == pytest.approx([0.0]) and stats[1]["record_far"] == pytest.approx([away / (right + away)])


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


@pytest.mark.parametrize("statistic, flag_at", [("record_correct", 0.68), ("record_far", 0.2)])
def test_a_record_farther_off_than_any_error_size_is_flagged_on_the_posterior_statistics(statistic, flag_at):
    """The quickstart model's answer for a photo of 2 items (read from its server: P(2) 41%, P(7 or more) 0.3%) and
    records of 9, 12 and 25, under the posterior statistics its fitted policies flag on (thresholds as fitted, to two
    places). Under the error model alone (off by 1-3) these records can come only from 6 or more, so Bayes' rule
    judged them against those unlikely counts: "right" at 76-83%, sent to review. Must hold: each is a mismatch,
    its P(record right | photo) under 50%; a record of 2 still reads as right."""
    photo = {"0": 0.0644, "1": 0.2479, "2": 0.4108, "3": 0.2099, "4": 0.0398, "5": 0.0166, "6": 0.0070}
    photo |= {"7": 0.0014, "8": 0.00078, "9": 0.00078, "10+": 0.00068}
    policy = DecisionPolicy(accept_statistic="match", accept_at=0.9, flag_statistic=statistic, flag_at=flag_at)
    for recorded in (9, 12, 25):
        judged = reconcile(photo, recorded, policy)
        assert judged.decision == "mismatch" and judged.record_correct_probability < 0.5, (recorded, judged)
    assert reconcile(photo, 2, policy).record_correct_probability > 0.9


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
