"""Calls to LLM providers through the LiteLLM SDK, with LiteLLM's errors translated to ours.

Everything LiteLLM-specific about a call lives here: the keyword names it expects, the fresh
``metadata`` dict it mutates (sharing one silently drops spans), the per-request Langfuse
credentials that route the trace to the right project, and ``no-log`` for untraced calls.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import litellm
import openai
from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

from proxy_core.adapters.litellm_deployments import DeploymentClients
from proxy_core.adapters.litellm_endpoints import (
    EventStream,
    completion_of,
    endpoint_kwargs,
    litellm_function,
    router_method,
)
from proxy_core.adapters.litellm_errors import translate_error
from proxy_core.adapters.litellm_origin import AddressCheck, OriginClients
from proxy_core.adapters.litellm_router import LimitedRouter
from proxy_core.adapters.litellm_stream import (
    ProviderStream,
    StreamLogging,
    WrappedStream,
    call_info,
    provider_stream,
    schedule,
)
from proxy_core.adapters.litellm_tracing import LangfuseTracing
from proxy_core.adapters.stream_limits import StreamLimits
from proxy_core.errors import UpstreamError
from proxy_core.services.llm import ChunkStream, Completion, LlmCall, Operation

# These libraries log request bodies or credentials at debug level (LiteLLM and the OpenAI SDK
# the prompts, httpcore and urllib3 the headers), and httpx every URL at INFO (a Langfuse read's
# carries the client's /traces filters): they stay at WARNING whatever LOG_LEVEL says.
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "openai", "httpx", "httpcore", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# LiteLLM prints a "Give Feedback / Get Help" banner to stdout on every provider error.
litellm.suppress_debug_info = True

ABANDONED_BEFORE_ANSWER = (
    "cancelled: the call was stopped before the provider answered (the client went away or the gateway stopped it)"
)


def _kwargs(call: LlmCall, *, stream: bool, origins: OriginClients, deployments: DeploymentClients) -> dict[str, Any]:
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
    if call.operation is not Operation.CHAT:
        if call.api_base is not None:
            kwargs["api_base"] = call.api_base
        endpoint_kwargs(call, kwargs, origins, deployments)
    elif call.api_base is not None:  # set only for a client-chosen upstream
        kwargs["api_base"] = call.api_base
        if call.replay is None:
            kwargs["client"] = origins.for_call(
                kwargs["model"], call.api_base, call.api_key or "", max_retries=call.max_retries
            )
    elif call.replay is None and not call.routed:
        client = deployments.for_call(call.deployment_params, call.model, kwargs.get("api_key"), call.max_retries)
        if client is not None:
            kwargs["client"] = client
    if call.langfuse is not None:
        kwargs["langfuse_public_key"] = call.langfuse.public_key
        kwargs["langfuse_secret_key"] = call.langfuse.secret_key
        kwargs["langfuse_host"] = call.langfuse.host
        if call.langfuse_environment is not None:
            kwargs["langfuse_environment"] = call.langfuse_environment
    else:
        kwargs["no-log"] = True
    return kwargs


def _forget_closed_clients() -> None:
    """Drop the provider clients ``close_litellm_async_clients`` closed from LiteLLM's cache, so a
    later application in this process makes new ones; other entries (the Router's) stay."""
    cache = litellm.in_memory_llm_clients_cache
    for key, client in list(getattr(cache, "cache_dict", {}).items()):
        if isinstance(client, AsyncHTTPHandler | openai.AsyncOpenAI):
            cache.delete_cache(key)


class LiteLLMClient:
    """Async facade over ``litellm.acompletion`` and, for routed model names, a ``litellm.Router``."""

    def __init__(
        self,
        router: LimitedRouter | None = None,
        *,
        refuses: AddressCheck | None = None,
        tracing: LangfuseTracing | None = None,
        stream_limits: StreamLimits | None = None,
    ) -> None:
        """``refuses``: the addresses a client-chosen upstream may not be reached at (see ``OriginClients``);
        ``tracing``: where an abandoned call's span is logged (None: tracing is off);
        ``stream_limits``: how long a stream may stay silent, how much of its text is traced."""
        self._router = router
        self._tracing = tracing
        self._stream_limits = stream_limits or StreamLimits()
        self._logging_tasks: set[asyncio.Task[Any]] = set()
        self._origins = OriginClients(refuses)
        self._deployments = DeploymentClients()

    async def drain(self, timeout_s: float) -> None:
        """Wait, bounded, for the trace logging of streams that ended just before shutdown.

        A stream read below LiteLLM's wrapper hands its completion to LiteLLM's logging in a task
        of its own; the tracing flush at shutdown must come after those tasks, or their spans
        would never reach the exporter.
        """
        if self._logging_tasks:
            await asyncio.wait(set(self._logging_tasks), timeout=timeout_s)

    async def aclose(self) -> None:
        """Close the clients of client-chosen upstreams and unhook the Router (see ``close``).

        LiteLLM's own provider clients (those of the Responses, embeddings, text-completion and
        messages handlers) are cached process-wide and bound to this event loop: they are closed
        and forgotten here, as nothing can use them once the loop is gone.
        """
        await self._origins.aclose()
        await self._deployments.aclose()
        await litellm.close_litellm_async_clients()
        _forget_closed_clients()
        self.close()

    def close(self) -> None:
        """Unhook the Router's callbacks from LiteLLM's global lists (they outlive the Router)."""
        if self._router is not None:
            self._router.discard()
            self._router = None

    def _target(self, call: LlmCall) -> Any:
        if call.routed and call.replay is None:
            if self._router is None:
                raise UpstreamError("No router is configured for this model.", code="router_missing")
            return router_method(self._router, call.operation)
        return litellm_function(call.operation)

    def _call_kwargs(self, call: LlmCall, *, stream: bool) -> dict[str, Any]:
        return _kwargs(call, stream=stream, origins=self._origins, deployments=self._deployments)

    def _tracing_of(self, call: LlmCall) -> LangfuseTracing | None:
        return self._tracing if call.langfuse is not None else None

    async def complete(self, call: LlmCall) -> Completion:
        kwargs = self._call_kwargs(call, stream=False)
        tracing = self._tracing_of(call)
        call_id = kwargs["litellm_call_id"] = str(uuid.uuid4())
        if tracing is not None:
            tracing.watch_call(call_id)
        try:
            response = await self._target(call)(**kwargs)
        except asyncio.CancelledError:
            details = tracing.forget_call(call_id) if tracing is not None else None
            if tracing is not None and details is not None:  # the provider was called: leave a trace
                schedule(self._logging_tasks, tracing.log_abandoned(details, None, ABANDONED_BEFORE_ANSWER))
            raise
        except Exception as exc:
            raise translate_error(exc) from exc
        finally:
            if tracing is not None:
                tracing.forget_call(call_id)
        if call.operation is not Operation.CHAT:
            return completion_of(call, response)
        body: dict[str, Any] = response.model_dump()
        info = call_info(getattr(response, "_hidden_params", None), body.get("usage"))
        if call.routed and call.replay is None and self._router is not None:
            await self._router.spend(info)
        return Completion(body, info)

    async def stream(self, call: LlmCall) -> ChunkStream:
        try:
            wrapper = await self._target(call)(**self._call_kwargs(call, stream=True))
        except Exception as exc:
            raise translate_error(exc) from exc
        logging = StreamLogging(self._logging_tasks, self._tracing_of(call), self._stream_limits)
        if call.operation is not Operation.CHAT:
            return EventStream(wrapper, call, logging)
        source = provider_stream(wrapper) if not call.routed and call.replay is None else None
        if source is not None:
            return ProviderStream(wrapper, source, call.model, logging)
        if call.routed and call.replay is None and self._router is not None:
            return self._router.counted(WrappedStream(wrapper, call.model, logging))
        return WrappedStream(wrapper, call.model, logging)
