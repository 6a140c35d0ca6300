"""The decision for one record: does the photo agree with the bin's recorded quantity?

The model gives P(count = k) for every count class (calibrated: see
`model.calibration`). For a record that says `recorded`, four statistics:

    match           P(count = recorded)
    far             P(|count - recorded| >= 2)
    record_correct  P(the record is right | photo, record-error model)
    record_far      P(the record is off by 2 or more | photo, record-error model)

The last two are Bayes' rule over `RecordErrors` (how often records are wrong,
and by how much): P(true = t | photo, record r) is proportional to
P(count = t | photo) * P(record r | true t). They weigh each other count by how
likely a record is to be that far off, so a photo whose doubt sits right beside
the record (where most mistakes are) counts against it more than doubt far away.
A small share of wrong records (`GROSS_SHARE`) is taken to be off by anything, so
that a record farther from the photo than any error size reads as wrong.

    accept    the accept statistic >= accept_at                   the record stands, nobody looks
    mismatch  otherwise, if the flag statistic <= flag_at (match, record_correct: low means wrong)
              or >= flag_at (far, record_far)                    the photo contradicts the record
    review    neither                                            a person counts the bin

Accepting comes first: its error target is met over every record it accepts,
and flags are fitted on what is left (`fit`).

A threshold of None never fires: a policy that could not meet its target on
validation never accepts (or never flags) rather than doing so quietly. A record
outside the model's count classes cannot be judged and goes to review.

With an open top class ("K or more", `counts.CountClasses`), a record of K or more
is judged against that class: it is never accepted (the photo cannot confirm an
exact 25), and it is flagged when the photo clearly holds fewer than K.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from bintally.counts import CountClasses

Decision = Literal["accept", "review", "mismatch"]
DECISIONS: tuple[Decision, ...] = ("accept", "review", "mismatch")
AcceptStatistic = Literal["match", "record_correct"]
FlagStatistic = Literal["match", "far", "record_correct", "record_far"]
ACCEPT_STATISTICS: tuple[AcceptStatistic, ...] = ("match", "record_correct")
FLAG_STATISTICS: tuple[FlagStatistic, ...] = ("match", "far", "record_correct", "record_far")
LOW_MEANS_WRONG = {"match", "record_correct"}  # flagged when at most the threshold; the others when at least
FAR = 2  # a record "far" off is wrong by at least this many objects
# Of wrong records, the share taken to be off by anything (each count class alike) in the record_* statistics. Under
# the error model alone a record of 25 for a photo of about 2 can come only from counts of 7 or more, however
# unlikely the photo makes them, and Bayes' rule read it as right at 83% (the quickstart's model): review, not the
# mismatch it is. With 5% of wrong records gross, it reads as right at 37%. The simulated records (`fit`) keep
# the error model's sizes; on records the sizes can explain the statistics move by well under a point.
GROSS_SHARE = 0.05
STATISTIC_TEXT = {
    "match": "P(count = recorded)",
    "far": "P(|count - recorded| >= 2)",
    "record_correct": "P(record right | photo)",
    "record_far": "P(record off by 2+ | photo)",
}


class RecordErrors(BaseModel):
    """How records go wrong: the share of records that are wrong, and how far off (a wrong record goes either
    way with equal odds, staying inside the model's counts)."""

    rate: float = Field(0.2, gt=0, lt=1)
    sizes: dict[int, float] = {1: 0.6, 2: 0.3, 3: 0.1}  # |recorded - true| -> share of the wrong records

    @field_validator("sizes")
    @classmethod
    def _shares(cls, sizes: dict[int, float]) -> dict[int, float]:
        if not sizes or min(sizes) < 1 or min(sizes.values()) < 0 or sum(sizes.values()) <= 0:
            raise ValueError("error sizes are counts >= 1 with non-negative shares, at least one positive")
        total = sum(sizes.values())
        # Shares already summing to 1 stay as given: dividing again by a sum a rounding off 1 moves them at every
        # load, so a policy read back from model.json would not equal the one written.
        return {d: s if abs(total - 1) < 1e-9 else s / total for d, s in sorted(sizes.items())}

    def recorded(self, truth: int, classes: CountClasses) -> dict[int, float]:
        """P(recorded = r | true = truth) for every record r the model can make of a bin of `truth`: records stay
        where `classes` can judge them (`CountClasses.contains`: any count >= K with an open top class); a size that
        cannot (3 off a true 3 in 1-5) passes its share to the sizes that can."""
        options = {d: [truth + s * d for s in (1, -1) if classes.contains(truth + s * d)] for d in self.sizes}
        live = {d: self.sizes[d] for d, found in options.items() if found and self.sizes[d] > 0}
        chances = {truth: 1 - self.rate if live else 1.0}
        for d, share in live.items():
            for r in options[d]:
                chances[r] = chances.get(r, 0.0) + self.rate * share / sum(live.values()) / len(options[d])
        return chances

    def matrix(self, classes: CountClasses | Sequence[int]) -> np.ndarray:
        """[K, K]: P(recorded in class r | true = classes[t]) at [t, r]; each row sums to 1. The open top class
        stands for its lowest count, K, where records cross into and out of it."""
        classes = CountClasses.of(classes)
        q = np.zeros((len(classes.values), len(classes.values)))
        for t, truth in enumerate(classes.values):
            for r, chance in self.recorded(truth, classes).items():
                q[t, classes.index([r])[0]] += chance
        return q


def statistics(
    probabilities: np.ndarray, recorded: np.ndarray, classes: CountClasses | Sequence[int], errors: RecordErrors
) -> dict[str, np.ndarray]:
    """The four statistics for N records: count probabilities [N, K] over `classes`, recorded class indices [N].
    Distances are between class values, so a record in the open class is "far" only from counts K - 2 and below."""
    classes = CountClasses.of(classes)
    values, rows = np.asarray(classes.values), np.arange(len(recorded))
    far_mask = np.abs(values[None, :] - values[recorded][:, None]) >= FAR  # [N, K]: is count k far from the record?
    gross = errors.rate * GROSS_SHARE / len(classes.values)  # P(a record in any one class | true t), off by anything
    joint = probabilities * ((1 - errors.rate * GROSS_SHARE) * errors.matrix(classes)[:, recorded].T + gross)  # P(t) * P(r | t)
    evidence = joint.sum(axis=1)
    far = (probabilities * far_mask).sum(axis=1)
    # Evidence 0 (only for a photo with no probability anywhere, as gross errors reach every record): judged wrong.
    possible = evidence > 0
    safe = np.where(possible, evidence, 1.0)
    return {
        "match": probabilities[rows, recorded],
        "far": far,
        "record_correct": np.where(possible, joint[rows, recorded] / safe, 0.0),
        "record_far": np.where(possible, (joint * far_mask).sum(axis=1) / safe, far),
    }


def flags(statistic: FlagStatistic, values: np.ndarray, threshold: float | None) -> np.ndarray:
    """Which of `values` of a flag statistic are flagged at `threshold` (None: none)."""
    if threshold is None:
        return np.zeros(len(values), bool)
    return values <= threshold if statistic in LOW_MEANS_WRONG else values >= threshold


def accepts(values: np.ndarray, threshold: float | None) -> np.ndarray:
    return np.zeros(len(values), bool) if threshold is None else values >= threshold


class DecisionPolicy(BaseModel):
    accept_statistic: AcceptStatistic = "match"
    accept_at: float | None = Field(0.5, gt=0, le=1, description="accept when the accept statistic is at least this; None: never")
    flag_statistic: FlagStatistic = "match"
    flag_at: float | None = Field(0.05, ge=0, le=1, description="flag when the flag statistic passes this; None: never")
    errors: RecordErrors = RecordErrors()  # the record-error model the record_* statistics assume
    fitted: dict | None = None  # how it was fitted (targets, data, validation outcome): `fit.FitReport`

    @model_validator(mode="after")
    def _consistent(self) -> DecisionPolicy:
        if self.accept_statistic == self.flag_statistic and None not in (self.accept_at, self.flag_at):
            assert self.accept_at is not None and self.flag_at is not None
            if self.flag_at >= self.accept_at:
                raise ValueError(f"the mismatch threshold ({self.flag_at}) must be below accept_at ({self.accept_at})")
        return self

    def with_thresholds(self, accept_at: float | None = None, mismatch_at: float | None = None) -> DecisionPolicy:
        """This policy with explicit thresholds on P(count = recorded) in place of its own. Thresholds that cannot go
        together (with each other, or one with this policy's own) are a ValueError of one line, for a command to print."""
        update: dict = {} if accept_at is None else {"accept_statistic": "match", "accept_at": accept_at}
        if mismatch_at is not None:
            update |= {"flag_statistic": "match", "flag_at": mismatch_at}
        if not update:
            return self
        try:
            return DecisionPolicy.model_validate({**self.model_dump(), **update, "fitted": None})
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from exc

    def describe(self) -> str:
        accepting, flagging = STATISTIC_TEXT[self.accept_statistic], STATISTIC_TEXT[self.flag_statistic]
        sign = "<=" if self.flag_statistic in LOW_MEANS_WRONG else ">="
        accept = "never accept" if self.accept_at is None else f"accept when {accepting} >= {self.accept_at:.3f}"
        flag = "never flag" if self.flag_at is None else f"flag when {flagging} {sign} {self.flag_at:.3f}"
        return f"{accept}; {flag}"


class Reconciliation(BaseModel):
    expected_quantity: int
    count: int
    at_least: bool = False  # the count is the model's open top class: this many or more
    match_probability: float
    far_probability: float
    record_correct_probability: float  # under the policy's record-error model
    decision: Decision


def decide_many(
    probabilities: np.ndarray, expected: Sequence[int] | np.ndarray, classes: CountClasses, policy: DecisionPolicy
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """N records decided at once: count probabilities [N, K] over `classes`, recorded quantities [N]. Returns each
    record's decision ("accept", "review", "mismatch") and the four statistics, 0 for a record outside the classes
    (which goes to review). `reconcile` is this for one record."""
    expected = np.asarray(expected, dtype=np.int64)
    known = classes.contains_each(expected)
    recorded = classes.index(np.where(known, expected, classes.values[0]))
    stats = {name: np.where(known, value, 0.0) for name, value in statistics(probabilities, recorded, classes, policy.errors).items()}
    exact = known & ~classes.is_open_each(expected)  # a record of K+ is never accepted
    accept = exact & accepts(stats[policy.accept_statistic], policy.accept_at)
    flag = known & ~accept & flags(policy.flag_statistic, stats[policy.flag_statistic], policy.flag_at)
    return np.where(accept, "accept", np.where(flag, "mismatch", "review")), stats


def reconcile(probabilities: dict[str, float], expected: int, policy: DecisionPolicy) -> Reconciliation:
    """`probabilities` maps each count class (its label, as the API answers it: "3", "10+") to its probability."""
    classes = CountClasses.from_labels(probabilities)
    p = np.array([list(probabilities.values())])
    count = classes.values[int(np.argmax(p[0]))]
    decisions, stats = decide_many(p, [expected], classes, policy)
    return Reconciliation(
        expected_quantity=expected,
        count=count,
        at_least=classes.is_open(count),
        match_probability=float(stats["match"][0]),
        far_probability=float(stats["far"][0]),
        record_correct_probability=float(stats["record_correct"][0]),
        decision=str(decisions[0]),
    )
