"""What a decision policy does to a population of records, measured on labelled photos, and fitting one to targets.

Records are simulated from labelled bins (validation to fit, test to report):
each bin's correct record (recorded = true count) and its wrong records
(recorded = true +- d, d = 1, 2, 3, inside the model's counts), weighted by the
record-error rate and the sizes' shares. Every possible record is enumerated
with its weight, so the numbers are exact expectations, free of sampling noise.

Fitting picks the lowest accept threshold whose accepted records are at most
`max_accepted_error` wrong, and, for each flag statistic, the threshold that
flags the most wrong records while flagging at most `max_false_flags` of the
correct ones; the statistic that catches more records off by two or more wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field, field_validator

from bintally.reconcile.policy import FAR, DecisionPolicy, FlagStatistic

FLAG_STATISTICS: tuple[FlagStatistic, ...] = ("match", "far")
MIN_SUPPORT = 20  # a threshold is only trusted if at least this many simulated records pass it


class RecordErrors(BaseModel):
    """How wrong records are simulated: the share of records that are wrong, and how far off."""

    rate: float = Field(0.2, gt=0, lt=1)
    sizes: dict[int, float] = {1: 0.6, 2: 0.3, 3: 0.1}  # |recorded - true| -> share of the wrong records

    @field_validator("sizes")
    @classmethod
    def _shares(cls, sizes: dict[int, float]) -> dict[int, float]:
        if not sizes or min(sizes) < 1 or min(sizes.values()) < 0 or sum(sizes.values()) <= 0:
            raise ValueError("error sizes are counts >= 1 with non-negative shares, at least one positive")
        total = sum(sizes.values())
        return {d: s / total for d, s in sorted(sizes.items())}


class Targets(BaseModel):
    max_accepted_error: float = Field(0.05, gt=0, lt=1, description="of records accepted, at most this share wrong")
    max_false_flags: float = Field(0.05, gt=0, lt=1, description="of correct records, at most this share flagged")


@dataclass(frozen=True)
class Records:
    """Simulated records, one entry each: the model's statistics for it, how wrong it is, and its weight."""

    match: np.ndarray  # P(count = recorded)
    far: np.ndarray  # P(|count - recorded| >= 2)
    error: np.ndarray  # |recorded - true|, 0 for a correct record
    weight: np.ndarray  # its share of the simulated population (sums to 1)


def simulate(probabilities: np.ndarray, true_counts: Sequence[int], classes: Sequence[int], errors: RecordErrors) -> Records:
    """Every record the simulation can make from labelled bins' count probabilities [N, K] over `classes`."""
    values = np.asarray(classes)
    position = {c: i for i, c in enumerate(classes)}
    far_mask = np.abs(values[:, None] - values[None, :]) >= FAR  # [recorded, k]: is count k far from recorded?
    made: list[tuple[int, int, int, float]] = []  # (bin, recorded class index, error size, weight)
    for i, truth in enumerate(true_counts):
        options = {d: [truth + s * d for s in (1, -1) if truth + s * d in position] for d in errors.sizes}
        # Sizes that cannot stay inside the counts (3 off a true 3 in 1-5) pass their share to the others.
        live = {d: errors.sizes[d] for d, found in options.items() if found and errors.sizes[d] > 0}
        made.append((i, position[truth], 0, 1 - errors.rate if live else 1.0))
        for d, share in live.items():
            made += [(i, position[v], d, errors.rate * share / sum(live.values()) / len(options[d])) for v in options[d]]
    bins, recorded, error, weight = (np.asarray(column) for column in zip(*made))
    p = probabilities[bins]
    return Records(
        match=p[np.arange(len(recorded)), recorded],
        far=(p * far_mask[recorded]).sum(axis=1),
        error=error,
        weight=weight / weight.sum(),
    )


class Outcome(BaseModel):
    """A policy applied to simulated records; shares are of all records unless named otherwise."""

    accepted: float
    accepted_error: float | None  # of the accepted records, the share that is wrong (None: none accepted)
    flagged: float
    false_flags: float  # of the correct records, the share flagged
    recall: dict[str, float]  # of the records off by d (and "2+": by two or more), the share flagged
    review: float


def outcome(records: Records, policy: DecisionPolicy) -> Outcome:
    accept = _passes(records.match, policy.accept_at, above=True)
    flag = _passes(_flag_statistic(records, policy.flag_statistic), policy.flag_at, above=policy.flag_statistic == "far")
    accept, flag = accept & ~flag, flag & ~accept  # both: review
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


def _flag_statistic(records: Records, statistic: FlagStatistic) -> np.ndarray:
    return records.match if statistic == "match" else records.far


def _passes(values: np.ndarray, threshold: float | None, above: bool) -> np.ndarray:
    if threshold is None:
        return np.zeros(len(values), bool)
    return values >= threshold if above else values <= threshold


def accept_curve(records: Records) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each candidate accept threshold (each distinct match probability, high to low): the threshold,
    the share accepted, the share of accepted records that are wrong, and how many records pass."""
    order = np.argsort(-records.match, kind="stable")
    match, w, wrong = records.match[order], records.weight[order], (records.error[order] > 0)
    last = np.r_[match[1:] != match[:-1], True]  # the last record of each run of equal values
    accepted = np.cumsum(w)[last]
    return match[last], accepted, np.cumsum(w * wrong)[last] / accepted, np.arange(1, len(match) + 1)[last]


def flag_curve(records: Records, statistic: FlagStatistic) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each candidate flag threshold, flagging more and more: the threshold, the false-flag rate,
    the recall of records off by two or more, and how many records pass."""
    values = _flag_statistic(records, statistic)
    order = np.argsort(values if statistic == "match" else -values, kind="stable")
    v, w, error = values[order], records.weight[order], records.error[order]
    last = np.r_[v[1:] != v[:-1], True]
    correct, far = w * (error == 0), w * (error >= FAR)
    false_flags = np.cumsum(correct)[last] / max(correct.sum(), 1e-12)
    recall = np.cumsum(far)[last] / max(far.sum(), 1e-12)
    return v[last], false_flags, recall, np.arange(1, len(v) + 1)[last]


def fit_accept(records: Records, max_error: float) -> float | None:
    """The lowest threshold (the most records accepted) whose accepted records meet `max_error`; None if none does."""
    thresholds, _, error, support = accept_curve(records)
    ok = (error <= max_error) & (support >= MIN_SUPPORT)
    return float(thresholds[np.flatnonzero(ok)[-1]]) if ok.any() else None


def fit_flag(records: Records, statistic: FlagStatistic, max_false_flags: float) -> tuple[float | None, float]:
    """The threshold that flags the most records within `max_false_flags`, and its recall of records off by 2+."""
    thresholds, false_flags, recall, support = flag_curve(records, statistic)
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
    recall_2plus: dict[str, float]  # for each flag statistic, at its fitted threshold: the choice's reason
    outcome: Outcome  # the fitted policy on the data it was fitted on
    notes: list[str]


def fit_policy(
    probabilities: np.ndarray,
    true_counts: Sequence[int],
    classes: Sequence[int],
    targets: Targets,
    errors: RecordErrors,
    split: str = "val",
    manifest_digest: str | None = None,
) -> DecisionPolicy:
    """The decision policy that meets `targets` on these labelled bins, with its report in `fitted`."""
    records = simulate(probabilities, true_counts, classes, errors)
    accept_at = fit_accept(records, targets.max_accepted_error)
    flags = {s: fit_flag(records, s, targets.max_false_flags) for s in FLAG_STATISTICS}
    statistic = max(FLAG_STATISTICS, key=lambda s: round(flags[s][1], 9))  # ties (to rounding): "match", the simpler one
    notes = []
    if accept_at is None:
        notes.append(f"no threshold keeps accepted records within {targets.max_accepted_error:.0%} wrong: never accepts")
    if flags[statistic][0] is None:
        notes.append(f"no threshold flags records within {targets.max_false_flags:.0%} false flags: never flags")
    policy = DecisionPolicy(accept_at=accept_at, flag_statistic=statistic, flag_at=flags[statistic][0])
    if policy.flag_statistic == "match" and policy.accept_at is not None and policy.flag_at is not None:
        policy = _separate(policy)
    report = FitReport(
        targets=targets,
        errors=errors,
        bins=len(true_counts),
        split=split,
        manifest_digest=manifest_digest,
        recall_2plus={s: r for s, (_, r) in flags.items()},
        outcome=outcome(records, policy),
        notes=notes,
    )
    return policy.model_copy(update={"fitted": report.model_dump(mode="json")})


def _separate(policy: DecisionPolicy) -> DecisionPolicy:
    """Flagging on the match probability must stay below accepting: where the fits cross, the flag gives way."""
    assert policy.accept_at is not None and policy.flag_at is not None
    return policy if policy.flag_at < policy.accept_at else policy.model_copy(update={"flag_at": np.nextafter(policy.accept_at, 0)})
