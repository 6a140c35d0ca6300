"""From an HTTP request to images: content types, JSON shapes, base64, multipart, s3_uri and url.

Every way a photo can arrive ends as bytes here; `decode_and_prepare` then turns
bytes into the model's input through the one decoder and the one preprocessing.
Each failure is an `ApiError` with the status DESIGN.md gives it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import anyio
import httpcore
import httpx
import numpy as np
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bintally import storage
from bintally.data.images import ImageError, ImageTooLarge, decode_image
from bintally.model.preprocess import Preprocess, prepare
from bintally.serve.errors import ApiError, bad_image, error_response, invalid_request, too_large
from bintally.serve.security import PublicOnlyBackend, UriPolicy

IMAGE_TYPES = ("image/jpeg", "image/jpg", "image/png", "application/x-image")
MAX_REDIRECTS = 5
FETCH_TIMEOUT_S = 10.0


class ImageRef(BaseModel):
    """One image named in JSON: exactly one of `s3_uri`, `url`, `image_base64`."""

    model_config = ConfigDict(extra="forbid")
    s3_uri: str | None = None
    url: str | None = None
    image_base64: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageRef:
        given = [k for k in ("s3_uri", "url", "image_base64") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of s3_uri, url, image_base64 (got {', '.join(given) or 'none'})")
        return self


class Instances(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instances: list[Any] = Field(min_length=1)


class S3Only(BaseModel):
    """The SageMaker-style JSON body of /invocations."""

    model_config = ConfigDict(extra="forbid")
    s3_uri: str


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def unsupported(kind: str, allowed: tuple[str, ...]) -> ApiError:
    return ApiError(415, "unsupported_media_type", f"content type {kind or '(none)'!r} is not one of {', '.join(allowed)}")


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from exc


def validate(model: type[BaseModel], doc: Any) -> Any:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise invalid_request("; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())) from exc


def json_refs(doc: Any, max_instances: int) -> tuple[list[ImageRef | ApiError], bool]:
    """The images a /v1/count JSON body names, and whether it was an `instances` batch.

    In a batch each instance is validated alone, so a bad one fails by itself.
    """
    if not (isinstance(doc, dict) and "instances" in doc):
        return [validate(ImageRef, doc)], False
    batch = validate(Instances, doc)
    if len(batch.instances) > max_instances:
        raise invalid_request(f"{len(batch.instances)} instances; at most {max_instances} per request")
    refs: list[ImageRef | ApiError] = []
    for instance in batch.instances:
        try:
            refs.append(validate(ImageRef, instance))
        except ApiError as err:
            refs.append(err)
    return refs, True


async def multipart_file(request: Request, max_bytes: int) -> bytes:
    form = await request.form(max_files=1, max_fields=8, max_part_size=max_bytes)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise invalid_request("multipart/form-data needs the photo as a file in the field 'file'")
    return await upload.read()


class Fetcher:
    """Fetches the bytes an `ImageRef` names, within the URI policy and the byte limit."""

    def __init__(self, policy: UriPolicy, endpoint_url: str | None, max_bytes: int):
        self.policy, self.endpoint_url, self.max_bytes = policy, endpoint_url, max_bytes
        self._pool = httpcore.AsyncConnectionPool(network_backend=PublicOnlyBackend(policy.allow_private_hosts))

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def load(self, ref: ImageRef) -> bytes:
        if ref.image_base64 is not None:
            return decode_base64(ref.image_base64)
        if ref.s3_uri is not None:
            return await anyio.to_thread.run_sync(self._read_s3, self.policy.check_s3(ref.s3_uri))
        return await self._read_url(ref.url)

    def _read_s3(self, uri: str) -> bytes:
        fs, path = storage.resolve(uri, self.endpoint_url)
        try:
            if fs.size(path) > self.max_bytes:
                raise too_large(f"{uri} is larger than {self.max_bytes:,} bytes")
            return fs.cat_file(path)
        except FileNotFoundError as exc:
            raise ApiError(404, "not_found", f"{uri} does not exist") from exc
        except PermissionError as exc:
            raise ApiError(403, "forbidden_uri", f"the server may not read {uri}") from exc
        except OSError as exc:
            raise ApiError(502, "upstream_error", f"cannot read {uri}: {exc}") from exc

    async def _read_url(self, url: str) -> bytes:
        target = self.policy.check_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            status, location, data = await self._get(target)
            if location is None:
                if status == 404:
                    raise ApiError(404, "not_found", f"{target} answered 404")
                if status >= 400:
                    raise ApiError(502, "upstream_error", f"{target} answered {status}")
                return data
            target = self.policy.check_url(str(target.join(location)))  # every hop meets the same rules
        raise ApiError(502, "upstream_error", f"more than {MAX_REDIRECTS} redirects")

    async def _get(self, url: httpx.URL) -> tuple[int, str | None, bytes]:
        extensions = {"timeout": {k: FETCH_TIMEOUT_S for k in ("connect", "read", "write", "pool")}}
        try:
            async with self._pool.stream("GET", str(url), extensions=extensions) as response:
                if 300 <= response.status < 400:
                    location = dict((k.lower(), v) for k, v in response.headers).get(b"location")
                    if location:
                        return response.status, location.decode("latin-1"), b""
                return response.status, None, await self._read_limited(response)
        except httpcore.TimeoutException as exc:
            raise ApiError(504, "upstream_timeout", f"{url} did not answer in {FETCH_TIMEOUT_S:.0f} s") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise ApiError(502, "upstream_error", f"cannot fetch {url}: {exc}") from exc

    async def _read_limited(self, response: httpcore.Response) -> bytes:
        chunks, size = [], 0
        async for chunk in response.aiter_stream():
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large(f"the image at the URL is larger than {self.max_bytes:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_image(f"image_base64 is not valid base64: {exc}") from exc


def decode_and_prepare(data: bytes, pp: Preprocess, max_pixels: int) -> np.ndarray:
    """Bytes -> the model's input (3, size, size). Blocking: call it off the event loop."""
    try:
        return prepare(decode_image(data, max_pixels), pp)
    except ImageTooLarge as exc:
        raise too_large(str(exc)) from exc
    except ImageError as exc:
        raise bad_image(str(exc)) from exc


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


COUNT_TYPES = (*IMAGE_TYPES, "multipart/form-data", "application/json")
INVOCATION_TYPES = (*IMAGE_TYPES, "application/json")


async def count_items(request: Request, max_bytes: int, max_instances: int) -> tuple[list[bytes | ImageRef | ApiError], bool]:
    """The images a /v1/count request carries or names, and whether it is an `instances` batch."""
    kind = media_type(request)
    if kind in IMAGE_TYPES:
        return [await request.body()], False
    if kind == "multipart/form-data":
        return [await multipart_file(request, max_bytes)], False
    if kind == "application/json":
        return json_refs(parse_json(await request.body()), max_instances)
    raise unsupported(kind, COUNT_TYPES)


async def invocation_item(request: Request) -> bytes | ImageRef:
    """The one image of a SageMaker /invocations request: raw bytes or `{"s3_uri"}`."""
    kind = media_type(request)
    if kind in IMAGE_TYPES:
        return await request.body()
    if kind == "application/json":
        return ImageRef(s3_uri=validate(S3Only, parse_json(await request.body())).s3_uri)
    raise unsupported(kind, INVOCATION_TYPES)
