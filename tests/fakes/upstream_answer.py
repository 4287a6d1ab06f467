"""How the fake provider answers one request, whatever the endpoint: the plan, waits, errors, streams.

``Answer`` runs a request's ``Behaviour`` (delay, hang, error status, streaming with pauses and a
mid-stream cut); each endpoint subclass says only what its documents and stream frames look
like, following OpenAI's published formats.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import orjson

from .upstream_plan import error_body, split_content

if TYPE_CHECKING:
    from .upstream import RecordedRequest, UpstreamState

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
DONE = b"data: [DONE]\n\n"


async def respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS + (extra or [])})
    await send({"type": "http.response.body", "body": body})


def data_frame(doc: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"


class Watch:
    """Notices the client going away while a response is being produced."""

    def __init__(self, receive: Receive) -> None:
        self.gone = asyncio.Event()
        self._task = asyncio.ensure_future(self._wait(receive))

    async def _wait(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone.set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless the client leaves first; return True if it left."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), seconds)
        else:
            await asyncio.sleep(0)
        return self.gone.is_set()

    def close(self) -> None:
        self._task.cancel()


class Answer:
    """Answers one request according to its plan; subclasses give the endpoint's documents."""

    id_prefix = "fake"

    def __init__(self, state: UpstreamState, req: RecordedRequest, send: Send, receive: Receive, text: str) -> None:
        self.state, self.req, self.send, self.receive = state, req, send, receive
        self.body: dict[str, Any] = req.body
        self.plan, self.prompt = state._resolve(text)
        self.content = self.plan.content if self.plan.content is not None else f"echo: {self.prompt}"
        self.model = str(self.body.get("model") or "fake-model")
        self.id = f"{self.id_prefix}-fake-{next(state._ids)}"
        self.created = int(time.time())

    @property
    def streamed(self) -> bool:
        return bool(self.body.get("stream"))

    def document(self) -> dict[str, Any]:
        """The non-streamed answer."""
        raise NotImplementedError

    def opening(self) -> list[bytes]:
        """Stream frames before the first piece of content."""
        return []

    def delta(self, piece: str) -> bytes:
        raise NotImplementedError

    def closing(self) -> list[bytes]:
        """Stream frames after the last piece of content (the terminator included)."""
        return []

    async def run(self) -> None:
        plan = self.plan
        if not (plan.hang or plan.delay_ms > 0 or self.streamed):
            await self._answer_plain()
            return
        watch = Watch(self.receive)
        try:
            if plan.hang:
                await watch.gone.wait()
                self.state._mark(self.state.aborted, self.req)
                return
            if await watch.sleep(plan.delay_ms / 1000):
                self.state._mark(self.state.aborted, self.req)
                return
            if self.streamed and plan.status < 400:
                await self._answer_stream(watch)
            else:
                await self._answer_plain()
        finally:
            watch.close()

    async def _answer_plain(self) -> None:
        plan = self.plan
        if plan.status >= 400:
            extra = [(b"retry-after", plan.retry_after.encode())] if plan.retry_after else []
            await respond(self.send, plan.status, error_body(plan.status, f"fake upstream error {plan.status}"), extra)
            return
        await respond(self.send, plan.status, orjson.dumps(self.document()))

    async def _emit(self, frame: bytes) -> None:
        await self.send({"type": "http.response.body", "body": frame, "more_body": True})

    async def _answer_stream(self, watch: Watch) -> None:
        plan = self.plan
        await self.send({"type": "http.response.start", "status": plan.status, "headers": SSE_HEADERS})
        for frame in self.opening():
            await self._emit(frame)
        for index, piece in enumerate(split_content(self.content, plan.chunks)):
            if plan.cut_after is not None and index >= plan.cut_after:
                break
            if await watch.sleep(plan.chunk_delay_ms / 1000):
                self.state._mark(self.state.aborted, self.req)
                return
            await self._emit(self.delta(piece))
        if plan.cut_after is not None:
            await self._cut(watch)
            return
        for frame in self.closing():
            await self._emit(frame)
        if watch.gone.is_set():
            self.state._mark(self.state.aborted, self.req)
        await self.send({"type": "http.response.body", "body": b""})

    async def _cut(self, watch: Watch) -> None:
        """Drop the connection mid-body so the client sees a truncated stream."""
        self.state._mark(self.state.cut, self.req)
        transport = getattr(getattr(self.send, "__self__", None), "transport", None)
        if transport is None:
            raise ConnectionAbortedError("fake upstream cut the stream")
        transport.close()
        await watch.gone.wait()
