"""Shutdown waits for the trace logging of streams that have just ended, but not forever."""

from __future__ import annotations

import asyncio
import time

from proxy_core.adapters.litellm_client import LiteLLMClient


async def test_drain_waits_for_pending_trace_logging() -> None:
    client = LiteLLMClient()
    logged: list[str] = []

    async def log_later() -> None:
        await asyncio.sleep(0.05)
        logged.append("span")

    task = asyncio.ensure_future(log_later())
    client._logging_tasks.add(task)
    await client.drain(2.0)
    assert logged == ["span"]


async def test_drain_is_bounded() -> None:
    client = LiteLLMClient()
    task = asyncio.ensure_future(asyncio.sleep(30))
    client._logging_tasks.add(task)
    started = time.monotonic()
    await client.drain(0.1)
    assert time.monotonic() - started < 1.0
    task.cancel()
