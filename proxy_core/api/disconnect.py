"""Cancelling work whose client has gone away.

Starlette cancels a streaming response when its client disconnects, but a plain request handler
runs to the end: a client that gives up on a slow non-streamed completion would still pay for the
provider call. ``until_disconnect`` runs the handler's work as a task and cancels it when the
server reports ``http.disconnect``, which closes the provider connection.
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


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled as soon as the client disconnects (the body must be read already).

    The server cancels the request itself only when its graceful shutdown runs out of time; the
    work is cancelled then too (no provider spend goes on, nothing is recorded), and the client
    gets a 503 in the OpenAI shape instead of uvicorn's plain-text 500.
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
                "The gateway is shutting down and stopped this request before the provider answered; "
                "nothing was recorded. Retry it."
            ) from None
        if task in done:
            return task.result()
        task.cancel()
        raise ClientDisconnectedError("The client went away; the provider call was cancelled.")
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
