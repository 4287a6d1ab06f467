"""Calls to LLM providers through the LiteLLM SDK, with LiteLLM's errors translated to ours.

Everything LiteLLM-specific about a call lives here: the keyword names it expects, the fresh
``metadata`` dict it mutates (sharing one silently drops spans), the per-request Langfuse
credentials that route the trace to the right project, and ``no-log`` for untraced calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx
import litellm
import openai

from proxy_core.errors import AuthenticationError, GatewayError, UpstreamError, UpstreamTimeoutError
from proxy_core.services.llm import CallInfo, ChunkStream, Completion, LlmCall

# These libraries log request bodies or credentials at debug level (LiteLLM and the OpenAI SDK
# the prompts, httpcore and urllib3 the headers): they stay at WARNING whatever LOG_LEVEL says.
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "openai", "httpcore", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# LiteLLM prints a "Give Feedback / Get Help" banner to stdout on every provider error.
litellm.suppress_debug_info = True

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


def _kwargs(call: LlmCall, *, stream: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(call.deployment_params)
    kwargs.update(call.params)
    kwargs.update(
        model=call.model,
        messages=call.messages,
        stream=stream,
        metadata=dict(call.metadata),
        timeout=call.timeout_s,
        max_retries=call.max_retries,
        drop_params=call.drop_params,
    )
    if call.extra_body:
        kwargs["extra_body"] = call.extra_body
    if call.replay is not None:
        kwargs["mock_response"] = litellm.ModelResponse(**call.replay)
        if call.routed:  # a router group name is no LiteLLM model: replay as the model that answered
            kwargs["model"] = f"openai/{call.replay.get('model') or call.model}"
    if call.api_key is not None:
        kwargs["api_key"] = call.api_key
    if call.api_base is not None:
        kwargs["api_base"] = call.api_base
    if call.langfuse is not None:
        kwargs["langfuse_public_key"] = call.langfuse.public_key
        kwargs["langfuse_secret_key"] = call.langfuse.secret_key
        kwargs["langfuse_host"] = call.langfuse.host
        if call.langfuse_environment is not None:
            kwargs["langfuse_environment"] = call.langfuse_environment
    else:
        kwargs["no-log"] = True
    return kwargs


def _retry_after(exc: Exception) -> dict[str, str]:
    for source in (getattr(exc, "litellm_response_headers", None), getattr(exc, "response", None)):
        headers: Mapping[str, Any] | None = getattr(source, "headers", source)
        if headers is None or not hasattr(headers, "get"):
            continue
        value = headers.get("retry-after") or headers.get("Retry-After")
        if value:
            return {"Retry-After": str(value)}
    return {}


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


def translate_error(exc: Exception) -> GatewayError:
    """Map a LiteLLM/OpenAI-SDK exception to the gateway's hierarchy, keeping the provider status.

    LiteLLM reports a refused connection as a 500 "Connection error"; the cause chain tells a
    provider that answered 500 apart from one that could not be reached (502) or was too slow (504).
    """
    if isinstance(exc, GatewayError):
        return exc
    causes = _causes(exc)
    if any(isinstance(c, litellm.Timeout | openai.APITimeoutError | httpx.TimeoutException) for c in causes):
        return UpstreamTimeoutError(f"The provider did not answer in time: {_clean_message(exc)}")
    if any(isinstance(c, openai.APIConnectionError | httpx.TransportError) for c in causes):
        return UpstreamError(f"Could not reach the provider: {_clean_message(exc)}", code="upstream_unreachable")
    if any(type(c) is openai.OpenAIError for c in causes):
        # The OpenAI SDK refuses to send a request without a key before any network I/O.
        return AuthenticationError(
            "No provider API key: send 'Authorization: Bearer <provider key>' or configure one on the server.",
            code="missing_provider_key",
        )
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status <= 599:
        headers = _retry_after(exc) or ({"Retry-After": _router_retry_after(exc)} if status == 429 else {})
        error = UpstreamError(_clean_message(exc), status_code=status, headers=headers)
        error.error_type = _ERROR_TYPES.get(status, "upstream_error" if status >= 500 else "invalid_request_error")
        error.code = f"upstream_{status}"
        return error
    return UpstreamError(f"The provider call failed: {_clean_message(exc)}")


def _info(hidden: Mapping[str, Any] | None, usage: Mapping[str, Any] | None) -> CallInfo:
    hidden = hidden or {}
    headers = hidden.get("additional_headers") or {}
    cost = hidden.get("response_cost")
    fallbacks = headers.get("x-litellm-attempted-fallbacks")
    usage = usage or {}
    return CallInfo(
        deployment=hidden.get("model_id") or None,
        fallbacks=int(fallbacks) if isinstance(fallbacks, int | str) and str(fallbacks).isdigit() else 0,
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def _stream_cost(model: str, info: CallInfo) -> float | None:
    """LiteLLM's price for a streamed call's tokens; None for models it has no price for."""
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=info.prompt_tokens, completion_tokens=info.completion_tokens
        )
    except Exception:
        return None
    return float(prompt_cost + completion_cost)


class _Stream:
    """A LiteLLM stream as chunk dicts, remembering usage for the call's ``CallInfo``."""

    def __init__(self, wrapper: Any, model: str) -> None:
        self._wrapper = wrapper
        self._model = model
        self._usage: dict[str, Any] | None = None

    async def __aiter__(self) -> AsyncGenerator[dict[str, Any], None]:
        try:
            async for chunk in self._wrapper:
                data: dict[str, Any] = chunk.model_dump(exclude_none=True)
                if data.get("usage"):
                    self._usage = data["usage"]
                yield data
        except GatewayError:
            raise
        except Exception as exc:
            raise translate_error(exc) from exc

    async def aclose(self) -> None:
        await self._wrapper.aclose()

    @property
    def info(self) -> CallInfo:
        info = _info(getattr(self._wrapper, "_hidden_params", None), self._usage)
        if self._usage is not None and not info.cost_usd:
            # A stream's price is known once its usage chunk has arrived, not when it opened.
            reported = self._usage.get("cost")
            info.cost_usd = float(reported) if isinstance(reported, int | float) else _stream_cost(self._model, info)
        return info


class LiteLLMClient:
    """Async facade over ``litellm.acompletion`` and, for routed model names, a ``litellm.Router``."""

    def __init__(self, router: litellm.Router | None = None) -> None:
        self._router = router

    def close(self) -> None:
        """Unhook the Router's callbacks from LiteLLM's global lists (they outlive the Router)."""
        if self._router is not None:
            self._router.discard()
            self._router = None

    def _target(self, call: LlmCall) -> Any:
        if call.routed and call.replay is None:
            if self._router is None:
                raise UpstreamError("No router is configured for this model.", code="router_missing")
            return self._router.acompletion
        return litellm.acompletion

    async def complete(self, call: LlmCall) -> Completion:
        try:
            response = await self._target(call)(**_kwargs(call, stream=False))
        except Exception as exc:
            raise translate_error(exc) from exc
        body: dict[str, Any] = response.model_dump()
        return Completion(body, _info(getattr(response, "_hidden_params", None), body.get("usage")))

    async def stream(self, call: LlmCall) -> ChunkStream:
        try:
            wrapper = await self._target(call)(**_kwargs(call, stream=True))
        except Exception as exc:
            raise translate_error(exc) from exc
        return _Stream(wrapper, call.model)
