"""How log lines look: ``LOG_FORMAT=text`` for people, ``json`` for collectors, one logging setup.

One ``logging.config.dictConfig`` document covers every logger the process writes through: the
gateway's own (the root logger), uvicorn's server, error and access loggers, and LiteLLM's (whose
own stream handler is removed, so its records reach the root handler once, formatted like the
rest). uvicorn applies it in the parent process and again in every worker, and
``proxy_core.main`` applies it once more after LiteLLM is imported (LiteLLM adds its handler then).
With ``json`` the lines from start-up to shutdown are JSON objects, one per line, Python's
warnings included.

Each handler carries ``RequestContextFilter``, which copies the current request's context
(``proxy_core.request_context``) onto the record: a line written while serving a request names
its ``request_id``, and its route, project and insertion id once they are known.
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

import orjson

from proxy_core.request_context import current_request
from proxy_core.serving import access_log_config

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s%(context)s"
_CONTEXT_FIELDS = ("route", "project", "insertion_id")
# LiteLLM's loggers write through a stream handler of their own; they stay at WARNING (their
# debug output holds prompts and keys) and go through the root handler instead.
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
# Libraries that log request bodies, headers or URLs (with a /traces query's values) below WARNING.
QUIET_LOGGERS = ("litellm", "openai", "httpx", "httpcore", "urllib3")
# uvicorn's access-log record arguments: (client, method, target, http version, status).
_ACCESS_ARGUMENTS = 5


class RequestContextFilter(logging.Filter):
    """Adds ``request_id``, ``route``, ``project``, ``insertion_id`` and, for text lines, ``context``."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request()
        if request is None:
            record.request_id = record.route = record.project = record.insertion_id = None
            record.context = ""
            return True
        record.request_id = request.request_id
        record.route = request.route
        record.project = request.project
        record.insertion_id = request.insertion_id
        text = f" request_id={request.request_id}"
        if request.project:
            text += f" project={request.project}"
        if request.insertion_id:
            text += f" insertion_id={request.insertion_id}"
        record.context = text
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``timestamp``, ``level``, ``logger``, ``message``, ``request_id``,
    the request's ``route``/``project``/``insertion_id`` where known, and an access line's parts."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for field in _CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value:
                entry[field] = value
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == _ACCESS_ARGUMENTS:
            entry.update(client=args[0], method=args[1], path=args[2], status=args[4])
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """The whole process's logging, as uvicorn's ``log_config`` and for ``dictConfig``."""
    config = access_log_config()
    config["filters"]["request_context"] = {"()": f"{__name__}.{RequestContextFilter.__name__}"}
    json_formatter = {"()": f"{__name__}.{JsonFormatter.__name__}"}
    if log_format == "json":
        config["formatters"] = {"default": json_formatter, "access": json_formatter, "root": json_formatter}
    else:
        formatters = config["formatters"]
        formatters["default"]["fmt"] += "%(context)s"
        formatters["access"]["fmt"] += "%(context)s"
        formatters["root"] = {"format": TEXT_FORMAT}
    config["handlers"]["root"] = {"formatter": "root", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    for handler in config["handlers"].values():
        handler["filters"] = ["request_context"]
    config["root"] = {"level": level, "handlers": ["root"]}
    for name in ("uvicorn.error", "uvicorn.access"):  # as uvicorn sets them from its ``log_level``
        config["loggers"][name]["level"] = level
    for name in LITELLM_LOGGERS:
        config["loggers"][name] = {"level": "WARNING", "handlers": [], "propagate": True}
    for name in QUIET_LOGGERS:
        config["loggers"][name] = {"level": "WARNING"}
    return config


def configure_logging(log_format: str, level: str) -> None:
    """Apply ``logging_config``; with JSON, Python's warnings become log records too."""
    logging.config.dictConfig(logging_config(log_format, level))
    logging.captureWarnings(log_format == "json")
