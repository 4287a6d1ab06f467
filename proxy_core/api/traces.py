"""``/traces``, ``/traces/pointwise`` and ``/rollouts/{rollout_id}`` handlers.

The two trace reads long-poll Langfuse; they run ``until_disconnect``, so a client that gives up
stops the polling (``/rollouts/{rollout_id}`` reads the store once and needs no such care).
"""

from __future__ import annotations

import orjson
from fastapi import Request
from starlette.responses import Response

from proxy_core.api.deps import Services
from proxy_core.api.disconnect import until_disconnect
from proxy_core.services.paths import Endpoint, MetadataPath
from proxy_core.services.traces_query import parse_traces_query


def query_lists(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


async def handle_read(request: Request, services: Services, target: MetadataPath) -> Response:
    if target.endpoint is Endpoint.ROLLOUT_STATUS:
        assert target.resource_id is not None
        body = await services.traces.rollout_status(request.headers, target.project_id, target.resource_id)
    else:
        query = parse_traces_query(query_lists(request), default_timeout_s=services.settings.traces_timeout_s)
        if target.endpoint is Endpoint.TRACES_POINTWISE:
            wait = services.traces.latest_trace(request.headers, target.project_id, query)
        else:
            wait = services.traces.all_traces(request.headers, target.project_id, query)
        # The wait polls Langfuse for up to ``timeout_s``: it ends when its client goes away.
        body = await until_disconnect(request, wait, what=("the wait for its traces", ""))
    return Response(orjson.dumps(body), media_type="application/json")
