"""One route for every metadata path: the path is parsed from the raw bytes, then dispatched.

Evaluation ids live in path segments, and FastAPI would percent-decode them before routing (an
encoded ``/`` would shift every later segment). Parsing ``raw_path`` here instead lets a bad id
be a 400 naming the segment. Registered last, for every method, so any path no other route
claims gets an OpenAI-style 404 (or 405 for a known path called with the wrong method), or, with
``LITELLM_PROXY_URL`` set, is forwarded there (``forward``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.routing import Route

from proxy_core.api import health
from proxy_core.api.chat import handle_completion, handle_score
from proxy_core.api.deps import ServicesDep
from proxy_core.api.forward import handle_forward
from proxy_core.api.logs import handle_logs
from proxy_core.api.observability import mark_route
from proxy_core.api.traces import handle_read
from proxy_core.errors import MethodNotAllowedError, NotFoundError
from proxy_core.services.paths import TRACKED_ENDPOINTS, Endpoint, MetadataPath, parse_metadata_path

router = APIRouter()

_METHODS = {
    Endpoint.CHAT_COMPLETIONS: ("POST",),
    Endpoint.RESPONSES: ("POST",),
    Endpoint.EMBEDDINGS: ("POST",),
    Endpoint.TEXT_COMPLETIONS: ("POST",),
    Endpoint.MESSAGES: ("POST",),
    Endpoint.TRACES: ("GET",),
    Endpoint.TRACES_POINTWISE: ("GET",),
    Endpoint.ROLLOUT_STATUS: ("GET",),
    Endpoint.SCORES: ("POST",),
    Endpoint.LOGS: ("GET", "POST"),
    Endpoint.STATUS: ("GET",),
}


def allowed_methods(endpoint: Endpoint) -> tuple[str, ...]:
    """The methods ``endpoint`` takes (also what ``/openapi.json`` lists for it)."""
    return _METHODS[endpoint]


def metadata_target(request: Request) -> MetadataPath | None:
    """The gateway route the request's raw path names, None for none; a bad id raises its 400."""
    raw = request.scope.get("raw_path")
    if raw is None:  # not an argument default: building ``request.url`` costs every request
        raw = request.url.path.encode()
    return parse_metadata_path(raw.decode("latin-1").split("?", 1)[0])


# Every standard method reaches ``dispatch``: for one the route did not list, Starlette would answer
# 405 itself, naming the catch-all's methods in ``Allow`` instead of the path's own.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


@router.api_route("/{path:path}", methods=ALL_METHODS, include_in_schema=False)
async def dispatch(request: Request, services: ServicesDep) -> Response:
    target = metadata_target(request)
    if target is None:
        fixed = _fixed_route_methods(request)
        if fixed:
            raise MethodNotAllowedError.allowing(request.method, fixed)
        if services.forwarding is not None:
            return await handle_forward(request, services.forwarding)
        raise NotFoundError(f"Unknown route: {request.method} {request.url.path}", code="unknown_route")
    mark_route(request.scope, target)
    if target.endpoint is Endpoint.MESSAGES:
        request.state.anthropic_errors = True  # its clients read errors in Anthropic's shape
    allowed = _METHODS[target.endpoint]
    if request.method not in allowed:
        raise MethodNotAllowedError.allowing(request.method, allowed)
    if target.endpoint in TRACKED_ENDPOINTS:
        return await handle_completion(request, services, target)
    if target.endpoint is Endpoint.SCORES:
        return await handle_score(request, services, target)
    if target.endpoint in (Endpoint.LOGS, Endpoint.STATUS):
        return await handle_logs(request, services, target)
    return await handle_read(request, services, target)


def _fixed_route_methods(request: Request) -> list[str]:
    """The methods of the fixed routes (``/health``, ``/v1/models``, ``/docs`` …) at this exact path.

    A method those routes do not take falls through to this catch-all; the answer is then a 405
    naming theirs, not a 404 for a path that exists.
    """
    methods: set[str] = set()
    for route in [*request.app.routes, *health.router.routes]:  # included routers are not flattened
        if isinstance(route, Route) and route.path == request.url.path:
            methods |= route.methods or set()
    return sorted(methods)
