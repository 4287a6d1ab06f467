"""Handlers of the POST routes: chat completions and scores."""

from __future__ import annotations

import orjson
from fastapi import Request
from starlette.responses import Response, StreamingResponse

from proxy_core.api.body import read_json_body
from proxy_core.api.deps import Services
from proxy_core.api.disconnect import until_disconnect
from proxy_core.services import sse
from proxy_core.services.chat_request import parse_json_body
from proxy_core.services.paths import MetadataPath


async def handle_chat(request: Request, services: Services, target: MetadataPath) -> Response:
    body = await read_json_body(request, services.settings.max_body_bytes)
    outcome = await until_disconnect(request, services.completions.create(target, request.headers, body))
    if outcome.stream is not None:
        return StreamingResponse(outcome.stream, media_type=sse.MEDIA_TYPE, headers=outcome.headers)
    return Response(orjson.dumps(outcome.body), media_type="application/json", headers=outcome.headers)


async def handle_score(request: Request, services: Services, target: MetadataPath) -> Response:
    body = parse_json_body(await read_json_body(request, services.settings.max_body_bytes))
    score = await services.scores.create(request.headers, target.project_id, body)
    return Response(orjson.dumps(score), media_type="application/json", status_code=201)
