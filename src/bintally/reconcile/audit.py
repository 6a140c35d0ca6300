"""Audits that check a policy's promise: which decided records people recount, and what the recounts say.

`audit_marks` marks a share `rate` of the accepted and of the flagged (mismatch) records for a recount.
Each record's draw is a hash of (seed, record id), not a sequential random stream, so the same seed marks
the same records whatever the order of the file and whichever other records share it: a rerun marks them
again, and sorting the input cannot steer which bins are checked. Reviewed records are counted by a
person anyway and are never marked.

`audit_report` turns the recounts into two realised rates, each with a one-sided upper confidence bound
(Clopper-Pearson: exact for a binomial share, so it holds for a handful of audits too):

    accepted wrong   of audited accepted records, the share whose record was wrong; promised: the fit's
                     target `max_accepted_error`
    flags false      of audited flagged records, the share whose record was right; expected: what the fit
                     measured on validation under its record-error model (its target, `max_false_flags`,
                     is a share of correct records, which audits of flags alone cannot measure)

With marks, only recounts of marked records count: a recount someone chose is not a random sample, and
the bound holds only for one. Without marks every recount counts (for example a labelled manifest's).
A bound above the promise is a warning: either the promise is broken or too few records were audited
to confirm it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from bintally.reconcile.binomial import binomial_cdfs
from bintally.reconcile.fit import BatchTarget, batch_target
from bintally.reconcile.policy import DecisionPolicy, Reconciliation

AUDITED_DECISIONS = ("accept", "mismatch")  # reviewed records are counted by a person anyway


def audit_draw(record_id: str, seed: int) -> float:
    """A uniform draw in [0, 1) that depends only on (seed, record id)."""
    digest = hashlib.sha256(f"{seed}\x00{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_marked(record_id: str, decision: str | None, rate: float, seed: int) -> bool:
    """Whether this decided record is marked for a recount (None: undecided, never marked)."""
    return decision in AUDITED_DECISIONS and audit_draw(record_id, seed) < rate


def audit_marks(ids: Sequence[str], decisions: Sequence[str | None], rate: float, seed: int) -> list[bool]:
    """For each record, whether it is marked: a share `rate` of the accepted and of the flagged records."""
    return [is_marked(i, d, rate, seed) for i, d in zip(ids, decisions, strict=True)]


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """The one-sided upper confidence bound on a binomial rate after k events in n trials (1.0 when k = n).

    It is the p at which seeing k or fewer has probability 1 - confidence (the `confidence` quantile of
    Beta(k + 1, n - k)); the binomial CDF falls as p grows, so bisection finds it to float precision."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if k == n:
        return 1.0
    low, high = 0.0, 1.0
    while high - low > 1e-12:
        mid = (low + high) / 2
        low, high = (mid, high) if binomial_cdfs(n, mid, k)[-1] > 1 - confidence else (low, mid)
    return high


def wrong_at_most(accepted: int, promised: float, confidence: float = 0.95) -> int:
    """How many of `accepted` records can be wrong in a `confidence` share of batches while the promise holds: the
    smallest k with P(X <= k) >= confidence, X ~ Binomial(accepted, promised). The promise is a rate over batches;
    this is how far one batch of this size strays from it by chance (40 accepted at 5%: up to 4, 10%)."""
    if not (0 < promised < 1 and 0 < confidence < 1):
        raise ValueError(f"need 0 < promised < 1 and 0 < confidence < 1, got {promised} and {confidence}")
    if accepted == 0:
        return 0
    cdfs = binomial_cdfs(accepted, promised, accepted)
    return min(int(np.searchsorted(cdfs, confidence)), accepted)  # rounding can leave the last CDF a hair under 1


class AuditedRate(BaseModel):
    """Of the audited records of one decision, how many the recounts show the decision got wrong."""

    audited: int
    wrong: int  # accepted: the record was wrong; flagged: the record was right (a false flag)
    upper: float  # one-sided upper confidence bound on the rate (1.0 with nothing audited)
    promised: float | None = None  # the fitted policy's word; None: no fitted policy (explicit thresholds)

    @property
    def rate(self) -> float | None:
        return self.wrong / self.audited if self.audited else None

    @property
    def passes_promise(self) -> bool:
        return self.audited > 0 and self.promised is not None and self.upper > self.promised


class AuditReport(BaseModel):
    rate: float = Field(ge=0, le=1)  # the share marked; 0: no marks, every recount counts
    seed: int
    marked: int
    recounted: int  # records counted below: marked (or, without marks, any) with a recount
    confidence: float
    accepted: AuditedRate  # wrong: accepted records whose record was wrong
    flagged: AuditedRate  # wrong: flagged records whose record was right

    def named(self) -> list[tuple[str, AuditedRate, str]]:
        """Each rate with its name and what its promise is called."""
        return [("accepted records wrong", self.accepted, "promised"), ("flags false", self.flagged, "expected")]

    def warnings(self) -> list[str]:
        """One line for each bound that passes its promise."""
        lines = []
        for name, r, word in self.named():
            if r.passes_promise:
                assert r.promised is not None and r.rate is not None
                lines.append(
                    f"warning: {name} {r.wrong}/{r.audited} = {r.rate:.1%}; its {self.confidence:.0%} upper bound "
                    f"{r.upper:.1%} passes the {word} {r.promised:.1%} (broken, or too few audits to confirm it)"
                )
        return lines


def promises(policy: DecisionPolicy) -> tuple[float | None, float | None]:
    """The fitted policy's word: the accepted-error target, and the share of flags expected false at the fit
    (false flags x correct records / flagged, on validation under its record-error model)."""
    fitted = policy.fitted or {}
    accepted = fitted.get("targets", {}).get("max_accepted_error")
    o = fitted.get("outcome", {})
    flags_false = None
    if o.get("flagged"):
        flags_false = o["false_flags"] * (1 - policy.errors.rate) / o["flagged"]
    return accepted, flags_false


class BatchSpread(BaseModel):
    """How far this batch's share of wrong accepted records may stray from the promise by chance alone."""

    accepted: int
    promised: float  # the fitted policy's rate of wrong records among accepted ones
    wrong_at_most: int  # in `confidence` of batches of this many accepted records, while the promise holds
    confidence: float
    target: BatchTarget | None = None  # the batch promise the policy was fitted to, if any

    def describe(self) -> str:
        share = self.wrong_at_most / self.accepted
        kept = (
            "the promise is a rate over batches"
            if self.target is None
            else f"the policy was fitted to keep at most {self.target.max_error:.0%} wrong in {self.target.share:.0%} of batches "
            f"of {self.target.records:,} records"
        )
        return (
            f"{self.accepted:,} accepted: with the promise ({self.promised:.1%} wrong) kept, up to {self.wrong_at_most:,} of them "
            f"({share:.1%}) are wrong in {self.confidence:.0%} of batches this size; {kept}"
        )


def batch_spread(accepted: int, policy: DecisionPolicy, confidence: float = 0.95) -> BatchSpread | None:
    """The spread for a batch with `accepted` records accepted by `policy`; None without a promise or an accept."""
    promised, _ = promises(policy)
    if promised is None or accepted == 0:
        return None
    return BatchSpread(
        accepted=accepted,
        promised=promised,
        wrong_at_most=wrong_at_most(accepted, promised, confidence),
        confidence=confidence,
        target=batch_target(policy),
    )


def audit_report(
    results: Sequence[Reconciliation],
    true_counts: Sequence[int | None],
    marks: Sequence[bool] | None,
    policy: DecisionPolicy,
    rate: float = 0.0,
    seed: int = 0,
    confidence: float = 0.95,
) -> AuditReport:
    """What the recounts (None where a record has none) of the marked records (None: of every record) say."""
    counted = marks if marks is not None else [True] * len(results)
    audited = [(r, t) for r, t, m in zip(results, true_counts, counted, strict=True) if m and t is not None]
    promised = dict(zip(AUDITED_DECISIONS, promises(policy)))

    def audited_rate(decision: str) -> AuditedRate:
        # accepted: wrong when the record was; flagged: wrong when the record was right
        picked = [(r.expected_quantity != t) == (decision == "accept") for r, t in audited if r.decision == decision]
        n, k = len(picked), sum(picked)
        return AuditedRate(audited=n, wrong=k, upper=clopper_pearson_upper(k, n, confidence), promised=promised[decision])

    return AuditReport(
        rate=rate,
        seed=seed,
        marked=sum(marks) if marks is not None else 0,
        recounted=len(audited),
        confidence=confidence,
        accepted=audited_rate("accept"),
        flagged=audited_rate("mismatch"),
    )
