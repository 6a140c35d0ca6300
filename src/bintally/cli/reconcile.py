"""`bintally reconcile`: recorded quantities against what the photos show."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from bintally.cli.app import app, console
from bintally.model.predictor import Backend
from bintally.reconcile import ReconcileConfig, ReconcilePolicy, reconcile_records


@app.command("reconcile")
def reconcile_cmd(
    model: Annotated[str, typer.Argument(help="model artifact directory (path or URL)")],
    records: Annotated[str, typer.Argument(help="manifest .parquet, or CSV with uri,expected_quantity[,id,true_quantity]")],
    out: Annotated[str, typer.Option("--out", help="decisions CSV")],
    split: Annotated[str, typer.Option(help="for a manifest: which split's bins (train, val, test, all)")] = "test",
    accept_at: Annotated[float, typer.Option(help="accept when P(count = expected) is at least this")] = ReconcilePolicy().accept_at,
    mismatch_at: Annotated[
        float, typer.Option(help="flag a mismatch when P(count = expected) is at most this")
    ] = ReconcilePolicy().mismatch_at,
    backend: Annotated[Backend, typer.Option(help="onnx (fast on CPU) or torch")] = "onnx",
    endpoint_url: Annotated[str | None, typer.Option("--endpoint-url")] = None,
) -> None:
    """Decide for each record: accept, review (a person counts the bin) or mismatch."""
    try:
        cfg = ReconcileConfig(
            model=model,
            records=records,
            out=out,
            split=split,
            backend=backend,
            endpoint_url=endpoint_url,
            policy=ReconcilePolicy(accept_at=accept_at, mismatch_at=mismatch_at),
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with console.status("scoring photos"):
        report = reconcile_records(cfg)
    table = Table()
    table.add_column("decision")
    table.add_column("records", justify="right")
    for decision, n in report.summary.by_decision.items():
        table.add_row(decision, f"{n:,}")
    console.print(table)
    console.print(f"{report.summary.total:,} records decided, {report.failed:,} unreadable")
    for name, value in (("accept", report.summary.accept_precision), ("mismatch", report.summary.mismatch_precision)):
        if value is not None:
            console.print(f"audited precision of {name}: {value:.1%}")
    console.print(f"wrote {report.out}")
