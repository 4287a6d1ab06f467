"""LiteLLM's and the OpenAI SDK's exceptions translated, once, into the gateway's hierarchy."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
import litellm
import openai

from proxy_core.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def _retry_after(exc: Exception) -> dict[str, str]:
    for source in (getattr(exc, "litellm_response_headers", None), getattr(exc, "response", None)):
        headers: Mapping[str, Any] | None = getattr(source, "headers", source)
        if headers is None or not hasattr(headers, "get"):
            continue
        value = headers.get("retry-after") or headers.get("Retry-After")
        if value:
            return {"Retry-After": str(value)}
    return {}


class DeploymentRateLimitError(litellm.RateLimitError):  # type: ignore[misc]
    """The gateway's own rpm/tpm limits refused a routed call (``services.rate_limits``).

    A LiteLLM ``RateLimitError`` so the Router treats it as one (fallbacks are tried, no provider
    error is logged for it), carrying the seconds until the window that refused it reopens.
    """

    def __init__(self, message: str, *, model: str, retry_after_s: int) -> None:
        super().__init__(
            message,
            llm_provider="",
            model=model,
            response=httpx.Response(429, headers={"retry-after": str(retry_after_s)}),
            category=litellm.RateLimitErrorCategory.LITELLM_RATE_LIMIT,
        )
        self.gateway_message = message
        self.retry_after_s = retry_after_s


def _rate_limited(causes: list[BaseException]) -> RateLimitError | None:
    for cause in causes:
        if isinstance(cause, DeploymentRateLimitError):
            return RateLimitError(cause.gateway_message, headers={"Retry-After": str(cause.retry_after_s)})
    return None


def _router_retry_after(exc: Exception) -> str:
    """When the Router has no deployment left, its rpm/tpm windows reset on the next minute."""
    message = str(exc)
    if "No deployments available" in message or "rpm limit" in message or "tpm limit" in message:
        return str(max(1, 60 - int(time.time()) % 60))
    return "1"


def _clean_message(exc: Exception) -> str:
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    return message.removeprefix("litellm.").strip()


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


# LiteLLM's own check of message shapes, run before any network I/O; it surfaces wrapped in
# LiteLLM's APIConnectionError, as if the provider had been unreachable.
_LITELLM_MESSAGE_CHECK = "Invalid user message"


# LiteLLM's refusal of a model name it cannot map to a provider (a catalogue wildcard passes any
# name through), raised before any network I/O with its own 400 and a paragraph of advice.
_NO_PROVIDER = "LLM Provider NOT provided"
_PASSED_MODEL = re.compile(r"You passed model=(\S+)")


def _unknown_provider(causes: list[BaseException]) -> NotFoundError | None:
    for cause in causes:
        message = str(cause)
        if _NO_PROVIDER in message:
            passed = _PASSED_MODEL.search(message)
            model = f"The model {passed.group(1)!r}" if passed else "The model"
            return NotFoundError(
                f"{model} names no provider: use '<provider>/<model>', for example 'openai/gpt-4o-mini'.",
                param="model",
                code="model_not_found",
            )
    return None


def _is_transport_failure(cause: BaseException) -> bool:
    """A failure of the connection itself (refused, reset, DNS), not of LiteLLM's own code.

    LiteLLM's ``APIConnectionError`` subclasses the OpenAI SDK's and also wraps errors raised
    inside LiteLLM before any request is sent; only the SDK's own class, a transport error or an
    OS connection error mean the provider could not be reached.
    """
    if isinstance(cause, httpx.TransportError | ConnectionError):
        return True
    return isinstance(cause, openai.APIConnectionError) and not isinstance(cause, litellm.APIConnectionError)


def translate_error(exc: Exception) -> GatewayError:
    """Map a LiteLLM/OpenAI-SDK exception to the gateway's hierarchy, keeping the provider status.

    LiteLLM reports a refused connection as a 500 "Connection error"; the cause chain tells a
    provider that answered 500 apart from one that could not be reached (502) or was too slow (504).
    """
    if isinstance(exc, GatewayError):
        return exc
    causes = _causes(exc)
    limited = _rate_limited(causes)
    if limited is not None:
        return limited
    if any(isinstance(c, litellm.Timeout | openai.APITimeoutError | httpx.TimeoutException) for c in causes):
        return UpstreamTimeoutError(f"The provider did not answer in time: {_clean_message(exc)}")
    if any(_is_transport_failure(c) for c in causes):
        return UpstreamError(f"Could not reach the provider: {_clean_message(exc)}", code="upstream_unreachable")
    if any(str(c).startswith(_LITELLM_MESSAGE_CHECK) for c in causes):
        reason = str(causes[-1]).rstrip(".")  # the innermost cause names the offending value
        return InvalidRequestError(
            f"The messages cannot be sent to the provider: {reason}.", param="messages", code="invalid_value"
        )
    unknown = _unknown_provider(causes)
    if unknown is not None:
        return unknown
    if any(type(c) is openai.OpenAIError for c in causes):
        # The OpenAI SDK refuses to send a request without a key before any network I/O.
        return AuthenticationError(
            "No provider API key: send 'Authorization: Bearer <provider key>' or configure one on the server.",
            code="missing_provider_key",
        )
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 300 <= status <= 399:  # only a client-chosen upstream's client stops at one
        return UpstreamError(
            f"The provider answered with a redirect (HTTP {status}), which is not followed.", code="upstream_redirect"
        )
    if isinstance(status, int) and 400 <= status <= 599:
        headers = _retry_after(exc) or ({"Retry-After": _router_retry_after(exc)} if status == 429 else {})
        error = UpstreamError(_clean_message(exc), status_code=status, headers=headers)
        error.error_type = _ERROR_TYPES.get(status, "upstream_error" if status >= 500 else "invalid_request_error")
        error.code = f"upstream_{status}"
        return error
    return UpstreamError(f"The provider call failed: {_clean_message(exc)}")
