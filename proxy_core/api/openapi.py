"""``/openapi.json`` and ``/docs``: every route, the metadata routes included.

The metadata routes are served by one catch-all that parses the raw path (``dispatch``), so
FastAPI sees none of them. Their description is built here from the same table dispatch routes
by — ``services.paths.Endpoint`` (each endpoint's path tail) and ``dispatch.allowed_methods`` —
so a new endpoint appears in the schema as soon as it is routed, with its path parameters, the
optional ``/project_id/{project_id}`` prefix and the error responses every route shares.
``OPERATIONS`` adds what is particular to an endpoint (summary, query, headers, bodies); an
endpoint without an entry is still listed, with a generic one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from proxy_core.api.dispatch import allowed_methods
from proxy_core.api.openapi_schemas import MODELS
from proxy_core.services.paths import ROLLOUT_KEYS, TRACKED_ENDPOINTS, Endpoint

DESCRIPTION = """An OpenAI-compatible gateway: put an evaluation's ids into the path, and every
completion is traced with them and recorded per rollout, so the rollout can be read back whole.

Every metadata route also answers under a leading `/v1`, and with `/v1` before the route's last
part (`…/row_id/{row_id}/v1/chat/completions`). Path ids are 1–256 characters with no `/`, `,`,
whitespace, control or invisible formatting characters; a bad one is a 400 naming the segment.
Errors always have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`."""

ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"^[^/,\s]+$"}
PATH_PARAMETERS = {
    "project_id": "The project (its traces, rollouts and policies); without it, the default project.",
    "rollout_id": "The rollout: every completion under it is recorded, and read back by `/traces`.",
    "invocation_id": "The evaluation invocation (a trace tag).",
    "experiment_id": "The experiment (a trace tag).",
    "run_id": "The run (a trace tag).",
    "row_id": "The dataset row (a trace tag).",
    "encoded_base_url": "URL-safe base64 of an OpenAI-compatible upstream under `ALLOWED_BASE_URLS`.",
}
ERRORS = {
    400: "A bad path id, body, header or parameter (`param` names it).",
    401: "Gateway authentication is on and the key is missing or wrong.",
    403: "The key may not use this project (or this `encoded_base_url`).",
    404: "Unknown project, model, rollout, trace or prompt (`code` says which).",
    413: "The body is larger than `MAX_BODY_BYTES`.",
    415: "A compressed body.",
    429: "Rate-limited (`Retry-After` says for how long).",
    502: "The provider or the trace store failed.",
    503: "The rollout store cannot record the call, or the gateway is shutting down (`Retry-After`).",
    504: "The provider or the trace store did not answer in time.",
}
READ_ERRORS = (400, 401, 403, 404, 429, 502, 504)


def _query(
    name: str, description: str, schema: dict[str, Any] | None = None, *, required: bool = False
) -> dict[str, Any]:
    schema = schema or {"type": "string"}
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description, "schema": {"type": "string"}}


TRACES_QUERY = (
    _query(
        "tags",
        "Repeatable; exactly one `rollout_id:{id}`, any others must all be present.",
        {"type": "array", "items": {"type": "string"}},
        required=True,
    ),
    _query("project_id", "The project, when the path names none (the path wins)."),
    _query("limit", "At most this many traces (default 100).", {"type": "integer", "minimum": 1}),
    _query("sample_size", "A random sample of this many traces.", {"type": "integer", "minimum": 1}),
    *(_query(name, "Filter applied to the complete set.") for name in ("user_id", "session_id", "name", "version")),
    _query("environment", "Filter; repeatable.", {"type": "array", "items": {"type": "string"}}),
    _query("release", "Filter applied to the complete set."),
    _query("hours_back", "Only traces of the last hours.", {"type": "number"}),
    _query("from_timestamp", "ISO 8601; traces at or after it.", {"type": "string", "format": "date-time"}),
    _query("to_timestamp", "ISO 8601; traces before it.", {"type": "string", "format": "date-time"}),
    _query("fields", "Subset of `core,io,scores,observations,metrics`."),
    _query("max_retries", "Waits up to 2^n − 1 seconds for missing traces (default 3).", {"type": "integer"}),
    _query("timeout_s", "Hard deadline of the call (default `TRACES_TIMEOUT_S`).", {"type": "number"}),
    _query("sleep_between_gets", "Accepted for compatibility; ignored.", {"type": "number"}),
)
CHAT_HEADERS = (
    _header("x-session-id", "The trace's session (and the experiment arm's unit)."),
    _header("x-user-id", "The trace's user."),
    _header("x-prompt-name", "A managed prompt to put before the messages."),
    _header("x-prompt-version", "That prompt's version (or `x-prompt-label`)."),
    _header("x-prompt-label", "That prompt's label (default `production`)."),
    _header("cache-control", "`no-cache` opts out of the response cache."),
)
CHAT_RESPONSE_HEADERS = {
    "x-insertion-id": "The UUID7 recorded for the rollout (tracked routes only).",
    "x-cost-usd": "The call's cost, when the model's price is known (not on streams).",
    "x-gateway-deployment": "The deployment that answered a routed model.",
    "x-gateway-fallbacks": "How many fallbacks were tried.",
    "x-cache": "`hit` or `miss` when the response cache is on.",
    "x-experiment-variant": "`{experiment}={variant}` when an experiment chose the arm.",
    "x-session-id": "A session id the gateway generated.",
}


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    description: str = ""
    tag: str = "gateway"
    request: str | None = None
    response: str | None = None
    status: int = 200
    parameters: tuple[dict[str, Any], ...] = ()
    response_headers: tuple[tuple[str, str], ...] = ()
    errors: tuple[int, ...] = (400, 401, 403, 404)
    streams: bool = False


def _completion_operation(summary: str, description: str, *, streams: bool = True) -> Operation:
    """A tracked endpoint other than chat: chat's headers and errors, its own body."""
    return Operation(
        summary,
        description + " Tracked under `rollout_id/…/row_id/…` as chat completions are.",
        tag="completions",
        response_headers=tuple((name, text) for name, text in CHAT_RESPONSE_HEADERS.items() if name != "x-cache"),
        errors=(400, 401, 403, 404, 413, 415, 429, 502, 503, 504),
        streams=streams,
    )


OPERATIONS: dict[tuple[Endpoint, str], Operation] = {
    (Endpoint.CHAT_COMPLETIONS, "POST"): Operation(
        "Create a chat completion",
        "Forwarded through LiteLLM and traced. Under `rollout_id/…/row_id/…` it is tracked: its "
        "`x-insertion-id` is recorded for the rollout before the answer is sent.",
        tag="chat",
        request="ChatCompletionRequest",
        response="ChatCompletion",
        parameters=CHAT_HEADERS,
        response_headers=tuple(CHAT_RESPONSE_HEADERS.items()),
        errors=(400, 401, 403, 404, 413, 415, 429, 502, 503, 504),
        streams=True,
    ),
    (Endpoint.RESPONSES, "POST"): _completion_operation(
        "Create a response (Responses API)",
        "Through `litellm.aresponses`; streamed, the Responses events, recorded before "
        "`response.completed` ([endpoints.md](endpoints.md)).",
    ),
    (Endpoint.EMBEDDINGS, "POST"): _completion_operation(
        "Create embeddings", "Through `litellm.aembedding`; the trace holds their count and dimensions.", streams=False
    ),
    (Endpoint.TEXT_COMPLETIONS, "POST"): _completion_operation(
        "Create a text completion", "Through `litellm.atext_completion`, streamed or not."
    ),
    (Endpoint.MESSAGES, "POST"): _completion_operation(
        "Create a message (Anthropic Messages API)",
        "Through `litellm.anthropic_messages`, for a model of any provider; the key may come as "
        '`x-api-key`; errors have Anthropic\'s shape, `{"type": "error", "error": {…}}`.',
    ),
    (Endpoint.TRACES, "GET"): Operation(
        "Read a rollout's traces",
        "Exactly the traces of the rollout's recorded insertion ids, once every one is visible; "
        "404 `traces_incomplete` (with `expected`, `found`, `missing`) if some never arrive in time.",
        tag="traces",
        response="TracesResponse",
        parameters=TRACES_QUERY,
        errors=READ_ERRORS,
    ),
    (Endpoint.TRACES_POINTWISE, "GET"): Operation(
        "Read a rollout's newest trace",
        "The trace of the newest recorded insertion id, which holds the whole conversation.",
        tag="traces",
        response="TracesResponse",
        parameters=TRACES_QUERY,
        errors=READ_ERRORS,
    ),
    (Endpoint.ROLLOUT_STATUS, "GET"): Operation(
        "A rollout's status",
        "What the rollout store holds, without reading traces: cheap enough to poll.",
        tag="rollouts",
        response="RolloutStatus",
        errors=(400, 401, 403, 404, 503),
    ),
    (Endpoint.LOGS, "POST"): Operation(
        "Log a remote rollout's record",
        "eval-protocol's `FireworksTracingHttpHandler` record: kept under every `rollout_id:` tag it "
        "carries; one with a `status` becomes the rollout's `/status`.",
        tag="remote rollouts",
        request="LogRecord",
        errors=(400, 401, 403, 404, 413, 503),
    ),
    (Endpoint.LOGS, "GET"): Operation(
        "A remote rollout's log records",
        "Newest first; every `tags` value must match, and a `rollout_id:` tag is required.",
        tag="remote rollouts",
        response="LogEntries",
        parameters=(
            _query(
                "tags",
                "Repeatable; a `rollout_id:{id}` tag is required.",
                {"type": "array", "items": {"type": "string"}},
                required=True,
            ),
            _query("limit", "At most this many entries (default 100).", {"type": "integer", "minimum": 1}),
            _query("hours_back", "Only entries received in the last hours (default 24).", {"type": "number"}),
            _query("program", "Only entries of this program."),
        ),
        errors=(400, 401, 403, 404, 503),
    ),
    (Endpoint.STATUS, "GET"): Operation(
        "A remote rollout's latest status",
        "The most recent record that had a status; `status: null` while nothing was logged (never 404).",
        tag="remote rollouts",
        response="RolloutLogStatus",
        parameters=(_query("rollout_id", "The rollout.", required=True),),
        errors=(400, 401, 403, 404, 503),
    ),
    (Endpoint.SCORES, "POST"): Operation(
        "Score a completion",
        "By its trace id or its insertion id, in the project's trace store.",
        tag="traces",
        request="ScoreRequest",
        response="Score",
        status=201,
        errors=(400, 401, 403, 404, 502, 504),
    ),
}


def metadata_paths(endpoint: Endpoint) -> list[str]:
    """The path templates of ``endpoint``: with and without a project, and, for completions,
    untracked, tracked, and tracked with a client-chosen upstream."""
    tail = "/".join(endpoint.value)
    middles = [""]
    if endpoint in TRACKED_ENDPOINTS:
        rollout = "".join(f"/{key}/{{{key}}}" for key in ROLLOUT_KEYS)
        middles += [rollout, rollout + "/encoded_base_url/{encoded_base_url}"]
    paths = [f"/v1/{tail}"]
    for project in ("", "/project_id/{project_id}"):
        paths += [f"{project}{middle}/{tail}" for middle in middles]
    return paths


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part.strip("{}") for part in path.split("/") if part.startswith("{")]
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": PATH_PARAMETERS.get(name, ""),
            "schema": {**ID_SCHEMA, "maxLength": 4096} if name == "encoded_base_url" else ID_SCHEMA,
        }
        for name in names
    ]


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _operation(endpoint: Endpoint, method: str, path: str, index: int) -> dict[str, Any]:
    spec = OPERATIONS.get((endpoint, method)) or Operation(f"{method} /{'/'.join(endpoint.value)}")
    success: dict[str, Any] = {"description": "OK"}
    if spec.response is not None:
        success["content"] = _json(spec.response)
        if spec.streams:
            success["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    else:
        success["content"] = {"application/json": {"schema": {"type": "object"}}}
    headers = [(name, text) for name, text in spec.response_headers if name != "x-insertion-id" or "rollout" in path]
    if headers:
        success["headers"] = {name: {"description": text, "schema": {"type": "string"}} for name, text in headers}
    responses: dict[str, Any] = {str(spec.status): success}
    for status in spec.errors:
        responses[str(status)] = {"description": ERRORS[status], "content": _json("ErrorResponse")}
    operation: dict[str, Any] = {
        "tags": [spec.tag],
        "summary": spec.summary,
        "operationId": f"{endpoint.name.lower()}_{method.lower()}_{index}",
        "parameters": _path_parameters(path) + list(spec.parameters),
        "responses": responses,
    }
    if spec.description:
        operation["description"] = spec.description
    if spec.request is not None:
        operation["requestBody"] = {"required": True, "content": _json(spec.request)}
    elif method in ("POST", "PUT", "PATCH"):
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    return operation


def describe(app: FastAPI) -> dict[str, Any]:
    """The whole schema: FastAPI's own routes, then every metadata route."""
    with warnings.catch_warnings():
        # FastAPI names both operations of a GET-and-HEAD route alike, and warns; they are renamed below.
        warnings.filterwarnings("ignore", message="Duplicate Operation ID", category=UserWarning)
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, description=DESCRIPTION, routes=app.routes
        )
    for item in schema.get("paths", {}).values():
        if "head" in item and "get" in item:
            item["head"]["operationId"] = item["get"]["operationId"].removesuffix("_get") + "_head"
    _, definitions = models_json_schema(
        [(model, "validation") for model in MODELS], ref_template="#/components/schemas/{model}"
    )
    schema.setdefault("components", {}).setdefault("schemas", {}).update(definitions.get("$defs", {}))
    paths = schema.setdefault("paths", {})
    for endpoint in Endpoint:
        for index, path in enumerate(metadata_paths(endpoint)):
            item = paths.setdefault(path, {})
            for method in allowed_methods(endpoint):
                item[method.lower()] = _operation(endpoint, method, path, index)
    return schema


def install(app: FastAPI) -> None:
    """Serve ``describe(app)`` at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
