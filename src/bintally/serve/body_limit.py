"""The request body limit, enforced before the body is in memory: by Content-Length, or while it streams."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bintally.serve.errors import ApiError, error_response, too_large


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`, by Content-Length or while it streams, before it is all in memory.

    The refused body is still read (and dropped, up to `drain_bytes`) so the client,
    still sending, gets the 413 instead of a reset connection.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, drain_bytes: int = 256 * 2**20):
        self.app, self.max_bytes, self.drain_bytes = app, max_bytes, drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._drain(receive)
            return await error_response(self._error()).__call__(scope, receive, send)
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                if message.get("more_body"):
                    await self._drain(receive)
                raise self._error()
            return message

        await self.app(scope, limited, send)

    def _error(self) -> ApiError:
        return too_large(f"the request body is larger than {self.max_bytes:,} bytes")

    async def _drain(self, receive: Receive) -> None:
        drained = 0
        while drained < self.drain_bytes:
            message = await receive()
            drained += len(message.get("body", b""))
            if not message.get("more_body"):
                return
