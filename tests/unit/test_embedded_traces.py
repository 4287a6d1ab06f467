"""The embedded trace store maps spans as Langfuse does, and keeps them within its bounds."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy_core.adapters.embedded_traces import (
    EmbeddedTraceStore,
    MemoryTraceBackend,
    embedded_public_key,
    embedded_target,
    project_of,
)
from proxy_core.adapters.langfuse_api import traces_from_observations
from proxy_core.services.trace_source import TraceRecord, TracingBackendError
from tests.fakes.langfuse_observations import list_observations_v2
from tests.fakes.langfuse_otlp import decode_export
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.otlp_build import SpanSpec, export_json, new_span_id, new_trace_id

V2_FIELDS = "core,basic,io,metadata,trace_context"
TAG = "rollout_id:r1"
TARGET = embedded_target("p")

short = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12)
tag_lists = st.lists(st.sampled_from(["a", "b:c", "insertion_id:x", "k:v w"]), max_size=3)


@st.composite
def trace_attributes(draw: st.DrawFn) -> dict[str, Any]:
    """Attributes of the kinds Langfuse reads, in the encodings exporters use."""
    tags = [TAG, *draw(tag_lists)]
    attributes: dict[str, Any] = {}
    encoding = draw(st.sampled_from(["json", "list", "comma"]))
    attributes["langfuse.trace.tags"] = (
        orjson.dumps(tags).decode() if encoding == "json" else tags if encoding == "list" else ",".join(tags)
    )
    optional: dict[str, Any] = {
        "langfuse.trace.name": short,
        "user.id": short,
        "session.id": short,
        "langfuse.release": short,
        "langfuse.version": short,
        "langfuse.environment": st.sampled_from(["staging", "Prod-2", "langfuse-x", "bad env"]),
        "langfuse.observation.type": st.sampled_from(["generation", "span", "tool", "nonsense"]),
        "openinference.span.kind": st.sampled_from(["LLM", "CHAIN"]),
        "llm.model_name": short,
        "langfuse.observation.input": st.sampled_from(['[{"role": "user", "content": "hi"}]', "plain", '"q"']),
        "langfuse.observation.output": st.sampled_from(['{"role": "assistant", "content": "yo"}', "[1, 2]"]),
        "input.value": short,
        "langfuse.trace.metadata": st.sampled_from(['{"run": 1}', "{}"]),
        "langfuse.observation.metadata.k": short,
        "llm.token_count.prompt": st.integers(0, 100),
        "llm.cost.total": st.floats(0, 1, allow_nan=False),
        "llm.is_streaming": st.booleans(),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            attributes[key] = draw(strategy)
    return attributes


@st.composite
def traces(draw: st.DrawFn) -> list[SpanSpec]:
    """One to three traces of one to three spans each, a root and children, distinct start times."""
    specs: list[SpanSpec] = []
    start = time.time_ns()
    for _ in range(draw(st.integers(1, 3))):
        trace_id = new_trace_id()
        root = SpanSpec(
            name=draw(st.sampled_from(["litellm_request", "agent"])),
            trace_id=trace_id,
            span_id=new_span_id(),
            attributes=draw(trace_attributes()),
            start_ns=start + len(specs) * 5_000_000,
            status_code=draw(st.sampled_from([1, 2])),
            resource=draw(st.sampled_from([{"service.name": "s", "deployment.environment": "production"}, {}])),
        )
        specs.append(root)
        for _ in range(draw(st.integers(0, 2))):
            child_attributes = draw(st.sampled_from([{}, {"user.id": "child-user"}, {"llm.model_name": "m"}]))
            specs.append(
                SpanSpec(
                    name="child",
                    trace_id=trace_id,
                    parent_span_id=root.span_id,
                    attributes=child_attributes,
                    start_ns=start + len(specs) * 5_000_000,
                )
            )
    return specs


def read_through_langfuse(body: bytes) -> list[TraceRecord]:
    """The emulator's ingestion, its v2 observations API, and the gateway's Langfuse read path."""
    state = LangfuseState({"p": ("pk", "sk")})
    state.ingest("p", decode_export(body, "application/json"))
    filter_json = orjson.dumps([{"type": "arrayOptions", "column": "tags", "operator": "all of", "value": [TAG]}])
    query = [("fields", V2_FIELDS), ("limit", "1000"), ("filter", filter_json.decode())]
    with state.lock:
        page = list_observations_v2(state.refresh("p"), "p", query)
    return traces_from_observations(page["data"])


async def read_embedded(body: bytes) -> list[TraceRecord]:
    store = EmbeddedTraceStore(MemoryTraceBackend(ttl_s=60, max_bytes=1 << 20))
    await store.ingest("p", body)
    return await store.rollout_traces(TARGET, (TAG,), deadline=time.monotonic() + 5)


def by_id(records: list[TraceRecord]) -> dict[str, TraceRecord]:
    return {record.id: record for record in records}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=traces())
async def test_traces_read_back_as_from_langfuse(specs: list[SpanSpec]) -> None:
    body = export_json(specs)
    assert by_id(await read_embedded(body)) == by_id(read_through_langfuse(body))


async def test_an_export_with_a_malformed_span_keeps_nothing() -> None:
    good = export_json([SpanSpec(attributes={"langfuse.trace.tags": [TAG]})])
    document = orjson.loads(good)
    document["resourceSpans"].append({"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": new_span_id()}]}]})
    store = EmbeddedTraceStore(MemoryTraceBackend(ttl_s=60, max_bytes=1 << 20))
    with pytest.raises(TracingBackendError) as caught:
        await store.ingest("p", orjson.dumps(document))
    assert caught.value.status_code == 400
    assert await store.rollout_traces(TARGET, (TAG,), deadline=time.monotonic() + 5) == []


async def test_projects_are_kept_apart() -> None:
    store = EmbeddedTraceStore(MemoryTraceBackend(ttl_s=60, max_bytes=1 << 20))
    spec = SpanSpec(attributes={"langfuse.trace.tags": [TAG]})
    await store.ingest("p", export_json([spec]))
    deadline = time.monotonic() + 5
    assert [t.id for t in await store.rollout_traces(TARGET, (TAG,), deadline=deadline)] == [spec.trace_id]
    assert await store.rollout_traces(embedded_target("q"), (TAG,), deadline=deadline) == []
    assert await store.trace_exists(TARGET, spec.trace_id, deadline=deadline)
    assert not await store.trace_exists(embedded_target("q"), spec.trace_id, deadline=deadline)


async def test_every_tag_must_match() -> None:
    store = EmbeddedTraceStore(MemoryTraceBackend(ttl_s=60, max_bytes=1 << 20))
    one, two = (SpanSpec(attributes={"langfuse.trace.tags": [TAG, f"insertion_id:{n}"]}) for n in (1, 2))
    await store.ingest("p", export_json([one, two]))
    found = await store.rollout_traces(TARGET, (TAG, "insertion_id:2"), deadline=time.monotonic() + 5)
    assert [t.id for t in found] == [two.trace_id]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(backend: MemoryTraceBackend, trace: str, size: int, tags: tuple[str, ...] = (TAG,)) -> Any:
    from proxy_core.adapters.embedded_traces import SpanWrite

    return backend.write("p", [SpanWrite(trace, new_span_id(), tags, b"x" * size)])


async def test_memory_backend_drops_the_oldest_traces_beyond_its_bytes() -> None:
    backend = MemoryTraceBackend(ttl_s=60, max_bytes=1000)
    for name in ("t1", "t2", "t3"):
        await write(backend, name, 400)
    assert sorted(await backend.traces_tagged("p", TAG)) == ["t2", "t3"]
    await write(backend, "t2", 50)  # written again: now the newest
    await write(backend, "t4", 400)
    assert sorted(await backend.traces_tagged("p", TAG)) == ["t2", "t4"]
    assert not await backend.has_trace("p", "t1")


async def test_memory_backend_forgets_traces_after_the_ttl_and_unindexes_them() -> None:
    clock = Clock()
    backend = MemoryTraceBackend(ttl_s=10, max_bytes=1 << 40, clock=clock)
    await write(backend, "old", 10, (TAG, "only-old"))
    clock.now += 6
    await write(backend, "new", 10)
    clock.now += 5
    assert list(await backend.traces_tagged("p", TAG)) == ["new"]
    assert await backend.traces_tagged("p", "only-old") == {}
    assert backend.index_size() == 1
    clock.now += 10
    assert await backend.traces_tagged("p", TAG) == {}
    assert backend.index_size() == 0


def test_public_keys_carry_any_project_id() -> None:
    for project_id in ("", "p", "a:b", "ünïcødé", "x" * 256):
        assert project_of(embedded_public_key(project_id)) == project_id
        assert ":" not in embedded_public_key(project_id)
    assert project_of("pk-lf-something") is None
