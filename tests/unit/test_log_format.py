"""LOG_FORMAT: every line one JSON object (or one text line), each line of a request naming its id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import socket
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from proxy_core.api.observability import RequestObservation
from proxy_core.log_format import LITELLM_LOGGERS, QUIET_LOGGERS, JsonFormatter, RequestContextFilter, logging_config
from proxy_core.request_context import enter_request, leave_request
from proxy_core.services.metrics import NoMetrics

LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", *LITELLM_LOGGERS, *QUIET_LOGGERS)


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    """Put the loggers a configuration touches back as they were."""
    saved = {}
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), list(logger.filters), logger.level, logger.propagate)
    yield
    for name, (handlers, filters, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.filters[:] = filters
        logger.setLevel(level)
        logger.propagate = propagate
    logging.captureWarnings(False)


def _to(stream: io.StringIO, log_format: str) -> dict[str, Any]:
    config = logging_config(log_format, "INFO")
    for handler in config["handlers"].values():
        handler["stream"] = stream
    return config


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        logging.getLogger("proxy_core.example").warning("while serving %s", scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def _serve_one(config: dict[str, Any], request_id: str) -> httpx.Response:
    """One request through uvicorn's own protocol, configured as ``main`` configures it."""
    app = RequestObservation(_app, NoMetrics())
    server = uvicorn.Server(uvicorn.Config(app, http="httptools", ws="none", lifespan="off", log_config=config))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                return await http.get(
                    f"http://127.0.0.1:{port}/traces?user_id=jane.doe@example.org", headers={"x-request-id": request_id}
                )
        finally:
            server.should_exit = True
            await serving


@pytest.mark.usefixtures("restored_loggers")
async def test_json_lines_from_start_to_shutdown_name_the_request() -> None:
    stream = io.StringIO()
    request_id = str(uuid.uuid4())
    answer = await _serve_one(_to(stream, "json"), request_id)
    assert answer.headers["x-request-id"] == request_id
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]  # every line parses
    assert {"Started server process", "Shutting down"} <= {line["message"].split(" [")[0] for line in lines}
    assert all({"timestamp", "level", "message", "request_id"} <= line.keys() for line in lines)
    about_request = [line for line in lines if line["request_id"] is not None]
    assert {line["logger"] for line in about_request} == {"proxy_core.example", "uvicorn.access"}
    assert all(line["request_id"] == request_id for line in about_request)
    access = next(line for line in about_request if line["logger"] == "uvicorn.access")
    assert (access["method"], access["path"], access["status"]) == ("GET", "/traces?user_id=...", 200)
    assert "jane.doe" not in stream.getvalue()


@pytest.mark.usefixtures("restored_loggers")
async def test_text_lines_name_the_request_too() -> None:
    stream = io.StringIO()
    request_id = str(uuid.uuid4())
    await _serve_one(_to(stream, "text"), request_id)
    lines = stream.getvalue().splitlines()
    served = [line for line in lines if "GET /traces" in line or "while serving" in line]
    assert len(served) == 2
    assert all(line.endswith(f" request_id={request_id}") for line in served)
    assert not any(line.startswith("{") for line in lines)


@pytest.mark.usefixtures("restored_loggers")
def test_litellm_and_python_warnings_reach_the_json_handler_once() -> None:
    stream = io.StringIO()
    logging.config.dictConfig(_to(stream, "json"))
    logging.captureWarnings(True)
    logging.getLogger("LiteLLM").warning("from litellm")
    logging.getLogger("LiteLLM").info("litellm's info stays out")
    logging.getLogger("py.warnings").warning("RuntimeWarning: coroutine was never awaited")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("LiteLLM", "from litellm"),
        ("py.warnings", "RuntimeWarning: coroutine was never awaited"),
    ]


def test_a_record_carries_the_project_insertion_id_and_exception() -> None:
    context, token = enter_request("req-7")
    context.route, context.project, context.insertion_id = "/chat/completions", "proj-a", "ins-1"
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.LogRecord("proxy_core", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    finally:
        RequestContextFilter().filter(record)
        leave_request(token)
    line = json.loads(JsonFormatter().format(record))
    assert {key: line[key] for key in ("level", "message", "request_id", "route", "project", "insertion_id")} == {
        "level": "ERROR",
        "message": "failed here",
        "request_id": "req-7",
        "route": "/chat/completions",
        "project": "proj-a",
        "insertion_id": "ins-1",
    }
    assert "ValueError: broken" in line["exception"]
    assert line["timestamp"].endswith("+00:00")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_uvicorn_and_the_access_log_follow_log_level(log_format: str) -> None:
    """Applied after uvicorn set its loggers from LOG_LEVEL, the configuration must not undo that:
    at WARNING, an access line per request would cost every request its formatting and write."""
    loggers = logging_config(log_format, "WARNING")["loggers"]
    assert loggers["uvicorn.access"]["level"] == loggers["uvicorn.error"]["level"] == "WARNING"
    assert logging_config(log_format, "DEBUG")["root"]["level"] == "DEBUG"
