"""Relaying a provider stream to the client as server-sent events.

The first chunk is read before the HTTP status is committed, so failures while opening are real
HTTP errors. After that a failure is sent in-band and the stream still ends as its protocol ends
(``sse.StreamFraming``). The completion is recorded only after the last chunk and before
``[DONE]`` (or before the endpoint's terminal event, ``response.completed``, ``message_stop``): a
client that saw it can rely on its insertion id being recorded. A client that goes away cancels the relay,
which closes the provider stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from proxy_core.errors import GatewayError, UpstreamError
from proxy_core.services import sse
from proxy_core.services.llm import CallInfo, ChunkStream, LlmCall, LlmClient


@dataclass(slots=True)
class OpenedStream:
    first: dict[str, Any]
    rest: AsyncGenerator[dict[str, Any], None]
    source: ChunkStream


async def open_stream(llm: LlmClient, call: LlmCall) -> OpenedStream:
    source = await llm.stream(call)
    chunks = aiter(source)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        await source.aclose()
        raise UpstreamError("The provider ended the stream before sending anything.") from None
    except BaseException:
        await chunks.aclose()
        await source.aclose()
        raise
    return OpenedStream(first, chunks, source)


def without_usage(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """The chunk as a client that did not ask for usage expects it (None: drop it entirely)."""
    if "usage" not in chunk:
        return chunk
    if not chunk.get("choices"):
        return None
    return {key: value for key, value in chunk.items() if key != "usage"}


async def relay(
    opened: OpenedStream,
    *,
    on_complete: Callable[[CallInfo], Awaitable[None]],
    strip_usage: bool,
    on_error: Callable[[GatewayError], None] | None = None,
    framing: sse.StreamFraming = sse.CHAT_FRAMING,
) -> AsyncGenerator[bytes, None]:
    """The stream's SSE frames; ``on_error`` hears of a failure answered in-band (to log and count it)."""

    async def every_chunk() -> AsyncIterator[dict[str, Any]]:
        yield opened.first
        async for chunk in opened.rest:
            yield chunk

    completed = failed = False
    following = 0  # the number of the next frame: an in-band error event takes it
    try:
        async for chunk in every_chunk():
            if not completed and framing.terminal and chunk.get("type") in framing.terminal:
                await on_complete(opened.source.info)
                completed = True
            failed = failed or chunk.get("type") == "error"  # an error event LiteLLM wrote in-band itself
            visible = without_usage(chunk) if strip_usage else chunk
            if visible is not None:
                yield framing.frame(visible)
                number = visible.get("sequence_number")  # the provider's own (Responses), when it numbers
                following = number + 1 if isinstance(number, int) and number >= following else following + 1
        if not completed and framing.terminal:
            if not failed:  # a protocol with a terminal event that never came: the call is not complete
                raise UpstreamError("The provider's stream ended before it was complete.", code="incomplete_stream")
        elif not completed:
            await on_complete(opened.source.info)
    except GatewayError as error:
        if on_error is not None:
            on_error(error)
        yield framing.error(error, following)
    finally:
        await opened.rest.aclose()
        await opened.source.aclose()
    if framing.done:
        yield framing.done
