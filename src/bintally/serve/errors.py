"""The one error shape of the HTTP API: `{"error": {"code", "message"}}` with the right status.

Routes raise `ApiError` (or let FastAPI raise its own); the handlers here turn
every failure into that shape, so a client never has to parse two formats and
bad input never surfaces as a 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """The body of every error answer, and of a failed instance in a batch."""

    error: ErrorBody


class ApiError(Exception):
    """A failure the client can act on: an HTTP status, a stable code and a human message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorBody(code=self.code, message=self.message))


# Every error status the API answers, as documented in the OpenAPI document (each with `ErrorResponse`).
ERROR_STATUSES = {
    400: "the image cannot be decoded, or the JSON is malformed",
    401: "an API key is required, or the one sent is wrong",
    403: "the URI named is outside the allow-list, or reaches a non-public address",
    404: "the object or host named does not exist",
    413: "the body is over --max-body-bytes, or the image over --max-pixels",
    415: "the content type is not one the route takes",
    422: "the request does not match the schema (unknown field, two sources, bad query parameter)",
    502: "the store or host named failed to answer properly",
    503: "the model is not ready, or the queue is full (see Retry-After)",
    504: "the host named did not answer in time, or the model did not within the server's --timeout",
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """FastAPI `responses=` for these statuses (all of ERROR_STATUSES by default): the one error shape."""
    return {status: {"model": ErrorResponse, "description": ERROR_STATUSES[status]} for status in statuses or ERROR_STATUSES}


def bad_image(message: str) -> ApiError:
    return ApiError(400, "bad_image", message)


def too_large(message: str) -> ApiError:
    return ApiError(413, "too_large", message)


def forbidden_uri(message: str) -> ApiError:
    return ApiError(403, "forbidden_uri", message)


def invalid_request(message: str) -> ApiError:
    return ApiError(422, "invalid_request", message)


def unavailable(code: str, message: str) -> ApiError:
    return ApiError(503, code, message, {"Retry-After": str(RETRY_AFTER_S)})


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.response().model_dump(), status_code=err.status, headers=err.headers)


def _validation_message(exc: RequestValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def on_http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, code, str(exc.detail), dict(exc.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(invalid_request(_validation_message(exc)))

    @app.exception_handler(Exception)
    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")  # a bug on our side, never the client's input
        return error_response(ApiError(500, "internal", "internal error; see the server log"))
