"""``POST /logs``, ``GET /logs`` and ``GET /status``: remote rollouts' records and status."""

from __future__ import annotations

import logging

import orjson
from fastapi import Request
from starlette.responses import Response

from proxy_core.api.body import read_json_body
from proxy_core.api.deps import Services
from proxy_core.api.traces import query_lists
from proxy_core.errors import GatewayError
from proxy_core.services.paths import Endpoint, MetadataPath
from proxy_core.services.rollout_log_records import claimed_rollouts

logger = logging.getLogger("proxy_core.api")


async def handle_logs(request: Request, services: Services, target: MetadataPath) -> Response:
    if target.endpoint is Endpoint.STATUS:
        body = await services.logs.status(request.headers, target.project_id, query_lists(request))
    elif request.method == "POST":
        return await _post(request, services, target)
    else:
        body = await services.logs.search(request.headers, target.project_id, query_lists(request))
    return Response(orjson.dumps(body), media_type="application/json")


async def _post(request: Request, services: Services, target: MetadataPath) -> Response:
    """Keep one record. A refusal is logged here: the agent's handler drops every answer but a 404
    without a word, so the only sign of it would be a rollout that runs until its timeout."""
    raw = b""
    try:
        raw = await read_json_body(request, services.settings.max_body_bytes)
        await services.logs.post(request.headers, target.project_id, raw)
    except GatewayError as exc:
        logger.warning(
            "POST /logs refused (%d %s) for %s, rollouts %s: %s The agent's log handler does not "
            "report this; its rollouts will run until the evaluation's timeout.",
            exc.status_code,
            exc.code,
            f"project {target.project_id!r}" if target.project_id is not None else "the default project",
            claimed_rollouts(raw) or "(none named)",
            exc.message,
        )
        raise
    return Response(b"{}", media_type="application/json")
