"""uvicorn's httptools protocol with a bound on a request's head (request line and headers).

uvicorn bounds neither, and httptools gathers a header whole before handing it over: an 8 MiB
header was read into memory and the request served, so a few hundred such connections would
hold gigabytes. This protocol answers 431 in the OpenAI error shape and closes the connection:

* at ``MAX_HEAD_BYTES`` (64 KiB, about Envoy's default) of request target and header names and
  values, counted as the parser delivers them;
* at ``MAX_RAW_HEAD_BYTES`` of bytes received while the head is still incomplete, which bounds
  what httptools buffers for a single endless header before it delivers anything.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy_core.errors import HeadersTooLargeError

MAX_HEAD_BYTES = 64 * 1024
MAX_RAW_HEAD_BYTES = 1024 * 1024
_STATUS_LINE = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"


class _HeadTooLargeError(Exception):
    """Raised inside a parser callback; httptools ends the parse, and uvicorn answers (see below)."""


class BoundedHeadProtocol(HttpToolsProtocol):
    """Answers 431 for a head over the bounds above; everything else is uvicorn's own handling."""

    _head_bytes = 0
    _raw_head_bytes = 0
    _head_pending = False
    _head_refused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._raw_head_bytes = 0
        self._head_pending = True

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_pending = False
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._head_refused = True
            raise _HeadTooLargeError

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_pending and not self._head_refused and not self.transport.is_closing():
            self._raw_head_bytes += len(data)  # the head is still incomplete: all of it is head
            if self._raw_head_bytes > MAX_RAW_HEAD_BYTES:
                self._head_refused = True
                self._send_431()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a failed parse; the failure may be a refused head."""
        if self._head_refused:
            self._send_431()
        else:
            super().send_400_response(msg)

    def _send_431(self) -> None:
        error = HeadersTooLargeError(f"The request line and headers exceed the limit of {MAX_HEAD_BYTES} bytes.")
        body = orjson.dumps(error.to_body())
        head = [_STATUS_LINE]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
