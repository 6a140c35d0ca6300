"""`bintally serve` and `bintally predict`: the HTTP service and batch scoring."""

from __future__ import annotations

from typing import Annotated

import typer

from bintally.cli.app import (
    BackendOpt,
    EndpointOpt,
    MaxPixelsOpt,
    PrecisionOpt,
    RayActorCpusOpt,
    RayActorsOpt,
    RayOpt,
    app,
    console,
    make_config,
    progress,
    ray_config,
    reported_errors,
)
from bintally.model.artifact import unpacked
from bintally.predict import PredictConfig, predict
from bintally.scoring.on_ray import RayConfig
from bintally.serve.app import ServeConfig, run
from bintally.serve.batching import BatchConfig

SAGEMAKER_MODEL_DIR = "/opt/ml/model"  # where a SageMaker container finds its model
# The options' defaults are the configs' own.
BATCH = BatchConfig()
SERVE = ServeConfig.model_fields
PREDICT = PredictConfig.model_fields


@app.command("serve")
def serve_cmd(
    model: Annotated[
        str, typer.Argument(help="model artifact: a directory (path or URL), a model.tar.gz, or a folder holding one")
    ] = SAGEMAKER_MODEL_DIR,
    host: Annotated[str, typer.Option(envvar="BINTALLY_HOST", help="0.0.0.0 to listen beyond this machine")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="SAGEMAKER_BIND_TO_PORT", help="as SageMaker sets it, else this")] = 8080,
    backend: BackendOpt = "onnx",
    precision: PrecisionOpt = "auto",
    api_key_file: Annotated[str | None, typer.Option(help="file of API keys, one per line")] = None,
    allow_uri_prefix: Annotated[list[str] | None, typer.Option(help="URI prefix requests may name (repeatable)")] = None,
    allow_private_hosts: Annotated[bool, typer.Option(help="let `url` reach private-network hosts")] = False,
    max_batch: Annotated[int, typer.Option(help="images per forward pass at most")] = BATCH.max_batch,
    max_wait_ms: Annotated[float, typer.Option(help="how long a batch waits to fill")] = BATCH.max_wait_ms,
    queue_size: Annotated[int, typer.Option(help="images waiting at most; beyond: 503")] = BATCH.queue_size,
    workers: Annotated[
        int, typer.Option(envvar="SAGEMAKER_MODEL_SERVER_WORKERS", help="batches computed at once, sharing the cores")
    ] = BATCH.workers,
    timeout: Annotated[
        float, typer.Option(envvar="SAGEMAKER_MODEL_SERVER_TIMEOUT", help="seconds a request may wait for the model; then 504")
    ] = BATCH.timeout_s,
    max_body_bytes: Annotated[int, typer.Option(help="larger request bodies get 413")] = SERVE["max_body_bytes"].default,
    max_pixels: MaxPixelsOpt = SERVE["max_pixels"].default,
    max_connections: Annotated[int, typer.Option(help="concurrent connections at most")] = 512,
    accept_at: Annotated[
        float | None, typer.Option(help="/v1/reconcile: accept at P(count = expected) >= this [default: the artifact's policy]")
    ] = None,
    mismatch_at: Annotated[
        float | None, typer.Option(help="/v1/reconcile: flag at P(count = expected) <= this [default: the artifact's policy]")
    ] = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Serve a model over HTTP: /v1/count, SageMaker's /invocations and /ping, /metrics, /docs, and a page at /.

    With no MODEL it serves SageMaker's /opt/ml/model: the artifact there (or in a folder below), or its model.tar.gz."""
    batching = make_config(
        BatchConfig, max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size, workers=workers, timeout_s=timeout
    )
    cfg = make_config(
        ServeConfig,
        model=model,
        backend=backend,
        precision=precision,
        api_key_file=api_key_file,
        allow_uri_prefixes=allow_uri_prefix or [],
        allow_private_hosts=allow_private_hosts,
        endpoint_url=endpoint_url,
        batching=batching,
        max_body_bytes=max_body_bytes,
        max_pixels=max_pixels,
        accept_at=accept_at,
        mismatch_at=mismatch_at,
    )
    with reported_errors(), unpacked(model) as artifact:  # an archive's temporary folder lasts as long as the server
        url = f"http://{host}:{port}/"
        console.print(f"serving {artifact} on {url} ({backend}, precision {precision}); open it in a browser to count a photo")
        run(cfg.model_copy(update={"model": artifact}), host, port, max_connections)


@app.command("predict")
def predict_cmd(
    model: Annotated[str, typer.Argument(help="model artifact directory (path or URL)")],
    inputs: Annotated[list[str], typer.Argument(help="photos, folders, globs, s3:// prefixes or manifests (.parquet)")],
    out: Annotated[str, typer.Option("--out", help="CSV to write (local; with --ray also .parquet); rerun to resume")],
    backend: BackendOpt = "onnx",
    precision: PrecisionOpt = "auto",
    batch_size: Annotated[int, typer.Option(min=1)] = PREDICT["batch_size"].default,
    workers: Annotated[int, typer.Option(min=1, help="threads reading and decoding photos")] = PREDICT["workers"].default,
    max_pixels: MaxPixelsOpt = PREDICT["max_pixels"].default,
    endpoint_url: EndpointOpt = None,
    ray: RayOpt = None,
    ray_actors: RayActorsOpt = None,
    ray_actor_cpus: RayActorCpusOpt = RayConfig.model_fields["cpus_per_actor"].default,
) -> None:
    """Count the objects in every photo under folders, globs, s3:// prefixes and manifests: one CSV row per photo.

    With --ray the photos are scored on a Ray cluster; OUT gets the merged rows (CSV, or Parquet for a
    .parquet name) and OUT.shards/ what each part of the run scored, so a rerun scores only what is missing."""
    cfg = make_config(
        PredictConfig,
        model=model,
        inputs=inputs,
        out=out,
        backend=backend,
        precision=precision,
        batch_size=batch_size,
        workers=workers,
        max_pixels=max_pixels,
        endpoint_url=endpoint_url,
        ray=ray_config(ray, ray_actors, ray_actor_cpus),
    )
    with progress("scoring") as update, reported_errors():
        summary = predict(cfg, on_progress=update)
    console.print(
        f"{summary.found:,} photos: {summary.scored:,} scored, {summary.failed:,} unreadable (see the error column), "
        f"{summary.skipped:,} already in {summary.out}"
    )
