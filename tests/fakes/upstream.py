"""A fake OpenAI-compatible LLM provider for tests and benchmarks.

The gateway forwards chat completions through LiteLLM, which speaks the OpenAI
wire protocol.  This module serves that protocol from memory so tests can run
the real client stack end to end and still control exactly what the provider
does: answer, stream, fail with a given status, stall, hang, or drop the
connection half-way through a stream.

Behaviour is steered per request by directives embedded in the *last user
message* (the only channel that survives any gateway unchanged), e.g.
``"hello [[status=429]] [[retry_after=2]]"``.  Directives are removed before the
text is echoed back.  Supported directives:

``[[status=N]]``          answer status ``N`` with an OpenAI-shaped error body
``[[retry_after=S]]``     add ``Retry-After: S`` to that error
``[[delay_ms=N]]``        wait before answering
``[[chunks=N]]``          number of content chunks when streaming (default 3)
``[[chunk_delay_ms=N]]``  pause between stream chunks
``[[cut_after=N]]``       streaming: close the connection after N content
                          chunks, without the final chunk or ``[DONE]``
``[[hang]]``              never answer; return when the client goes away
``[[content=TEXT]]``      reply with TEXT instead of ``"echo: <prompt>"``

Every knob also has a process-wide default on :class:`UpstreamState`
(``default_delay_ms`` ...), which benchmarks set instead of directives.  The
app is plain ASGI with orjson and no per-request logging to keep its own cost
far below the gateway's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from .server import ServerThread
from .upstream_plan import (
    Behaviour,
    apply_directives,
    error_body,
    format_number,
    last_user_message_text,
    split_content,
    usage_of,
)

__all__ = [
    "FakeUpstream",
    "RecordedRequest",
    "UpstreamApp",
    "UpstreamState",
    "create_upstream_app",
    "error_body",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_COMPLETION_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODEL_PATHS = frozenset({"/v1/models", "/models"})
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the provider received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float

    @property
    def last_user_text(self) -> str:
        return last_user_message_text(self.body) if isinstance(self.body, dict) else ""


@dataclass
class UpstreamState:
    """Inspectable, steerable state of a fake provider (thread safe)."""

    default_status: int = 200
    default_retry_after: str | None = None
    default_delay_ms: float = 0.0
    default_chunks: int = 3
    default_chunk_delay_ms: float = 0.0
    default_cut_after: int | None = None
    default_hang: bool = False
    default_content: str | None = None
    record_requests: bool = True
    models: list[str] = field(default_factory=lambda: ["fake-model"])
    requests: list[RecordedRequest] = field(default_factory=list)
    aborted: list[RecordedRequest] = field(default_factory=list)
    cut: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _failures: list[tuple[int, str | None]] = field(default_factory=list, repr=False)
    _ids: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def reset(self, *, defaults: bool = True) -> None:
        """Forget recorded traffic and queued failures; optionally restore defaults."""
        with self.lock:
            self.requests.clear()
            self.aborted.clear()
            self.cut.clear()
            self._failures.clear()
            if defaults:
                for spec in fields(self):
                    if spec.name.startswith("default_"):
                        setattr(self, spec.name, spec.default)

    def fail_next(self, count: int, status: int = 500, retry_after: float | None = None) -> None:
        """Answer the next ``count`` completion requests with ``status``."""
        header = None if retry_after is None else format_number(retry_after)
        with self.lock:
            self._failures.extend([(status, header)] * count)

    @property
    def completion_requests(self) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path in _COMPLETION_PATHS]

    def _record(self, req: RecordedRequest) -> None:
        if self.record_requests:
            with self.lock:
                self.requests.append(req)

    def _mark(self, bucket: list[RecordedRequest], req: RecordedRequest) -> None:
        with self.lock:
            bucket.append(req)

    def _next_failure(self) -> tuple[int, str | None] | None:
        if not self._failures:
            return None
        with self.lock:
            return self._failures.pop(0) if self._failures else None

    def _resolve(self, text: str) -> tuple[Behaviour, str]:
        plan = Behaviour(
            status=self.default_status,
            retry_after=self.default_retry_after,
            delay_ms=self.default_delay_ms,
            chunks=self.default_chunks,
            chunk_delay_ms=self.default_chunk_delay_ms,
            cut_after=self.default_cut_after,
            hang=self.default_hang,
            content=self.default_content,
        )
        if "[[" in text:
            text = apply_directives(plan, text)
        failure = self._next_failure()
        if failure is not None:
            plan.status, plan.retry_after = failure
        return plan, text


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = _JSON + (extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Watch:
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


class _Completion:
    """Answers one chat-completion request according to its plan."""

    def __init__(self, state: UpstreamState, req: RecordedRequest, send: Send, receive: Receive) -> None:
        self.state, self.req, self.send, self.receive = state, req, send, receive
        self.body: dict[str, Any] = req.body
        self.plan, prompt = state._resolve(last_user_message_text(self.body))
        self.content = self.plan.content if self.plan.content is not None else f"echo: {prompt}"
        self.model = str(self.body.get("model") or "fake-model")
        self.id = f"chatcmpl-fake-{next(state._ids)}"
        self.created = int(time.time())

    async def run(self) -> None:
        plan = self.plan
        needs_watch = plan.hang or plan.delay_ms > 0 or bool(self.body.get("stream"))
        if not needs_watch:
            await self._answer_plain()
            return
        watch = _Watch(self.receive)
        try:
            if plan.hang:
                await watch.gone.wait()
                self.state._mark(self.state.aborted, self.req)
                return
            if await watch.sleep(plan.delay_ms / 1000):
                self.state._mark(self.state.aborted, self.req)
                return
            if self.body.get("stream") and plan.status < 400:
                await self._answer_stream(watch)
            else:
                await self._answer_plain()
        finally:
            watch.close()

    async def _answer_plain(self) -> None:
        plan = self.plan
        if plan.status >= 400:
            extra = [(b"retry-after", plan.retry_after.encode())] if plan.retry_after else []
            await _respond(self.send, plan.status, error_body(plan.status, f"fake upstream error {plan.status}"), extra)
            return
        doc = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage_of(self.body, self.content),
        }
        await _respond(self.send, plan.status, orjson.dumps(doc))

    def _frame(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        doc = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return self._frame([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    async def _emit(self, frame: bytes) -> None:
        await self.send({"type": "http.response.body", "body": frame, "more_body": True})

    async def _answer_stream(self, watch: _Watch) -> None:
        plan = self.plan
        await self.send({"type": "http.response.start", "status": plan.status, "headers": _SSE})
        await self._emit(self._chunk({"role": "assistant", "content": ""}))
        for index, piece in enumerate(split_content(self.content, plan.chunks)):
            if plan.cut_after is not None and index >= plan.cut_after:
                break
            if await watch.sleep(plan.chunk_delay_ms / 1000):
                self.state._mark(self.state.aborted, self.req)
                return
            await self._emit(self._chunk({"content": piece}))
        if plan.cut_after is not None:
            await self._cut(watch)
            return
        await self._emit(self._chunk({}, "stop"))
        if (self.body.get("stream_options") or {}).get("include_usage"):
            await self._emit(self._frame([], usage=usage_of(self.body, self.content)))
        if watch.gone.is_set():
            self.state._mark(self.state.aborted, self.req)
        await self.send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _cut(self, watch: _Watch) -> None:
        """Drop the connection mid-body so the client sees a truncated stream."""
        self.state._mark(self.state.cut, self.req)
        transport = getattr(getattr(self.send, "__self__", None), "transport", None)
        if transport is None:
            raise ConnectionAbortedError("fake upstream cut the stream")
        transport.close()
        await watch.gone.wait()


class UpstreamApp:
    """The ASGI application; ``app.state`` is its :class:`UpstreamState`."""

    def __init__(self, state: UpstreamState | None = None) -> None:
        self.state = state if state is not None else UpstreamState()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        raw = await _read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        req = RecordedRequest(method, path, headers, _parse(raw), time.monotonic())
        self.state._record(req)
        if path in _COMPLETION_PATHS and method == "POST":
            if not isinstance(req.body, dict) or not isinstance(req.body.get("messages"), list):
                await _respond(send, 400, error_body(400, "body must be a JSON object with 'messages'"))
                return
            await _Completion(self.state, req, send, receive).run()
        elif path in _MODEL_PATHS and method == "GET":
            await _respond(send, 200, _models(self.state))
        else:
            await _respond(send, 404, error_body(404, f"no route for {method} {path}"))


def create_upstream_app(state: UpstreamState | None = None) -> UpstreamApp:
    """Build the fake provider app (optionally around an existing state)."""
    return UpstreamApp(state)


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def _models(state: UpstreamState) -> bytes:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in state.models]
    return orjson.dumps({"object": "list", "data": data})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class FakeUpstream:
    """A started-on-demand fake provider: ``with FakeUpstream() as up: up.base_url``."""

    def __init__(self, state: UpstreamState | None = None) -> None:
        self.state = state if state is not None else UpstreamState()
        self.server = ServerThread(UpstreamApp(self.state))

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (``.../v1``) to give to clients."""
        return f"{self.server.url}/v1"

    def start(self) -> FakeUpstream:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
