"""Every request's id, log context and HTTP metrics, as the outermost layer of the application.

A pure ASGI middleware, not Starlette's ``BaseHTTPMiddleware`` (which runs the response in a task
of its own and buffers a streamed body's back-pressure). It sits outside Starlette's
``ServerErrorMiddleware`` too (``ObservedFastAPI``), so the 500 of an unexpected failure carries the
request id like every other answer, and its log line names it.

The ``route`` label is a template, never the path the client sent: a fixed route's own path
(``/health``), a metadata route's shape with placeholders for its ids (``/project_id/{project_id}
/rollout_id/{rollout_id}/…/chat/completions``, set by the dispatcher), and ``unmatched`` for every
path the gateway does not serve, so a scan of random paths adds no series.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy_core.request_context import (
    REQUEST_ID_HEADER,
    current_request,
    enter_request,
    leave_request,
    new_request_id,
    valid_request_id,
)
from proxy_core.services.metrics import GatewayMetrics
from proxy_core.services.paths import ROLLOUT_KEYS, MetadataPath

# Where the dispatcher leaves a metadata route's template in the ASGI scope.
ROUTE_TEMPLATE_KEY = "proxy_core.route"
UNMATCHED_ROUTE = "unmatched"
CATCH_ALL_PATH = "/{path:path}"
_REQUEST_ID_NAME = REQUEST_ID_HEADER.encode("ascii")
_ROLLOUT_TEMPLATE = "".join(f"/{key}/{{{key}}}" for key in ROLLOUT_KEYS)


def metadata_route_template(target: MetadataPath) -> str:
    """``/project_id/{project_id}/rollout_id/{rollout_id}/…/chat/completions``: the shape, no ids."""
    parts = ["/project_id/{project_id}" if target.project_id is not None else ""]
    if target.rollout is not None:
        parts.append(_ROLLOUT_TEMPLATE)
    if target.encoded_base_url is not None:
        parts.append("/encoded_base_url/{encoded_base_url}")
    parts.extend(f"/{segment}" for segment in target.endpoint.value)
    return "".join(parts)


def mark_route(scope: Scope, target: MetadataPath) -> None:
    """Name the metadata route a request took, for its metrics and its log lines."""
    template = scope[ROUTE_TEMPLATE_KEY] = metadata_route_template(target)
    context = current_request()
    if context is not None:
        context.route = template


def route_label(scope: Scope) -> str:
    template = scope.get(ROUTE_TEMPLATE_KEY)
    if template is not None:
        return str(template)
    path = getattr(scope.get("route"), "path", None)
    if not isinstance(path, str) or path == CATCH_ALL_PATH:
        return UNMATCHED_ROUTE
    return path


def _inbound_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_NAME:
            return valid_request_id(value.decode("latin-1"))
    return None


class RequestObservation:
    """Gives each request an id (``x-request-id``, echoed or made), a log context, and its metrics."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _inbound_request_id(scope) or new_request_id()
        context, token = enter_request(request_id)
        header = (_REQUEST_ID_NAME, request_id.encode("latin-1"))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                context.route = route_label(scope)
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            self._metrics.request(route_label(scope), scope["method"], status, time.perf_counter() - started)
            leave_request(token)


class ObservedFastAPI(FastAPI):
    """FastAPI with ``RequestObservation`` around its whole middleware stack, error handlers included."""

    def __init__(self, *, metrics: GatewayMetrics, **options: Any) -> None:
        self._observation_metrics = metrics
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        return RequestObservation(super().build_middleware_stack(), self._observation_metrics)
