"""The request body limit, enforced before the body is in memory: by Content-Length, or while it streams."""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bintally.serve.errors import error_response, too_large


class BodyTooLarge(Exception):
    """Raised by the limited `receive` and caught by the middleware: no route handler ever sees it."""


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: by Content-Length before reading any of it, or while it streams, having
    read at most `max_bytes` plus the chunk that crossed the limit.

    The 413 goes out at once and whole (it has a Content-Length), so a client that reads while it sends can stop
    sending. The connection then lingers, reading and dropping what is still coming, up to `linger_bytes` or
    `linger_s`, so that a client that reads only once it has sent everything still gets the 413 rather than a
    reset connection; then it closes.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, linger_bytes: int = 64 * 2**20, linger_s: float = 5.0):
        self.app, self.max_bytes, self.linger_bytes, self.linger_s = app, max_bytes, linger_bytes, linger_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(receive, send)
        received, more = 0, True

        async def limited() -> Message:
            nonlocal received, more
            message = await receive()
            received += len(message.get("body", b""))
            more = message.get("more_body", False)
            if received > self.max_bytes:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await self._refuse(receive if more else None, send)

    async def _refuse(self, receive: Receive | None, send: Send) -> None:
        """Send the whole 413 now; then, if the client may still be sending, linger before ending the response."""
        response = error_response(too_large(f"the request body is larger than {self.max_bytes:,} bytes"))
        response.headers["connection"] = "close"
        await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": receive is not None})
        if receive is None:
            return
        with anyio.move_on_after(self.linger_s):
            dropped = 0
            while dropped < self.linger_bytes:
                message = await receive()
                dropped += len(message.get("body", b""))
                if message["type"] == "http.disconnect" or not message.get("more_body"):
                    break
        await send({"type": "http.response.body", "body": b"", "more_body": False})
