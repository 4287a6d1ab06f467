"""The gateway's error hierarchy, rendered once as OpenAI-style JSON.

Every failure a client can see is one of these classes; the HTTP layer turns it into
``{"error": {"message", "type", "param", "code"}}`` with the class's status. Third-party
exceptions (LiteLLM, Redis, Langfuse) are translated into this hierarchy inside their adapter,
so nothing above the adapters needs to know those libraries.

    GatewayError
    ├── InvalidRequestError            400 invalid_request_error
    │   └── SanitizerError             500 (fails closed: nothing forwarded)
    ├── AuthenticationError            401
    ├── PermissionDeniedError          403
    ├── NotFoundError                  404
    ├── MethodNotAllowedError          405
    ├── RequestTimeoutError            408 (answered by the HTTP protocol: head and body too slow)
    ├── PayloadTooLargeError           413
    ├── HeadersTooLargeError           431 (answered by the HTTP protocol, before the app)
    ├── RateLimitError                 429
    ├── UpstreamError                  provider status (4xx/5xx) or 502
    │   └── UpstreamTimeoutError       504
    ├── StoreUnavailableError          503 (+ Retry-After)
    ├── TraceBacklogFullError          503 (+ Retry-After)
    ├── ShuttingDownError              503 (+ Retry-After)
    ├── ServerOverloadedError          503 (+ Retry-After)
    └── InternalError                  500
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class GatewayError(Exception):
    """Base class: an error with an HTTP status and an OpenAI-style body."""

    status_code: int = 500
    error_type: str = "api_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        status_code: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = dict(headers or {})
        self.extra: dict[str, Any] = dict(extra or {})
        if status_code is not None:
            self.status_code = status_code

    def to_body(self) -> dict[str, Any]:
        """The JSON body OpenAI clients parse (``openai.APIStatusError.body``)."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }
        error.update(self.extra)
        return {"error": error}


class InvalidRequestError(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class SanitizerError(GatewayError):
    """The PII engine failed; the request is refused rather than forwarded unredacted."""

    status_code = 500
    error_type = "api_error"
    default_code = "sanitizer_error"


class AuthenticationError(GatewayError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status_code = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class NotFoundError(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class MethodNotAllowedError(GatewayError):
    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"

    @classmethod
    def allowing(
        cls, method: str, allowed: Sequence[str], headers: Mapping[str, str] | None = None
    ) -> MethodNotAllowedError:
        """``method`` refused where only ``allowed`` is taken; ``Allow`` names them (none: no header)."""
        extra = {name: value for name, value in (headers or {}).items() if name.lower() != "allow"}
        if not allowed:
            return cls(f"{method} is not allowed here.", headers=extra)
        allow = ", ".join(allowed)
        return cls(f"{method} is not allowed here; use {allow}.", headers={**extra, "Allow": allow})


class RequestTimeoutError(GatewayError):
    """The request's head and body did not arrive within ``REQUEST_HEAD_TIMEOUT_S`` of its first byte."""

    status_code = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"


class PayloadTooLargeError(GatewayError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class HeadersTooLargeError(GatewayError):
    status_code = 431
    error_type = "invalid_request_error"
    default_code = "request_headers_too_large"


class RateLimitError(GatewayError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """The provider answered with an error (its status is kept) or could not be reached (502)."""

    status_code = 502
    error_type = "upstream_error"
    default_code = "upstream_error"


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    default_code = "upstream_timeout"


class StoreUnavailableError(GatewayError):
    """The rollout store cannot record an insertion id; retrying later is safe."""

    status_code = 503
    error_type = "api_error"
    default_code = "store_unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 1, outcome_unknown: bool = False) -> None:
        """``outcome_unknown``: the write may have reached the store before the failure (a timeout)."""
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
        self.outcome_unknown = outcome_unknown


class TraceBacklogFullError(GatewayError):
    """The project's trace spool is full: a rollout-tracked call could never be complete."""

    status_code = 503
    error_type = "api_error"
    default_code = "trace_backlog_full"

    def __init__(self, message: str, *, retry_after_s: int = 30) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class ShuttingDownError(GatewayError):
    """The server stopped waiting for this request while shutting down; another instance can serve it."""

    status_code = 503
    error_type = "api_error"
    default_code = "shutting_down"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class ServerOverloadedError(GatewayError):
    """``MAX_CONCURRENT_REQUESTS`` are in flight in this process; another attempt (or instance) can serve it."""

    status_code = 503
    error_type = "api_error"
    default_code = "server_overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class InternalError(GatewayError):
    status_code = 500
    error_type = "api_error"
    default_code = "internal_error"
