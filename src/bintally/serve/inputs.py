"""From an HTTP request to images: content types, JSON shapes, base64, multipart, s3_uri and url.

Every way a photo can arrive ends as bytes here; `decode_and_prepare` then turns
bytes into the model's input through the one decoder and the one preprocessing.
Each failure is an `ApiError` with its status (see `serve/errors.py`). Photos named
by URI are fetched in `serve/fetch.py`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator
from starlette.datastructures import UploadFile

from bintally.data.images import ImageError, ImageTooLarge, decode_image
from bintally.model.preprocess import Preprocess, prepare
from bintally.serve.errors import (
    ApiError,
    bad_image,
    invalid_request,
    too_large,
)

IMAGE_TYPES = ("image/jpeg", "image/jpg", "image/png", "application/x-image")


# Each source as the OpenAPI document describes it, and "exactly one of them" as JSON Schema says it (the
# validator below and serve/fetch.py enforce both).
SOURCE_SCHEMAS: dict[str, JsonValue] = {
    "s3_uri": {"type": "string", "pattern": "^s3://[^/]+/.+"},
    "url": {"type": "string", "format": "uri", "pattern": "^https?://"},
    "image_base64": {"type": "string", "contentEncoding": "base64"},
}
SOURCES = tuple(SOURCE_SCHEMAS)
EXACTLY_ONE: dict[str, JsonValue] = {
    "oneOf": [
        {"required": [k], "properties": {other: schema if other == k else {"type": "null"} for other in SOURCES}}
        for k, schema in SOURCE_SCHEMAS.items()
    ]
}


class ImageRef(BaseModel):
    """One image named in JSON: exactly one of `s3_uri`, `url`, `image_base64`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=EXACTLY_ONE)
    s3_uri: str | None = None
    url: str | None = None
    image_base64: str | None = Field(None, min_length=1)  # minLength in the schema: an empty one names no photo

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageRef:
        given = [k for k in SOURCES if getattr(self, k) is not None]
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


class ReconcileRef(ImageRef):
    """One image of a /v1/reconcile batch, with the bin's recorded quantity."""

    expected_quantity: int | None = Field(None, ge=0)


def json_refs(doc: Any, max_instances: int, kind: type[ImageRef] = ImageRef) -> tuple[list[ImageRef | ApiError], bool]:
    """The images a JSON body names (each a `kind`), and whether it was an `instances` batch.

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
            refs.append(validate(kind, instance))
        except ApiError as err:
            refs.append(err)
    return refs, True


async def multipart_file(request: Request, max_bytes: int) -> bytes:
    form = await request.form(max_files=1, max_fields=8, max_part_size=max_bytes)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise invalid_request("multipart/form-data needs the photo as a file in the field 'file'")
    return await upload.read()


def decode_and_prepare(data: bytes, pp: Preprocess, max_pixels: int) -> np.ndarray:
    """Bytes -> the model's input (3, size, size). Blocking: call it off the event loop."""
    try:
        return prepare(decode_image(data, max_pixels), pp)
    except ImageTooLarge as exc:
        raise too_large(str(exc)) from exc
    except ImageError as exc:
        raise bad_image(str(exc)) from exc


COUNT_TYPES = (*IMAGE_TYPES, "multipart/form-data", "application/json")
INVOCATION_TYPES = (*IMAGE_TYPES, "application/json")


async def count_items(
    request: Request, max_bytes: int, max_instances: int, kind_of_ref: type[ImageRef] = ImageRef
) -> tuple[list[bytes | ImageRef | ApiError], bool]:
    """The images a /v1/count (or /v1/reconcile) request carries or names, and whether it is an `instances` batch."""
    kind = media_type(request)
    if kind in IMAGE_TYPES:
        return [await request.body()], False
    if kind == "multipart/form-data":
        return [await multipart_file(request, max_bytes)], False
    if kind == "application/json":
        refs, is_batch = json_refs(parse_json(await request.body()), max_instances, kind_of_ref)
        return list(refs), is_batch
    raise unsupported(kind, COUNT_TYPES)


async def invocation_item(request: Request) -> bytes | ImageRef:
    """The one image of a SageMaker /invocations request: raw bytes or `{"s3_uri"}`."""
    kind = media_type(request)
    if kind in IMAGE_TYPES:
        return await request.body()
    if kind == "application/json":
        return ImageRef(s3_uri=validate(S3Only, parse_json(await request.body())).s3_uri)
    raise unsupported(kind, INVOCATION_TYPES)
