"""Cancelling work whose client has gone away.

Starlette cancels a streaming response when its client disconnects, but a plain request handler
runs to the end: a client that gives up on a slow non-streamed completion would still pay for the
provider call, and one that gives up on ``/traces`` would leave the gateway polling Langfuse for
up to its ``timeout_s``, spending the read budget other rollouts wait for. ``until_disconnect``
runs the handler's work as a task and cancels it when the server reports ``http.disconnect``,
which closes the provider connection or ends the polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from proxy_core.errors import GatewayError, ShuttingDownError

T = TypeVar("T")


class ClientDisconnectedError(GatewayError):
    """Nobody will read this answer; 499 is what access logs show for it."""

    status_code = 499
    default_code = "client_disconnected"


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


PROVIDER_CALL = ("the provider call", "; nothing was recorded")


async def until_disconnect(request: Request, work: Awaitable[T], *, what: tuple[str, str] = PROVIDER_CALL) -> T:
    """``await work``, cancelled as soon as the client disconnects (the body must be read already).

    The server cancels the request itself only when its graceful shutdown runs out of time; the
    work is cancelled then too (no provider spend goes on, nothing is recorded), and the client
    gets a 503 in the OpenAI shape instead of uvicorn's plain-text 500. ``what``: the work's name
    and what its stopping means, for those two errors' messages.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        try:
            done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is None or current.uncancel() > 0:  # cancelled again since: give up
                raise
            raise ShuttingDownError(
                f"The gateway is shutting down and stopped {what[0]} before it ended{what[1]}. Retry it."
            ) from None
        if task in done:
            return task.result()
        task.cancel()
        raise ClientDisconnectedError(f"The client went away; {what[0]} was cancelled.")
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
