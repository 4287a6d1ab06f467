"""``/logs`` and ``/status`` over raw HTTP, as eval-protocol's agent handler and processor call them."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio

from proxy_core.config_files import ApiKey
from proxy_core.services.store import rollout_key
from tests.integration.conftest import Gateway, GatewayFactory
from tests.integration.test_pii import CANARIES, governed_catalog, hits
from tests.redis_keys import data_keys

STAMP = "2026-12-07T03:59:19.406844Z"
# The reader's query: RemoteRolloutProcessor's async_search_logs.
READER = {"limit": "100", "hours_back": "24", "program": "eval_protocol"}
PREFIXES = ["", "/v1", "/project_id/proj-b", "/v1/project_id/proj-b", "/project_id/proj-b/v1"]


def new_rollout() -> str:
    return f"lg-{uuid.uuid4().hex[:10]}"


def record(
    rollout: str,
    code: int | None = None,
    message: str = "a line",
    extras: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    program: str = "eval_protocol",
) -> dict[str, Any]:
    """A record exactly as FireworksTracingHttpHandler builds it."""
    status = None if code is None else {"code": code, "message": f"status {code}", "details": []}
    return {
        "program": program,
        "status": status,
        "message": message,
        "tags": tags or [f"rollout_id:{rollout}"],
        "extras": {**(extras or {}), "logger_name": "agent", "level": "INFO", "timestamp": STAMP},
    }


async def call(
    gateway: Gateway, method: str, path: str, auth: str | None = "Bearer None", **kwargs: Any
) -> httpx.Response:
    headers = {"authorization": auth} if auth is not None else {}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=headers) as http:
        return await http.request(method, path, **kwargs)


async def post(gateway: Gateway, body: Any, prefix: str = "", auth: str | None = None) -> httpx.Response:
    """The agent's handler sends no Authorization header at all without FIREWORKS_API_KEY."""
    return await call(gateway, "POST", f"{prefix}/logs", auth=auth, json=body)


async def status(gateway: Gateway, rollout: str, prefix: str = "/v1", auth: str | None = "Bearer None") -> Any:
    response = await call(gateway, "GET", f"{prefix}/status", auth=auth, params={"rollout_id": rollout})
    assert response.status_code == 200, response.text
    return response.json()


async def entries(gateway: Gateway, rollout: str, prefix: str = "", **params: Any) -> list[dict[str, Any]]:
    query = {**READER, "tags": f"rollout_id:{rollout}", **params}
    response = await call(gateway, "GET", f"{prefix}/logs", params=query)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"entries"}
    return list(body["entries"])


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


async def test_a_rollout_as_the_processor_sees_it(gateway: Gateway) -> None:
    rollout = new_rollout()
    assert await status(gateway, rollout) == {"rollout_id": rollout, "status": None, "extras": None}
    assert await entries(gateway, rollout) == []
    assert (await post(gateway, record(rollout, 101, "Rollout started"))).status_code == 200
    assert (await post(gateway, record(rollout, message="calling the model"))).status_code == 200
    assert (await status(gateway, rollout))["status"] == {"code": 101, "message": "status 101", "details": []}
    finished = record(rollout, 100, "Rollout done", extras={"agent": "minimal", "score": 0.5, "nested": {"k": [1]}})
    assert (await post(gateway, finished)).status_code == 200
    assert await status(gateway, rollout, prefix="") == {
        "rollout_id": rollout,
        "status": {"code": 100, "message": "status 100", "details": []},
        "extras": finished["extras"],
    }
    found = await entries(gateway, rollout)
    assert [entry["message"] for entry in found] == ["Rollout done", "calling the model", "Rollout started"]
    assert found[0] == {
        "timestamp": STAMP,
        "message": "Rollout done",
        "severity": "INFO",
        "tags": [f"rollout_id:{rollout}"],
        "status": {"code": 100, "message": "status 100", "details": []},
        "extras": finished["extras"],
    }
    assert await entries(gateway, rollout, prefix="/v1") == found


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_every_route_shape_reads_and_writes_its_own_project(gateway: Gateway, prefix: str) -> None:
    rollout = new_rollout()
    assert (await post(gateway, record(rollout, 100), prefix=prefix)).status_code == 200
    project = "proj-b" if "project_id" in prefix else "proj-a"  # proj-a is the default project
    for read_prefix in (prefix, f"/project_id/{project}", f"/v1/project_id/{project}"):
        assert (await status(gateway, rollout, prefix=read_prefix))["status"]["code"] == 100
        assert len(await entries(gateway, rollout, prefix=read_prefix)) == 1
    for other in {"proj-a", "proj-b", "proj-c"} - {project}:
        assert (await status(gateway, rollout, prefix=f"/project_id/{other}"))["status"] is None
        assert await entries(gateway, rollout, prefix=f"/project_id/{other}") == []


async def test_unknown_project_is_404_and_other_methods_405(gateway: Gateway) -> None:
    response = await call(gateway, "GET", "/project_id/nope/v1/status", params={"rollout_id": "r"})
    assert error(response, 404)["code"] == "project_not_found"
    refused = await call(gateway, "PUT", "/v1/logs")
    assert error(refused, 405)["message"] == "PUT is not allowed here; use GET, POST."
    assert refused.headers["allow"] == "GET, POST"
    assert error(await call(gateway, "POST", "/status"), 405)["message"] == "POST is not allowed here; use GET."


def bad(param: str | None, message: str, code: str = "invalid_value") -> dict[str, Any]:
    return {"message": message, "type": "invalid_request_error", "param": param, "code": code}


def with_status(code: Any) -> bytes:
    return b'{"status": {"code": ' + code + b', "message": "m", "details": []}, "tags": ["rollout_id:ROLL"]}'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'["rollout_id:ROLL"]', bad(None, "The request body must be a JSON object.", "invalid_json")),
        (b"", bad(None, "The request body is empty; expected a JSON object.", "invalid_json")),
        (with_status(b'"100"'), bad("status.code", "Invalid status.code: must be a JSON integer.")),
        (with_status(b"true"), bad("status.code", "Invalid status.code: must be a JSON integer.")),
        (with_status(b"100.5"), bad("status.code", "Invalid status.code: must be a JSON integer.")),
        (with_status(b"1e2"), bad("status.code", "Invalid status.code: must be a JSON integer.")),
        (with_status(b"null"), bad("status.code", "Invalid status.code: must be a JSON integer.")),
        (with_status(b"-1"), bad("status.code", "Invalid status.code: must be between 0 and 2147483647.")),
        (
            b'{"status": "100", "tags": ["rollout_id:ROLL"]}',
            bad("status", "Invalid status: must be an object or null."),
        ),
        (b'{"tags": ["rollout_id:ROLL", 7]}', bad("tags", "Invalid tags: must be an array of strings.")),
        (b'{"tags": "rollout_id:ROLL"}', bad("tags", "Invalid tags: must be an array of strings.")),
        (b'{"tags": ["run_id:x"]}', bad("tags", "Invalid tags: at least one 'rollout_id:<id>' tag is required.")),
        (
            b'{"tags": ["rollout_id:ROLL", "rollout_id:a b"]}',
            bad(
                "tags",
                "Invalid tags: must not contain '/', ',', whitespace or control characters.",
                "invalid_identifier",
            ),
        ),
        (b'{"tags": ["rollout_id:ROLL"], "message": 5}', bad("message", "Invalid message: must be a string.")),
        (b'{"tags": ["rollout_id:ROLL"], "extras": [1]}', bad("extras", "Invalid extras: must be an object.")),
        (
            b'{"tags": ["rollout_id:ROLL"], "status": {"code": 100, "details": {}}}',
            bad("status.details", "Invalid status.details: must be an array."),
        ),
    ],
)
async def test_a_refused_post_is_a_400_that_keeps_nothing(
    gateway: Gateway, redis_client: redis.asyncio.Redis, key_prefix: str, raw: bytes, expected: dict[str, Any]
) -> None:
    rollout = new_rollout()
    response = await call(
        gateway, "POST", "/logs", content=raw.replace(b"ROLL", rollout.encode()), headers=JSON_HEADERS
    )
    assert error(response, 400) == expected
    assert await entries(gateway, rollout) == []
    assert (await status(gateway, rollout))["status"] is None
    assert await data_keys(redis_client, key_prefix) == []


JSON_HEADERS = {"content-type": "application/json"}


async def test_bounds_per_record_and_per_rollout(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(max_body_bytes=4096, rollout_log_max_entry_bytes=1024, rollout_log_max_entries=3)
    rollout = new_rollout()
    too_big_body = await post(gateway, record(rollout, message="x" * 5000))
    assert error(too_big_body, 413) == {
        "message": "The request body exceeds the limit of 4096 bytes.",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_too_large",
    }
    too_big_record = await post(gateway, record(rollout, message="x" * 2000))
    assert error(too_big_record, 413) == {
        "message": "A log record may be at most 1024 bytes (ROLLOUT_LOG_MAX_ENTRY_BYTES).",
        "type": "invalid_request_error",
        "param": None,
        "code": "log_entry_too_large",
    }
    for n in range(3):
        assert (await post(gateway, record(rollout, message=f"line {n}"))).status_code == 200
    full = await post(gateway, record(rollout, message="one too many"))
    assert error(full, 413) == {
        "message": f"The log of rollout {rollout!r} holds its maximum number of entries; records without a status "
        "are refused until it expires (a record with a status is still kept, in place of the oldest).",
        "type": "invalid_request_error",
        "param": "tags",
        "code": "rollout_log_full",
    }
    assert (await post(gateway, record(rollout, 100, message="finished"))).status_code == 200
    kept = await entries(gateway, rollout)
    assert [entry["message"] for entry in kept] == ["finished", "line 2", "line 1"]
    assert (await status(gateway, rollout))["status"]["code"] == 100


async def test_latest_status_and_newest_first_semantics(gateway: Gateway) -> None:
    rollout = new_rollout()
    for code, message in [(101, "running"), (100, "finished"), (None, "after"), (None, "last")]:
        assert (await post(gateway, record(rollout, code, message))).status_code == 200
    assert (await status(gateway, rollout))["status"]["code"] == 100, "a null status does not clear the last"
    assert [entry["message"] for entry in await entries(gateway, rollout, limit="2")] == ["last", "after"]
    assert (await post(gateway, record(rollout, 13, "failed after all"))).status_code == 200
    assert (await status(gateway, rollout))["status"]["code"] == 13, "a later status replaces a final one"


async def test_a_group_record_is_indexed_under_every_rollout_and_filters_apply(gateway: Gateway) -> None:
    one, two = new_rollout(), new_rollout()
    group = [f"rollout_id:{one}", f"rollout_id:{two}", "experiment_id:e1", "run_id:run1"]
    assert (await post(gateway, record(one, 101, "group", tags=group, program="my_prog"))).status_code == 200
    assert (await post(gateway, record(one, None, "alone"))).status_code == 200
    for rollout in (one, two):
        assert (await status(gateway, rollout))["status"]["code"] == 101
    assert [entry["message"] for entry in await entries(gateway, one, program="my_prog")] == ["group"]
    assert [entry["message"] for entry in await entries(gateway, one, program="eval_protocol")] == ["alone"]
    both = await call(gateway, "GET", "/logs", params=[("tags", f"rollout_id:{one}"), ("tags", "experiment_id:e1")])
    assert [entry["message"] for entry in both.json()["entries"]] == ["group"]
    assert [entry["tags"] for entry in await entries(gateway, two, program="my_prog")] == [group]
    assert await entries(gateway, one, program="my_prog", hours_back="0") == []


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/logs", {}, bad("tags", "Invalid tags: at least one 'rollout_id:<id>' tag is required.")),
        ("/logs", {"tags": "run_id:x"}, bad("tags", "Invalid tags: at least one 'rollout_id:<id>' tag is required.")),
        ("/v1/logs", {"tags": "rollout_id:r", "limit": "ten"}, bad("limit", "Invalid limit: not an integer.")),
        ("/logs", {"tags": "rollout_id:r", "limit": "0"}, bad("limit", "Invalid limit: must be between 1 and 100000.")),
        ("/logs", {"tags": "rollout_id:r", "hours_back": "x"}, bad("hours_back", "Invalid hours_back: not a number.")),
        ("/v1/status", {}, bad("rollout_id", "Invalid rollout_id: the query parameter is required.")),
    ],
)
async def test_bad_queries_are_400(gateway: Gateway, path: str, params: dict[str, str], expected: Any) -> None:
    response = await call(gateway, "GET", path, params=params)
    expected = {**expected, "code": "invalid_query_parameter"}
    assert error(response, 400) == expected


ENDPOINTS = [("POST", "logs"), ("GET", "logs"), ("GET", "status")]


async def request_as(gateway: Gateway, method: str, endpoint: str, prefix: str, auth: str | None) -> httpx.Response:
    rollout = "auth-r"
    if method == "POST":
        return await call(gateway, "POST", f"{prefix}/{endpoint}", auth=auth, json=record(rollout, 101))
    params = {"rollout_id": rollout} if endpoint == "status" else {"tags": f"rollout_id:{rollout}"}
    return await call(gateway, method, f"{prefix}/{endpoint}", auth=auth, params=params)


@pytest.mark.parametrize(("method", "endpoint"), ENDPOINTS)
async def test_gateway_keys_guard_all_three_endpoints(
    gateway_factory: GatewayFactory, method: str, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = (
        ApiKey(name="a", key="gw-key-a-0123456789", projects=("proj-a",)),
        ApiKey(name="b", key="gw-key-b-0123456789", projects=("proj-b",)),
    )  # type: ignore[arg-type]
    gateway = gateway_factory(api_keys=keys)
    caplog.set_level(logging.WARNING, logger="proxy_core.api")
    missing = error(await request_as(gateway, method, endpoint, "", None), 401)
    assert (missing["code"], missing["type"]) == ("missing_api_key", "authentication_error")
    quirk = error(await request_as(gateway, method, endpoint, "/v1", "Bearer None"), 401)
    assert quirk == {
        "message": "Invalid API key. The client sent 'Bearer None', as eval-protocol does when FIREWORKS_API_KEY "
        "is unset: set it to a gateway key.",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert error(await request_as(gateway, method, endpoint, "", "Bearer gw-nope"), 401)["code"] == "invalid_api_key"
    other = error(await request_as(gateway, method, endpoint, "", "Bearer gw-key-b-0123456789"), 403)
    assert (other["code"], other["param"]) == ("permission_denied", "project_id")
    default_key = await request_as(gateway, method, endpoint, "/project_id/proj-b", "Bearer gw-key-a-0123456789")
    assert error(default_key, 403)["code"] == "permission_denied"
    assert (await request_as(gateway, method, endpoint, "", "Bearer gw-key-a-0123456789")).status_code == 200
    assert (
        await request_as(gateway, method, endpoint, "/project_id/proj-b", "Bearer gw-key-b-0123456789")
    ).status_code == 200
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("POST /logs refused")]
    if method == "POST":
        assert len(refusals) == 5
        assert refusals[0].startswith(
            "POST /logs refused (401 missing_api_key) for the default project, rollouts ['auth-r']"
        )
        assert "its rollouts will run until the evaluation's timeout" in refusals[0]
        assert refusals[3].startswith("POST /logs refused (403 permission_denied) for the default project")
        assert refusals[4].startswith("POST /logs refused (403 permission_denied) for project 'proj-b'")
    else:
        assert refusals == []


@pytest.mark.parametrize(("method", "endpoint"), ENDPOINTS)
@pytest.mark.parametrize("auth", [None, "Bearer None", "Bearer sk-whatever"])
async def test_without_gateway_keys_any_authorization_is_accepted(
    gateway: Gateway, method: str, endpoint: str, auth: str | None
) -> None:
    assert (await request_as(gateway, method, endpoint, "", auth)).status_code == 200


async def test_records_survive_a_restart_and_are_shared_by_replicas(
    gateway_factory: GatewayFactory, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    first, second = gateway_factory(redis_key_ttl_s=5000), gateway_factory(redis_key_ttl_s=5000)
    rollout = new_rollout()
    assert (await post(first, record(rollout, 100, "kept"))).status_code == 200
    first.server.stop()
    assert (await status(second, rollout))["status"]["code"] == 100
    assert [entry["message"] for entry in await entries(second, rollout)] == ["kept"]
    base = rollout_key(key_prefix, "proj-a", rollout)
    for key in (f"{base}:logs", f"{base}:log-status"):
        assert 4990 < await redis_client.ttl(key) <= 5000


async def test_an_unreachable_store_is_503(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(redis_url="redis://127.0.0.1:1/0")
    response = await call(gateway, "GET", "/v1/status", params={"rollout_id": "r"})
    assert error(response, 503)["code"] == "store_unavailable"
    assert response.headers["retry-after"] == "1"
    assert error(await post(gateway, record("r", 100)), 503)["code"] == "store_unavailable"


@pytest.mark.parametrize(("project", "redacted"), [("proj-a", True), ("proj-b", True), ("proj-c", False)])
async def test_log_text_is_sanitized_with_the_projects_rules_before_it_is_kept(
    gateway_factory: GatewayFactory,
    upstream: Any,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
    caplog: pytest.LogCaptureFixture,
    project: str,
    redacted: bool,
) -> None:
    """redact and trace_only modes keep placeholders only (logs are read back like traces); off keeps the text."""
    caplog.set_level(logging.DEBUG)
    gateway = gateway_factory(catalog=governed_catalog(upstream[0].url))
    rollout, c = new_rollout(), CANARIES
    body = record(
        rollout,
        13,
        message=f"patient {c['ssn']} wrote from {c['email']}",
        extras={"member": c["member"], "contact": {"phone": c["phone"], "cards": [c["card"]]}, "npi": 1234567893},
        tags=[f"rollout_id:{rollout}", f"note:{c['mbi']}"],
    )
    body["status"] = {"code": 13, "message": f"failed for {c['dob']}", "details": [{"metadata": {"mbi": c["mbi"]}}]}
    prefix = f"/project_id/{project}"
    assert (await post(gateway, body, prefix=prefix)).status_code == 200
    assert (
        await post(
            gateway, {"tags": [f"rollout_id:{rollout}"], "status": {"code": "x"}, "message": c["ssn"]}, prefix=prefix
        )
    ).status_code == 400
    [entry] = await entries(gateway, rollout, prefix=prefix)
    latest = await status(gateway, rollout, prefix=prefix)
    stored = [await redis_client.lrange(key, 0, -1) if key.endswith(":logs") else await redis_client.get(key)
              for key in await data_keys(redis_client, key_prefix)]  # fmt: skip
    if not redacted:
        assert entry["message"] == body["message"]
        assert entry["status"] == body["status"]
        assert entry["extras"] == body["extras"]
        assert entry["tags"] == body["tags"]
        return
    assert entry["message"] == "patient <REDACTED_SSN_1> wrote from <REDACTED_EMAIL_1>"
    assert entry["status"] == {
        "code": 13,
        "message": "failed for <REDACTED_DATE_1>",
        "details": [{"metadata": {"mbi": "<REDACTED_MBI_1>"}}],
    }
    assert entry["extras"] == {
        "member": "<REDACTED_MEMBER_ID_1>",
        "contact": {"phone": "<REDACTED_PHONE_1>", "cards": ["<REDACTED_CARD_1>"]},
        "npi": "<REDACTED_NPI_1>",
        "logger_name": "agent",
        "level": "INFO",
        "timestamp": STAMP,
    }
    assert entry["tags"] == [f"rollout_id:{rollout}", "note:<REDACTED_MBI_1>"]
    assert latest["status"] == entry["status"]
    assert latest["extras"] == entry["extras"]
    assert len(stored) == 2
    assert hits(str(stored)) == []
    assert hits(caplog.text) == []
