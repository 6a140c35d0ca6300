"""Prometheus metrics of one server: requests, latency, batch sizes, queue depth, model version.

Each app gets its own registry, so several servers in one process (tests,
benchmarks) never share counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("bintally_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry)
        self.latency = Histogram("bintally_request_seconds", "HTTP request latency by route", ["route"], registry=self.registry)
        self.batch_size = Histogram("bintally_batch_size", "images per forward pass", buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("bintally_queue_depth", "images waiting for a forward pass", registry=self.registry)
        self.model = Info("bintally_model", "the served model", registry=self.registry)

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(depth)


class MetricsMiddleware:
    """Counts every request by its route template (not its raw path, which a client controls)."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
