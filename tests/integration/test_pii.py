"""PII canaries in every field: none reaches the provider (redact mode), Langfuse (both modes) or our logs."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import httpx
import pytest

from proxy_core.config_files import ModelCatalog
from proxy_core.services.pii import engine
from tests.fakes.langfuse_model import TraceRecord
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import Gateway, GatewayFactory, catalog_for, rollout_path

MEMBER_PATTERN = r"XKZ\d{9}"
CANARIES = {
    "ssn": "345-67-8912",
    "card": "4111 1111 1111 1111",
    "npi": "1234567893",
    "mbi": "1EG4-TE5-MK73",
    "phone": "(312) 555-0147",
    "email": "jane.canary@example.org",
    "dob": "04/17/1962",
    "member": "XKZ123456789",
}
# Forms a canary may take once serialised (JSON, repr, digits only).
NEEDLES = sorted({*CANARIES.values(), "345678912", "4111111111111111", "1EG4TE5MK73", "555-0147", "jane.canary"})


def canary_body(stream: bool) -> dict[str, Any]:
    c = CANARIES
    return {
        "model": "fake",
        "stream": stream,
        "user": f"user {c['email']}",
        "metadata": {"tags": ["pii-test"], "note": f"member {c['member']}"},
        "messages": [
            {"role": "system", "content": f"Patient SSN {c['ssn']}, DOB {c['dob']}."},
            {
                "role": "user",
                "name": "caller",
                "content": [{"type": "text", "text": f"Card {c['card']} NPI {c['npi']}"}],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": json.dumps({"mbi": c["mbi"], "phone": c["phone"]})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"found member {c['member']}"},
            # The fake provider echoes the last user message: the output carries PII back too.
            {"role": "user", "content": f"Repeat after me: {c['ssn']} {c['email']} {c['member']}"},
        ],
    }


def hits(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


def governed_catalog(upstream_url: str) -> ModelCatalog:
    base = catalog_for(upstream_url).model_dump()
    base["projects"] = {
        "proj-a": {"pii": {"mode": "redact", "member_id_patterns": [MEMBER_PATTERN]}},
        "proj-b": {"pii": {"mode": "trace_only", "member_id_patterns": [MEMBER_PATTERN]}},
        "proj-c": {"pii": {"mode": "off"}},
    }
    return ModelCatalog.model_validate(base)


@pytest.fixture
def governed(gateway_factory: GatewayFactory, upstream: Any) -> Gateway:
    return gateway_factory(catalog=governed_catalog(upstream[0].url))


def spans_text(langfuse: LangfuseState, project: str, rollout: str) -> tuple[int, str]:
    ids = {s.trace_id for s in langfuse.spans(project) if rollout in str(s.attributes.get("langfuse.trace.tags"))}
    spans = [s for s in langfuse.spans(project) if s.trace_id in ids]
    dump = [(s.name, s.attributes, [(e.name, e.attributes) for e in s.events], s.status_message) for s in spans]
    return len(spans), json.dumps(dump, default=str)


async def send(gateway: Gateway, project: str, rollout: str, stream: bool) -> httpx.Response:
    path = f"/project_id/{project}/{rollout_path(rollout)}/chat/completions"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        response = await http.post(path, json=canary_body(stream))
        await response.aread()
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("project", "provider_sees_pii"), [("proj-a", False), ("proj-b", True)])
async def test_canaries_never_reach_langfuse_or_logs(
    governed: Gateway,
    upstream_state: UpstreamState,
    langfuse: LangfuseState,
    caplog: pytest.LogCaptureFixture,
    project: str,
    provider_sees_pii: bool,
    stream: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    rollout = f"pii-{uuid.uuid4().hex[:8]}"
    await send(governed, project, rollout, stream)

    sent = json.dumps(upstream_state.completion_requests[-1].body)
    assert bool(hits(sent)) is provider_sees_pii, hits(sent)
    if not provider_sees_pii:
        assert "<REDACTED_SSN_1>" in sent
        assert json.loads(json.loads(sent)["messages"][2]["tool_calls"][0]["function"]["arguments"])

    def both_spans() -> bool:
        return spans_text(langfuse, project, rollout)[0] >= 1

    langfuse.wait_for(both_spans, timeout=10)
    count, exported = spans_text(langfuse, project, rollout)
    assert count == 1, "one generation span; LiteLLM's raw-request child span is not exported"
    assert hits(exported) == [], f"canaries in exported spans: {hits(exported)}"
    assert "REDACTED_" in exported
    assert hits(caplog.text) == []


async def test_pii_off_keeps_text(governed: Gateway, upstream_state: UpstreamState) -> None:
    await send(governed, "proj-c", f"pii-{uuid.uuid4().hex[:8]}", False)
    assert CANARIES["ssn"] in json.dumps(upstream_state.completion_requests[-1].body)


async def test_engine_failure_fails_closed(
    governed: Gateway, upstream_state: UpstreamState, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object, text: str, memo: object) -> str:
        raise RuntimeError("engine bug")

    monkeypatch.setattr(engine.PiiRedactor, "redact", broken)
    async with httpx.AsyncClient(base_url=governed.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        response = await http.post(f"/{rollout_path('pii-x')}/chat/completions", json=canary_body(False))
    assert response.status_code == 500
    assert response.json()["error"] == {
        "message": "The request could not be sanitized; it was not forwarded.",
        "type": "api_error",
        "param": None,
        "code": "sanitizer_error",
    }
    assert upstream_state.completion_requests == []


async def test_gateway_tags_survive_export_redaction(governed: Gateway, langfuse: LangfuseState) -> None:
    """Ids that look like PII must stay findable: /traces looks traces up by these tags."""
    rollout = "1234567893"  # a valid NPI
    path = (
        f"/project_id/proj-b/rollout_id/{rollout}/invocation_id/345-67-8912/experiment_id/e/run_id/r"
        "/row_id/4111111111111111/chat/completions"
    )
    async with httpx.AsyncClient(base_url=governed.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        sent = await http.post(path, json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]})
        assert sent.status_code == 200
        traces = await http.get("/project_id/proj-b/traces", params={"tags": f"rollout_id:{rollout}", "timeout_s": 10})
    assert traces.status_code == 200, traces.text
    tags = traces.json()["traces"][0]["tags"]
    assert f"insertion_id:{sent.headers['x-insertion-id']}" in tags
    assert {"row_id:4111111111111111", "invocation_id:345-67-8912"} <= set(tags)


def declarations_body() -> dict[str, Any]:
    """Canaries in the fields beyond the conversation: stop, tools, response format, an extra key."""
    c = CANARIES
    schema = {
        "type": "object",
        "properties": {"member": {"type": "string", "description": f"e.g. {c['member']}"}},
        "required": ["member"],
    }
    return {
        "model": "fake",
        "stop": [c["email"]],
        "tools": [{"type": "function", "function": {"name": "f", "description": f"SSN {c['ssn']}"}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "card", "schema": schema}},
        "my_field": f"SSN {c['ssn']}",
        "messages": [{"role": "user", "content": "hi"}],
    }


def generation_attributes(langfuse: LangfuseState, project: str, rollout: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        tagged = (s for s in langfuse.spans(project) if rollout in str(s.attributes.get("langfuse.trace.tags")))
        return next((dict(s.attributes) for s in tagged), None)

    attributes = langfuse.wait_for(found, timeout=10)
    assert attributes is not None
    return attributes


def trace_with(langfuse: LangfuseState, project: str, insertion_id: str) -> TraceRecord:
    trace = langfuse.wait_for(
        lambda: next((t for t in langfuse.traces(project) if f"insertion_id:{insertion_id}" in t.tags), None),
        timeout=10,
    )
    assert trace is not None
    return trace


@pytest.mark.parametrize(("project", "provider_sees_pii"), [("proj-a", False), ("proj-b", True)])
async def test_declarations_stop_and_extra_keys_are_redacted(
    governed: Gateway, upstream_state: UpstreamState, langfuse: LangfuseState, project: str, provider_sees_pii: bool
) -> None:
    rollout = f"pii-{uuid.uuid4().hex[:8]}"
    path = f"/project_id/{project}/{rollout_path(rollout)}/chat/completions"
    async with httpx.AsyncClient(base_url=governed.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        response = await http.post(path, json=declarations_body())
    assert response.status_code == 200, response.text

    sent = upstream_state.completion_requests[-1].body
    assert bool(hits(json.dumps(sent))) is provider_sees_pii, hits(json.dumps(sent))
    if not provider_sees_pii:
        assert sent["stop"] == ["<REDACTED_EMAIL_1>"]
        assert sent["tools"] == [{"type": "function", "function": {"name": "f", "description": "SSN <REDACTED_SSN_1>"}}]
        member = sent["response_format"]["json_schema"]["schema"]["properties"]["member"]
        assert member == {"type": "string", "description": "e.g. <REDACTED_MEMBER_ID_1>"}
        assert sent["my_field"] == "SSN <REDACTED_SSN_1>"

    attributes = generation_attributes(langfuse, project, rollout)
    assert hits(json.dumps(attributes, default=str)) == []
    invocation = json.loads(attributes["llm.invocation_parameters"])
    assert invocation["stop"] == ["<REDACTED_EMAIL_1>"]
    assert invocation["tools"][0]["function"]["description"] == "SSN <REDACTED_SSN_1>"


HEADER_IDS = {"x-user-id": CANARIES["email"], "x-session-id": f"ssn-{CANARIES['ssn']}"}


@pytest.mark.parametrize("project", ["proj-a", "proj-b"])
async def test_session_and_user_headers_get_the_bodys_placeholders(
    governed: Gateway, upstream_state: UpstreamState, langfuse: LangfuseState, project: str
) -> None:
    """The same e-mail as ``x-user-id`` and as the body's ``user`` is one placeholder in the trace."""
    rollout = f"pii-{uuid.uuid4().hex[:8]}"
    body = {"model": "fake", "user": CANARIES["email"], "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": "Bearer k", **HEADER_IDS}
    async with httpx.AsyncClient(base_url=governed.url, timeout=30, headers=headers) as http:
        response = await http.post(f"/project_id/{project}/{rollout_path(rollout)}/chat/completions", json=body)
    assert response.status_code == 200, response.text

    sent = upstream_state.completion_requests[-1]
    assert hits(json.dumps([sent.body, sent.headers])) == []
    trace = trace_with(langfuse, project, response.headers["x-insertion-id"])
    assert (trace.user_id, trace.session_id) == ("<REDACTED_EMAIL_1>", "ssn-<REDACTED_SSN_1>")
    assert hits(json.dumps(trace.metadata, default=str)) == []
    assert hits(spans_text(langfuse, project, rollout)[1]) == []


async def test_required_metadata_headers_are_redacted_in_the_trace(
    gateway_factory: GatewayFactory, upstream: Any, langfuse: LangfuseState
) -> None:
    base = governed_catalog(upstream[0].url).model_dump()
    base["projects"]["proj-a"]["required_metadata"] = ["payer_id"]
    gateway = gateway_factory(catalog=ModelCatalog.model_validate(base))
    rollout = f"pii-{uuid.uuid4().hex[:8]}"
    headers = {"authorization": "Bearer k", "x-metadata-payer-id": CANARIES["ssn"]}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=headers) as http:
        response = await http.post(
            f"/project_id/proj-a/{rollout_path(rollout)}/chat/completions",
            json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 200, response.text

    trace = trace_with(langfuse, "proj-a", response.headers["x-insertion-id"])
    assert "payer_id:<REDACTED_SSN_1>" in trace.tags
    assert trace.metadata["payer_id"] == "<REDACTED_SSN_1>"
    assert hits(spans_text(langfuse, "proj-a", rollout)[1]) == []
