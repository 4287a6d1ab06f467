"""What a relayed provider stream is held to: how long it may stay silent, how much text it keeps.

A provider that stops sending in the middle of a stream (an overloaded backend, a proxy that
lost its upstream but kept the connection) would hold the client, the gateway's relay and the
provider connection until the request timeout, minutes later. ``idle_bounded`` ends the stream
once no chunk has come for ``idle_timeout_s``: the relay then sends its in-band error event, the
call is traced as an error with what had arrived, and nothing is recorded for the rollout,
exactly as for a stream the provider cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from typing import TypeVar

from proxy_core.adapters.chunk_assembly import DEFAULT_MAX_TEXT_BYTES
from proxy_core.errors import UpstreamTimeoutError

T = TypeVar("T")

DEFAULT_IDLE_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """``STREAM_IDLE_TIMEOUT_S`` and ``MAX_STREAM_TRACE_BYTES``."""

    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_trace_bytes: int = DEFAULT_MAX_TEXT_BYTES


class StreamIdleError(UpstreamTimeoutError):
    """The provider sent no chunk for ``idle_timeout_s``; the stream was ended by the gateway."""

    default_code = "upstream_stream_idle"

    def __init__(self, timeout_s: float, chunks: int) -> None:
        super().__init__(
            f"The provider sent nothing for {timeout_s:g} s after {chunks} chunk(s); the gateway ended the stream."
        )


async def idle_bounded(source: AsyncIterable[T], timeout_s: float) -> AsyncGenerator[T, None]:
    """The items of ``source``; ``StreamIdleError`` once the next one takes over ``timeout_s``.

    Only the wait for the provider counts: the time the consumer takes between items (a slow
    client reading the relay) does not.
    """
    iterator = aiter(source)
    chunks = 0
    while True:
        waiting = asyncio.timeout(timeout_s)
        try:
            async with waiting:
                item = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            if waiting.expired():
                raise StreamIdleError(timeout_s, chunks) from None
            raise
        chunks += 1
        yield item
