"""ServerThread: free-port binding, readiness, keep-alive latency, bounded shutdown."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest

from tests.fakes import ServerThread

Scope = dict[str, Any]


async def _echo_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_binds_a_free_port_and_serves_until_stopped() -> None:
    server = ServerThread(_echo_app)
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    with server:
        assert server.running
        assert httpx.get(server.url + "/").text == "ok"
    assert not server.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()


def test_two_servers_get_distinct_ports() -> None:
    with ServerThread(_echo_app) as first, ServerThread(_echo_app) as second:
        assert first.port != second.port


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_keep_alive_requests_do_not_stall(http: Any) -> None:
    with ServerThread(_echo_app, http=http) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(10):
            client.post("/", json={"warm": True})
        started = time.perf_counter()
        for _ in range(200):
            assert client.post("/", json={"n": 1, "text": "x" * 200}).status_code == 200
        average_ms = (time.perf_counter() - started) / 200 * 1000
    assert average_ms < 5, f"keep-alive POST averaged {average_ms:.2f} ms"


def test_stop_is_bounded_even_with_a_request_in_flight() -> None:
    async def slow_app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

    server = ServerThread(slow_app).start()
    with httpx.Client() as client, client.stream("GET", server.url + "/") as response:
        assert response.status_code == 200
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 4
    assert not server.running
