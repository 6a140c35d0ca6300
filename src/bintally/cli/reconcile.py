"""`bintally calibrate` and `bintally reconcile`: fitted decisions, and recorded quantities against the photos."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bintally.cli.app import (
    BackendOpt,
    EndpointOpt,
    PrecisionOpt,
    RayActorCpusOpt,
    RayActorsOpt,
    RayOpt,
    app,
    console,
    make_config,
    ray_config,
    reported_errors,
)
from bintally.reconcile.audit import AuditReport
from bintally.reconcile.fit import Targets
from bintally.reconcile.policy import RecordErrors
from bintally.reconcile.records import ReconcileConfig, reconcile_records
from bintally.scoring.on_ray import RayConfig

TARGETS, ERRORS = Targets(), RecordErrors()


def parse_sizes(text: str) -> dict[int, float]:
    """'1:0.6,2:0.3,3:0.1' -> {1: 0.6, 2: 0.3, 3: 0.1}."""
    try:
        return {int(d): float(s) for d, s in (part.split(":") for part in text.split(","))}
    except ValueError as exc:
        raise typer.BadParameter(f"expected SIZE:SHARE pairs such as 1:0.6,2:0.3,3:0.1, got {text!r}", param_hint="--error-sizes") from exc


@app.command("reconcile")
def reconcile_cmd(
    model: Annotated[str, typer.Argument(help="model artifact directory (path or URL)")],
    records: Annotated[str, typer.Argument(help="manifest .parquet, or CSV with uri,expected_quantity[,id,true_quantity,...]")],
    out: Annotated[str, typer.Option("--out", help="decisions CSV")],
    split: Annotated[str, typer.Option(help="for a manifest: which split's bins (train, val, test, all)")] = "test",
    accept_at: Annotated[
        float | None, typer.Option(help="accept when P(count = expected) >= this [default: the artifact's policy]")
    ] = None,
    mismatch_at: Annotated[
        float | None, typer.Option(help="flag when P(count = expected) <= this [default: the artifact's policy]")
    ] = None,
    audited: Annotated[str | None, typer.Option(help="CSV of id,true_quantity from people's recounts")] = None,
    audit_rate: Annotated[float, typer.Option(help="mark this share of accepted and of flagged records to recount (column audit)")] = 0.0,
    audit_seed: Annotated[int, typer.Option(help="the same seed marks the same records, in any order")] = 0,
    adjust_to_batch: Annotated[
        bool, typer.Option(help="fit the policy again for this batch's count distribution, estimated from its photos")
    ] = False,
    backend: BackendOpt = "onnx",
    precision: PrecisionOpt = "auto",
    endpoint_url: EndpointOpt = None,
    ray: RayOpt = None,
    ray_actors: RayActorsOpt = None,
    ray_actor_cpus: RayActorCpusOpt = RayConfig.model_fields["cpus_per_actor"].default,
) -> None:
    """Decide for each record: accept, review (a person counts the bin) or mismatch.

    With --ray the photos are scored on a Ray cluster, their scores kept in OUT.shards/ so a rerun scores only what is missing."""
    cfg = make_config(
        ReconcileConfig,
        model=model,
        records=records,
        out=out,
        split=split,
        accept_at=accept_at,
        mismatch_at=mismatch_at,
        audited=audited,
        adjust_to_batch=adjust_to_batch,
        audit_rate=audit_rate,
        audit_seed=audit_seed,
        backend=backend,
        precision=precision,
        endpoint_url=endpoint_url,
        ray=ray_config(ray, ray_actors, ray_actor_cpus),
    )
    with reported_errors(), console.status("scoring photos"):
        report = reconcile_records(cfg)
    console.print(f"policy: {report.policy.describe()} ({report.batch.note})")
    if report.batch.batch_prior and report.batch.fitted_prior:
        shares = (f"{k} {report.batch.batch_prior[k]:.0%} (fitted on {report.batch.fitted_prior[k]:.0%})" for k in report.batch.batch_prior)
        console.print("counts in this batch, estimated: " + ", ".join(shares))
    table = Table()
    table.add_column("decision")
    table.add_column("records", justify="right")
    for decision, n in report.summary.by_decision.items():
        table.add_row(decision, f"{n:,}")
    console.print(table)
    console.print(f"{report.summary.total:,} records decided, {report.failed:,} unreadable")
    if report.spread is not None:
        console.print(report.spread.describe())
    s = report.summary
    if s.audited:
        shown = {"accepted records wrong": s.accepted_error, "flags right (record wrong)": s.flag_precision}
        console.print(f"audited {s.audited:,}: " + ", ".join(f"{k} {'-' if v is None else f'{v:.1%}'}" for k, v in shown.items()))
    if report.audit is not None:
        print_audit(report.audit)
    console.print(f"wrote {report.out}")


def print_audit(a: AuditReport) -> None:
    marked = f"marked {a.marked:,} ({a.rate:.1%} of accepted and of flagged, seed {a.seed}), " if a.rate > 0 else ""
    console.print(f"audit: {marked}{a.recounted:,} recounted")
    for name, r, word in a.named():
        if r.rate is not None:
            beside = "" if r.promised is None else f"; {word} {r.promised:.1%}"
            console.print(f"  {name}: {r.wrong:,}/{r.audited:,} = {r.rate:.1%}, {a.confidence:.0%} upper bound {r.upper:.1%}{beside}")
    for line in a.warnings():
        console.print(f"[yellow]{line}[/]")
