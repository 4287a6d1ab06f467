"""A request head over its bound gets a 431 in the OpenAI shape; bodies and keep-alive are untouched."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from proxy_core.config_files import ModelCatalog, SecretsFile
from proxy_core.http_protocol import MAX_HEAD_BYTES, MAX_RAW_HEAD_BYTES, BoundedHeadProtocol
from proxy_core.main import uvicorn_options
from proxy_core.settings import Settings


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
    writer.close()
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


def test_main_serves_with_the_bounded_protocol() -> None:
    assert uvicorn_options(Settings(secrets=SecretsFile(), catalog=ModelCatalog()))["http"] is BoundedHeadProtocol
