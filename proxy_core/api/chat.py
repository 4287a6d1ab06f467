"""Handlers of the POST routes: the tracked completions of every endpoint, and scores."""

from __future__ import annotations

import orjson
from fastapi import Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response, StreamingResponse

from proxy_core.api.body import read_json_body
from proxy_core.api.deps import Services
from proxy_core.api.disconnect import until_disconnect
from proxy_core.services import endpoint_specs, sse
from proxy_core.services.chat_request import parse_json_body
from proxy_core.services.endpoint_specs import EndpointSpec
from proxy_core.services.paths import Endpoint, MetadataPath

SPECS = {
    Endpoint.CHAT_COMPLETIONS: endpoint_specs.CHAT,
    Endpoint.RESPONSES: endpoint_specs.RESPONSES,
    Endpoint.EMBEDDINGS: endpoint_specs.EMBEDDINGS,
    Endpoint.TEXT_COMPLETIONS: endpoint_specs.TEXT_COMPLETION,
    Endpoint.MESSAGES: endpoint_specs.MESSAGES,
}


def anthropic_headers(headers: Headers) -> Headers:
    """Anthropic's clients send their key as ``x-api-key``: taken as the bearer token when there is none,
    so it is the provider key (or, with gateway authentication, the gateway key) as a Bearer would be."""
    key = headers.get("x-api-key")
    if key is None or "authorization" in headers:
        return headers
    copied = MutableHeaders(headers=headers)
    copied["authorization"] = f"Bearer {key}"
    return copied


async def handle_completion(request: Request, services: Services, target: MetadataPath) -> Response:
    spec: EndpointSpec = SPECS[target.endpoint]
    headers = anthropic_headers(request.headers) if target.endpoint is Endpoint.MESSAGES else request.headers
    body = await read_json_body(request, services.settings.max_body_bytes)
    outcome = await until_disconnect(request, services.completions.create(target, headers, body, spec))
    if outcome.stream is not None:
        return StreamingResponse(outcome.stream, media_type=sse.MEDIA_TYPE, headers=outcome.headers)
    return Response(orjson.dumps(outcome.body), media_type="application/json", headers=outcome.headers)


async def handle_score(request: Request, services: Services, target: MetadataPath) -> Response:
    body = parse_json_body(await read_json_body(request, services.settings.max_body_bytes))
    score = await services.scores.create(request.headers, target.project_id, body)
    return Response(orjson.dumps(score), media_type="application/json", status_code=201)
