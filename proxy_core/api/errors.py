"""One place that turns every failure into an OpenAI-style JSON error response."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from proxy_core.errors import GatewayError, InternalError, InvalidRequestError, NotFoundError

logger = logging.getLogger("proxy_core.api")

_HTTP_ERROR_TYPES = {404: "invalid_request_error", 405: "invalid_request_error"}


def error_response(error: GatewayError) -> Response:
    return Response(
        content=orjson.dumps(error.to_body()),
        status_code=error.status_code,
        headers=error.headers,
        media_type="application/json",
    )


async def _gateway_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    if exc.status_code >= 500:
        logger.warning("request failed: status=%d code=%s", exc.status_code, exc.code)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        error: GatewayError = NotFoundError(f"Unknown route: {request.method} {request.url.path}", code="unknown_route")
    else:
        error = GatewayError(str(exc.detail), status_code=exc.status_code, code=f"http_{exc.status_code}")
        error.error_type = _HTTP_ERROR_TYPES.get(exc.status_code, "invalid_request_error")
    error.headers.update(exc.headers or {})
    return error_response(error)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
    param = ".".join(location) or None
    return error_response(
        InvalidRequestError(f"Invalid {param or 'request'}: {first.get('msg', 'invalid')}.", param=param)
    )


async def _unexpected_error(_: Request, exc: Exception) -> Response:
    logger.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return error_response(InternalError("The gateway failed to process the request."))


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
