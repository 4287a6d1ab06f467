"""Stopping the gateway's background tasks (expiry sweeps, secrets refresh, trace replay)."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task[object] | None) -> None:
    """Cancel ``task`` and wait until it has unwound, so nothing it holds outlives the caller's
    shutdown step; a task that already ended (or None) is left as it is."""
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
