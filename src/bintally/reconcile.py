"""Inventory decisions: does the photo agree with the bin's recorded quantity?

The model gives P(count = k) for every count class it knows. For a record that
says `expected`, P(count = expected) is the match probability, and:

    accept     match probability >= accept_at     the record stands, nobody looks
    mismatch   match probability <= mismatch_at   the photo contradicts the record
    review     anything in between                a person counts the bin

A record outside the model's count classes cannot be judged and goes to review.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from bintally import storage
from bintally.data.manifest import read_manifest
from bintally.model.predictor import Backend, CountScore, load_predictor
from bintally.predict import csv_text, score_images

Decision = Literal["accept", "review", "mismatch"]
DECISIONS: tuple[Decision, ...] = ("accept", "review", "mismatch")


class ReconcilePolicy(BaseModel):
    accept_at: float = Field(0.5, gt=0, le=1, description="accept when P(count = expected) is at least this")
    mismatch_at: float = Field(0.05, ge=0, lt=1, description="flag a mismatch when P(count = expected) is at most this")

    @model_validator(mode="after")
    def _ordered(self) -> ReconcilePolicy:
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


def summarise(results: Sequence[Reconciliation], true_counts: Sequence[int | None] | None = None) -> DecisionSummary:
    """Decision counts; with audited true counts (None where a record has none), how often each decision was right."""
    by_decision = Counter(r.decision for r in results)
    truths = list(true_counts) if true_counts is not None else [None] * len(results)

    def precision(decision: Decision, holds: Callable[[Reconciliation, int], bool]) -> float | None:
        picked = [(r, t) for r, t in zip(results, truths) if r.decision == decision and t is not None]
        return sum(holds(r, t) for r, t in picked) / len(picked) if picked else None

    return DecisionSummary(
        total=len(results),
        by_decision={d: by_decision.get(d, 0) for d in DECISIONS},
        accept_precision=precision("accept", lambda r, t: r.expected_quantity == t),
        mismatch_precision=precision("mismatch", lambda r, t: r.expected_quantity != t),
    )


# --- Reconciling a whole file of records: `bintally reconcile MODEL MANIFEST_OR_CSV --out DECISIONS.csv` ---


class Record(BaseModel):
    id: str
    uri: str
    expected_quantity: int = Field(ge=0)
    true_quantity: int | None = Field(None, ge=0)  # an audited count, where one exists


class ReconcileConfig(BaseModel):
    model: str
    records: str  # a manifest (.parquet: its counts are the records) or a CSV of uri, expected_quantity
    out: str
    split: str = "test"  # for a manifest: which split's bins
    policy: ReconcilePolicy = ReconcilePolicy()
    backend: Backend = "onnx"
    batch_size: int = Field(32, ge=1)
    endpoint_url: str | None = None


OUT_COLUMNS = ["id", "uri", "expected_quantity", "count", "match_probability", "decision", "error"]


def read_records(url: str, split: str = "test", endpoint_url: str | None = None) -> list[Record]:
    """Records from a manifest (its recorded counts) or a CSV with `uri` and `expected_quantity` columns."""
    if url.endswith(".parquet"):
        rows = read_manifest(url, endpoint_url).split(split)
        return [Record(id=r.id, uri=r.uri, expected_quantity=r.count) for r in rows]
    text = storage.read_bytes(url, endpoint_url).decode()
    reader = csv.DictReader(io.StringIO(text))
    missing = {"uri", "expected_quantity"} - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{url} needs columns uri and expected_quantity; missing {', '.join(sorted(missing))}")
    records = []
    for line, row in enumerate(reader, start=2):
        try:
            records.append(
                Record(
                    id=row.get("id") or PurePosixPath(row["uri"]).stem,
                    uri=row["uri"],
                    expected_quantity=row["expected_quantity"],
                    true_quantity=row.get("true_quantity") or None,
                )
            )
        except ValidationError as exc:
            raise ValueError(f"{url} line {line}: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    return records


class ReconcileReport(BaseModel):
    out: str
    summary: DecisionSummary
    failed: int


def reconcile_records(cfg: ReconcileConfig) -> ReconcileReport:
    """Score every record's photo, decide, and write one CSV row per record (with an error where unreadable)."""
    records = read_records(cfg.records, cfg.split, cfg.endpoint_url)
    uris = sorted({r.uri for r in records})
    predictor = load_predictor(cfg.model, cfg.backend)
    scores: dict[str, CountScore | str] = {}
    for batch in score_images(predictor, uris, cfg.batch_size, endpoint_url=cfg.endpoint_url):
        scores.update(batch)
    rows, decided = [], []
    for record in records:
        row = {"id": record.id, "uri": record.uri, "expected_quantity": record.expected_quantity}
        outcome = scores[record.uri]
        if isinstance(outcome, str):
            rows.append(row | {"error": outcome})
            continue
        result = reconcile(outcome.probabilities, record.expected_quantity, cfg.policy)
        decided.append((result, record.true_quantity))
        rows.append(
            row | {"count": result.count, "match_probability": f"{result.match_probability:.6f}", "decision": result.decision, "error": ""}
        )
    storage.write_bytes(cfg.out, csv_text(OUT_COLUMNS, rows).encode(), cfg.endpoint_url)
    summary = summarise([d for d, _ in decided], [t for _, t in decided])
    return ReconcileReport(out=cfg.out, summary=summary, failed=len(records) - len(decided))
