"""The decision for one record: does the photo agree with the bin's recorded quantity?

The model gives P(count = k) for every count class (calibrated: see
`model.calibration`). For a record that says `expected`:

    match probability  P(count = expected)
    far probability    P(|count - expected| >= 2)

    accept    match >= accept_at                 the record stands, nobody looks
    mismatch  match <= flag_at   (flag on match)  the photo contradicts the record
              far >= flag_at     (flag on far)
    review    neither (or, never in a fitted policy, both)   a person counts the bin

A threshold of None never fires: a policy that could not meet its target on
validation never accepts (or never flags) rather than doing so quietly. A record
outside the model's count classes cannot be judged and goes to review.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

Decision = Literal["accept", "review", "mismatch"]
DECISIONS: tuple[Decision, ...] = ("accept", "review", "mismatch")
FlagStatistic = Literal["match", "far"]
FAR = 2  # a record "far" off is wrong by at least this many objects


class DecisionPolicy(BaseModel):
    accept_at: float | None = Field(0.5, gt=0, le=1, description="accept when P(count = expected) is at least this; None: never")
    flag_statistic: FlagStatistic = "match"
    flag_at: float | None = Field(0.05, ge=0, le=1, description="flag when the flag statistic passes this; None: never")
    fitted: dict | None = None  # how it was fitted (targets, data, validation outcome): `fit.FitReport`

    @model_validator(mode="after")
    def _consistent(self) -> DecisionPolicy:
        if self.flag_statistic == "match" and None not in (self.accept_at, self.flag_at):
            assert self.accept_at is not None and self.flag_at is not None
            if self.flag_at >= self.accept_at:
                raise ValueError(f"the mismatch threshold ({self.flag_at}) must be below accept_at ({self.accept_at})")
        return self

    def with_thresholds(self, accept_at: float | None = None, mismatch_at: float | None = None) -> DecisionPolicy:
        """This policy with explicit thresholds in place of its own (mismatch_at flags on the match probability)."""
        update: dict = {} if accept_at is None else {"accept_at": accept_at}
        if mismatch_at is not None:
            update |= {"flag_statistic": "match", "flag_at": mismatch_at}
        return DecisionPolicy.model_validate({**self.model_dump(), **update, "fitted": None}) if update else self


class Reconciliation(BaseModel):
    expected_quantity: int
    count: int
    match_probability: float
    far_probability: float
    decision: Decision


def decide(accept: bool, flag: bool) -> Decision:
    return "review" if accept == flag else "accept" if accept else "mismatch"


def reconcile(probabilities: dict[str, float], expected: int, policy: DecisionPolicy) -> Reconciliation:
    """`probabilities` maps each count (as text, as the API answers it) to its probability."""
    count = int(max(probabilities, key=probabilities.__getitem__))
    if str(expected) not in probabilities:
        return Reconciliation(expected_quantity=expected, count=count, match_probability=0.0, far_probability=0.0, decision="review")
    match = probabilities[str(expected)]
    far = sum(p for c, p in probabilities.items() if abs(int(c) - expected) >= FAR)
    accept = policy.accept_at is not None and match >= policy.accept_at
    flag = policy.flag_at is not None and (match <= policy.flag_at if policy.flag_statistic == "match" else far >= policy.flag_at)
    return Reconciliation(
        expected_quantity=expected, count=count, match_probability=match, far_probability=far, decision=decide(accept, flag)
    )
