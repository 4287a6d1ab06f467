"""A request head over its bound gets a 431 in the OpenAI shape; bodies and keep-alive are untouched."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from proxy_core.config_files import ModelCatalog, SecretsFile
from proxy_core.http_protocol import MAX_HEAD_BYTES, MAX_RAW_HEAD_BYTES, BoundedHeadProtocol
from proxy_core.main import uvicorn_options
from proxy_core.settings import Settings


async def _closed(writer: asyncio.StreamWriter) -> None:
    """Close now, unsent bytes dropped, before the test's event loop ends (not at garbage collection)."""
    writer.transport.abort()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = uvicorn.Server(uvicorn.Config(_ok, http=BoundedHeadProtocol, ws="none", lifespan="off", log_level="error"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield sock.getsockname()[1]
        finally:
            server.should_exit = True
            await serving


async def _exchange(port: int, *requests: bytes) -> bytes:
    """Send ``requests`` on one connection and read until the server closes it (or 5 s pass)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            writer.write(request)
            await writer.drain()
    except ConnectionError:
        pass  # the server may close while a refused head is still being sent
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout=5):
            answer += chunk
    except (TimeoutError, ConnectionError):
        pass
    await _closed(writer)
    return answer


def _get(headers: list[tuple[str, str]], *, close: bool = True) -> bytes:
    lines = [f"{name}: {value}" for name, value in [("host", "x"), *headers]]
    if close:
        lines.append("connection: close")
    return ("GET /health HTTP/1.1\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode()


def _error_of(answer: bytes) -> tuple[bytes, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], json.loads(body)["error"]


async def test_a_head_within_the_bound_is_served(port: int) -> None:
    answer = await _exchange(port, _get([(f"x-h{i}", "v" * 1000) for i in range(60)]))
    assert answer.startswith(b"HTTP/1.1 200")


async def test_many_headers_over_the_bound_get_431(port: int) -> None:
    answer = await _exchange(port, _get([(f"x-h{i}", "v" * 4096) for i in range(20)]))
    status, error = _error_of(answer)
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert error == {
        "message": f"The request line and headers exceed the limit of {MAX_HEAD_BYTES} bytes.",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_headers_too_large",
    }


async def test_an_endless_header_is_cut_off_before_it_is_buffered_whole(port: int) -> None:
    start = b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: "
    chunks = [start] + [b"v" * 65536] * (2 * MAX_RAW_HEAD_BYTES // 65536)  # never ends its header
    status, error = _error_of(await _exchange(port, *chunks))
    assert status.startswith(b"HTTP/1.1 431")
    assert error["code"] == "request_headers_too_large"


async def test_a_long_target_counts_toward_the_bound(port: int) -> None:
    request = f"GET /health?q={'a' * MAX_HEAD_BYTES} HTTP/1.1\r\nhost: x\r\n\r\n".encode()
    assert (await _exchange(port, request)).startswith(b"HTTP/1.1 431")


async def test_bodies_and_keep_alive_are_not_counted(port: int) -> None:
    body = b"x" * (4 * MAX_RAW_HEAD_BYTES)
    post = b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    near = _get([(f"x-h{i}", "v" * 1000) for i in range(50)], close=False)  # ~50 KiB, twice on one connection
    answer = await _exchange(port, post, near, near, _get([]))
    assert answer.count(b"HTTP/1.1 200") == 4


def test_main_serves_with_the_bounded_protocol_and_its_deadline() -> None:
    settings = Settings(secrets=SecretsFile(), catalog=ModelCatalog(), request_head_timeout_s=3.5)
    factory = uvicorn_options(settings)["http"]
    assert factory.func is BoundedHeadProtocol
    assert factory.keywords == {"request_timeout_s": 3.5}
    assert pickle.loads(pickle.dumps(factory)).keywords == {"request_timeout_s": 3.5}  # for worker processes


QUICK_TIMEOUT_S = 0.5


@pytest.fixture
async def quick_port() -> AsyncIterator[int]:
    """A server whose requests must arrive within ``QUICK_TIMEOUT_S``; idle connections live 1 s."""
    protocol = BoundedHeadProtocol.with_deadline(QUICK_TIMEOUT_S)
    config = uvicorn.Config(_ok, http=protocol, ws="none", lifespan="off", log_level="error", timeout_keep_alive=1)
    server = uvicorn.Server(config)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield sock.getsockname()[1]
        finally:
            server.should_exit = True
            await serving


async def _trickle(port: int, parts: list[bytes], pause_s: float) -> tuple[bytes, float]:
    """Send ``parts`` with ``pause_s`` between them, reading all the while; the answer and when it closed."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()

    async def send() -> None:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(pause_s)

    sender = asyncio.create_task(send())
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout=5):
            answer += chunk
    except (TimeoutError, ConnectionError):
        pass
    closed = loop.time() - started
    sender.cancel()
    await _closed(writer)
    return answer, closed


async def test_a_trickled_head_gets_408_at_the_deadline(quick_port: int) -> None:
    head = b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: " + b"v" * 100 + b"\r\n\r\n"
    answer, closed = await _trickle(quick_port, [bytes([byte]) for byte in head], 0.02)  # 2.7 s to send
    status, error = _error_of(answer)
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert error["code"] == "request_timeout"
    assert error["type"] == "invalid_request_error"
    assert QUICK_TIMEOUT_S - 0.05 <= closed < QUICK_TIMEOUT_S + 0.5


async def test_a_dribbled_body_gets_408_at_the_deadline(quick_port: int) -> None:
    head = b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 1048576\r\n\r\n"
    answer, closed = await _trickle(quick_port, [head] + [b"x" * 1024] * 1024, 0.01)  # ~10 s to send
    status, error = _error_of(answer)
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert error["code"] == "request_timeout"
    assert QUICK_TIMEOUT_S - 0.05 <= closed < QUICK_TIMEOUT_S + 0.5


async def test_each_keep_alive_request_has_a_deadline_of_its_own(quick_port: int) -> None:
    """Three requests, each sent in 0.3 s (within the deadline), 0.9 s in all on one connection."""
    parts: list[bytes] = []
    for _ in range(2):
        parts += [b"GET /health HTTP/1.1\r\n", b"host: x\r\n", b"\r\n"]
    parts += [b"GET /health HTTP/1.1\r\n", b"host: x\r\n", b"connection: close\r\n\r\n"]
    answer, _ = await _trickle(quick_port, parts, 0.15)
    assert answer.count(b"HTTP/1.1 200") == 3
    assert b"408" not in answer


async def test_a_silent_connection_is_closed_after_the_keep_alive_timeout(quick_port: int) -> None:
    answer, closed = await _trickle(quick_port, [], 0)
    assert answer == b""
    assert 0.9 <= closed < 2.0
