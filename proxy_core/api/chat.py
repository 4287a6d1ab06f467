"""Chat-completion routes: every metadata path shape, parsed from the raw path."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from proxy_core.api.body import read_json_body
from proxy_core.api.deps import ServicesDep
from proxy_core.errors import MethodNotAllowedError, NotFoundError
from proxy_core.services import sse
from proxy_core.services.paths import Endpoint, parse_metadata_path

router = APIRouter()


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def chat_completions(request: Request, services: ServicesDep) -> Response:
    """``[/v1][/project_id/{p}][/rollout_id/…/row_id/{row}[/encoded_base_url/{b64}]][/v1]/chat/completions``.

    Registered last, for every method, so that any path no other route claims gets an
    OpenAI-style 404 (or 405 for a chat path called with the wrong method).
    """
    raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    target = parse_metadata_path(raw_path.split("?", 1)[0])
    if target is None or target.endpoint is not Endpoint.CHAT_COMPLETIONS:
        raise NotFoundError(f"Unknown route: {request.method} {request.url.path}", code="unknown_route")
    if request.method != "POST":
        raise MethodNotAllowedError(f"{request.method} is not allowed here; use POST.", headers={"Allow": "POST"})
    body = await read_json_body(request, services.settings.max_body_bytes)
    outcome = await services.completions.create(target, request.headers, body)
    if outcome.stream is not None:
        return StreamingResponse(outcome.stream, media_type=sse.MEDIA_TYPE, headers=outcome.headers)
    return Response(orjson.dumps(outcome.body), media_type="application/json", headers=outcome.headers)
