"""Liveness, readiness, metrics and the model list."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from proxy_core.api.deps import ServicesDep
from proxy_core.errors import NotFoundError

router = APIRouter()


@router.api_route("/health", methods=["GET", "HEAD"])  # load balancers probe with HEAD too
@router.api_route("/v1/health", methods=["GET", "HEAD"], include_in_schema=False)
async def health() -> dict[str, str]:
    """Liveness: the process serves HTTP (the original gateway's exact answer)."""
    return {"status": "healthy", "service": "metadata-proxy"}


@router.api_route("/ready", methods=["GET", "HEAD"])  # load balancers probe with HEAD too
@router.api_route("/v1/ready", methods=["GET", "HEAD"], include_in_schema=False)
async def ready(services: ServicesDep) -> JSONResponse:
    """Readiness: 200 only when the rollout store takes writes and the gateway is not draining.

    The store's state comes from real writes (completions, and a probe the gateway runs by itself
    every second without traffic), not from a PING, which a write-refusing Redis still answers.
    ``spans`` counts what happened to trace spans since start-up, and ``tracing`` shows each
    project's Langfuse state and spool: trace loss shows up here as a number, not a silence. A
    Langfuse outage alone does not make the gateway unready while the spool absorbs it.
    """
    spans = services.span_counts() if services.span_counts is not None else None
    tracing = services.delivery_report() if services.delivery_report is not None else None
    store = services.store.health()
    body = {"status": "ready", "store": store.as_dict(), "spans": spans, "tracing": tracing}
    if services.shutting_down:
        return JSONResponse({**body, "status": "shutting_down"}, status_code=503)
    if not store.writable:
        return JSONResponse({**body, "status": "unavailable"}, status_code=503)
    return JSONResponse(body)


@router.get("/metrics")
async def metrics(request: Request, services: ServicesDep) -> Response:
    """Prometheus' text format; with ``WORKERS`` > 1, summed over every worker."""
    if services.metrics is None:
        raise NotFoundError("Metrics are not served by this gateway.", code="unknown_route")
    body, content_type = await services.metrics.scrape(request.headers)
    return Response(body, media_type=content_type)


@router.get("/v1/models")
@router.get("/models", include_in_schema=False)
async def models(services: ServicesDep) -> dict[str, Any]:
    created = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "proxy-core"}
            for name in services.model_names
        ],
    }
