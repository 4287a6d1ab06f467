"""A provider stream that goes silent is ended; only the wait for the provider counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from proxy_core.adapters.stream_limits import StreamIdleError, idle_bounded
from proxy_core.errors import UpstreamTimeoutError


async def _source(pauses: list[float]) -> AsyncIterator[int]:
    for index, pause in enumerate(pauses):
        await asyncio.sleep(pause)
        yield index


async def test_a_silent_provider_ends_the_stream_after_the_chunks_it_sent() -> None:
    received: list[int] = []

    async def read() -> None:
        async for item in idle_bounded(_source([0, 0, 5]), 0.2):
            received.append(item)

    started = time.monotonic()
    with pytest.raises(StreamIdleError) as raised:
        await read()
    assert received == [0, 1]
    assert 0.2 <= time.monotonic() - started < 1.0
    assert isinstance(raised.value, UpstreamTimeoutError)
    assert raised.value.status_code == 504
    assert raised.value.code == "upstream_stream_idle"
    assert raised.value.message == "The provider sent nothing for 0.2 s after 2 chunk(s); the gateway ended the stream."


async def test_a_slow_consumer_is_not_counted_against_the_provider() -> None:
    received = []
    async for item in idle_bounded(_source([0.05] * 4), 0.2):
        received.append(item)
        await asyncio.sleep(0.3)  # longer than the limit, but it is the consumer's time
    assert received == [0, 1, 2, 3]


async def test_a_timeout_of_the_source_itself_is_not_taken_for_silence() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise TimeoutError("the provider's own")

    async def read() -> None:
        async for _ in idle_bounded(failing(), 5):
            pass

    with pytest.raises(TimeoutError, match="the provider's own"):
        await read()
