"""An in-process Langfuse server emulator for tests.

The gateway exports every completion to Langfuse over OTLP/HTTP and its
evaluation tooling reads traces back through Langfuse's public REST API.
Running a real Langfuse (Postgres, ClickHouse, Redis, S3, worker) in tests is
not practical, so this module serves the subset of that API the gateway and
its clients use, following the server's documented behaviour:

* ``POST /api/public/otel/v1/traces`` – OTLP protobuf/JSON ingestion
  (optional gzip), converted to traces/observations like the server does;
* ``GET /api/public/traces`` and ``/traces/{id}`` – the legacy read API;
* ``GET /api/public/v2/observations`` – the cursor-paginated read API used
  by the Langfuse SDK 5.x;
* ``POST /api/public/scores``, ``GET /api/public/v2/prompts/{name}``,
  ``GET /api/public/health``.

Every ``/api/public/*`` route (except health) requires HTTP Basic auth with a
project's key pair.  Tests steer and inspect the emulator through
:class:`~tests.fakes.langfuse_state.LangfuseState` (``app.state`` of the app
built by :func:`create_langfuse_app`).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .langfuse_filters import ApiError, zod_error
from .langfuse_observations import list_observations_v2
from .langfuse_otlp import OtlpDecodeError, decode_export
from .langfuse_state import Fault, LangfuseState, LoggedRequest
from .langfuse_traces import get_trace, list_traces, render_dates
from .server import ServerThread

__all__ = ["FakeLangfuse", "LangfuseApp", "LangfuseState", "create_langfuse_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PUBLIC = "/api/public/"
_UNAUTHENTICATED = {"/api/public/health"}
_EVENTS_ONLY_MESSAGE = (
    "This endpoint is not available on deployments running in Langfuse v4 events_only mode. "
    "Use GET /api/public/v2/observations instead."
)
_SCORE_TYPES = {"NUMERIC", "BOOLEAN", "CATEGORICAL", "CORRECTION", "TEXT"}
MAX_INGESTION_VERSION = 4


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _project_id(request: Request) -> str:
    project_id: str = request.scope["langfuse_project_id"]
    return project_id


def _state(request: Request) -> LangfuseState:
    state: LangfuseState = request.app.state.langfuse
    return state


# --- handlers ------------------------------------------------------------------


async def health(request: Request) -> Response:
    return _json({"status": "OK", "version": _state(request).server_version})


async def ingest_otel(request: Request) -> Response:
    version = request.headers.get("x-langfuse-ingestion-version")
    if version is not None and (not version.strip().isdigit() or int(version) > MAX_INGESTION_VERSION):
        return _json({"error": f"Unsupported x-langfuse-ingestion-version: {version}"}, 400)
    content_type = request.headers.get("content-type", "")
    if "application/x-protobuf" not in content_type and "application/json" not in content_type:
        return _json({"error": "Invalid content type"}, 400)
    body = await request.body()
    limit = _state(request).max_ingest_bytes
    if limit is not None and len(body) > limit:
        # What an ingress (nginx's client_max_body_size) answers before Langfuse sees the request.
        return Response(b"<html><body>413 Request Entity Too Large</body></html>", 413, media_type="text/html")
    try:
        spans = decode_export(body, content_type, request.headers.get("content-encoding", ""))
    except OtlpDecodeError as exc:
        return _json({"error": f"Failed to parse OTel request: {exc}"}, 400)
    if spans:
        _state(request).ingest(_project_id(request), spans)
    return _json({})


async def traces_list(request: Request) -> Response:
    state = _state(request)
    if not state.legacy_traces_enabled:
        return _json({"message": _EVENTS_ONLY_MESSAGE}, 404)
    project_id = _project_id(request)
    with state.lock:
        doc = list_traces(state.refresh(project_id), project_id, request.query_params.multi_items())
    return _json(doc)


async def trace_get(request: Request) -> Response:
    state = _state(request)
    if not state.legacy_traces_enabled:
        return _json({"message": _EVENTS_ONLY_MESSAGE}, 404)
    project_id = _project_id(request)
    trace_id = request.path_params["trace_id"]
    with state.lock:
        doc = get_trace(state.refresh(project_id), project_id, trace_id, request.query_params.multi_items())
    return _json(doc)


async def observations_v2(request: Request) -> Response:
    state = _state(request)
    if not state.v2_enabled:
        return Response("Not Found", 404, media_type="text/plain")
    project_id = _project_id(request)
    with state.lock:
        doc = list_observations_v2(state.refresh(project_id), project_id, request.query_params.multi_items())
    return _json(doc)


async def create_scores(request: Request) -> Response:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise zod_error("body", "Invalid JSON body", code="custom") from None
    state, project_id = _state(request), _project_id(request)
    if isinstance(body, list):
        errors: list[dict[str, str]] = []
        for item in body:
            try:
                state.add_score(project_id, _score(item, project_id))
            except ApiError as exc:
                errors.append({"message": str(exc.body.get("error") or exc.body.get("message"))})
        if errors:
            return _json({"accepted": len(body) - len(errors), "rejected": len(errors), "errors": errors}, 207)
        return _json({"message": "Accepted"}, 202)
    score = _score(body, project_id)
    state.add_score(project_id, score)
    return _json({"id": score["id"]})


def _score(item: Any, project_id: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise zod_error("body", "Expected object", expected="object")
    name, value = item.get("name"), item.get("value")
    if not isinstance(name, str) or not name:
        raise zod_error("name", "Required" if name is None else "Expected string", expected="string")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise zod_error("value", "Expected number or string", expected="number | string")
    data_type = item.get("dataType") or ("CATEGORICAL" if isinstance(value, str) else "NUMERIC")
    if data_type not in _SCORE_TYPES:
        raise zod_error("dataType", f"Invalid enum value. Received '{data_type}'", code="invalid_enum_value")
    if data_type in ("NUMERIC", "BOOLEAN") and isinstance(value, str):
        raise zod_error("value", f"{data_type} scores need a numeric value", code="custom")
    if data_type == "BOOLEAN" and value not in (0, 1):
        raise zod_error("value", "BOOLEAN scores must be 0 or 1", code="custom")
    now = datetime.now(UTC)
    string_value = value if isinstance(value, str) else str(bool(value)) if data_type == "BOOLEAN" else None
    return {
        "id": item.get("id") or str(uuid.uuid4()),
        "projectId": project_id,
        "traceId": item.get("traceId"),
        "observationId": item.get("observationId"),
        "sessionId": item.get("sessionId"),
        "datasetRunId": item.get("datasetRunId"),
        "name": name,
        "value": None if isinstance(value, str) else float(value),
        "stringValue": string_value,
        "dataType": data_type,
        "source": item.get("source") or "API",
        "comment": item.get("comment"),
        "metadata": item.get("metadata"),
        "environment": item.get("environment") or "default",
        "configId": item.get("configId"),
        "queueId": item.get("queueId"),
        "authorUserId": None,
        "timestamp": item.get("timestamp") or now,
        "createdAt": now,
        "updatedAt": now,
    }


async def get_prompt(request: Request) -> Response:
    raw_version = request.query_params.get("version")
    version: int | None = None
    if raw_version:
        if not raw_version.isdigit():
            raise zod_error("version", "Expected number, received nan", expected="number")
        version = int(raw_version)
    name = request.path_params["name"]
    prompt = _state(request).find_prompt(_project_id(request), name, version, request.query_params.get("label"))
    if prompt is None:
        raise ApiError(404, {"message": "Prompt not found", "error": "LangfuseNotFoundError"})
    return _json({**render_dates(prompt), "resolutionGraph": None})


# --- middleware: faults, auth, request log ------------------------------------------


def _fault_response(fault: Fault) -> Response:
    if fault.status == 429:
        retry = fault.retry_after if fault.retry_after is not None else 1
        reset = email.utils.formatdate(time.time() + retry, usegmt=True)
        headers = {
            "Retry-After": str(int(retry)) if float(retry).is_integer() else str(retry),
            "X-RateLimit-Limit": "1000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": reset,
        }
        details = {"retryAfterSeconds": retry, "limit": 1000, "remaining": 0, "resetAt": reset}
        body = {"message": "Rate limit exceeded", "code": "rate_limited", "details": details}
        return _json(body, 429, headers)
    extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = "Error"
    return _json({"message": phrase, "error": "injected failure"}, fault.status, extra)


def _credentials(scope: Scope) -> tuple[str, str] | None:
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                public_key, sep, secret_key = base64.b64decode(token.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return (public_key, secret_key) if sep else None
    return None


class LangfuseApp:
    """ASGI entry point: request log, fault injection and project auth around the routes."""

    def __init__(self, state: LangfuseState) -> None:
        self.state = state
        self._router = Starlette(
            routes=[
                Route("/api/public/health", health, methods=["GET"]),
                Route("/api/public/otel/v1/traces", ingest_otel, methods=["POST"]),
                Route("/api/public/traces", traces_list, methods=["GET"]),
                Route("/api/public/traces/{trace_id}", trace_get, methods=["GET"]),
                Route("/api/public/v2/observations", observations_v2, methods=["GET"]),
                Route("/api/public/scores", create_scores, methods=["POST"]),
                Route("/api/public/v2/prompts/{name:path}", get_prompt, methods=["GET"]),
            ],
            exception_handlers={ApiError: _api_error},  # type: ignore[dict-item]
        )
        self._router.state.langfuse = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._router(scope, receive, send)
            return
        path: str = scope["path"]
        status = 0

        async def logging_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        project_id: str | None = None
        try:
            fault = self.state.take_fault(path)
            if fault is not None:
                await _fault_response(fault)(scope, receive, logging_send)
                return
            if path.startswith(_PUBLIC) and path not in _UNAUTHENTICATED:
                project_id = self._authenticate(scope)
                if project_id is None:
                    await _json(self._auth_error(scope), 401)(scope, receive, logging_send)
                    return
                scope["langfuse_project_id"] = project_id
            await self._router(scope, receive, logging_send)
        finally:
            query = Request(scope).query_params.multi_items()
            self.state.log_request(LoggedRequest(scope["method"], path, query, project_id, status, time.monotonic()))

    def _authenticate(self, scope: Scope) -> str | None:
        credentials = _credentials(scope)
        return None if credentials is None else self.state.authenticate(*credentials)

    @staticmethod
    def _auth_error(scope: Scope) -> dict[str, str]:
        if not any(key == b"authorization" for key, _ in scope["headers"]):
            return {"message": "No authorization header"}
        return {"message": "Invalid credentials. Confirm that you've configured the correct host."}


async def _api_error(_request: Request, exc: ApiError) -> Response:
    return _json(exc.body, exc.status, exc.headers or None)


def create_langfuse_app(
    projects: dict[str, tuple[str, str]] | None = None, *, state: LangfuseState | None = None
) -> LangfuseApp:
    """Build the emulator for ``{project_id: (public_key, secret_key)}``."""
    if state is None:
        state = LangfuseState(projects)
    elif projects:
        for project_id, (public_key, secret_key) in projects.items():
            state.add_project(project_id, public_key, secret_key)
    return LangfuseApp(state)


class FakeLangfuse:
    """A started-on-demand emulator: ``with FakeLangfuse({"p": ("pk", "sk")}) as lf: lf.url``."""

    def __init__(
        self, projects: dict[str, tuple[str, str]] | None = None, *, state: LangfuseState | None = None
    ) -> None:
        self.app = create_langfuse_app(projects, state=state)
        self.state = self.app.state
        self.server = ServerThread(self.app)

    @property
    def url(self) -> str:
        return self.server.url

    def credentials(self, project_id: str) -> tuple[str, str]:
        """``(public_key, secret_key)`` of a configured project."""
        with self.state.lock:
            project = self.state.project(project_id)
            return project.public_key, project.secret_key

    def start(self) -> FakeLangfuse:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeLangfuse:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
