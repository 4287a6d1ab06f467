"""uvicorn's httptools protocol with bounds on a request's head and on the time it takes to arrive.

uvicorn bounds neither the size of a head nor the time a client takes to send its request:
httptools gathers a header whole before handing it over (an 8 MiB header was read into memory
and the request served), and a client that sends one byte a second holds its connection, and
whatever it has sent, for as long as it likes (uvicorn's only timer is the keep-alive one, which
any byte resets). A few hundred such connections would hold gigabytes. This protocol answers in
the OpenAI error shape and closes the connection:

* 431 at ``MAX_HEAD_BYTES`` (64 KiB, about Envoy's default) of request target and header names
  and values, counted as the parser delivers them;
* 431 at ``MAX_RAW_HEAD_BYTES`` of bytes received while the head is still incomplete, which bounds
  what httptools buffers for a single endless header before it delivers anything;
* 408 when a request's head and body have not both arrived ``request_timeout_s``
  (``REQUEST_HEAD_TIMEOUT_S``) after its first byte. It is a total deadline, not an idle timer:
  trickling bytes does not extend it. On a keep-alive connection it starts again at the first
  byte of each new request; time the server itself stops reading (a pipelined request waiting
  for its turn, a body the application has not read yet) is not held against the client.

A connection that never sends a byte is closed after the keep-alive timeout, as an idle
keep-alive connection is (uvicorn would keep it open for ever).
"""

from __future__ import annotations

import functools
from asyncio import TimerHandle
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from proxy_core.errors import GatewayError, HeadersTooLargeError, RequestTimeoutError

MAX_HEAD_BYTES = 64 * 1024
MAX_RAW_HEAD_BYTES = 1024 * 1024
DEFAULT_REQUEST_TIMEOUT_S = 10.0


class _HeadTooLargeError(Exception):
    """Raised inside a parser callback; httptools ends the parse, and uvicorn answers (see below)."""


class BoundedHeadProtocol(HttpToolsProtocol):
    """Answers 431 or 408 as described above; everything else is uvicorn's own handling."""

    _head_bytes = 0
    _raw_head_bytes = 0
    _head_pending = False
    _head_refused = False
    _message_open = False
    _deadline: TimerHandle | None = None

    def __init__(self, *args: Any, request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout_s = request_timeout_s

    @classmethod
    def with_deadline(cls, request_timeout_s: float) -> functools.partial[BoundedHeadProtocol]:
        """The protocol factory uvicorn takes as ``http``; picklable, for the worker processes."""
        return functools.partial(cls, request_timeout_s=request_timeout_s)

    # Connection events

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None:
            self._start_deadline()  # the first byte of a request (or of stray bytes between requests)
        super().data_received(data)
        if self._head_pending and not self._head_refused and not self.transport.is_closing():
            self._raw_head_bytes += len(data)  # the head is still incomplete: all of it is head
            if self._raw_head_bytes > MAX_RAW_HEAD_BYTES:
                self._head_refused = True
                self._send_error(HeadersTooLargeError(_too_large_message()))

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._raw_head_bytes = 0
        self._head_pending = self._message_open = True
        if self._deadline is None:
            self._start_deadline()  # a pipelined request that begins in the same read as the last one ended

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_pending = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._message_open = False
        self._stop_deadline()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._head_refused = True
            raise _HeadTooLargeError

    # The deadline

    def _start_deadline(self) -> None:
        self._deadline = self.loop.call_later(self.request_timeout_s, self._deadline_passed)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        """The request (or stray bytes) began ``request_timeout_s`` ago and has not arrived whole."""
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            self._start_deadline()  # the server stopped reading, not the client: a new period
            return
        cycle = self.cycle
        answering = cycle is not None and not cycle.response_complete
        if not self._message_open and answering:
            return  # stray bytes (a CRLF after a body) while the last request is answered: harmless
        if self._message_open and not self._head_pending and cycle is not None:
            if cycle.response_started:
                self.transport.close()  # the application answered without the body; nothing to add
                return
            cycle.disconnected = True  # the application's request.receive() now reports a disconnect
            cycle.message_event.set()
        timeout = self.request_timeout_s
        self.logger.info("%s - request not received within %g s: 408, connection closed", _peer(self.client), timeout)
        self._send_error(
            RequestTimeoutError(
                f"The request's head and body did not arrive within {self.request_timeout_s:g} s of its first byte."
            )
        )

    # Answers written here, without the application

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a failed parse; the failure may be a refused head."""
        if self._head_refused:
            self._send_error(HeadersTooLargeError(_too_large_message()))
        else:
            super().send_400_response(msg)

    def _send_error(self, error: GatewayError) -> None:
        self._stop_deadline()
        body = orjson.dumps(error.to_body())
        head = [STATUS_LINE[error.status_code]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def _too_large_message() -> str:
    return f"The request line and headers exceed the limit of {MAX_HEAD_BYTES} bytes."


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"
