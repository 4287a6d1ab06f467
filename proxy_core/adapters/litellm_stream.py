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
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import litellm
import openai

from proxy_core.adapters.chunk_assembly import ChunkAssembler
from proxy_core.adapters.litellm_errors import translate_error
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


class WrappedStream:
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
        return _stream_info(self._wrapper, self._usage, self._model)


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


class ProviderStream:
    """An OpenAI-format provider stream read below LiteLLM's per-chunk wrapper (module docstring)."""

    def __init__(
        self, wrapper: Any, source: openai.AsyncStream[Any], model: str, pending: set[asyncio.Task[Any]]
    ) -> None:
        self._wrapper = wrapper
        self._source = source
        self._model = model
        self._assembler = ChunkAssembler()
        self._pending = pending

    async def __aiter__(self) -> AsyncGenerator[dict[str, Any], None]:
        logging_obj = self._wrapper.logging_obj
        assembler = self._assembler
        try:
            async for chunk in self._source:
                data: dict[str, Any] = chunk.model_dump(exclude_unset=True)
                if assembler.chunks == 0:
                    logging_obj.update_completion_start_time(completion_start_time=datetime.datetime.now())
                assembler.add(data)
                yield data
        except GatewayError:
            raise
        except Exception as exc:
            self._log(logging_obj.dispatch_failure_handlers(exc, "", prefer_async_handlers=True))
            raise translate_error(exc) from exc
        response = litellm.ModelResponse(**assembler.completion())
        self._log(
            logging_obj.dispatch_success_handlers(
                response, cache_hit=False, start_time=None, end_time=None, prefer_async_handlers=True
            )
        )

    def _log(self, handlers: Any) -> None:
        """Run LiteLLM's logging for this call off the stream's path, keeping the task referenced."""
        task = asyncio.ensure_future(handlers)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def aclose(self) -> None:
        await self._wrapper.aclose()

    @property
    def info(self) -> CallInfo:
        return _stream_info(self._wrapper, self._assembler.usage, self._model)
