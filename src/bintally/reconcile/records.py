"""`bintally reconcile MODEL RECORDS --out DECISIONS.csv`: a decision for every record of a file.

Records come from a manifest (its recorded counts, one split) or a CSV with
`uri` and `expected_quantity` (optional `id`, `true_quantity`; every other
column, such as a bin location or an ASIN, is carried through to the output so a
user can act on a row). A record's id is its `id`, or where that is missing or
blank its uri exactly as written (not the file name: `/day1/00585.jpg` and
`/day2/00585.jpg` are two bins, whose audits must not mix). A carried column
named like an output column (`count`, `decision`, ... as in a decisions CSV fed
back in) is written as `input_<name>` (`input_input_<name>` one round further
back), so the output's own columns only ever hold this run's numbers. The policy is the artifact's fitted one unless explicit
thresholds are given. Audited counts (`true_quantity`, or `--audited FILE` of
id, true_quantity from people's recounts) give the realised error among
accepted records and the precision of flags. `--audit-rate` marks a share of the
accepted and flagged records for a recount (column `audit`; see `audit`), and
the recounts of marked records bound the realised rates beside the promised ones.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Sequence
from typing import cast

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from bintally import storage
from bintally.counts import CountClasses
from bintally.data.manifest import read_manifest
from bintally.model.artifact import ModelArtifact, load_artifact
from bintally.model.predictor import Backend, CountScore, Precision, score_probabilities
from bintally.reconcile.audit import AuditReport, BatchSpread, audit_report, batch_spread, is_marked
from bintally.reconcile.fit import batch_target
from bintally.reconcile.policy import DECISIONS, DecisionPolicy, Reconciliation, reconcile
from bintally.reconcile.prior import TooFewPhotos, adapt_to_batch
from bintally.scoring.model import load_model
from bintally.scoring.on_ray import RayConfig, remove_shards, score_on_ray
from bintally.scoring.one_machine import score_images
from bintally.scoring.rows import csv_text, locked, outcome_of

log = logging.getLogger(__name__)

OUT_COLUMNS = [
    "id",
    "uri",
    "expected_quantity",
    "count",
    "at_least",  # the count is the model's open top class: that many or more
    "match_probability",
    "far_probability",
    "record_correct_probability",
    "decision",
    "audit",
    "error",
]
RECORD_COLUMNS = {"id", "uri", "expected_quantity", "true_quantity"}


class Record(BaseModel):
    id: str
    uri: str
    expected_quantity: int = Field(ge=0)
    true_quantity: int | None = Field(None, ge=0)  # an audited count, where one exists
    extra: dict[str, str] = {}  # the input's other columns, written back unchanged


class DecisionSummary(BaseModel):
    total: int
    by_decision: dict[str, int]
    audited: int = 0  # decided records with an audited count
    accepted_error: float | None = None  # of audited accepted records, the share whose record was wrong
    flag_precision: float | None = None  # of audited flagged records, the share whose record was wrong


def summarise(results: Sequence[Reconciliation], true_counts: Sequence[int | None] | None = None) -> DecisionSummary:
    """Decision counts; with audited true counts (None where a record has none), how often each decision was right."""
    by_decision = Counter(r.decision for r in results)
    truths = list(true_counts) if true_counts is not None else [None] * len(results)
    audited = [(r, t) for r, t in zip(results, truths) if t is not None]

    def wrong_share(decision: str) -> float | None:
        picked = [r.expected_quantity != t for r, t in audited if r.decision == decision]
        return sum(picked) / len(picked) if picked else None

    return DecisionSummary(
        total=len(results),
        by_decision={d: by_decision.get(d, 0) for d in DECISIONS},
        audited=len(audited),
        accepted_error=wrong_share("accept"),
        flag_precision=wrong_share("mismatch"),
    )


class ReconcileConfig(BaseModel):
    model: str
    records: str  # a manifest (.parquet: its counts are the records) or a CSV of uri, expected_quantity
    out: str
    split: str = "test"  # for a manifest: which split's bins
    accept_at: float | None = Field(None, gt=0, le=1)  # explicit thresholds override the artifact's policy
    mismatch_at: float | None = Field(None, ge=0, lt=1)
    audited: str | None = None  # CSV of id, true_quantity
    audit_rate: float = Field(0.0, ge=0, le=1)  # share of accepted and of flagged records marked for a recount; 0: none
    audit_seed: int = 0  # with the same seed the same records are marked
    backend: Backend = "onnx"
    precision: Precision = "auto"
    batch_size: int = Field(32, ge=1)
    endpoint_url: str | None = None
    ray: RayConfig | None = None  # None: this process alone
    # Fit the policy again for this batch's own count distribution (estimated from its photos), where the artifact
    # keeps the bins it was fitted on (reconcile/prior.py); with explicit thresholds nothing is fitted. Off by
    # default: on a batch distributed like validation it only accepted fewer records; it is for a policy fitted on
    # other counts than the batch's (docs/decisions.md).
    adjust_to_batch: bool = False


def _read_csv(url: str, endpoint_url: str | None, needed: set[str]) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(storage.read_bytes(url, endpoint_url).decode()))
    missing = needed - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{url} needs columns {', '.join(sorted(needed))}; missing {', '.join(sorted(missing))}")
    return list(enumerate(reader, start=2))


def _invalid(url: str, line: int, exc: ValidationError) -> ValueError:
    error = exc.errors()[0]
    return ValueError(f"{url} line {line}: {'.'.join(map(str, error['loc']))}: {error['msg']}")


def carried_name(column: str) -> str:
    """A carried input column's name in the output: `input_<name>` for one named like an output column, or like one
    so renamed (a decisions CSV fed back in again): each `input_` is one round further back, and no name is taken twice."""
    base = column
    while base.startswith("input_"):
        base = base.removeprefix("input_")
    return f"input_{column}" if base in OUT_COLUMNS else column


def read_records(url: str, split: str = "test", endpoint_url: str | None = None) -> list[Record]:
    """Records from a manifest (its recorded counts) or a CSV with `uri` and `expected_quantity` columns."""
    if url.endswith(".parquet"):
        return [Record(id=r.id, uri=r.uri, expected_quantity=r.count) for r in read_manifest(url, endpoint_url).split(split)]
    records = []
    for line, row in _read_csv(url, endpoint_url, {"uri", "expected_quantity"}):
        try:
            records.append(
                Record.model_validate(
                    {
                        "id": row.get("id") or row["uri"],
                        "uri": row["uri"],
                        "expected_quantity": row["expected_quantity"],
                        "true_quantity": row.get("true_quantity") or None,
                        "extra": {carried_name(k): v for k, v in row.items() if k not in RECORD_COLUMNS and k is not None},
                    }
                )
            )
        except ValidationError as exc:
            raise _invalid(url, line, exc) from exc
    return records


def read_audits(url: str, endpoint_url: str | None = None) -> dict[str, int]:
    """People's recounts: a CSV of id, true_quantity."""
    audits = {}
    for line, row in _read_csv(url, endpoint_url, {"id", "true_quantity"}):
        try:
            audits[row["id"]] = Record.model_validate(
                {"id": row["id"], "uri": "", "expected_quantity": 0, "true_quantity": row["true_quantity"]}
            ).true_quantity
        except ValidationError as exc:
            raise _invalid(url, line, exc) from exc
    return {k: v for k, v in audits.items() if v is not None}


class BatchAdjustment(BaseModel):
    """What the batch's count distribution did to the decisions: its estimate beside the fitting bins', or why not."""

    fitted_prior: dict[str, float] | None = None
    batch_prior: dict[str, float] | None = None
    note: str  # what was done, for people


class ReconcileReport(BaseModel):
    out: str
    policy: DecisionPolicy  # the policy that decided (fitted again for the batch where it was)
    batch: BatchAdjustment
    summary: DecisionSummary
    failed: int
    audit: AuditReport | None = None  # with marks or recounts: the realised rates and their bounds
    spread: BatchSpread | None = None  # how far this batch's accepted records may stray from the promise by chance


def scoring_precision(cfg: ReconcileConfig) -> Precision:
    """The precision a reconcile run scores in: as asked, except that with --adjust-to-batch `auto` means fp32. The
    policy fitted again for the batch was never checked on int8's probabilities (the export's check judged the
    artifact's own policy); int8, asked for, is scored as asked, with a warning."""
    if cfg.adjust_to_batch and cfg.precision == "int8":
        log.warning("--adjust-to-batch with --precision int8: the policy fitted for the batch was not checked on int8")
    return "fp32" if cfg.adjust_to_batch and cfg.precision == "auto" else cfg.precision


def _scores(cfg: ReconcileConfig, uris: list[str], classes: CountClasses) -> dict[str, CountScore | str]:
    """Each photo's score or error: in this process, or on Ray (resuming from `<out>.shards`, removed once `out` is written)."""
    cfg = cfg.model_copy(update={"precision": scoring_precision(cfg)})
    if cfg.ray is None:
        predictor = load_model(cfg.model, cfg.backend, cfg.precision)
        return {uri: s for batch in score_images(predictor, uris, cfg.batch_size, endpoint_url=cfg.endpoint_url) for uri, s in batch}
    found = score_on_ray(cfg, uris)
    return {uri: outcome_of(row, classes) for uri, row in found.rows.items()}


def smaller_batch(policy: DecisionPolicy, records: int | None) -> str:
    """A warning for a note, where the policy's batch promise was fitted for batches larger than this one: a smaller
    batch strays further from the rate by chance, so the promise does not carry over ('' otherwise)."""
    target = batch_target(policy)
    if target is None or records is None or records >= target.records:
        return ""
    return (
        f"; its batch promise (at most {target.max_error:.0%} wrong in {target.share:.0%} of batches) is for "
        f"{target.records:,} records and this batch has {records:,}, so it does not hold here; --adjust-to-batch fits it "
        "for this size"
    )


def for_batch(
    scores: dict[str, CountScore | str], artifact: ModelArtifact, policy: DecisionPolicy, adjust: bool, records: int | None = None
) -> tuple[dict[str, CountScore | str], DecisionPolicy, BatchAdjustment]:
    """The scores and the policy for this batch's count distribution (`prior.adapt_to_batch`; `records`: how many
    records it decides, for a batch target), or as they are, saying why: adjusting is off, there is no fitted policy,
    the artifact keeps no fitting bins, the batch is small."""

    def as_fitted(why: str) -> tuple[dict[str, CountScore | str], DecisionPolicy, BatchAdjustment]:
        return scores, policy, BatchAdjustment(note=f"the policy as fitted: {why}{smaller_batch(policy, records)}")

    if not adjust or policy.fitted is None:
        return as_fitted("no fitted policy to fit again" if adjust else "not fitted again for the batch (--adjust-to-batch)")
    fit = artifact.fit_data()
    if fit is None:
        return as_fitted("the artifact keeps no fitting bins (bintally calibrate writes them)")
    classes = artifact.spec.count_classes
    photos = [uri for uri, s in scores.items() if not isinstance(s, str)]
    probabilities = np.array([list(cast(CountScore, scores[uri]).probabilities.values()) for uri in photos]).reshape(len(photos), -1)
    try:
        adapted = adapt_to_batch(probabilities, *fit, classes, policy, batch_records=records)
    except TooFewPhotos as exc:
        return as_fitted(str(exc))
    adjusted = {uri: score_probabilities(p, classes) for uri, p in zip(photos, adapted.probabilities)}
    note = "the policy fitted again for this batch's count distribution, estimated from its photos"
    if (target := batch_target(adapted.policy)) is not None:
        note += f", and for batches of its {target.records:,} records"
    batch = BatchAdjustment(fitted_prior=adapted.fitted_prior, batch_prior=adapted.batch_prior, note=note)
    return scores | adjusted, adapted.policy, batch


def reconcile_records(cfg: ReconcileConfig) -> ReconcileReport:
    """Score every record's photo, decide, and write one CSV row per record (with an error where unreadable)."""
    if cfg.ray is None:
        return _reconcile_records(cfg)
    with locked(cfg.out):  # the shards beside OUT belong to one run at a time
        return _reconcile_records(cfg)


def _reconcile_records(cfg: ReconcileConfig) -> ReconcileReport:
    records = read_records(cfg.records, cfg.split, cfg.endpoint_url)
    audits = read_audits(cfg.audited, cfg.endpoint_url) if cfg.audited else {}
    artifact = load_artifact(cfg.model)
    policy = (artifact.spec.decision_policy or DecisionPolicy()).with_thresholds(cfg.accept_at, cfg.mismatch_at)
    found = _scores(cfg, sorted({r.uri for r in records}), artifact.spec.count_classes)
    decidable = sum(not isinstance(found[r.uri], str) for r in records)
    scores, policy, batch = for_batch(found, artifact, policy, cfg.adjust_to_batch, decidable)
    extra_columns = list(dict.fromkeys(k for r in records for k in r.extra))
    rows, decided, truths, marks = [], [], [], []
    for record in records:
        row = {"id": record.id, "uri": record.uri, "expected_quantity": record.expected_quantity, **record.extra}
        outcome = scores[record.uri]
        if isinstance(outcome, str):
            rows.append(row | {"error": outcome})
            continue
        result = reconcile(outcome.probabilities, record.expected_quantity, policy)
        decided.append(result)
        truths.append(audits.get(record.id, record.true_quantity))
        marks.append(is_marked(record.id, result.decision, cfg.audit_rate, cfg.audit_seed))
        rows.append(
            row
            | {
                "count": result.count,
                "at_least": str(result.at_least).lower(),
                "match_probability": f"{result.match_probability:.6f}",
                "far_probability": f"{result.far_probability:.6f}",
                "record_correct_probability": f"{result.record_correct_probability:.6f}",
                "decision": result.decision,
                "audit": str(marks[-1]).lower(),
                "error": "",
            }
        )
    storage.write_bytes(cfg.out, csv_text(OUT_COLUMNS + extra_columns, rows).encode(), cfg.endpoint_url)
    if cfg.ray:
        remove_shards(cfg.out)
    audit = None
    if cfg.audit_rate > 0 or any(t is not None for t in truths):
        audit = audit_report(decided, truths, marks if cfg.audit_rate > 0 else None, policy, cfg.audit_rate, cfg.audit_seed)
    summary = summarise(decided, truths)
    spread = batch_spread(summary.by_decision["accept"], policy)
    failed = len(records) - len(decided)
    return ReconcileReport(out=cfg.out, policy=policy, batch=batch, summary=summary, failed=failed, audit=audit, spread=spread)
