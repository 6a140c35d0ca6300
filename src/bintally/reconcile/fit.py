"""What a decision policy does to a population of records, measured on labelled photos, and fitting one to targets.

Records are simulated from labelled bins (validation to fit, test to report):
each bin's correct record (recorded = true count) and its wrong records
(recorded = true +- d, d = 1, 2, 3, kept >= 0 with an open top class, else inside
the model's counts), weighted by the record-error model (`policy.RecordErrors`).
A record in the open top class ("K or more") is never accepted. Every possible record is enumerated
with its weight, so the numbers are exact expectations, free of sampling noise.

Fitting picks, for each accept statistic, the lowest threshold whose accepted
records are at most `max_accepted_error` wrong (by default in 95% of bootstrap
resamples of the labelled bins, so that the target holds beyond them) and, with a batch target, whose
batches of that many records stay under its cap often enough (`BatchTarget`: the rate is over batches, and a
small batch's share strays far from it by chance; averaged over the same resamples), and keeps the statistic that
accepts the most; then, for each flag statistic, the threshold that flags the
most wrong records while flagging at most `max_false_flags` of the correct
ones, keeping the statistic that catches the most records off by two or more.
Accepting comes first, so an accepted record is never counted as caught: the
fit's numbers are the policy's. Ties go to the simpler statistic (the
first listed in `policy`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from bintally.counts import CountClasses
from bintally.reconcile.binomial import batch_share_above
from bintally.reconcile.policy import (
    ACCEPT_STATISTICS,
    FAR,
    FLAG_STATISTICS,
    LOW_MEANS_WRONG,
    AcceptStatistic,
    DecisionPolicy,
    FlagStatistic,
    RecordErrors,
    accepts,
    flags,
    statistics,
)

S = TypeVar("S", bound=str)
MIN_SUPPORT = 20  # a threshold is only trusted if records of at least this many labelled bins pass it


RESAMPLES = 200  # bootstrap draws of the labelled bins, for the confidence of a fitted threshold


class BatchTarget(BaseModel):
    """A promise about each batch, beside the rate over batches: in `share` of batches of `records` records, at most
    `max_error` of the accepted ones wrong. A batch of 811 records accepting 40 at 5% wrong has 4 or more of them
    wrong (10%) in about one batch of seven; holding every batch under a cap costs accepted records."""

    records: int = Field(gt=0, description="records in a batch")
    max_error: float = Field(0.08, gt=0, lt=1, description="of a batch's accepted records, at most this share wrong")
    share: float = Field(0.95, gt=0, lt=1, description="in at least this share of batches")


class Targets(BaseModel):
    max_accepted_error: float = Field(0.05, gt=0, lt=1, description="of records accepted, at most this share wrong")
    max_false_flags: float = Field(0.05, gt=0, lt=1, description="of correct records, at most this share flagged")
    # A threshold meets a target only if it does in this share of bootstrap resamples of the labelled bins
    # (a one-sided bound: a few hundred validation bins are noisy); None: in expectation on them.
    confidence: float | None = Field(0.95, gt=0, lt=1)
    batch: BatchTarget | None = None  # None: the accepted-error target is a rate over batches only


@dataclass(frozen=True)
class Records:
    """Simulated records, one entry each: the policy statistics for it, how wrong it is, and its weight."""

    stats: dict[str, np.ndarray]  # statistic name (`policy.statistics`) -> value per record
    error: np.ndarray  # |recorded - true|, 0 for a correct record
    weight: np.ndarray  # its share of the simulated population (sums to 1)
    bin: np.ndarray  # the labelled bin it was made from (index into the bins given to `simulate`)
    truth: np.ndarray  # that bin's true count, as a class value (K for every count of K or more)
    acceptable: np.ndarray  # False for a record in the open top class, which is never accepted

    def where(self, mask: np.ndarray) -> Records:
        """The records under `mask` (shares computed from them are of them)."""
        arrays = {name: getattr(self, name)[mask] for name in ("error", "weight", "bin", "truth", "acceptable")}
        return Records(stats={k: v[mask] for k, v in self.stats.items()}, **arrays)


def simulate(
    probabilities: np.ndarray,
    true_counts: Sequence[int],
    classes: CountClasses | Sequence[int],
    errors: RecordErrors,
    bin_weights: np.ndarray | None = None,
) -> Records:
    """Every record the error model can make from labelled bins' count probabilities [N, K] over `classes`;
    `bin_weights` [N] weigh the bins (a population with another count distribution), else each bin counts once."""
    classes = CountClasses.of(classes)
    share = np.full(len(true_counts), 1 / len(true_counts)) if bin_weights is None else bin_weights / bin_weights.sum()
    made = [(b, r, chance) for b, truth in enumerate(true_counts) for r, chance in errors.recorded(truth, classes).items()]
    bins, recorded, chances = (np.array(column) for column in zip(*made))
    truth = np.asarray(true_counts)[bins]
    return Records(
        stats=statistics(probabilities[bins], classes.index(recorded), classes, errors),
        error=np.abs(recorded - truth),
        weight=chances * share[bins],
        bin=bins,
        truth=classes.clip(truth),
        acceptable=~classes.is_open_each(recorded),
    )


def resampled_weights(records: Records, draws: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """[draws, R]: each record's weight when the labelled bins are drawn again, with replacement (bootstrap)."""
    n = int(records.bin.max()) + 1
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=draws)  # [draws, bins]
    return records.weight * counts[:, records.bin]


class Outcome(BaseModel):
    """A policy applied to simulated records; shares are of all records unless named otherwise."""

    accepted: float
    accepted_error: float | None  # of the accepted records, the share that is wrong (None: none accepted)
    flagged: float
    false_flags: float  # of the correct records, the share flagged
    recall: dict[str, float]  # of the records off by d (and "2+": by two or more), the share flagged
    review: float


def decided(records: Records, policy: DecisionPolicy) -> tuple[np.ndarray, np.ndarray]:
    """Which records the policy accepts, and which it flags (accepting comes first, as in `policy.decide_many`)."""
    accept = accepts(records.stats[policy.accept_statistic], policy.accept_at) & records.acceptable
    flag = flags(policy.flag_statistic, records.stats[policy.flag_statistic], policy.flag_at) & ~accept
    return accept, flag


def outcome(records: Records, policy: DecisionPolicy) -> Outcome:
    accept, flag = decided(records, policy)
    w, wrong = records.weight, records.error > 0

    def share(mask: np.ndarray, of: np.ndarray | None = None) -> float:
        base = w if of is None else w * of
        return float((base * mask).sum() / base.sum()) if base.sum() > 0 else 0.0

    recall = {str(d): share(flag, records.error == d) for d in sorted(set(records.error.tolist()) - {0})}
    recall["2+"] = share(flag, records.error >= FAR)
    return Outcome(
        accepted=share(accept),
        accepted_error=share(wrong, accept) if accept.any() else None,
        flagged=share(flag),
        false_flags=share(flag, ~wrong),
        recall=recall,
        review=share(~accept & ~flag),
    )


def outcome_by_range(records: Records, policy: DecisionPolicy, classes: CountClasses) -> dict[str, Outcome]:
    """`outcome` on the records of bins in each count range the classes reach (0, 1-5, 6 to K-1, K+)."""
    ranges = {name: (records.truth >= low) & (records.truth <= high) for name, (low, high) in classes.ranges().items()}
    return {name: outcome(records.where(mask), policy) for name, mask in ranges.items() if mask.any()}


def bins_passing(records: Records, order: np.ndarray, last: np.ndarray) -> np.ndarray:
    """For each candidate threshold (records taken in `order`, thresholds at `last`): how many distinct labelled
    bins have a record that passes it. Support counts bins, not records: one bin makes up to ~7 records."""
    bins = records.bin[order]
    first = np.zeros(len(bins), bool)
    first[np.unique(bins, return_index=True)[1]] = True  # each bin's first record in this order
    return np.cumsum(first)[last]


def accept_curve(
    records: Records, statistic: AcceptStatistic, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each candidate accept threshold (each distinct value, high to low): the threshold, the share
    accepted, the share of accepted records that are wrong (1 where none is accepted: a resample that accepts
    nothing meets no target), and how many labelled bins pass. `weight` ([R], or [draws, R] for resamples, giving
    [draws, T] rates) replaces the records' own. Records that are never accepted (the open top class) are left out
    of the curve, not out of the totals."""
    values = records.stats[statistic]
    order = np.argsort(-values, kind="stable")
    order = order[records.acceptable[order]]
    v, wrong = values[order], (records.error[order] > 0)
    w = (records.weight if weight is None else weight)[..., order]
    last = np.r_[v[1:] != v[:-1], True][: len(v)]  # the last record of each run of equal values (none if none can be accepted)
    accepted = np.cumsum(w, axis=-1)[..., last]
    error = np.where(accepted > 0, np.cumsum(w * wrong, axis=-1)[..., last] / np.maximum(accepted, 1e-12), 1.0)
    return v[last], accepted, error, bins_passing(records, order, last)


def flag_curve(
    records: Records, statistic: FlagStatistic, accepted: np.ndarray | None = None, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each candidate flag threshold, flagging more and more: the threshold, the false-flag rate, the recall
    of records off by two or more, and how many labelled bins pass. Records in `accepted` are never flagged (accepting
    comes first), so they count in the rates' totals but are never caught. `weight` as in `accept_curve`."""
    values = records.stats[statistic]
    order = np.argsort(values if statistic in LOW_MEANS_WRONG else -values, kind="stable")
    v, error = values[order], records.error[order]
    w = (records.weight if weight is None else weight)[..., order]
    flaggable = w if accepted is None else w * ~accepted[order]
    last = np.r_[v[1:] != v[:-1], True]
    correct, far = (error == 0), (error >= FAR)
    false_flags = np.cumsum(flaggable * correct, axis=-1)[..., last] / np.maximum((w * correct).sum(-1, keepdims=True), 1e-12)
    recall = np.cumsum(flaggable * far, axis=-1)[..., last] / np.maximum((w * far).sum(-1, keepdims=True), 1e-12)
    return v[last], false_flags, recall, bins_passing(records, order, last)


def batch_target(policy: DecisionPolicy) -> BatchTarget | None:
    """The batch promise a policy was fitted to, if any (none for explicit thresholds or a report without targets)."""
    return Targets.model_validate((policy.fitted or {}).get("targets", {})).batch


def batch_chance(batch: BatchTarget, accepted: np.ndarray, error: np.ndarray) -> float:
    """How often a batch passes `batch.max_error` where each record is accepted with chance `accepted` and an
    accepted one is wrong with chance `error`: one pair of rates, or the mean over one pair per bootstrap resample
    (the chance for a batch yet to come, the rates' own uncertainty included)."""
    pairs = zip(np.atleast_1d(accepted).tolist(), np.atleast_1d(error).tolist(), strict=True)
    return float(np.mean([batch_share_above(batch.records, a, e, batch.max_error) for a, e in pairs]))


class AcceptFit(NamedTuple):
    """An accept statistic's fitted threshold, what it accepts, and how often its batches pass a batch target's cap."""

    threshold: float | None  # None: no threshold meets the targets (never accepts)
    accepted: float  # the share of records it accepts
    batches_over_cap: float | None = None  # with a batch target: its `batch_chance` (0 where it never accepts)


def fit_accept(
    records: Records,
    statistic: AcceptStatistic,
    max_error: float,
    confidence: float | None = None,
    resampled: np.ndarray | None = None,
    batch: BatchTarget | None = None,
) -> AcceptFit:
    """The lowest threshold (the most records accepted) whose accepted records meet `max_error` (in expectation,
    or in `confidence` of bootstrap resamples: `resampled`, drawn here if not given) and `batch` (`batch_chance`: over
    the resamples, or at the rates measured without them), the share it accepts and its batch chance;
    `AcceptFit(None, 0.0, 0.0)` if none does (`batches_over_cap` None without a batch target)."""
    thresholds, accepted, error, support = accept_curve(records, statistic)
    rates = accepted, error  # each [T], or [draws, T] with resamples: the rates a batch is judged at
    if confidence is not None:
        weights = resampled_weights(records) if resampled is None else resampled
        _, drawn_accepted, drawn_error, _ = accept_curve(records, statistic, weights)
        error = np.quantile(drawn_error, confidence, axis=0)
        rates = drawn_accepted / weights.sum(axis=-1, keepdims=True), drawn_error

    ok = np.flatnonzero((error <= max_error) & (support >= MIN_SUPPORT))
    if batch is None:
        return AcceptFit(float(thresholds[ok[-1]]), float(accepted[ok[-1]])) if len(ok) else AcceptFit(None, 0.0)
    for i in ok[::-1]:  # loosest first: the batch sum runs until one passes
        if (over := batch_chance(batch, rates[0][..., i], rates[1][..., i])) <= 1 - batch.share:
            return AcceptFit(float(thresholds[i]), float(accepted[i]), over)
    return AcceptFit(None, 0.0, 0.0)


def fit_flag(
    records: Records,
    statistic: FlagStatistic,
    max_false_flags: float,
    accepted: np.ndarray | None = None,
    confidence: float | None = None,
    resampled: np.ndarray | None = None,
) -> tuple[float | None, float]:
    """The threshold that flags the most records within `max_false_flags` (in expectation, or in `confidence` of
    bootstrap resamples, as in `fit_accept`), and its recall of records off by 2+ (records in `accepted` are
    never flagged)."""
    thresholds, false_flags, recall, support = flag_curve(records, statistic, accepted)
    if confidence is not None:
        weights = resampled_weights(records) if resampled is None else resampled
        false_flags = np.quantile(flag_curve(records, statistic, accepted, weights)[1], confidence, axis=0)
    ok = (false_flags <= max_false_flags) & (support >= MIN_SUPPORT)
    if not ok.any():
        return None, 0.0
    best = np.flatnonzero(ok)[-1]
    return float(thresholds[best]), float(recall[best])


class FitReport(BaseModel):
    targets: Targets
    errors: RecordErrors
    bins: int
    split: str
    manifest_digest: str | None = None
    accepted: dict[str, float]  # for each accept statistic, the share it accepts at its fitted threshold: the choice's reason
    recall_2plus: dict[str, float]  # for each flag statistic, at its fitted threshold: the choice's reason
    outcome: Outcome  # the fitted policy on the data it was fitted on
    by_range: dict[str, Outcome] = {}  # the same, by the bins' true count: "0", "1-5", "6-9", "10+" (`CountClasses.ranges`)
    batches_over_cap: float | None = None  # with a batch target: how often such a batch passes its cap (`batch_chance`, as fitted)
    notes: list[str]


def best_of(scores: Mapping[S, float], names: Sequence[S]) -> S:
    """The name with the highest score; ties (to rounding) go to the first listed, the simpler one."""
    return max(names, key=lambda s: (round(scores[s], 9), -names.index(s)))


def fit_policy(
    probabilities: np.ndarray,
    true_counts: Sequence[int],
    classes: CountClasses | Sequence[int],
    targets: Targets,
    errors: RecordErrors,
    split: str = "val",
    manifest_digest: str | None = None,
    accept_statistics: Sequence[AcceptStatistic] = ACCEPT_STATISTICS,
    flag_statistics: Sequence[FlagStatistic] = FLAG_STATISTICS,
    bin_weights: np.ndarray | None = None,
) -> DecisionPolicy:
    """The decision policy that meets `targets` on these labelled bins (weighted by `bin_weights`, see `simulate`),
    with its report in `fitted` (choosing among the statistics given: fewer, to measure what the others add)."""
    records = simulate(probabilities, true_counts, classes, errors, bin_weights)
    c, resampled = targets.confidence, resampled_weights(records) if targets.confidence is not None else None  # drawn once
    accepting = {s: fit_accept(records, s, targets.max_accepted_error, c, resampled, targets.batch) for s in accept_statistics}
    shares = {s: fit.accepted for s, fit in accepting.items()}
    accept_statistic = best_of(shares, accept_statistics)
    chosen = accepting[accept_statistic]
    accepted = accepts(records.stats[accept_statistic], chosen.threshold) & records.acceptable
    flagging = {s: fit_flag(records, s, targets.max_false_flags, accepted, c, resampled) for s in flag_statistics}
    recalls = {s: recall for s, (_, recall) in flagging.items()}
    flag_statistic = best_of(recalls, flag_statistics)
    notes = []
    if chosen.threshold is None:
        b = targets.batch
        per_batch = "" if b is None else f", and {b.max_error:.0%} in {b.share:.0%} of batches of {b.records:,} records"
        notes.append(f"no threshold keeps accepted records within {targets.max_accepted_error:.0%} wrong{per_batch}: never accepts")
    if flagging[flag_statistic][0] is None:
        notes.append(f"no threshold flags records within {targets.max_false_flags:.0%} false flags: never flags")
    policy = _separate(
        DecisionPolicy.model_construct(
            accept_statistic=accept_statistic,
            accept_at=chosen.threshold,
            flag_statistic=flag_statistic,
            flag_at=flagging[flag_statistic][0],
            errors=errors,
            fitted=None,
        )
    )
    fitted = outcome(records, policy)
    report = FitReport(
        targets=targets,
        errors=errors,
        bins=len(true_counts),
        split=split,
        manifest_digest=manifest_digest,
        accepted=shares,
        recall_2plus=recalls,
        outcome=fitted,
        by_range=outcome_by_range(records, policy, CountClasses.of(classes)),
        batches_over_cap=chosen.batches_over_cap,
        notes=notes,
    )
    return DecisionPolicy.model_validate(policy.model_dump() | {"fitted": report.model_dump(mode="json")})


def _separate(policy: DecisionPolicy) -> DecisionPolicy:
    """Accepting and flagging on the same statistic: where the fits cross, the flag gives way (below accept_at)."""
    a, f = policy.accept_at, policy.flag_at
    if policy.accept_statistic != policy.flag_statistic or a is None or f is None or f < a:
        return policy
    return policy.model_copy(update={"flag_at": float(np.nextafter(a, 0))})
