"""The HTTP service: `create_app(ServeConfig)` builds the FastAPI app; `run` serves it with uvicorn.

Routes stay thin: inputs.py turns a request into images, the micro-batcher runs
the model, predictor.score turns logits into counts. The model loads and warms
up in the background, so /healthz answers at once and /readyz (and SageMaker's
/ping) says 503 until the first request can be served fast.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from types import FrameType
from typing import Annotated

import anyio
import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from bintally.data.images import DEFAULT_MAX_PIXELS
from bintally.model.artifact import load_artifact
from bintally.model.predictor import Backend, CountScore, Precision, Predictor
from bintally.model.spec import ModelSpec
from bintally.reconcile.policy import DecisionPolicy, Reconciliation, reconcile
from bintally.scoring.model import load_model
from bintally.serve import inputs
from bintally.serve.batching import BatchConfig, MicroBatcher, overloaded
from bintally.serve.body_limit import BodyLimitMiddleware
from bintally.serve.errors import ApiError, ErrorResponse, error_responses, install_error_handlers, invalid_request, unavailable
from bintally.serve.fetch import Fetcher
from bintally.serve.inputs import ImageRef, ReconcileRef
from bintally.serve.metrics import MetricsMiddleware, ServeMetrics
from bintally.serve.security import ApiKeys, UriPolicy, UriPrefix

log = logging.getLogger(__name__)


class ServeConfig(BaseModel):
    model: str
    backend: Backend = "onnx"
    precision: Precision = "auto"
    api_key_file: str | None = None
    allow_uri_prefixes: list[str] = []
    # Lets `url` reach hosts on private networks (an on-premises image store); off by default.
    allow_private_hosts: bool = False
    endpoint_url: str | None = None  # S3-compatible endpoint for s3_uri
    batching: BatchConfig = BatchConfig()
    max_body_bytes: int = Field(10 * 2**20, ge=1024)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    max_instances: int = Field(64, ge=1)
    # Explicit decision thresholds; by default the artifact's fitted policy decides.
    accept_at: float | None = Field(None, gt=0, le=1)
    mismatch_at: float | None = Field(None, ge=0, lt=1)

    @field_validator("allow_uri_prefixes")
    @classmethod
    def _parseable_prefixes(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            UriPrefix.parse(prefix)  # a prefix that cannot be compared part by part is refused at startup
        return prefixes

    @field_validator("mismatch_at")
    @classmethod
    def _below_accept_at(cls, mismatch_at: float | None, info: ValidationInfo) -> float | None:
        accept_at = info.data.get("accept_at")
        if mismatch_at is not None and accept_at is not None and mismatch_at >= accept_at:
            raise ValueError(f"must be below accept_at ({accept_at}): both are thresholds on P(count = recorded)")
        return mismatch_at


class ModelRef(BaseModel):
    name: str
    version: str


class CountResponse(CountScore):
    model: ModelRef


class ReconcileResponse(Reconciliation):
    confidence: float
    probabilities: dict[str, float]
    model: ModelRef


class ReconcileBatchResponse(BaseModel):
    predictions: list[ReconcileResponse | ErrorResponse]


class BatchResponse(BaseModel):
    predictions: list[CountResponse | ErrorResponse]


Item = bytes | ImageRef


@dataclass(frozen=True)
class Loaded:
    """The model once it serves: its predictor and the micro-batcher in front of it."""

    predictor: Predictor
    batcher: MicroBatcher
    policy: DecisionPolicy  # the artifact's fitted policy, or the configured thresholds

    def model_ref(self) -> ModelRef:
        return ModelRef(name=self.predictor.spec.name, version=self.predictor.spec.version)


def serving_policy(spec: ModelSpec, cfg: ServeConfig) -> DecisionPolicy:
    """The artifact's fitted policy (or the defaults) with the configured thresholds in place of its own; a
    ValueError of one line where they cannot go together."""
    policy = spec.decision_policy or DecisionPolicy()
    try:
        return policy.with_thresholds(cfg.accept_at, cfg.mismatch_at)
    except ValueError as exc:
        given = f"accept_at {cfg.accept_at}, mismatch_at {cfg.mismatch_at}"
        raise ValueError(f"the thresholds given ({given}) do not fit {spec.name}'s decision policy ({policy.describe()}): {exc}") from exc


class Service:
    """What the routes share: the config, the fetcher, and the model once loaded."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.metrics = ServeMetrics()
        self.api_keys = ApiKeys.from_file(cfg.api_key_file) if cfg.api_key_file else None
        self.fetcher = Fetcher(UriPolicy(cfg.allow_uri_prefixes, cfg.allow_private_hosts), cfg.endpoint_url, cfg.max_body_bytes)
        self.loaded: Loaded | None = None
        self.load_error: str | None = None
        # As many decodes at once as there are cores: more only share the GIL and finish out of order.
        self.decoders = anyio.CapacityLimiter(os.cpu_count() or 1)

    async def start(self) -> None:
        """Load the model in the background; any failure is logged and answered by /readyz, never lost."""
        try:
            self.loaded = await self._load()
        except Exception as exc:
            log.exception("cannot load the model %s", self.cfg.model)
            self.load_error = f"the model failed to load: {exc}"
            return
        predictor = self.loaded.predictor
        log.info("model %s %s ready (%s backend, %s)", predictor.spec.name, predictor.spec.version, predictor.backend, predictor.precision)

    async def _load(self) -> Loaded:
        # Workers share the cores: each batch's ONNX Runtime threads are the cores over the workers.
        threads = None if self.cfg.batching.workers == 1 else max(1, (os.cpu_count() or 1) // self.cfg.batching.workers)
        predictor = await anyio.to_thread.run_sync(load_model, self.cfg.model, self.cfg.backend, self.cfg.precision, threads)
        policy = serving_policy(predictor.spec, self.cfg)
        await anyio.to_thread.run_sync(predictor.warm_up, self.cfg.batching.max_batch)
        batcher = MicroBatcher(predictor.logits, self.cfg.batching, self.metrics.batch_size.observe)
        batcher.start()  # last: nothing after it can fail and leave it running
        self.metrics.watch_queue(batcher.depth)
        self.metrics.model.info({"name": predictor.spec.name, "version": predictor.spec.version})
        return Loaded(predictor, batcher, policy)

    async def stop(self) -> None:
        if self.loaded:
            await self.loaded.batcher.stop()
        await self.fetcher.aclose()

    def ready(self) -> Loaded:
        """The loaded model, or 503 while it loads (or if it failed to)."""
        if self.loaded is None:
            raise unavailable("not_ready", self.load_error or "the model is still loading")
        return self.loaded

    async def logits(self, item: Item) -> np.ndarray:
        model = self.ready()
        data = item if isinstance(item, bytes) else await self.fetcher.load(item)
        pp = model.predictor.spec.preprocess
        x = await anyio.to_thread.run_sync(inputs.decode_and_prepare, data, pp, self.cfg.max_pixels, limiter=self.decoders)
        return await model.batcher.submit(x)

    async def count(self, item: Item | ApiError) -> CountResponse:
        if isinstance(item, ApiError):  # an instance of a batch that failed validation
            raise item
        row = await self.logits(item)
        model = self.ready()
        return CountResponse(**model.predictor.score(row).model_dump(), model=model.model_ref())

    async def reconcile(self, item: Item | ApiError, expected_quantity: int | None) -> ReconcileResponse:
        if isinstance(item, ReconcileRef) and item.expected_quantity is not None:
            expected_quantity = item.expected_quantity
        if expected_quantity is None:
            raise invalid_request("expected_quantity is missing (a query parameter, or a field of each instance)")
        counted = await self.count(item)
        decision = reconcile(counted.probabilities, expected_quantity, self.ready().policy)
        return ReconcileResponse(
            **decision.model_dump(), confidence=counted.confidence, probabilities=counted.probabilities, model=counted.model
        )


async def or_error(answer: Awaitable[BaseModel]) -> BaseModel:
    """One instance of a batch: its failure is its own answer, not the batch's."""
    try:
        return await answer
    except ApiError as err:
        return err.response()


BINARY = {"schema": {"type": "string", "format": "binary"}}  # an image body as it is, in OpenAPI

# OpenAPI cannot make a query parameter required for some bodies only: /v1/reconcile's parameter and 422 say it in words.
QUANTITY_RULE = (
    "The bin's recorded quantity. Required with one photo (an image or multipart body, or JSON naming one photo); "
    "with an `instances` batch, the quantity of each instance that gives none of its own."
)
NO_QUANTITY = "one photo sent without ?expected_quantity, or a request the schema refuses (unknown field, two sources, bad query parameter)"


def body_openapi(ref: type[ImageRef], max_instances: int) -> dict:
    """The OpenAPI request body of a route that takes one photo, or JSON naming one or a batch of `ref`s."""
    # Each instance of a batch is checked alone: one that is not a valid `ref` gets its own error in its place.
    instance = {"anyOf": [ref.model_json_schema(), {}], "description": f"a {ref.__name__}; anything else fails alone"}
    instances = {"type": "array", "items": instance, "minItems": 1, "maxItems": max_instances}
    batch = {"type": "object", "properties": {"instances": instances}, "required": ["instances"], "additionalProperties": False}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "image/jpeg": BINARY,
                "image/png": BINARY,
                "multipart/form-data": {"schema": {"type": "object", "properties": {"file": BINARY["schema"]}, "required": ["file"]}},
                "application/json": {"schema": {"oneOf": [ImageRef.model_json_schema(), batch]}},
            },
        }
    }


def invocations_openapi() -> dict:
    """The SageMaker body: a JPEG (or PNG) as it is, or `{"s3_uri"}`."""
    content = {"image/jpeg": BINARY, "image/png": BINARY, "application/json": {"schema": inputs.S3Only.model_json_schema()}}
    return {"requestBody": {"required": True, "content": content}}


def create_app(cfg: ServeConfig) -> FastAPI:
    service = Service(cfg)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        loading = asyncio.create_task(service.start())
        yield
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        await service.stop()

    app = FastAPI(title="bintally", summary="Count the objects in a storage-bin photo.", lifespan=lifespan)
    app.state.service = service
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)  # outermost: counts even early refusals

    def guard(
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
        x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> None:
        """Key, then readiness, then room in the queue: all before the body is read."""
        if service.api_keys:
            service.api_keys.check(authorization, x_api_key)
        if service.ready().batcher.full():
            raise overloaded()

    @app.post(
        "/v1/count",
        response_model=CountResponse | BatchResponse,
        openapi_extra=body_openapi(ImageRef, cfg.max_instances),
        dependencies=[Depends(guard)],
        responses=error_responses(),
    )
    async def count(request: Request):
        """Count the objects in one photo, or in each photo of an `instances` batch."""
        items, is_batch = await inputs.count_items(request, cfg.max_body_bytes, cfg.max_instances)
        if not is_batch:
            return await service.count(items[0])
        return BatchResponse(predictions=await asyncio.gather(*(or_error(service.count(item)) for item in items)))

    @app.post(
        "/v1/reconcile",
        response_model=ReconcileResponse | ReconcileBatchResponse,
        openapi_extra=body_openapi(ReconcileRef, cfg.max_instances),
        dependencies=[Depends(guard)],
        responses=error_responses() | {422: {"model": ErrorResponse, "description": NO_QUANTITY}},
    )
    async def reconcile_bin(request: Request, expected_quantity: Annotated[int | None, Query(ge=0, description=QUANTITY_RULE)] = None):
        """Does a photo agree with the bin's recorded quantity? `accept`, `review` (a person counts) or `mismatch`.

        One image with `?expected_quantity=N`, or `{"instances": [{..., "expected_quantity": N}]}`."""
        items, is_batch = await inputs.count_items(request, cfg.max_body_bytes, cfg.max_instances, ReconcileRef)
        if not is_batch:
            return await service.reconcile(items[0], expected_quantity)
        answers = await asyncio.gather(*(or_error(service.reconcile(item, expected_quantity)) for item in items))
        return ReconcileBatchResponse(predictions=answers)

    @app.post(
        "/invocations",
        response_model=list[list[float]],
        openapi_extra=invocations_openapi(),
        dependencies=[Depends(guard)],
        responses=error_responses(400, 401, 403, 404, 413, 415, 422, 502, 503, 504),
    )
    async def invocations(request: Request):
        """SageMaker inference contract: `image/jpeg` bytes or `{"s3_uri"}` -> `[[logit_1, ..., logit_K]]`."""
        row = await service.logits(await inputs.invocation_item(request))
        return [row.tolist()]

    @app.get("/ping", response_class=Response, responses={200: {"description": "the model serves", "content": {}}, **error_responses(503)})
    async def ping() -> Response:
        """SageMaker health check: 200 once the model serves."""
        service.ready()
        return Response(status_code=200)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "alive"}

    @app.get("/readyz", responses=error_responses(503))
    async def readyz() -> dict:
        model = service.ready()
        batching = service.cfg.batching
        return {
            "status": "ready",
            "model": model.model_ref(),
            "backend": model.predictor.backend,
            "precision": model.predictor.precision,
            "workers": batching.workers,
            "timeout_s": batching.timeout_s,
        }

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    page = resources.files("bintally.serve").joinpath("page.html").read_text()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    return app


def exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8080, max_connections: int = 512) -> None:
    """Serve until interrupted. `max_connections` bounds the request bodies held in memory at once.

    A path that is no artifact, thresholds that do not fit its policy, or a bad key file, fail here at once rather
    than as 503s forever.
    """
    serving_policy(load_artifact(cfg.model).spec, cfg)
    app = create_app(cfg)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")  # as uvicorn's own lines
    # uvicorn shuts down gracefully on SIGTERM, then raises it again for the handler it found: this one exits 0, a
    # clean stop to a container runtime (the default handler would end the process as killed, status -15).
    signal.signal(signal.SIGTERM, exit_cleanly)
    uvicorn.run(app, host=host, port=port, limit_concurrency=max_connections, log_level="info")
