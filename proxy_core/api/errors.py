"""One place that turns every failure into an OpenAI-style JSON error response."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from proxy_core.api.dispatch import metadata_target
from proxy_core.errors import (
    GatewayError,
    InternalError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
)
from proxy_core.services.sse import anthropic_error_body

logger = logging.getLogger("proxy_core.api")

# Codes of the other statuses Starlette or FastAPI may raise themselves (``http_<status>`` for the rest).
_HTTP_ERROR_CODES = {400: "invalid_request", 415: "unsupported_media_type"}


def error_response(error: GatewayError, request: Request | None = None) -> Response:
    """The error in OpenAI's shape, or in Anthropic's on the routes Anthropic clients call."""
    anthropic = request is not None and getattr(request.state, "anthropic_errors", False)
    return Response(
        content=orjson.dumps(anthropic_error_body(error) if anthropic else error.to_body()),
        status_code=error.status_code,
        headers=error.headers,
        media_type="application/json",
    )


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    if exc.status_code >= 500:
        logger.warning("request failed: status=%d code=%s", exc.status_code, exc.code)
    return error_response(exc, request)


def _from_http_exception(request: Request, exc: StarletteHTTPException) -> GatewayError:
    """The gateway's error for an ``HTTPException`` raised by Starlette or FastAPI (routing, mostly)."""
    status = exc.status_code
    headers = dict(exc.headers or {})
    if status == 404:
        return _unmatched_path(request, headers)
    if status == 405:
        return _method_not_allowed(request.method, headers)
    if status == 413:
        return PayloadTooLargeError(str(exc.detail), headers=headers)
    error = GatewayError(
        str(exc.detail), status_code=status, code=_HTTP_ERROR_CODES.get(status, f"http_{status}"), headers=headers
    )
    error.error_type = "invalid_request_error" if status < 500 else "api_error"
    return error


def _unmatched_path(request: Request, headers: dict[str, str]) -> GatewayError:
    """404, unless the path is a gateway route with a bad id: then the 400 naming the segment.

    Starlette's path pattern does not match a path whose decoded form holds a newline, so such a
    request never reaches the dispatcher that would have named the offending id.
    """
    try:
        metadata_target(request)
    except InvalidRequestError as bad_id:
        return bad_id
    return NotFoundError(f"Unknown route: {request.method} {request.url.path}", code="unknown_route", headers=headers)


def _method_not_allowed(method: str, headers: dict[str, str]) -> MethodNotAllowedError:
    """Starlette's 405: ``Allow`` lists the matched route's methods, in set order; sorted here."""
    allowed = sorted({part.strip() for part in headers.get("Allow", "").split(",")} - {""})
    return MethodNotAllowedError.allowing(method, allowed, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(_from_http_exception(request, exc))


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
    param = ".".join(location) or None
    return error_response(
        InvalidRequestError(f"Invalid {param or 'request'}: {first.get('msg', 'invalid')}.", param=param)
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return error_response(InternalError("The gateway failed to process the request."), request)


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
