"""A fake OpenAI-compatible LLM provider for tests and benchmarks.

The gateway forwards chat completions, Responses calls, text completions and
embeddings through LiteLLM, which speaks the OpenAI wire protocol (the formats
of each endpoint: ``upstream_endpoints``).  This module serves that protocol from memory so tests can run
the real client stack end to end and still control exactly what the provider
does: answer, stream, fail with a given status, stall, hang, or drop the
connection half-way through a stream.

Behaviour is steered per request by directives embedded in the *last user
message* (or input, or prompt: the only channel that survives any gateway unchanged), e.g.
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

import itertools
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from .server import ServerThread
from .upstream_answer import Answer, respond
from .upstream_endpoints import ChatAnswer, EmbeddingsAnswer, ResponsesAnswer, TextCompletionAnswer, directive_text
from .upstream_plan import Behaviour, apply_directives, error_body, format_number, last_user_message_text

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
# Each endpoint: its answer, and the body field it cannot do without (and that field's JSON type).
_ENDPOINTS: dict[str, tuple[type[Answer], str, type | tuple[type, ...]]] = {
    "chat/completions": (ChatAnswer, "messages", list),
    "responses": (ResponsesAnswer, "input", (str, list)),
    "completions": (TextCompletionAnswer, "prompt", (str, list)),
    "embeddings": (EmbeddingsAnswer, "input", (str, list)),
}


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
        endpoint = _ENDPOINTS.get(path.removeprefix("/v1/").lstrip("/"))
        if endpoint is not None and method == "POST":
            answer, required, kind = endpoint
            if not isinstance(req.body, dict) or not isinstance(req.body.get(required), kind):
                await respond(send, 400, error_body(400, f"body must be a JSON object with '{required}'"))
                return
            await answer(self.state, req, send, receive, directive_text(path, req.body)).run()
        elif path in _MODEL_PATHS and method == "GET":
            await respond(send, 200, _models(self.state))
        else:
            await respond(send, 404, error_body(404, f"no route for {method} {path}"))


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
