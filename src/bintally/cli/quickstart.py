"""`bintally quickstart`: the whole job on a small sample, ending in a served model."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bintally.cli.app import EndpointOpt, app, console, reported_errors
from bintally.cli.train import print_epoch, step_progress
from bintally.data.subset import parse_counts
from bintally.quickstart import QuickstartConfig, run_quickstart
from bintally.serve.app import ServeConfig, run

QUICKSTART = QuickstartConfig(data="")  # the options' defaults are the config's


@app.command("quickstart")
def quickstart_cmd(
    data: Annotated[str, typer.Option("--data", help="ABID root (path or URL)")],
    out: Annotated[str, typer.Option(help="where the manifest, model and report go")] = QUICKSTART.out,
    counts: Annotated[str, typer.Option(help="count range to learn")] = "{}-{}".format(*QUICKSTART.counts),
    per_count: Annotated[int, typer.Option(min=10, help="bins per count")] = QUICKSTART.per_count,
    epochs: Annotated[int, typer.Option(min=1)] = QUICKSTART.epochs,
    image_size: Annotated[int, typer.Option(min=32)] = QUICKSTART.image_size,
    serve: Annotated[bool, typer.Option(help="serve the model when done")] = True,
    host: str = "127.0.0.1",
    port: int = 8080,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Ingest -> train -> evaluate -> export -> serve, small and fast."""
    try:
        count_range = parse_counts(counts)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--counts") from exc
    cfg = QuickstartConfig(
        data=data, out=out, counts=count_range, per_count=per_count, epochs=epochs, image_size=image_size, endpoint_url=endpoint_url
    )
    with reported_errors(), step_progress() as on_train_step:
        result = run_quickstart(cfg, lambda step: console.print(f"[bold]>[/] {step}"), print_epoch, on_train_step)
    baseline = result.metrics.get("baseline") or {}
    table = Table(title=f"test split ({result.metrics['n']} bins)")
    table.add_column("metric")
    table.add_column("model", justify="right")
    if baseline:
        table.add_column(f"always {baseline['answer']} (trivial)", justify="right")
    for name in ("accuracy", "within_one", "rmse", "macro_f1"):
        table.add_row(name, f"{result.metrics[name]:.3f}", *([f"{baseline[name]:.3f}"] if baseline else []))
    console.print(table)
    console.print(f"model: {result.model}   report: {result.report}/report.html   ONNX max |diff|: {result.onnx_max_abs_diff:.2e}")
    if serve:
        console.print(f"open http://{host}:{port}/ and drop a bin photo on the page")
        run(ServeConfig(model=result.model), host, port)
