"""The access log keeps each request's path and query parameter names, never the values."""

from __future__ import annotations

import asyncio
import io
import logging
import logging.config
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st

from proxy_core.serving import REMOVED, QueryValuesFilter, access_log_config, without_query_values

PII_QUERY = "/traces?tags=rollout_id:r1&user_id=jane.doe@example.org&session_id=ssn-219-09-9999"


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/health", "/health"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        (PII_QUERY, "/traces?tags=...&user_id=...&session_id=..."),
        ("/traces?tags=a&tags=b&flag", "/traces?tags=...&tags=...&flag=..."),
        ("/traces?&&limit=5&", "/traces?limit=..."),
        ("/traces?jane.doe%40example.org=1&x=", "/traces?...=...&x=..."),
        ("/traces?=value", "/traces?...=..."),
    ],
)
def test_query_values_are_removed_and_plain_names_kept(target: str, logged: str) -> None:
    assert without_query_values(target) == logged


@given(
    st.lists(
        st.tuples(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), st.text(min_size=1)),
        min_size=1,
    )
)
def test_no_value_survives(pairs: list[tuple[str, str]]) -> None:
    query = "&".join(f"{name}=secret{quote(value, safe='')}" for name, value in pairs)
    logged = without_query_values(f"/traces?{query}")
    assert "secret" not in logged
    assert logged == "/traces?" + "&".join(f"{name}={REMOVED}" for name, _ in pairs)


def _access_record(target: str) -> logging.LogRecord:
    """A record as uvicorn's HTTP protocols log it (``httptools_impl``, ``h11_impl``)."""
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:50000", "GET", target, "1.1", 200),
        None,
    )


def test_the_filter_rewrites_only_the_request_target() -> None:
    record = _access_record(PII_QUERY)
    assert QueryValuesFilter().filter(record)
    assert record.args == ("127.0.0.1:50000", "GET", "/traces?tags=...&user_id=...&session_id=...", "1.1", 200)
    assert record.getMessage() == '127.0.0.1:50000 - "GET /traces?tags=...&user_id=...&session_id=... HTTP/1.1" 200'


def test_the_filter_leaves_other_records_alone() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s", ("/traces?a=b",), None)
    assert QueryValuesFilter().filter(record)
    assert record.args == ("/traces?a=b",)


@pytest.fixture
def uvicorn_loggers() -> Iterator[None]:
    """Put uvicorn's loggers back as they were after the test configured them."""
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved: dict[str, dict[str, Any]] = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = {
            "handlers": list(logger.handlers),
            "filters": list(logger.filters),
            "level": logger.level,
            "propagate": logger.propagate,
        }
    yield
    for name, state in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = state["handlers"]
        logger.filters[:] = state["filters"]
        logger.setLevel(state["level"])
        logger.propagate = state["propagate"]


@pytest.mark.usefixtures("uvicorn_loggers")
def test_the_configured_access_log_has_no_query_values() -> None:
    config = access_log_config()
    stream = io.StringIO()
    config["handlers"]["access"]["stream"] = stream
    logging.config.dictConfig(config)
    access = logging.getLogger("uvicorn.access")
    record = _access_record(PII_QUERY)
    access.handle(record)
    line = stream.getvalue()
    assert '"GET /traces?tags=...&user_id=...&session_id=... HTTP/1.1" 200' in line
    assert "jane.doe" not in line
    assert "219-09" not in line


def test_each_call_returns_a_configuration_of_its_own() -> None:
    first = access_log_config()
    first["loggers"]["uvicorn.access"]["filters"].append("other")
    assert access_log_config()["loggers"]["uvicorn.access"]["filters"] == ["query_values"]


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.usefixtures("uvicorn_loggers")
async def test_a_served_request_is_logged_without_its_query_values() -> None:
    """Through uvicorn's own protocol, as ``main`` configures it: the record's shape is uvicorn's."""
    config = access_log_config()
    stream = io.StringIO()
    config["handlers"]["access"]["stream"] = stream
    server = uvicorn.Server(uvicorn.Config(_ok, http="httptools", ws="none", lifespan="off", log_config=config))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # the request waits in the backlog until the server runs
        port = sock.getsockname()[1]
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.get(f"http://127.0.0.1:{port}{PII_QUERY}")
            assert response.status_code == 200
        finally:
            server.should_exit = True
            await serving
    line = stream.getvalue()
    assert '"GET /traces?tags=...&user_id=...&session_id=... HTTP/1.1" 200' in line
    assert "jane.doe" not in line
