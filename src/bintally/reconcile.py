"""Inventory decisions: does the photo agree with the bin's recorded quantity?

The model gives P(count = k) for every count class it knows. For a record that
says `expected`, P(count = expected) is the match probability, and:

    accept     match probability >= accept_at     the record stands, nobody looks
    mismatch   match probability <= mismatch_at   the photo contradicts the record
    review     anything in between                a person counts the bin

A record outside the model's count classes cannot be judged and goes to review.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field, model_validator

Decision = Literal["accept", "review", "mismatch"]
DECISIONS: tuple[Decision, ...] = ("accept", "review", "mismatch")


class ReconcilePolicy(BaseModel):
    accept_at: float = Field(0.5, gt=0, le=1, description="accept when P(count = expected) is at least this")
    mismatch_at: float = Field(0.05, ge=0, lt=1, description="flag a mismatch when P(count = expected) is at most this")

    @model_validator(mode="after")
    def _ordered(self) -> "ReconcilePolicy":
        if self.mismatch_at >= self.accept_at:
            raise ValueError(f"mismatch_at ({self.mismatch_at}) must be below accept_at ({self.accept_at})")
        return self


class Reconciliation(BaseModel):
    expected_quantity: int
    count: int
    match_probability: float
    decision: Decision


def reconcile(probabilities: dict[str, float], expected: int, policy: ReconcilePolicy) -> Reconciliation:
    """`probabilities` maps each count (as text, as the API answers it) to its probability."""
    count = int(max(probabilities, key=probabilities.__getitem__))
    if str(expected) not in probabilities:
        return Reconciliation(expected_quantity=expected, count=count, match_probability=0.0, decision="review")
    p = probabilities[str(expected)]
    decision: Decision = "accept" if p >= policy.accept_at else "mismatch" if p <= policy.mismatch_at else "review"
    return Reconciliation(expected_quantity=expected, count=count, match_probability=p, decision=decision)


class DecisionSummary(BaseModel):
    total: int
    by_decision: dict[str, int]
    # Where the true count is known (a labelled manifest): how often each decision was right.
    accept_precision: float | None = None  # accepted records whose quantity was right
    mismatch_precision: float | None = None  # flagged records whose quantity was wrong


def summarise(results: Sequence[Reconciliation], true_counts: Sequence[int] | None = None) -> DecisionSummary:
    by_decision = Counter(r.decision for r in results)
    summary = DecisionSummary(total=len(results), by_decision={d: by_decision.get(d, 0) for d in DECISIONS})
    if true_counts is None:
        return summary

    def precision(decision: Decision, holds) -> float | None:
        picked = [(r, t) for r, t in zip(results, true_counts) if r.decision == decision]
        return sum(holds(r, t) for r, t in picked) / len(picked) if picked else None

    summary.accept_precision = precision("accept", lambda r, t: r.expected_quantity == t)
    summary.mismatch_precision = precision("mismatch", lambda r, t: r.expected_quantity != t)
    return summary
