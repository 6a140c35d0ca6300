"""`bintally serve` and `bintally predict`: the HTTP service and batch scoring."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated, Optional, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

from bintally.cli.app import app, console
from bintally.data.images import DEFAULT_MAX_PIXELS
from bintally.predict import PredictConfig, predict
from bintally.serve.app import ServeConfig, run
from bintally.serve.batching import BatchConfig
from bintally.model.predictor import Backend

BackendOpt = Annotated[Backend, typer.Option(help="onnx (fast on CPU) or torch")]
EndpointOpt = Annotated[Optional[str], typer.Option("--endpoint-url", help="S3-compatible endpoint")]
C = TypeVar("C", bound=BaseModel)
MaxPixelsOpt = Annotated[int, typer.Option(help="refuse photos with more pixels (decompression bombs)")]


def _config(kind: type[C], /, **fields) -> C:
    """A typed config from the options; a value pydantic refuses becomes a usage error."""
    try:
        return kind(**fields)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc


@contextmanager
def _clean_errors():
    """A bad model path, input, key file or --out: say which, without a traceback."""
    try:
        yield
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


@app.command("serve")
def serve_cmd(
    model: Annotated[str, typer.Argument(help="model artifact directory (path or URL)")],
    host: str = "127.0.0.1",
    port: int = 8080,
    backend: BackendOpt = "onnx",
    api_key_file: Annotated[Optional[str], typer.Option(help="file of API keys, one per line")] = None,
    allow_uri_prefix: Annotated[Optional[list[str]], typer.Option(help="URI prefix requests may name (repeatable)")] = None,
    allow_private_hosts: Annotated[bool, typer.Option(help="let `url` reach private-network hosts")] = False,
    max_batch: Annotated[int, typer.Option(help="images per forward pass at most")] = 16,
    max_wait_ms: Annotated[float, typer.Option(help="how long a batch waits to fill")] = 5.0,
    queue_size: Annotated[int, typer.Option(help="images waiting at most; beyond: 503")] = 256,
    max_body_bytes: Annotated[int, typer.Option(help="larger request bodies get 413")] = 10 * 2**20,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    max_connections: Annotated[int, typer.Option(help="concurrent connections at most")] = 512,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Serve a model over HTTP: /v1/count, SageMaker's /invocations and /ping, /metrics, /docs, and a page at /."""
    batching = _config(BatchConfig, max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size)
    cfg = _config(
        ServeConfig,
        model=model,
        backend=backend,
        api_key_file=api_key_file,
        allow_uri_prefixes=allow_uri_prefix or [],
        allow_private_hosts=allow_private_hosts,
        endpoint_url=endpoint_url,
        batching=batching,
        max_body_bytes=max_body_bytes,
        max_pixels=max_pixels,
    )
    console.print(f"serving {model} on http://{host}:{port}/ ({backend}); open it in a browser to count a photo")
    with _clean_errors():
        run(cfg, host, port, max_connections)


@app.command("predict")
def predict_cmd(
    model: Annotated[str, typer.Argument(help="model artifact directory (path or URL)")],
    inputs: Annotated[list[str], typer.Argument(help="photos, folders, globs or s3:// prefixes")],
    out: Annotated[str, typer.Option("--out", help="CSV to write (local); rerun to resume")],
    backend: BackendOpt = "onnx",
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    workers: Annotated[int, typer.Option(min=1, help="threads reading and decoding photos")] = 4,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Count the objects in every photo under folders, globs and s3:// prefixes: one CSV row per photo."""
    cfg = _config(
        PredictConfig, model=model, inputs=inputs, out=out, backend=backend, batch_size=batch_size,
        workers=workers, max_pixels=max_pixels, endpoint_url=endpoint_url,
    )
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("scoring", total=None)
        with _clean_errors():
            summary = predict(cfg, on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    console.print(
        f"{summary.found:,} photos: {summary.scored:,} scored, {summary.failed:,} unreadable (see the error column), "
        f"{summary.skipped:,} already in {summary.out}"
    )
