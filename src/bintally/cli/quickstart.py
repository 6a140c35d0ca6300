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


def results_table(metrics: dict) -> Table:
    """The test numbers over the whole range and by range (with the 1-5 bins answered among 1-5 alone, as a
    1-5 model answers), the model's accuracy beside the trivial answer's."""
    baseline = metrics.get("baseline") or {}
    table = Table(title=f"test split ({metrics['n']} bins)")
    for column in ("bins", "n", "accuracy", "+-1", "rmse"):
        table.add_column(column, justify="left" if column == "bins" else "right")
    if baseline:
        table.add_column(f"always {baseline.get('label', baseline['answer'])}", justify="right")
    rows = {"all": metrics, **metrics.get("ranges", {})}
    if "small_counts_only" in metrics:
        rows["1-5 among 1-5"] = metrics["small_counts_only"]
    trivial = {"all": baseline, **baseline.get("ranges", {}), "1-5 among 1-5": baseline.get("ranges", {}).get("1-5", {})}
    for name, m in rows.items():
        known = trivial.get(name, {})
        extra = [f"{known['accuracy']:.3f}" if "accuracy" in known else "-"] if baseline else []
        table.add_row(name, f"{m['n']:,}", f"{m['accuracy']:.3f}", f"{m['within_one']:.3f}", f"{m['rmse']:.2f}", *extra)
    if "more_than_5_auc" in metrics:
        table.caption = f"more than 5 told from 5 or fewer: AUC {metrics['more_than_5_auc']:.3f}"
    return table


@app.command("quickstart")
def quickstart_cmd(
    data: Annotated[str, typer.Option("--data", help="ABID root (path or URL)")],
    out: Annotated[str, typer.Option(help="where the manifest, model and report go")] = QUICKSTART.out,
    counts: Annotated[str | None, typer.Option(help="count range to learn, e.g. 1-5 [default: every count]")] = None,
    per_count: Annotated[int, typer.Option(min=10, help="training bins per count class")] = QUICKSTART.per_count,
    max_held_out: Annotated[int, typer.Option(min=10, help="validation bins, and test bins, at most")] = QUICKSTART.max_held_out,
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
        data=data, out=out, counts=count_range, per_count=per_count, max_held_out=max_held_out, epochs=epochs, image_size=image_size,
        endpoint_url=endpoint_url,
    )  # fmt: skip
    with reported_errors(), step_progress() as on_train_step:
        result = run_quickstart(cfg, lambda step: console.print(f"[bold]>[/] {step}"), print_epoch, on_train_step)
    console.print(results_table(result.metrics))
    console.print(f"model: {result.model}   report: {result.report}/report.html   ONNX max |diff|: {result.onnx_max_abs_diff:.2e}")
    if serve:
        console.print(f"open http://{host}:{port}/ and drop a bin photo on the page")
        run(ServeConfig(model=result.model), host, port)
