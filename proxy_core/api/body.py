"""Reading request bodies with a hard size limit, before any of it is parsed."""

from __future__ import annotations

from fastapi import Request
from starlette.requests import ClientDisconnect

from proxy_core.api.disconnect import ClientDisconnectedError
from proxy_core.errors import InvalidRequestError, PayloadTooLargeError


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The request body exceeds the limit of {limit} bytes.")


def check_content_encoding(encoding: str | None) -> None:
    """A compressed body would reach the JSON parser as bytes it cannot read; say so instead."""
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        raise InvalidRequestError(
            f"Unsupported content encoding {encoding!r}; send the body uncompressed.",
            code="unsupported_content_encoding",
            status_code=415,
            headers={"Accept-Encoding": "identity"},
        )


async def read_json_body(request: Request, limit: int) -> bytes:
    """The raw body; 413 as soon as it is known to exceed ``limit``, 400 for non-JSON content
    types, 415 for a content encoding (RFC 9110: a 415 names the codings it accepts)."""
    content_type = request.headers.get("content-type")
    if content_type is not None and "json" not in content_type.lower():
        raise InvalidRequestError(
            f"Unsupported content type {content_type!r}; send application/json.", code="invalid_content_type"
        )
    check_content_encoding(request.headers.get("content-encoding"))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnectedError("The client went away before sending its whole request.") from None
    return b"".join(chunks)
