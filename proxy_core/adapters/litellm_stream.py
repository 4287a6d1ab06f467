"""Provider streams as chunk dicts, and what a finished stream cost (``CallInfo``).

Two readers. ``WrappedStream`` iterates LiteLLM's ``CustomStreamWrapper``, which translates any
provider's chunks to the OpenAI format at a cost of about 0.4 ms of CPU per chunk (a new
pydantic object or two per chunk, repetition checks, usage bookkeeping) — most of a streamed
completion's CPU. ``ProviderStream`` is used where that translation has nothing to do: the
provider already speaks OpenAI's chat-completions format and LiteLLM reads it with the OpenAI
SDK. It iterates the SDK's own stream that LiteLLM opened (the request, its parameters, keys
and retries stay LiteLLM's) and, once the stream ends, hands the assembled completion to the
call's LiteLLM logging object exactly as the wrapper would, so the trace is LiteLLM's own.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncGenerator, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import litellm
import openai

from proxy_core.adapters.chunk_assembly import ChunkAssembler
from proxy_core.adapters.litellm_errors import translate_error
from proxy_core.adapters.litellm_tracing import LangfuseTracing
from proxy_core.adapters.stream_limits import StreamIdleError, StreamLimits, idle_bounded
from proxy_core.errors import GatewayError
from proxy_core.services.llm import CallInfo


def call_info(hidden: Mapping[str, Any] | None, usage: Mapping[str, Any] | None) -> CallInfo:
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


def _stream_info(wrapper: Any, usage: Mapping[str, Any] | None, model: str) -> CallInfo:
    info = call_info(getattr(wrapper, "_hidden_params", None), usage)
    if usage is not None and not info.cost_usd:
        # A stream's price is known once its usage chunk has arrived, not when it opened.
        reported = usage.get("cost")
        info.cost_usd = float(reported) if isinstance(reported, int | float) else _stream_cost(model, info)
    return info


def schedule(pending: set[asyncio.Task[Any]], work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` (LiteLLM's logging of a call) off the request's path, keeping the task
    referenced in ``pending`` until it is done, so shutdown can wait for it (``drain``)."""
    task = asyncio.ensure_future(work)
    pending.add(task)
    task.add_done_callback(pending.discard)


@dataclass(frozen=True, slots=True)
class StreamLogging:
    """Where a stream's logging goes: the tasks shutdown waits for, and the tracing (None: untraced);
    and the limits the stream is held to (``stream_limits``)."""

    pending: set[asyncio.Task[Any]]
    tracing: LangfuseTracing | None
    limits: StreamLimits = field(default_factory=StreamLimits)


def abandoned_reason(chunks: int) -> str:
    return (
        f"cancelled: the stream was closed after {chunks} chunk(s), before the provider ended it "
        "(the client went away or the gateway stopped the call)"
    )


class _Relayed:
    """What both stream readers share: the chunks assembled so far, and whether the stream ended.

    A stream closed before it ended (the client went away, the gateway stopped it, the provider
    went silent) gets no LiteLLM callback; ``aclose`` then logs it as an error, with what was
    received as its output.
    """

    def __init__(self, wrapper: Any, model: str, logging: StreamLogging) -> None:
        self._wrapper = wrapper
        self._model = model
        self._logging = logging
        self._assembler = ChunkAssembler(logging.limits.max_trace_bytes)
        self._ended = False
        self._stopped: str | None = None  # why the gateway ended the stream, when it did

    def _chunks_of(self, source: Any) -> AsyncGenerator[Any, None]:
        return idle_bounded(source, self._logging.limits.idle_timeout_s)

    def _stop(self, error: StreamIdleError) -> None:
        self._stopped = str(error)  # traced by ``aclose``, which the relay always calls

    async def aclose(self) -> None:
        if not self._ended and self._logging.tracing is not None:
            self._ended = True
            details = self._wrapper.logging_obj.model_call_details
            partial = self._assembler.completion()
            reason = self._stopped or abandoned_reason(self._assembler.chunks)
            schedule(self._logging.pending, self._logging.tracing.log_abandoned(details, partial, reason))
        await self._wrapper.aclose()

    @property
    def info(self) -> CallInfo:
        return _stream_info(self._wrapper, self._assembler.usage, self._model)


class WrappedStream(_Relayed):
    """A LiteLLM stream as chunk dicts; LiteLLM's wrapper logs the call's end itself."""

    async def __aiter__(self) -> AsyncGenerator[dict[str, Any], None]:
        assembler = self._assembler
        try:
            async for chunk in self._chunks_of(self._wrapper):
                data: dict[str, Any] = chunk.model_dump(exclude_none=True)
                assembler.add(data)
                yield data
        except StreamIdleError as exc:
            self._stop(exc)
            raise
        except GatewayError:
            self._ended = True
            raise
        except Exception as exc:
            self._ended = True  # the wrapper logged the failure
            raise translate_error(exc) from exc
        self._ended = True


# LiteLLM providers whose streams are the OpenAI SDK's own, chunks already in the OpenAI format.
OPENAI_FORMAT_PROVIDERS = frozenset({"openai", "custom_openai"})


def provider_stream(wrapper: Any) -> openai.AsyncStream[Any] | None:
    """The OpenAI SDK stream under LiteLLM's wrapper, when reading it directly loses nothing."""
    source = getattr(wrapper, "completion_stream", None)
    if getattr(wrapper, "custom_llm_provider", None) in OPENAI_FORMAT_PROVIDERS and isinstance(
        source, openai.AsyncStream
    ):
        return source
    return None


class ProviderStream(_Relayed):
    """An OpenAI-format provider stream read below LiteLLM's per-chunk wrapper (module docstring)."""

    def __init__(self, wrapper: Any, source: openai.AsyncStream[Any], model: str, logging: StreamLogging) -> None:
        super().__init__(wrapper, model, logging)
        self._source = source

    async def __aiter__(self) -> AsyncGenerator[dict[str, Any], None]:
        logging_obj = self._wrapper.logging_obj
        assembler = self._assembler
        try:
            async for chunk in self._chunks_of(self._source):
                data: dict[str, Any] = chunk.model_dump(exclude_unset=True)
                if assembler.chunks == 0:
                    logging_obj.update_completion_start_time(completion_start_time=datetime.datetime.now())
                assembler.add(data)
                yield data
        except StreamIdleError as exc:
            self._stop(exc)
            raise
        except GatewayError:
            self._ended = True
            raise
        except Exception as exc:
            self._ended = True
            schedule(self._logging.pending, logging_obj.dispatch_failure_handlers(exc, "", prefer_async_handlers=True))
            raise translate_error(exc) from exc
        self._ended = True
        response = litellm.ModelResponse(**assembler.completion())
        schedule(
            self._logging.pending,
            logging_obj.dispatch_success_handlers(
                response, cache_hit=False, start_time=None, end_time=None, prefer_async_handlers=True
            ),
        )
