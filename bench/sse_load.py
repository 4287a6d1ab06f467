"""Open N server-sent-event streams at once over raw sockets and read each to its end.

``bench/stream_client.py`` drives streams through httpx, whose cost per chunk grows with the
number of open connections: measured against the fake provider alone, 1 000 streams of 20
chunks 500 ms apart took 20 s of the client's CPU (about 0.9 ms per chunk, 70 % of a core), and
the streams lasted 22.7 s at the median instead of 10 s, so the client, not the server, set the
pace. Here each stream is an asyncio protocol on uvloop that writes one HTTP/1.1 request
(``Connection: close``), decodes the chunked body incrementally and counts events, a few
microseconds per chunk.

A stream is an error unless it is a 200 that ends with ``data: [DONE]`` and carries no in-band
error event (``data: {"error"...``); connection failures and timeouts are errors too. Prints one
JSON object on stdout, with the same keys as ``bench/stream_client.py``.

Run: ``python -m bench.sse_load URL --body-file BODY --streams N [--timeout S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import orjson
import uvloop


@dataclass
class Tally:
    streams: int = 0
    chunks: int = 0
    errors: int = 0
    first_error: str = ""
    ttfb_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = why[:300]


class StreamProtocol(asyncio.Protocol):
    """One request, one answer: parses the head, the chunked body and the SSE events in it."""

    def __init__(self, request: bytes, done: asyncio.Future[str]) -> None:
        self.request, self.done = request, done
        self.started = time.perf_counter()
        self.first: float | None = None
        self.raw = b""  # bytes not parsed yet (head, or chunked framing)
        self.body = b""  # decoded body not yet split into events
        self.head_done = False
        self.chunked = False
        self.events = 0
        self.last = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass of it
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if not self.head_done and not self._head():
            return
        if self.chunked:
            self._dechunk()
        else:
            self.body, self.raw = self.body + self.raw, b""
        self._events()

    def _head(self) -> bool:
        head, sep, rest = self.raw.partition(b"\r\n\r\n")
        if not sep:
            return False
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            self._finish(f"{status.decode(errors='replace')} {rest[:200]!r}")
            return False
        self.head_done = True
        self.chunked = b"transfer-encoding: chunked" in head.lower()
        self.raw = rest
        return True

    def _dechunk(self) -> None:
        while True:
            size_line, sep, rest = self.raw.partition(b"\r\n")
            if not sep:
                return
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                self.raw = b""
                self._events()
                self._finish(self._verdict())
                return
            if len(rest) < size + 2:
                return
            self.body += rest[:size]
            self.raw = rest[size + 2 :]

    def _events(self) -> None:
        *complete, self.body = self.body.split(b"\n\n")
        for event in complete:
            if not event.startswith(b"data: "):
                continue
            if self.first is None:
                self.first = time.perf_counter()
            self.last = event
            if event.startswith(b'data: {"error"'):
                self._finish(f"in-band error: {event[:200]!r}")
                return
            self.events += 1

    def _verdict(self) -> str:
        if self.last != b"data: [DONE]" or self.first is None:
            return f"stream ended without [DONE] after {self.events} events"
        return ""

    def _finish(self, error: str) -> None:
        if not self.done.done():
            self.done.set_result(error)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is not None or not self.head_done or self.chunked:  # a chunked body ends with its 0 chunk
            self.done.set_result(f"connection closed before the end of the answer: {exc}")
        else:
            self.done.set_result(self._verdict())


async def one_stream(host: str, port: int, request: bytes, limit_s: float, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    protocol = StreamProtocol(request, done)
    try:
        await loop.create_connection(lambda: protocol, host, port)
        error = await asyncio.wait_for(done, limit_s)
    except (OSError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        if protocol.transport is not None:
            protocol.transport.close()
    if error:
        tally.fail(error)
        return
    assert protocol.first is not None
    tally.streams += 1
    tally.chunks += protocol.events - 1  # [DONE] is not a chunk
    tally.ttfb_s.append(protocol.first - protocol.started)
    tally.total_s.append(time.perf_counter() - protocol.started)


def build_request(url: str, body: bytes) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"accept: text/event-stream\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return host, port, head.encode() + body


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def run(url: str, body: bytes, streams: int, limit_s: float) -> dict[str, object]:
    host, port, request = build_request(url, body)
    tally = Tally()
    started = time.perf_counter()
    await asyncio.gather(*(one_stream(host, port, request, limit_s, tally) for _ in range(streams)))
    return {
        "streams": tally.streams,
        "chunks": tally.chunks,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "elapsed_s": time.perf_counter() - started,
        "ttfb_p50_ms": 1000 * statistics.median(tally.ttfb_s) if tally.ttfb_s else 0.0,
        "ttfb_p99_ms": 1000 * _percentile(tally.ttfb_s, 0.99),
        "stream_p50_ms": 1000 * statistics.median(tally.total_s) if tally.total_s else 0.0,
        "stream_p99_ms": 1000 * _percentile(tally.total_s, 0.99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one stream may take in all")
    args = parser.parse_args(argv)
    with open(args.body_file, "rb") as handle:
        body = handle.read()
    result = uvloop.run(run(args.url, body, args.streams, args.timeout))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
